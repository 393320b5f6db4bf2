"""Binance USDⓈ-M wire shapes <-> Atlas's normalised dicts and events.

Everything that knows a Binance field name lives in this package: responses and stream
messages are parsed once, at the edge, into the snake_case dicts documented in `venues/base.py`
and the `VenueEvent` dataclasses; venue enums are mapped once (`common.ORDER_STATUS`). The
encoders (`*_wire`) go the other way for the sim exchange, so both ends of the loopback share
one definition of the format.

- `common`: enums, scalars (decimal strings in and out), error bodies;
- `rest`: exchangeInfo, market data, account and positions;
- `orders`: regular orders and algo orders (REST);
- `stream`: market and user-data stream messages.
"""

from __future__ import annotations

from atlas_actors.venues.binance.schemas.common import (
    ALGO_STATUSES,
    CONDITIONAL_ORDER_TYPES,
    OPEN_ALGO_STATUSES,
    OPEN_ORDER_STATUSES,
    ORDER_STATUS,
    SchemaError,
    dec,
    decimal_str,
    error_wire,
    flag,
    id_str,
    num,
    parse_error,
    req,
    side_of,
    wire_bool,
)
from atlas_actors.venues.binance.schemas.orders import (
    algo_wire,
    order_wire,
    parse_algo,
    parse_order,
)
from atlas_actors.venues.binance.schemas.rest import (
    account_wire,
    balance_rows_wire,
    kline_row_wire,
    parse_account,
    parse_balance_rows,
    parse_exchange_info,
    parse_funding_rows,
    parse_kline_row,
    parse_open_interest,
    parse_position_row,
    parse_positions,
    parse_premium_index,
    parse_symbol_filters,
    parse_ticker_price,
    position_row_wire,
    premium_index_wire,
    public_filters,
    symbol_entry_wire,
)
from atlas_actors.venues.binance.schemas.stream import (
    account_update_wire,
    algo_update_wire,
    kline_event_wire,
    listen_key_expired_wire,
    mark_price_event_wire,
    order_update_wire,
    parse_account_update,
    parse_algo_update,
    parse_kline_event,
    parse_mark_price_event,
    parse_order_update,
    parse_stream_message,
    unwrap,
)

__all__ = [
    "ALGO_STATUSES",
    "CONDITIONAL_ORDER_TYPES",
    "OPEN_ALGO_STATUSES",
    "OPEN_ORDER_STATUSES",
    "ORDER_STATUS",
    "SchemaError",
    "account_update_wire",
    "account_wire",
    "algo_update_wire",
    "algo_wire",
    "balance_rows_wire",
    "dec",
    "decimal_str",
    "error_wire",
    "flag",
    "id_str",
    "kline_event_wire",
    "kline_row_wire",
    "listen_key_expired_wire",
    "mark_price_event_wire",
    "num",
    "order_update_wire",
    "order_wire",
    "parse_account",
    "parse_account_update",
    "parse_algo",
    "parse_algo_update",
    "parse_balance_rows",
    "parse_error",
    "parse_exchange_info",
    "parse_funding_rows",
    "parse_kline_event",
    "parse_kline_row",
    "parse_mark_price_event",
    "parse_open_interest",
    "parse_order",
    "parse_order_update",
    "parse_position_row",
    "parse_positions",
    "parse_premium_index",
    "parse_stream_message",
    "parse_symbol_filters",
    "parse_ticker_price",
    "position_row_wire",
    "premium_index_wire",
    "public_filters",
    "req",
    "side_of",
    "symbol_entry_wire",
    "unwrap",
    "wire_bool",
]
