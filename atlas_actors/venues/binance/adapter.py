"""BinanceAdapter: contract §1 on Binance USDⓈ-M futures, built on python-binance's `Client`.

A facade over the package's parts, grouped the way the venue groups its API:
- `http.BinanceHttp`: transport (signing clock, error mapping through `codes.py`, retries,
  the request-weight governor, unknown outcomes resolved by client id before any retry);
- `market.MarketData`: §1.1 market data and the exchangeInfo filters (cached, refreshed
  once on a filter error);
- `account.Account`: §1.2 balances, positions, leverage, position mode;
- `orders.Orders`: §1.3 regular orders; `/fapi/v1/order` only ever carries LIMIT or MARKET;
- `algos.AlgoOrders`: §1.4 algo orders (every protective stop goes to `/fapi/v1/algoOrder`
  through the explicit algo methods; `futures_create_order` is never used because it
  silently reroutes conditional types) and §1.5 `recover_protection`;
- `session.StreamSession`: streams (klines, mark price, user data) with listenKey upkeep,
  reconnects and a REST resync that synthesises the order/algo updates missed meanwhile.

Binance-specific names and shapes are parsed in `schemas/`; this module speaks Atlas dicts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from atlas_actors.domain.events import StreamStatus
from atlas_actors.domain.stops import StopSpec
from atlas_actors.venues.base import AuthError, EventHandler, VenueEvent
from atlas_actors.venues.binance.account import Account, margin_asset_of_symbols
from atlas_actors.venues.binance.algos import AlgoOrders
from atlas_actors.venues.binance.http import BinanceHttp, WeightGovernor
from atlas_actors.venues.binance.market import MarketData
from atlas_actors.venues.binance.orders import Orders
from atlas_actors.venues.binance.session import StreamSession
from atlas_actors.venues.binance.tracking import OpenTracker

log = logging.getLogger(__name__)

PROD_REST_URL = "https://fapi.binance.com"
PROD_WS_URL = "wss://fstream.binance.com"
# Binance's current futures testnet ("Demo Trading"); the legacy testnet.binancefuture.com is
# what python-binance's testnet=True would use, which is why the base URL is always set here.
TESTNET_REST_URL = "https://demo-fapi.binance.com"
TESTNET_WS_URL = "wss://fstream.binancefuture.com"


class BinanceAdapter:
    """`ExchangeAdapter` for Binance USDⓈ-M futures (see the module docstring)."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        rest_url: str | None = None,
        ws_url: str | None = None,
        testnet: bool = False,
        recv_window_ms: int = 5000,
        interval: str = "1m",
        symbols: list[str] | tuple[str, ...] | None = None,
        weight_limit_share: float = 0.8,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        request_timeout_s: float = 10.0,
        max_write_attempts: int = 3,
        max_read_attempts: int = 3,
        max_rate_limit_waits: int = 2,
        max_rate_limit_wait_s: float = 30.0,
        rotate_after_s: float | None = None,
        stream_backoff_s: float = 0.5,
    ) -> None:
        if not api_key or not api_secret:
            raise AuthError("BinanceAdapter needs an API key and secret (BINANCE_API_KEY/SECRET)")
        if not 0 < int(recv_window_ms) <= 60_000:
            raise ValueError(f"recv_window_ms must be within 1..60000, got {recv_window_ms!r}")
        default_rest, default_ws = (
            (TESTNET_REST_URL, TESTNET_WS_URL) if testnet else (PROD_REST_URL, PROD_WS_URL)
        )
        self.rest_url = (rest_url or default_rest).rstrip("/")
        if not self.rest_url.startswith(("http://", "https://")):
            raise ValueError(f"rest_url must start with http:// or https://, got {rest_url!r}")
        if ws_url:
            self.ws_url = ws_url.rstrip("/")
        elif rest_url:
            # A loopback/sim venue serves its streams on the REST host unless told otherwise.
            self.ws_url = "ws" + self.rest_url[len("http") :]
        else:
            self.ws_url = default_ws
        if not self.ws_url.startswith(("ws://", "wss://")):
            raise ValueError(f"ws_url must start with ws:// or wss://, got {ws_url!r}")
        self.testnet = testnet
        self.interval = interval
        self.symbols = tuple(s.upper() for s in (symbols or ()))
        # sizing reads this asset's pool; symbols of two pools are refused here (MarginAssetMix)
        self.pool_asset = margin_asset_of_symbols(self.symbols)
        self._http = BinanceHttp(
            api_key,
            api_secret,
            rest_url=self.rest_url,
            recv_window_ms=recv_window_ms,
            request_timeout_s=request_timeout_s,
            weight_limit_share=weight_limit_share,
            clock=clock,
            sleep=sleep,
            max_write_attempts=max_write_attempts,
            max_read_attempts=max_read_attempts,
            max_rate_limit_waits=max_rate_limit_waits,
            max_rate_limit_wait_s=max_rate_limit_wait_s,
        )
        self._http.governor.on_ban = self._on_ban
        self._tracker = OpenTracker()
        self._market = MarketData(self._http)
        self._account = Account(self._http, self.symbols, self.pool_asset)
        self._orders = Orders(self._http, self._market, self._tracker)
        self._algos = AlgoOrders(self._http, self._market, self._tracker)
        self._listeners: tuple[EventHandler, ...] = ()
        self._listeners_lock = threading.Lock()
        self._session = StreamSession(
            self,
            self._http,
            self._tracker,
            self._emit,
            ws_url=self.ws_url,
            symbols=self.symbols,
            interval=self.interval,
            rotate_after_s=rotate_after_s,
            stream_backoff_s=stream_backoff_s,
        )

    # ================================================================== transport

    @property
    def governor(self) -> WeightGovernor:
        return self._http.governor

    @property
    def max_write_attempts(self) -> int:
        return self._http.max_write_attempts

    @property
    def max_read_attempts(self) -> int:
        return self._http.max_read_attempts

    def sync_time(self) -> float:
        """Measure the server clock offset (GET /fapi/v1/time); returns it in ms."""
        return self._http.sync_time()

    @property
    def time_offset_ms(self) -> float:
        return self._http.time_offset_ms

    def close(self) -> None:
        self._session.ws_stop()
        self._http.close()

    # ================================================================== listeners

    def add_listener(self, handler: EventHandler) -> None:
        with self._listeners_lock:
            self._listeners = (*self._listeners, handler)

    def remove_listener(self, handler: EventHandler) -> None:
        with self._listeners_lock:
            self._listeners = tuple(h for h in self._listeners if h is not handler)

    def _emit(self, event: VenueEvent) -> None:
        for handler in self._listeners:
            try:
                handler(event)
            except Exception:
                log.exception("venue listener %r failed on %s", handler, type(event).__name__)

    def _on_ban(self, until_s: float, why: str) -> None:
        """A venue ban began: REST is silent until `until_s` (server clock). Told to the
        listeners once per ban, as a status of the "rest" link (the tree alerts on it)."""
        until_ms = int(until_s * 1000)
        log.error("Binance REST ban until %d: no request leaves until then (%s)", until_ms, why)
        detail = f"until {until_ms}: {why}"[:200]
        self._emit(StreamStatus("rest", "BANNED", detail, self._http.now_ms()))

    # ================================================================== filters (exchangeInfo)

    def load_exchange_info(self) -> None:
        """(Re)load symbol filters and the request-weight limit from exchangeInfo."""
        self._market.load_exchange_info()

    def get_symbol_filters(self, symbol: str) -> dict[str, float]:
        """tick_size, step_size, min_qty, min_notional of `symbol` (selfcheck uses this)."""
        return self._market.get_symbol_filters(symbol)

    def symbol_status(self, symbol: str) -> str:
        return self._market.symbol_status(symbol)

    def market_max_qty(self, symbol: str) -> float:
        """The largest MARKET order quantity (MARKET_LOT_SIZE.maxQty; inf: none)."""
        return self._market.filters_for(symbol).market_max_qty

    def margin_asset(self, symbol: str) -> str:
        return self._market.margin_asset(symbol)

    # ================================================================== §1.1 market data

    def get_kline(self, symbol: str, interval: str, limit: int) -> list[dict[str, Any]]:
        return self._market.get_kline(symbol, interval, limit)

    def get_mark_price(self, symbol: str) -> float:
        return self._market.get_mark_price(symbol)

    def get_last_price(self, symbol: str) -> float:
        """The last traded contract price (GET /fapi/v2/ticker/price)."""
        return self._market.get_last_price(symbol)

    def get_funding_rate(self, symbol: str) -> float:
        """The current (next settlement's) funding rate: premiumIndex.lastFundingRate."""
        return self._market.get_funding_rate(symbol)

    def get_open_interest(self, symbol: str) -> float:
        return self._market.get_open_interest(symbol)

    # ================================================================== §1.2 account

    def get_balances(self) -> dict[str, Any]:
        return self._account.get_balances()

    def get_positions(self) -> dict[str, dict[str, Any]]:
        """Configured symbols (flat ones as side NONE) plus every symbol with a position.
        Uses positionRisk v2, which carries leverage (v3 does not)."""
        return self._account.get_positions()

    def set_leverage(self, symbol: str, leverage: int) -> None:
        self._account.set_leverage(symbol, leverage)

    def set_position_mode_one_way(self) -> None:
        self._account.set_position_mode_one_way()

    def get_position_mode(self) -> str:
        """ "ONE_WAY" or "HEDGE" (GET /fapi/v1/positionSide/dual)."""
        return self._account.get_position_mode()

    # ================================================================== §1.3 regular orders

    def _post_order(self, **params: Any) -> Any:
        """The red line: only LIMIT/MARKET reach /fapi/v1/order (see `Orders.post_order`)."""
        return self._orders.post_order(**params)

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
        """LIMIT with timeInForce=tif (GTX = post-only, Atlas's entries). Price rounds toward
        the passive side, quantity down to the step."""
        return self._orders.place_limit_postonly(
            symbol=symbol,
            side=side,
            qty=qty,
            price=price,
            tif=tif,
            reduce_only=reduce_only,
            client_order_id=client_order_id,
        )

    def place_market(
        self, *, symbol: str, side: str, qty: float, reduce_only: bool, client_order_id: str
    ) -> dict[str, Any]:
        return self._orders.place_market(
            symbol=symbol,
            side=side,
            qty=qty,
            reduce_only=reduce_only,
            client_order_id=client_order_id,
        )

    def cancel_order(
        self, *, symbol: str, order_id: str | None, client_order_id: str | None
    ) -> dict[str, Any]:
        """Cancel; unknown / filled / already cancelled (-2011, -2013) is success."""
        return self._orders.cancel_order(
            symbol=symbol, order_id=order_id, client_order_id=client_order_id
        )

    def get_open_orders(self, symbol: str) -> list[dict[str, Any]]:
        return self._orders.get_open_orders(symbol)

    def get_order(
        self, *, symbol: str, order_id: str | None = None, client_order_id: str | None = None
    ) -> dict[str, Any] | None:
        return self._orders.get_order(
            symbol=symbol, order_id=order_id, client_order_id=client_order_id
        )

    # ================================================================== §1.4 algo orders

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
        """Algo CONDITIONAL STOP_MARKET on /fapi/v1/algoOrder. reduceOnly XOR closePosition:
        with close_position neither quantity nor reduceOnly is sent (-1106/-4137/-4138)."""
        return self._algos.place_algo_stop(
            symbol=symbol,
            side=side,
            qty=qty,
            stop_price=stop_price,
            reduce_only=reduce_only,
            client_algo_id=client_algo_id,
            working_type=working_type,
            close_position=close_position,
        )

    def cancel_algo(
        self, *, symbol: str, algo_id: str | None, client_algo_id: str | None
    ) -> dict[str, Any]:
        """Cancel an algo order; unknown / triggered / cancelled is success."""
        return self._algos.cancel_algo(
            symbol=symbol, algo_id=algo_id, client_algo_id=client_algo_id
        )

    def get_open_algo_orders(self, symbol: str) -> list[dict[str, Any]]:
        return self._algos.get_open_algo_orders(symbol)

    def get_algo_order(
        self, *, symbol: str, algo_id: str | None = None, client_algo_id: str | None = None
    ) -> dict[str, Any] | None:
        return self._algos.get_algo_order(
            symbol=symbol, algo_id=algo_id, client_algo_id=client_algo_id
        )

    # ================================================================== §1.5 recovery

    def recover_protection(
        self, symbol: str, desired_sl: StopSpec | Mapping[str, Any]
    ) -> dict[str, Any]:
        """CREATED / REPLACED (new stop first, then cancel the old) / CONFIRMED (reads only).

        The existing stop is the open algo with the desired client id, else an open
        reduce-only/closePosition algo on the desired side (same rule as SimVenue)."""
        return self._algos.recover_protection(symbol, desired_sl)

    # ================================================================== streams

    def ws_start(self) -> None:
        """Start the market stream (klines of `interval` + mark price of `symbols`) and the
        user-data stream. Reconnects and REST resyncs are handled here from then on."""
        self._session.ws_start()

    def ws_stop(self) -> None:
        self._session.ws_stop()

    def resync(self) -> list[VenueEvent]:
        """REST resync after a (re)connect: positions, balances, open orders and algos, with
        the order/algo updates missed meanwhile synthesised (see `StreamSession.resync`)."""
        return self._session.resync()
