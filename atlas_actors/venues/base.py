"""The venue contract (contract §1): `ExchangeAdapter`, the error hierarchy, client-id helpers.

The values the contract passes around - `StopSpec` (with `stop_deviates`, `closing_side`) and
the normalised stream events (`BarClosed` ... `StreamStatus`, `VenueEvent`) - belong to the
domain that consumes them: `atlas_actors.domain.stops` and `atlas_actors.domain.events`.

Every adapter (SimVenue, BinanceAdapter) implements `ExchangeAdapter` with exactly the
contract's method names, keyword-only arguments and returned fields. Returned dicts use
the contract's snake_case names; numbers are floats; ids are strings.

Order dicts (place_*, get_open_orders) carry at least:
    order_id, client_order_id, symbol, side, type ("LIMIT"/"MARKET"), status
    ("NEW"/"PARTIALLY_FILLED"/"FILLED"/"CANCELED"/"EXPIRED"/"REJECTED"), price, qty,
    executed_qty, avg_price, reduce_only, time_in_force
Algo dicts (place_algo_stop, get_open_algo_orders, recover_protection()["algo"]) carry:
    algo_id, client_algo_id, symbol, side, type ("STOP_MARKET"), status ("NEW", ...),
    stop_price, qty, working_type, reduce_only, close_position
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from atlas_actors.domain.events import VenueEvent
from atlas_actors.domain.stops import StopSpec

WORKING_TYPES = ("MARK_PRICE", "CONTRACT_PRICE")
SIDES = ("BUY", "SELL")


# ------------------------------------------------------------------ errors


class VenueError(Exception):
    """Base of every venue failure. `code` keeps the venue's own error code when known."""

    def __init__(self, msg: str = "", *, code: int | None = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


class RateLimited(VenueError):
    def __init__(self, retry_after: float, msg: str = "rate limited", *, code: int | None = None):
        super().__init__(msg, code=code)
        self.retry_after = float(retry_after)


class OrderRejected(VenueError):
    def __init__(self, code: int | None, msg: str) -> None:
        super().__init__(msg, code=code)


class InsufficientMargin(OrderRejected):
    pass


class WouldTakeLiquidity(OrderRejected):
    """A post-only (GTX) order would have executed immediately as taker."""


class UnknownOutcome(VenueError):
    """The request may or may not have been applied (timeout, 5xx, -1007).

    Resolve by querying by client id; never resend blindly."""


class AuthError(VenueError):
    pass


class VenueUnavailable(VenueError):
    pass


class FilterError(OrderRejected):
    """An order violates the symbol's filters (below min qty / min notional, bad precision)."""

    def __init__(self, msg: str, *, code: int | None = -4164) -> None:
        super().__init__(code, msg)


# ------------------------------------------------------------------ event listeners


EventHandler = Callable[[VenueEvent], None]


# ------------------------------------------------------------------ the contract


@runtime_checkable
class ExchangeAdapter(Protocol):
    """Contract §1. Method names, keyword-only arguments and returned fields are binding."""

    # §1.1 connection and market data
    def ws_start(self) -> None:
        """Start the streams (klines, mark price, user data); reconnects are the adapter's job."""

    def ws_stop(self) -> None:
        """Stop the streams."""

    def add_listener(self, handler: EventHandler) -> None:
        """Register a callable that receives every normalised `VenueEvent` (Atlas extension)."""

    def get_kline(self, symbol: str, interval: str, limit: int) -> list[dict[str, Any]]:
        """Closed klines, oldest first: open_time, open, high, low, close, volume, close_time."""

    def get_mark_price(self, symbol: str) -> float:
        """The mark price (what working_type=MARK_PRICE stops trigger on)."""

    def get_last_price(self, symbol: str) -> float:
        """The last traded (contract) price."""

    def get_funding_rate(self, symbol: str) -> float:
        """The current funding rate."""

    def get_open_interest(self, symbol: str) -> float:
        """The current open interest."""

    # §1.2 account and positions
    def get_balances(self) -> dict[str, Any]:
        """At least total_equity, available_balance, margin_used."""

    def get_positions(self) -> dict[str, dict[str, Any]]:
        """Symbol -> side (LONG/SHORT/NONE), qty, entry_price, unrealized_pnl, leverage."""

    def set_leverage(self, symbol: str, leverage: int) -> None:
        """Set a symbol's leverage."""

    def set_position_mode_one_way(self) -> None:
        """Switch the account to one-way mode (already one-way = success)."""

    # §1.3 regular orders
    def place_limit_postonly(
        self,
        *,
        symbol: str,
        side: str,
        qty: float,
        price: float,
        tif: str,
        reduce_only: bool,
        client_order_id: str,
    ) -> dict[str, Any]:
        """Post-only limit (GTX). Returns order_id, client_order_id, status (+ order fields).

        Raises WouldTakeLiquidity when it would take. Same client id again -> the existing order."""

    def place_market(
        self, *, symbol: str, side: str, qty: float, reduce_only: bool, client_order_id: str
    ) -> dict[str, Any]:
        """Market order (entries at market, exits, emergency reduceOnly flatten)."""

    def market_max_qty(self, symbol: str) -> float:
        """The largest MARKET order quantity (MARKET_LOT_SIZE.maxQty, often far below
        LOT_SIZE's; inf: none): a bigger close goes in reduce-only chunks."""

    def cancel_order(
        self, *, symbol: str, order_id: str | None, client_order_id: str | None
    ) -> dict[str, Any]:
        """Cancel; missing / filled / already cancelled is success (idempotent)."""

    def get_open_orders(self, symbol: str) -> list[dict[str, Any]]:
        """Open regular orders of a symbol."""

    def get_order(
        self, *, symbol: str, order_id: str | None = None, client_order_id: str | None = None
    ) -> dict[str, Any] | None:
        """One order by id or client id, any status; None when the venue has no such order.
        (Atlas extension: how an unknown outcome is resolved.)"""

    # §1.4 algo conditional orders (every protective stop)
    def place_algo_stop(
        self,
        *,
        symbol: str,
        side: str,
        qty: float,
        stop_price: float,
        reduce_only: bool,
        client_algo_id: str,
        working_type: str,
        close_position: bool = False,
    ) -> dict[str, Any]:
        """Algo CONDITIONAL STOP_MARKET. Returns algo_id, client_algo_id, status (+ algo fields)."""

    def cancel_algo(
        self, *, symbol: str, algo_id: str | None, client_algo_id: str | None
    ) -> dict[str, Any]:
        """Cancel an algo order; missing / triggered / cancelled is success."""

    def get_open_algo_orders(self, symbol: str) -> list[dict[str, Any]]:
        """Open algo orders of a symbol (the 1 s visibility check and recovery read this)."""

    def get_algo_order(
        self, *, symbol: str, algo_id: str | None = None, client_algo_id: str | None = None
    ) -> dict[str, Any] | None:
        """One algo order by id or client id, any status; None when unknown (Atlas extension)."""

    # §1.5 idempotent recovery
    def recover_protection(
        self, symbol: str, desired_sl: StopSpec | Mapping[str, Any]
    ) -> dict[str, Any]:
        """Make the desired stop real: {"action": "CREATED"|"REPLACED"|"CONFIRMED", "algo": {...}}.

        Deviates = different side or working type, qty off by >= one step, or stop price off
        by >= one tick. REPLACED places the new stop first, then cancels the old one.
        CONFIRMED sends no write request."""


CLIENT_ID_MAX_LEN = 36  # Binance newClientOrderId / clientAlgoId: ^[.A-Z:/a-z0-9_-]{1,36}$


def replacement_client_id(client_id: str, attempt: int) -> str:
    """A fresh client id derived from `client_id` for a replacement order (recover_protection).

    Replaces an earlier `.r<n>` suffix instead of stacking them and trims the base so the
    result stays within 36 characters: "atl-BTCUSDC-12-sl" -> "atl-BTCUSDC-12-sl.r2"."""
    base = client_id
    head, sep, tail = client_id.rpartition(".r")
    if sep and tail.isdigit():
        base = head
    suffix = f".r{attempt}"
    return base[: CLIENT_ID_MAX_LEN - len(suffix)] + suffix


POST_ONLY_TIF = "GTX"  # Binance's post-only time in force: a limit that would take is refused


def check_post_only(symbol: str, tif: str) -> None:
    """`place_limit_postonly` means post-only (contract §1.3): any other time in force is a
    caller's bug, refused before anything is sent."""
    if tif != POST_ONLY_TIF:
        raise ValueError(
            f"{symbol}: place_limit_postonly sends post-only ({POST_ONLY_TIF}) orders only, "
            f"got tif={tif!r}"
        )
