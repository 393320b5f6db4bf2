"""BinanceAdapter: contract §1 on Binance USDⓈ-M futures, built on python-binance's `Client`.

What this module adds on top of python-binance (which signs and sends, nothing more):
- every protective stop goes to the Algo endpoints (`/fapi/v1/algoOrder`, `openAlgoOrders`)
  through the explicit algo methods; `futures_create_order` is never used because it silently
  reroutes conditional types, and `/fapi/v1/order` only ever carries LIMIT or MARKET;
- prices and quantities are rounded with the exchangeInfo filters (`filters.SymbolFilters`),
  cached and refreshed once on a filter error;
- Binance errors map onto the venue error hierarchy with the Binance code kept, and each
  failure has one policy (see `_call`, `_write`): unknown outcomes are resolved by querying
  the client id before any retry, -1021 resyncs the clock, 429/418/-1003 back off;
- a request-weight governor reads `X-MBX-USED-WEIGHT-1M` and stays below a share of the limit;
- streams (klines, mark price, user data) with listenKey upkeep, reconnects and a REST resync
  that synthesises the order/algo updates missed while disconnected.

Binance-specific names and shapes are parsed in `schemas.py`; this module speaks Atlas dicts.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import requests
import urllib3
from binance.client import Client  # type: ignore[import-untyped]
from binance.exceptions import (  # type: ignore[import-untyped]
    BinanceAPIException,
    BinanceRequestException,
)

from atlas_actors.domain.events import (
    AccountUpdate,
    AlgoUpdate,
    BarClosed,
    MarkPrice,
    OrderUpdate,
    StreamStatus,
    VenueEvent,
)
from atlas_actors.domain.stops import StopSpec, stop_deviates
from atlas_actors.venues import schemas
from atlas_actors.venues.base import (
    SIDES,
    WORKING_TYPES,
    AuthError,
    EventHandler,
    FilterError,
    InsufficientMargin,
    OrderRejected,
    RateLimited,
    UnknownOutcome,
    VenueError,
    VenueUnavailable,
    WouldTakeLiquidity,
    replacement_client_id,
)
from atlas_actors.venues.binance_ws import StreamWorker
from atlas_actors.venues.filters import SymbolFilters, on_grid, snap

log = logging.getLogger(__name__)

PROD_REST_URL = "https://fapi.binance.com"
PROD_WS_URL = "wss://fstream.binance.com"
# Binance's current futures testnet ("Demo Trading"); the legacy testnet.binancefuture.com is
# what python-binance's testnet=True would use, which is why the base URL is always set here.
TESTNET_REST_URL = "https://demo-fapi.binance.com"
TESTNET_WS_URL = "wss://fstream.binancefuture.com"

CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
TIME_IN_FORCE = ("GTX", "GTC", "IOC", "FOK")
REGULAR_ORDER_TYPES = ("LIMIT", "MARKET")

NOT_FOUND_CODES = frozenset({-2011, -2013})
DUPLICATE_CODE = -4116
TRIGGERING_CODE = -4117
ALREADY_ONE_WAY_CODE = -4059
INVALID_LISTEN_KEY_CODE = -1125
TIMESTAMP_CODE = -1021
FILTER_CODES = frozenset({-1013, -1111, -4003, -4004, -4005, -4014, -4023, -4164})
UNKNOWN_STATUS_CODES = frozenset({-1006, -1007})
SERVER_BUSY_CODES = frozenset({-1001, -1008})
AUTH_CODES = frozenset({-1002, -1022, -2014, -2015})
RATE_LIMIT_CODES = frozenset({-1003, -1015})

LISTEN_KEY_KEEPALIVE_S = 30 * 60.0
TIME_RESYNC_S = 30 * 60.0
KLINE_BACKFILL_LIMIT = 499  # weight 2; bars missed during a longer market outage stay missed


def _kline_weight(limit: int) -> int:
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


def _never_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection itself failed (DNS, refused, connect timeout): nothing left
    this host, so a write cannot have been applied."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(
        reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
    )


# A value within float noise of the grid (32498.899999999998 on a 0.1 tick) is that grid
# value; only values really between two grid points are rounded in their direction.
def _grid_qty(f: SymbolFilters, qty: float) -> float:
    return snap(qty, f.step_size) if on_grid(qty, f.step_size) else f.round_qty(qty)


def _grid_price(f: SymbolFilters, price: float, side: str) -> float:
    return snap(price, f.tick_size) if on_grid(price, f.tick_size) else f.round_price(price, side)


def _grid_stop(f: SymbolFilters, stop_price: float, side: str) -> float:
    if on_grid(stop_price, f.tick_size):
        return snap(stop_price, f.tick_size)
    return f.round_stop_price(stop_price, side)


class WeightGovernor:
    """Keeps this process's request weight below `share` of the per-minute limit.

    The server's count (`X-MBX-USED-WEIGHT-1M`) is the truth whenever a response carries it;
    between responses the governor adds the weight of what it lets through. When the next
    request would pass the budget it sleeps (injected `sleep`) to the next minute window."""

    def __init__(
        self,
        *,
        limit: int = 2400,
        share: float = 0.8,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"weight_limit_share must be within (0, 1], got {share!r}")
        self.limit = int(limit)
        self.share = float(share)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._minute = -1
        self._used = 0
        self._blocked_until = 0.0
        self.waits: list[float] = []  # every wait the governor imposed (seconds), for status

    @property
    def budget(self) -> float:
        return self.limit * self.share

    @property
    def used(self) -> int:
        return self._used

    def acquire(self, weight: int) -> None:
        while True:
            with self._lock:
                now = self._clock()
                minute = int(now // 60)
                if minute != self._minute:
                    self._minute, self._used = minute, 0
                wait = 0.0
                if self._blocked_until > now:
                    wait = self._blocked_until - now
                elif weight > 0 and self._used > 0 and self._used + weight > self.budget:
                    wait = (minute + 1) * 60.0 - now + 0.01
                if wait <= 0.0:
                    self._used += weight
                    return
            self.waits.append(wait)
            self._sleep(wait)
            with self._lock:
                # The wait covered the window (or the ban): start afresh even if the injected
                # clock did not move, so a test clock can never make this spin.
                self._blocked_until = 0.0
                if weight > 0 and self._used + weight > self.budget:
                    self._minute, self._used = int(self._clock() // 60), 0
                    self._used += weight
                    return

    def observe(self, used: int) -> None:
        with self._lock:
            minute = int(self._clock() // 60)
            if minute != self._minute:
                self._minute, self._used = minute, 0
            self._used = max(self._used, int(used))

    def block_for(self, seconds: float) -> None:
        """Every request waits `seconds` (a 429/418 from the venue)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)


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
        self._clock = clock
        self._sleep = sleep
        self.max_write_attempts = max(1, int(max_write_attempts))
        self.max_read_attempts = max(1, int(max_read_attempts))
        self.max_rate_limit_waits = int(max_rate_limit_waits)
        self.max_rate_limit_wait_s = float(max_rate_limit_wait_s)

        # ping=False: the default ping hits *spot* /api/v3/ping at construction.
        self._client = Client(api_key, api_secret, ping=False)
        self._client.FUTURES_URL = self.rest_url + "/fapi"
        self._client.REQUEST_RECVWINDOW = int(recv_window_ms)
        self._client.REQUEST_TIMEOUT = float(request_timeout_s)
        self._client.session.hooks["response"].append(self._on_http_response)

        self.governor = WeightGovernor(share=weight_limit_share, clock=clock, sleep=sleep)
        self._offset_ms = 0.0
        self._last_time_sync: float | None = None
        self._time_lock = threading.Lock()

        self._filters: dict[str, SymbolFilters] = {}
        self._margin_assets: dict[str, str] = {}
        self._filters_lock = threading.Lock()

        self._listeners: tuple[EventHandler, ...] = ()
        self._state_lock = threading.Lock()
        self._open_orders: dict[str, dict[str, Any]] = {}
        self._open_algos: dict[str, dict[str, Any]] = {}
        self._placed_client_ids: OrderedDict[str, str] = OrderedDict()  # client id -> symbol
        self._last_bar_open: dict[str, int] = {}

        self._listen_key: str | None = None
        self._last_keepalive = 0.0
        self._rotate_after_s = rotate_after_s
        self._stream_backoff_s = float(stream_backoff_s)
        self._market: StreamWorker | None = None
        self._user: StreamWorker | None = None

    # ================================================================== transport

    def _on_http_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        used = response.headers.get("X-MBX-USED-WEIGHT-1M")
        if used and used.isdigit():
            self.governor.observe(int(used))

    def _apply_signing_clock(self) -> None:
        # python-binance stamps `time.time()*1000 + timestamp_offset`; make that equal to the
        # injected clock plus the measured server offset.
        self._client.timestamp_offset = (self._clock() - time.time()) * 1000.0 + self._offset_ms

    def sync_time(self) -> float:
        """Measure the server clock offset (GET /fapi/v1/time); returns it in ms."""
        t0 = self._clock()
        body = self._call("time", self._client.futures_time, None, weight=1, signed=False)
        t1 = self._clock()
        server_ms = int(body["serverTime"])
        with self._time_lock:
            self._offset_ms = server_ms - (t0 + t1) / 2.0 * 1000.0
            self._last_time_sync = t1
        return self._offset_ms

    @property
    def time_offset_ms(self) -> float:
        return self._offset_ms

    def _time_sync_due(self) -> bool:
        last = self._last_time_sync
        return last is None or self._clock() - last >= TIME_RESYNC_S

    def _unreachable(self, op: str, exc: BaseException) -> str:
        cause: BaseException = exc
        while cause.__cause__ is not None or cause.__context__ is not None:
            nxt = cause.__cause__ or cause.__context__
            assert nxt is not None
            cause = nxt
        # The exception text may carry the signed query string: report only the kind.
        return f"{op}: cannot reach {self.rest_url} ({type(exc).__name__}: {type(cause).__name__})"

    def _map_api_error(self, op: str, exc: BinanceAPIException, write: bool) -> VenueError:
        status = int(exc.status_code)
        code = int(exc.code) if exc.code else None
        text = f"{op}: {exc.message} (HTTP {status}, code {code})"
        if status in (429, 418) or code in RATE_LIMIT_CODES or status == 403:
            return RateLimited(self._retry_after(exc, status), text, code=code)
        if code in AUTH_CODES or status == 401:
            return AuthError(text, code=code)
        if code == TIMESTAMP_CODE:
            return VenueError(text, code=code)
        if code == -2019:
            return InsufficientMargin(code, text)
        if code == -5022:
            return WouldTakeLiquidity(code, text)
        if code in FILTER_CODES:
            return FilterError(text, code=code)
        if status >= 500 or status == 408 or code in UNKNOWN_STATUS_CODES | SERVER_BUSY_CODES:
            return UnknownOutcome(text, code=code) if write else VenueUnavailable(text, code=code)
        if write:
            return OrderRejected(code, text)
        return VenueError(text, code=code)

    def _retry_after(self, exc: BinanceAPIException, status: int) -> float:
        header = exc.response.headers.get("Retry-After") if exc.response is not None else None
        if header:
            try:
                return max(0.0, float(header))
            except ValueError:
                pass
        banned = re.search(r"banned until (\d{13})", exc.message or "")
        if banned:
            return max(0.0, int(banned.group(1)) / 1000.0 - self._clock())
        if status == 418:
            return 120.0
        return max(1.0, 60.0 - self._clock() % 60.0)  # the weight window rolls each minute

    def _call(
        self,
        op: str,
        fn: Callable[..., Any],
        params: Mapping[str, Any] | None,
        *,
        weight: int = 1,
        signed: bool = True,
        write: bool = False,
        read_attempts_max: int | None = None,
    ) -> Any:
        """One REST request with the read/transport policies applied.

        Raises UnknownOutcome (writes only) for anything that may have been applied; the
        caller (`_write`) resolves it. Reads retry timeouts/5xx, then VenueUnavailable."""
        if signed and self._time_sync_due():
            try:
                self.sync_time()
            except VenueError:
                log.warning("time sync failed; signing with the previous offset", exc_info=True)
        time_resynced = False
        rate_waits = 0
        read_attempts = 0
        while True:
            self.governor.acquire(weight)
            if signed:
                self._apply_signing_clock()
            try:
                return fn(**params) if params is not None else fn()
            except BinanceAPIException as exc:
                err = self._map_api_error(op, exc, write)
            except BinanceRequestException as exc:
                text = f"{op}: malformed reply ({exc.message[:120]})"
                err = UnknownOutcome(text) if write else VenueUnavailable(text)
            except (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError) as exc:
                err = VenueUnavailable(self._unreachable(op, exc))
            except requests.exceptions.ConnectionError as exc:
                text = self._unreachable(op, exc)
                err = (
                    UnknownOutcome(text)
                    if write and not _never_sent(exc)
                    else VenueUnavailable(text)
                )
            except requests.exceptions.RequestException as exc:
                text = self._unreachable(op, exc)
                err = UnknownOutcome(text) if write else VenueUnavailable(text)
            if err.code == TIMESTAMP_CODE and not time_resynced:
                # Rejected before execution, so retrying once after a resync is safe.
                time_resynced = True
                self.sync_time()
                continue
            if (
                isinstance(err, RateLimited)
                and rate_waits < self.max_rate_limit_waits
                and err.retry_after <= self.max_rate_limit_wait_s
            ):
                rate_waits += 1
                log.warning("%s: rate limited, waiting %.2f s", op, err.retry_after)
                self.governor.block_for(err.retry_after)
                continue
            if isinstance(err, VenueUnavailable) and not write:
                read_attempts += 1
                if read_attempts < (read_attempts_max or self.max_read_attempts):
                    self._sleep(min(2.0, 0.1 * 2**read_attempts))
                    continue
            raise err

    def _write(
        self,
        op: str,
        send: Callable[[], dict[str, Any]],
        lookup: Callable[[], dict[str, Any] | None],
    ) -> dict[str, Any]:
        """Send a create request; resolve an unknown outcome by client id before any retry.

        The same client id is resent only after a query proved the order absent; a duplicate
        id reply (-4116) means an earlier attempt landed, so the existing order is returned."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return send()
            except UnknownOutcome as exc:
                found = self._lookup_after(op, lookup, exc)
                if found is not None:
                    log.info("%s: unknown outcome resolved: it was applied", op)
                    return found
                if attempt >= self.max_write_attempts:
                    raise
                log.info("%s: unknown outcome resolved: absent; resending same client id", op)
                self._sleep(min(2.0, 0.2 * 2 ** (attempt - 1)))
            except OrderRejected as exc:
                if exc.code != DUPLICATE_CODE and "duplicate" not in exc.msg.lower():
                    raise
                # The earlier attempt landed; a query may lag behind it for a moment.
                for wait in (0.0, 0.2, 0.4):
                    if wait:
                        self._sleep(wait)
                    found = self._lookup_after(op, lookup, UnknownOutcome(exc.msg, code=exc.code))
                    if found is not None:
                        return found
                raise UnknownOutcome(f"{op}: duplicate id but not found: {exc.msg}") from exc

    def _lookup_after(
        self, op: str, lookup: Callable[[], dict[str, Any] | None], cause: UnknownOutcome
    ) -> dict[str, Any] | None:
        try:
            return lookup()
        except VenueError as exc:
            raise UnknownOutcome(
                f"{op}: outcome unknown and the query by client id failed: {exc}", code=cause.code
            ) from exc

    # ================================================================== filters

    def load_exchange_info(self) -> None:
        """(Re)load symbol filters and the request-weight limit from exchangeInfo."""
        body = self._call(
            "exchangeInfo", self._client.futures_exchange_info, None, weight=1, signed=False
        )
        parsed = schemas.parse_exchange_info(body)
        filters = {}
        for sym, entry in parsed["symbols"].items():
            filters[sym] = SymbolFilters(
                sym,
                float(entry["tick_size"]),
                float(entry["step_size"]),
                float(entry["min_qty"]),
                float(entry["min_notional"]),
                float(entry["max_qty"]) if entry["max_qty"] > 0 else float("inf"),
            )
        with self._filters_lock:
            self._filters = filters
            self._margin_assets = {s: e["margin_asset"] for s, e in parsed["symbols"].items()}
        self.governor.limit = int(parsed["request_weight_limit"])

    def _filters_for(self, symbol: str) -> SymbolFilters:
        f = self._filters.get(symbol)
        if f is None:
            self.load_exchange_info()
            f = self._filters.get(symbol)
        if f is None:
            raise VenueError(f"{symbol}: unknown symbol (not in exchangeInfo)", code=-1121)
        return f

    def get_symbol_filters(self, symbol: str) -> dict[str, float]:
        """tick_size, step_size, min_qty, min_notional of `symbol` (selfcheck uses this)."""
        f = self._filters_for(symbol)
        return {
            "tick_size": f.tick_size,
            "step_size": f.step_size,
            "min_qty": f.min_qty,
            "min_notional": f.min_notional,
        }

    def margin_asset(self, symbol: str) -> str:
        self._filters_for(symbol)
        return self._margin_assets.get(symbol, "USDT")

    def _with_filter_refresh(
        self, symbol: str, build: Callable[[], Mapping[str, Any]], place: Callable[[Any], Any]
    ) -> Any:
        """Place with the cached filters; on a filter reject reload exchangeInfo once and retry
        only if the reloaded filters change the request (else the reject stands)."""
        params = build()
        try:
            return place(params)
        except FilterError:
            self.load_exchange_info()
            fresh = build()
            if fresh == params:
                raise
            log.info("%s: filters changed on exchangeInfo reload; resending", symbol)
            return place(fresh)

    # ================================================================== listeners and tracking

    def add_listener(self, handler: EventHandler) -> None:
        with self._state_lock:
            self._listeners = (*self._listeners, handler)

    def remove_listener(self, handler: EventHandler) -> None:
        with self._state_lock:
            self._listeners = tuple(h for h in self._listeners if h is not handler)

    def _emit(self, event: VenueEvent) -> None:
        for handler in self._listeners:
            try:
                handler(event)
            except Exception:
                log.exception("venue listener %r failed on %s", handler, type(event).__name__)

    def _track_order(self, order: Mapping[str, Any]) -> None:
        with self._state_lock:
            if order.get("status") in schemas.OPEN_ORDER_STATUSES:
                self._open_orders[str(order["order_id"])] = dict(order)
            else:
                self._open_orders.pop(str(order.get("order_id")), None)

    def _track_algo(self, algo: Mapping[str, Any]) -> None:
        with self._state_lock:
            if algo.get("status") in schemas.OPEN_ALGO_STATUSES:
                self._open_algos[str(algo["algo_id"])] = dict(algo)
            else:
                self._open_algos.pop(str(algo.get("algo_id")), None)

    def _remember_client_id(self, client_id: str, symbol: str) -> None:
        with self._state_lock:
            self._placed_client_ids[client_id] = symbol
            while len(self._placed_client_ids) > 20_000:
                self._placed_client_ids.popitem(last=False)

    # ================================================================== §1.1 market data

    def get_kline(self, symbol: str, interval: str, limit: int) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        ask = min(int(limit) + 1, 1500)  # the last row is usually the still-open kline
        rows = self._call(
            "klines",
            self._client.futures_klines,
            {"symbol": symbol, "interval": interval, "limit": ask},
            weight=_kline_weight(ask),
            signed=False,
        )
        now_ms = self._clock() * 1000.0 + self._offset_ms
        bars = [schemas.parse_kline_row(r) for r in rows]
        return [b for b in bars if b["close_time"] < now_ms][-int(limit) :]

    def _premium_index(self, symbol: str) -> dict[str, Any]:
        body = self._call(
            "premiumIndex",
            self._client.futures_mark_price,
            {"symbol": symbol},
            weight=1,
            signed=False,
        )
        return schemas.parse_premium_index(body)

    def get_mark_price(self, symbol: str) -> float:
        return float(self._premium_index(symbol)["mark_price"])

    def get_last_price(self, symbol: str) -> float:
        """The last traded contract price (GET /fapi/v2/ticker/price)."""
        body = self._call(
            "ticker/price",
            self._client.futures_symbol_ticker,
            {"symbol": symbol},
            weight=1,
            signed=False,
        )
        return schemas.parse_ticker_price(body)

    def get_funding_rate(self, symbol: str) -> float:
        """The current (next settlement's) funding rate: premiumIndex.lastFundingRate."""
        return float(self._premium_index(symbol)["funding_rate"])

    def get_open_interest(self, symbol: str) -> float:
        body = self._call(
            "openInterest",
            self._client.futures_open_interest,
            {"symbol": symbol},
            weight=1,
            signed=False,
        )
        return schemas.parse_open_interest(body)

    # ================================================================== §1.2 account

    def get_balances(self) -> dict[str, Any]:
        body = self._call("account", self._client.futures_account, {}, weight=5)
        return schemas.parse_account(body)

    def get_positions(self) -> dict[str, dict[str, Any]]:
        """Configured symbols (flat ones as side NONE) plus every symbol with a position.
        Uses positionRisk v2, which carries leverage (v3 does not)."""
        rows = self._call(
            "positionRisk", self._client.futures_position_information, {"version": 2}, weight=5
        )
        parsed = schemas.parse_positions(rows)
        out = {s: p for s, p in parsed.items() if p["side"] != "NONE" or s in self.symbols}
        for sym in self.symbols:
            out.setdefault(
                sym,
                {
                    "symbol": sym,
                    "side": "NONE",
                    "qty": 0.0,
                    "entry_price": 0.0,
                    "unrealized_pnl": 0.0,
                    "leverage": 0,
                },
            )
        return out

    def set_leverage(self, symbol: str, leverage: int) -> None:
        if isinstance(leverage, bool) or not isinstance(leverage, int) or leverage < 1:
            raise ValueError(f"{symbol}: leverage must be a positive int, got {leverage!r}")
        params = {"symbol": symbol, "leverage": leverage}
        for attempt in range(1, self.max_write_attempts + 1):
            try:
                self._call(
                    "leverage", self._client.futures_change_leverage, params, weight=1, write=True
                )
                return
            except UnknownOutcome:
                if attempt >= self.max_write_attempts:
                    raise
                self._sleep(0.2 * attempt)  # idempotent: setting it again is harmless

    def set_position_mode_one_way(self) -> None:
        for attempt in range(1, self.max_write_attempts + 1):
            try:
                self._call(
                    "positionSide/dual",
                    self._client.futures_change_position_mode,
                    {"dualSidePosition": "false"},
                    weight=1,
                    write=True,
                )
                return
            except OrderRejected as exc:
                if exc.code == ALREADY_ONE_WAY_CODE:
                    return  # "No need to change position side": already one-way
                raise
            except UnknownOutcome:
                if attempt >= self.max_write_attempts:
                    raise
                self._sleep(0.2 * attempt)

    def get_position_mode(self) -> str:
        """ "ONE_WAY" or "HEDGE" (GET /fapi/v1/positionSide/dual)."""
        body = self._call(
            "positionSide/dual", self._client.futures_get_position_mode, {}, weight=30
        )
        return "HEDGE" if schemas.flag(body.get("dualSidePosition")) else "ONE_WAY"

    # ================================================================== §1.3 regular orders

    def _post_order(self, **params: Any) -> Any:
        # The red line: only LIMIT/MARKET reach /fapi/v1/order. Conditional types belong to
        # /fapi/v1/algoOrder (Binance answers -4120 since 2025-12-09).
        if params.get("type") not in REGULAR_ORDER_TYPES:
            raise ValueError(
                f"refusing to send order type {params.get('type')!r} to /fapi/v1/order; "
                "stops go through place_algo_stop (/fapi/v1/algoOrder)"
            )
        return self._client._request_futures_api("post", "order", True, data=params)

    @staticmethod
    def _check_common(symbol: str, side: str, client_id: str, what: str) -> None:
        if not symbol or not isinstance(symbol, str):
            raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
        if side not in SIDES:
            raise ValueError(f"{symbol}: side must be BUY or SELL, got {side!r}")
        if not isinstance(client_id, str) or not CLIENT_ID_RE.match(client_id):
            raise ValueError(
                f"{symbol}: {what} {client_id!r} must match ^[.A-Z:/a-z0-9_-]{{1,36}}$"
            )

    def _existing_order(self, symbol: str, client_order_id: str) -> dict[str, Any] | None:
        """Same client id again in this process -> the order it created (no second send)."""
        if client_order_id not in self._placed_client_ids:
            return None
        return self.get_order(symbol=symbol, client_order_id=client_order_id)

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
        self._check_common(symbol, side, client_order_id, "client_order_id")
        if tif not in TIME_IN_FORCE:
            raise ValueError(
                f"{symbol}: tif must be one of {', '.join(TIME_IN_FORCE)}, got {tif!r}"
            )
        existing = self._existing_order(symbol, client_order_id)
        if existing is not None:
            return existing

        def build() -> dict[str, Any]:
            f = self._filters_for(symbol)
            q, p = f.check_order(
                qty=_grid_qty(f, qty),
                price=_grid_price(f, price, side),
                reduce_only=reduce_only,
            )
            assert p is not None
            params = {
                "symbol": symbol,
                "side": side,
                "type": "LIMIT",
                "timeInForce": tif,
                "quantity": f.format_qty(q),
                "price": f.format_price(p),
                "newClientOrderId": client_order_id,
                "newOrderRespType": "ACK",
            }
            if reduce_only:
                params["reduceOnly"] = "true"
            return params

        order = self._place_order(symbol, client_order_id, build)
        if tif == "GTX" and order["status"] == "EXPIRED" and order["executed_qty"] == 0.0:
            # Some paths accept a taking GTX and expire it at once instead of answering -5022.
            raise WouldTakeLiquidity(-5022, f"{symbol}: post-only order would take liquidity")
        return order

    def place_market(
        self, *, symbol: str, side: str, qty: float, reduce_only: bool, client_order_id: str
    ) -> dict[str, Any]:
        self._check_common(symbol, side, client_order_id, "client_order_id")
        existing = self._existing_order(symbol, client_order_id)
        if existing is not None:
            return existing

        def build() -> dict[str, Any]:
            f = self._filters_for(symbol)
            q = f.check_qty(_grid_qty(f, qty))
            params = {
                "symbol": symbol,
                "side": side,
                "type": "MARKET",
                "quantity": f.format_qty(q),
                "newClientOrderId": client_order_id,
                "newOrderRespType": "RESULT",
            }
            if reduce_only:
                params["reduceOnly"] = "true"
            return params

        return self._place_order(symbol, client_order_id, build)

    def _place_order(
        self, symbol: str, client_order_id: str, build: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        def place(params: Mapping[str, Any]) -> dict[str, Any]:
            def send() -> dict[str, Any]:
                body = self._call("order", self._post_order, params, weight=0, write=True)
                return schemas.parse_order(body)

            def lookup() -> dict[str, Any] | None:
                return self.get_order(symbol=symbol, client_order_id=client_order_id)

            return self._write(f"order {symbol} {client_order_id}", send, lookup)

        order: dict[str, Any] = self._with_filter_refresh(symbol, build, place)
        self._remember_client_id(client_order_id, symbol)
        self._track_order(order)
        return order

    @staticmethod
    def _id_params(
        id_key: str, id_value: str | None, cid_key: str, cid_value: str | None
    ) -> dict[str, Any]:
        if id_value is None and cid_value is None:
            raise ValueError(f"send {id_key} or {cid_key}")
        if id_value is not None:
            return {id_key: int(id_value) if str(id_value).isdigit() else id_value}
        return {cid_key: cid_value}

    def cancel_order(
        self, *, symbol: str, order_id: str | None, client_order_id: str | None
    ) -> dict[str, Any]:
        """Cancel; unknown / filled / already cancelled (-2011, -2013) is success."""
        params = {
            "symbol": symbol,
            **self._id_params("orderId", order_id, "origClientOrderId", client_order_id),
        }
        for attempt in range(1, self.max_write_attempts + 1):
            try:
                body = self._call(
                    "cancel order", self._client.futures_cancel_order, params, weight=1, write=True
                )
                order = {**schemas.parse_order(body), "canceled_now": True}
                self._track_order(order)
                return order
            except OrderRejected as exc:
                if exc.code not in NOT_FOUND_CODES:
                    raise
                break
            except UnknownOutcome:
                if attempt >= self.max_write_attempts:
                    raise
                self._sleep(0.2 * attempt)  # a cancel may be repeated: -2011 then means done
        current = self.get_order(symbol=symbol, order_id=order_id, client_order_id=client_order_id)
        if current is None:
            return {
                "status": "NOT_FOUND",
                "order_id": order_id,
                "client_order_id": client_order_id,
                "symbol": symbol,
                "canceled_now": False,
            }
        self._track_order(current)
        return {**current, "canceled_now": False}

    def get_open_orders(self, symbol: str) -> list[dict[str, Any]]:
        rows = self._call(
            "openOrders", self._client.futures_get_open_orders, {"symbol": symbol}, weight=1
        )
        return [schemas.parse_order(r) for r in rows]

    def get_order(
        self, *, symbol: str, order_id: str | None = None, client_order_id: str | None = None
    ) -> dict[str, Any] | None:
        params = {
            "symbol": symbol,
            **self._id_params("orderId", order_id, "origClientOrderId", client_order_id),
        }
        try:
            body = self._call("query order", self._client.futures_get_order, params, weight=1)
        except VenueError as exc:
            if exc.code in NOT_FOUND_CODES:
                return None
            raise
        return schemas.parse_order(body)

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
        self._check_common(symbol, side, client_algo_id, "client_algo_id")
        if working_type not in WORKING_TYPES:
            raise ValueError(
                f"{symbol}: working_type must be one of {', '.join(WORKING_TYPES)}, "
                f"got {working_type!r}"
            )
        # Refused locally with Binance's own codes: such a request is never sent.
        if close_position and reduce_only:
            raise OrderRejected(
                -1106, f"{symbol}: reduceOnly cannot be sent with closePosition=true"
            )
        if not close_position and not reduce_only:
            raise OrderRejected(
                -2010,
                f"{symbol}: protective stops must be reduce_only or close_position "
                "(an orphaned stop must never open a position)",
            )

        def build() -> dict[str, Any]:
            f = self._filters_for(symbol)
            trigger = f.check_price(_grid_stop(f, stop_price, side), what="stop price")
            params: dict[str, Any] = {
                "algoType": "CONDITIONAL",
                "symbol": symbol,
                "side": side,
                "type": "STOP_MARKET",
                "triggerPrice": f.format_price(trigger),
                "workingType": working_type,
                "clientAlgoId": client_algo_id,
            }
            if close_position:
                params["closePosition"] = "true"
            else:
                params["quantity"] = f.format_qty(f.check_qty(_grid_qty(f, qty)))
                params["reduceOnly"] = "true"
            return params

        def place(params: Mapping[str, Any]) -> dict[str, Any]:
            def send() -> dict[str, Any]:
                body = self._call(
                    "algoOrder",
                    self._client.futures_create_algo_order,
                    params,
                    weight=0,
                    write=True,
                )
                return schemas.parse_algo(body)

            def lookup() -> dict[str, Any] | None:
                return self.get_algo_order(symbol=symbol, client_algo_id=client_algo_id)

            return self._write(f"algoOrder {symbol} {client_algo_id}", send, lookup)

        algo: dict[str, Any] = self._with_filter_refresh(symbol, build, place)
        self._track_algo(algo)
        return algo

    def cancel_algo(
        self, *, symbol: str, algo_id: str | None, client_algo_id: str | None
    ) -> dict[str, Any]:
        """Cancel an algo order; unknown / triggered / cancelled is success."""
        params = self._id_params("algoId", algo_id, "clientAlgoId", client_algo_id)
        for attempt in range(1, self.max_write_attempts + 1):
            try:
                body = self._call(
                    "cancel algoOrder",
                    self._client.futures_cancel_algo_order,
                    params,
                    weight=1,
                    write=True,
                )
                result = {
                    "algo_id": schemas.id_str(body.get("algoId", algo_id)),
                    "client_algo_id": str(body.get("clientAlgoId") or client_algo_id or ""),
                    "symbol": symbol,
                    "status": "CANCELED",
                    "canceled_now": True,
                }
                self._track_algo(result)
                return result
            except OrderRejected as exc:
                if exc.code not in NOT_FOUND_CODES and exc.code != TRIGGERING_CODE:
                    raise
                break
            except UnknownOutcome:
                if attempt >= self.max_write_attempts:
                    raise
                self._sleep(0.2 * attempt)
        current = self.get_algo_order(symbol=symbol, algo_id=algo_id, client_algo_id=client_algo_id)
        if current is None:
            return {
                "status": "NOT_FOUND",
                "algo_id": algo_id,
                "client_algo_id": client_algo_id,
                "symbol": symbol,
                "canceled_now": False,
            }
        self._track_algo(current)
        return {**current, "canceled_now": False}

    def get_open_algo_orders(self, symbol: str) -> list[dict[str, Any]]:
        rows = self._call(
            "openAlgoOrders",
            self._client.futures_get_open_algo_orders,
            {"symbol": symbol},
            weight=1,
        )
        return [schemas.parse_algo(r) for r in rows]

    def get_algo_order(
        self, *, symbol: str, algo_id: str | None = None, client_algo_id: str | None = None
    ) -> dict[str, Any] | None:
        params = self._id_params("algoId", algo_id, "clientAlgoId", client_algo_id)
        try:
            body = self._call(
                "query algoOrder", self._client.futures_get_algo_order, params, weight=1
            )
        except VenueError as exc:
            if exc.code in NOT_FOUND_CODES:
                return None
            raise
        algo = schemas.parse_algo(body)
        if algo["symbol"] != symbol:
            return None
        return algo

    # ================================================================== §1.5 recovery

    def recover_protection(
        self, symbol: str, desired_sl: StopSpec | Mapping[str, Any]
    ) -> dict[str, Any]:
        """CREATED / REPLACED (new stop first, then cancel the old) / CONFIRMED (reads only).

        The existing stop is the open algo with the desired client id, else an open
        reduce-only/closePosition algo on the desired side (same rule as SimVenue)."""
        spec = StopSpec.coerce(desired_sl)
        if not spec.client_algo_id:
            raise ValueError(f"{symbol}: desired_sl needs a client_algo_id")
        opens = self.get_open_algo_orders(symbol)
        existing = next((a for a in opens if a["client_algo_id"] == spec.client_algo_id), None)
        if existing is None:
            existing = next(
                (
                    a
                    for a in opens
                    if a["side"] == spec.side and (a["reduce_only"] or a["close_position"])
                ),
                None,
            )
        f = self._filters_for(symbol)
        if existing is not None and not stop_deviates(
            existing, spec, step_size=f.step_size, tick_size=f.tick_size
        ):
            return {"action": "CONFIRMED", "algo": existing}
        algo = self.place_algo_stop(
            symbol=symbol,
            side=spec.side,
            qty=spec.qty,
            stop_price=spec.stop_price,
            reduce_only=True,
            client_algo_id=self._free_client_algo_id(symbol, spec.client_algo_id),
            working_type=spec.working_type,
        )
        if existing is None:
            return {"action": "CREATED", "algo": algo}
        self.cancel_algo(
            symbol=symbol, algo_id=existing["algo_id"], client_algo_id=existing["client_algo_id"]
        )
        return {"action": "REPLACED", "algo": algo, "replaced": existing}

    def _free_client_algo_id(self, symbol: str, wanted: str) -> str:
        """`wanted` unless an algo (any status) already carries it: then the next `.r<n>`."""
        candidate = wanted
        for n in range(2, 100):
            if self.get_algo_order(symbol=symbol, client_algo_id=candidate) is None:
                return candidate
            candidate = replacement_client_id(wanted, n)
        raise VenueError(f"{symbol}: no free replacement id for {wanted!r} after 98 tries")

    # ================================================================== streams

    def ws_start(self) -> None:
        """Start the market stream (klines of `interval` + mark price of `symbols`) and the
        user-data stream. Reconnects and REST resyncs are handled here from then on."""
        try:
            self.sync_time()
        except VenueError:
            log.warning("ws_start: time sync failed; streams will retry", exc_info=True)
        opts: dict[str, Any] = {"clock": self._clock, "backoff_initial_s": self._stream_backoff_s}
        if self._rotate_after_s is not None:
            opts["rotate_after_s"] = self._rotate_after_s
        if self.symbols and (self._market is None or not self._market.running):
            self._market = StreamWorker(
                "market",
                self._market_url,
                self._on_market_message,
                on_connected=self._on_market_connected,
                on_disconnected=lambda reason: self._on_disconnected("market", reason),
                **opts,
            )
            self._market.start()
        if self._user is None or not self._user.running:
            self._user = StreamWorker(
                "user",
                self._user_url,
                self._on_user_message,
                on_connected=self._on_user_connected,
                on_disconnected=lambda reason: self._on_disconnected("user", reason),
                on_idle=self._user_upkeep,
                **opts,
            )
            self._user.start()

    def ws_stop(self) -> None:
        for worker in (self._market, self._user):
            if worker is not None:
                worker.stop()
                self._emit(StreamStatus(worker.name, "DISCONNECTED", "ws_stop", self._now_ms()))
        self._market = self._user = None
        key, self._listen_key = self._listen_key, None
        if key is not None:
            try:
                self._call(
                    "listenKey close",
                    self._client.futures_stream_close,
                    {"listenKey": key},
                    signed=False,
                    read_attempts_max=1,  # best effort: an unclosed key expires by itself
                )
            except VenueError:
                log.info("ws_stop: closing the listenKey failed (it expires by itself)")

    def close(self) -> None:
        self.ws_stop()
        self._client.session.close()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000.0 + self._offset_ms)

    def _market_url(self) -> str:
        streams = []
        for sym in self.symbols:
            s = sym.lower()
            streams += [f"{s}@kline_{self.interval}", f"{s}@markPrice@1s"]
        return f"{self.ws_url}/market/stream?streams={'/'.join(streams)}"

    def _user_url(self) -> str:
        if self._listen_key is None:
            self._listen_key = self._call(
                "listenKey", self._client.futures_stream_get_listen_key, None, signed=False
            )
            self._last_keepalive = self._clock()
        return f"{self.ws_url}/private/ws?listenKey={self._listen_key}"

    def _on_disconnected(self, stream: str, reason: str) -> None:
        self._emit(StreamStatus(stream, "DISCONNECTED", reason[:200], self._now_ms()))

    def _user_upkeep(self) -> None:
        now = self._clock()
        if self._listen_key is not None and now - self._last_keepalive >= LISTEN_KEY_KEEPALIVE_S:
            self._last_keepalive = now
            try:
                self._call(
                    "listenKey keepalive",
                    self._client.futures_stream_keepalive,
                    {"listenKey": self._listen_key},
                    signed=False,
                )
            except VenueError as exc:
                if exc.code == INVALID_LISTEN_KEY_CODE:
                    self._renew_listen_key("keep-alive: listenKey no longer valid (-1125)")
                else:
                    log.warning("listenKey keep-alive failed: %s", exc)
        if self._time_sync_due():
            try:
                self.sync_time()
            except VenueError:
                log.warning("periodic time sync failed", exc_info=True)

    def _renew_listen_key(self, reason: str) -> None:
        self._listen_key = None
        if self._user is not None:
            self._user.reconnect(reason)

    def _on_market_message(self, message: dict[str, Any]) -> None:
        event = schemas.parse_stream_message(message)
        if isinstance(event, BarClosed):
            last = self._last_bar_open.get(event.symbol)
            if last is not None and event.open_time <= last:
                return  # already delivered (backfill overlap)
            self._last_bar_open[event.symbol] = event.open_time
            self._emit(event)
        elif isinstance(event, MarkPrice):
            self._emit(event)

    def _on_market_connected(self, reconnect: bool) -> None:
        self._emit(
            StreamStatus("market", "CONNECTED", "reconnect" if reconnect else "", self._now_ms())
        )
        if not reconnect:
            return
        # Bars that closed while the stream was down: fetch and deliver them in order.
        for sym in self.symbols:
            last = self._last_bar_open.get(sym)
            if last is None:
                continue
            for bar in self.get_kline(sym, self.interval, KLINE_BACKFILL_LIMIT):
                if bar["open_time"] > self._last_bar_open.get(sym, last):
                    self._last_bar_open[sym] = bar["open_time"]
                    self._emit(BarClosed(symbol=sym, interval=self.interval, **bar))
        self._emit(StreamStatus("market", "RESYNCED", "klines backfilled", self._now_ms()))

    def _on_user_message(self, message: dict[str, Any]) -> None:
        event = schemas.parse_stream_message(message)
        if isinstance(event, OrderUpdate):
            self._apply_order_update(event)
            self._emit(event)
        elif isinstance(event, AlgoUpdate):
            self._apply_algo_update(event)
            self._emit(event)
        elif isinstance(event, AccountUpdate):
            self._emit(event)
        elif isinstance(event, StreamStatus) and event.status == "LISTEN_KEY_EXPIRED":
            self._emit(event)
            self._renew_listen_key("listenKeyExpired")

    def _apply_order_update(self, ev: OrderUpdate) -> None:
        with self._state_lock:
            if ev.status in schemas.OPEN_ORDER_STATUSES:
                known = self._open_orders.setdefault(
                    ev.order_id,
                    {
                        "order_id": ev.order_id,
                        "client_order_id": ev.client_order_id,
                        "symbol": ev.symbol,
                        "side": ev.side,
                        "type": ev.order_type,
                        "price": ev.price,
                        "qty": ev.qty,
                        "reduce_only": ev.reduce_only,
                    },
                )
                known.update(status=ev.status, executed_qty=ev.executed_qty, avg_price=ev.avg_price)
            else:
                self._open_orders.pop(ev.order_id, None)

    def _apply_algo_update(self, ev: AlgoUpdate) -> None:
        with self._state_lock:
            if ev.status in schemas.OPEN_ALGO_STATUSES:
                self._open_algos.setdefault(
                    ev.algo_id,
                    {
                        "algo_id": ev.algo_id,
                        "client_algo_id": ev.client_algo_id,
                        "symbol": ev.symbol,
                        "side": ev.side,
                        "status": ev.status,
                        "stop_price": ev.stop_price,
                        "qty": ev.qty,
                        "working_type": ev.working_type,
                    },
                )
            else:
                self._open_algos.pop(ev.algo_id, None)

    def _on_user_connected(self, reconnect: bool) -> None:
        self._emit(
            StreamStatus("user", "CONNECTED", "reconnect" if reconnect else "", self._now_ms())
        )
        try:
            self.resync()
        except VenueError as exc:
            # Without a resync missed fills stay unknown: say so, and reconnect to try again
            # (the pre-disconnect view is kept until a resync succeeds).
            self._emit(StreamStatus("user", "RESYNC_FAILED", str(exc)[:200], self._now_ms()))
            if self._user is not None:
                self._user.reconnect("resync failed")

    def resync(self) -> list[VenueEvent]:
        """REST resync after a (re)connect: positions, balances, open orders and algos.

        Orders and algos that were open before and are gone now (or filled further) are
        queried by id and delivered as synthesized OrderUpdate/AlgoUpdate events, so a fill
        that happened while the stream was down is never lost. Returns what was emitted."""
        with self._state_lock:
            before_orders = {k: dict(v) for k, v in self._open_orders.items()}
            before_algos = {k: dict(v) for k, v in self._open_algos.items()}
        symbols = sorted(
            set(self.symbols)
            | {o["symbol"] for o in before_orders.values()}
            | {a["symbol"] for a in before_algos.values()}
        )
        positions = self.get_positions()
        balances = self.get_balances()
        open_orders: dict[str, dict[str, Any]] = {}
        open_algos: dict[str, dict[str, Any]] = {}
        for sym in symbols:
            open_orders.update({o["order_id"]: o for o in self.get_open_orders(sym)})
            open_algos.update({a["algo_id"]: a for a in self.get_open_algo_orders(sym)})
        now = self._now_ms()
        missed: list[VenueEvent] = []
        children: set[str] = set()
        for aid, old in before_algos.items():
            if aid in open_algos:
                continue
            cur = self.get_algo_order(symbol=old["symbol"], algo_id=aid)
            if cur is None:
                continue
            missed.append(self._synth_algo_update(cur, now))
            child = cur.get("order_id")
            if child and child not in before_orders:
                order = self.get_order(symbol=cur["symbol"], order_id=child)
                if order is not None and order["executed_qty"] > 0:
                    children.add(child)
                    missed.append(self._synth_order_update(order, 0.0, now))
        for oid, old in before_orders.items():
            cur = open_orders.get(oid) or self.get_order(symbol=old["symbol"], order_id=oid)
            if cur is None or oid in children:
                continue
            before_exec = float(old.get("executed_qty") or 0.0)
            if cur["executed_qty"] > before_exec or cur["status"] != old.get("status"):
                missed.append(self._synth_order_update(cur, before_exec, now))
        with self._state_lock:
            self._open_orders = open_orders
            self._open_algos = open_algos
        assets = balances.get("assets") or {}
        account = AccountUpdate(
            reason="RESYNC",
            balances={a: float(v.get("wallet_balance", 0.0)) for a, v in assets.items()},
            positions=positions,
            event_time=now,
        )
        emitted: list[VenueEvent] = [account, *missed]
        emitted.append(
            StreamStatus(
                "user",
                "RESYNCED",
                f"open_orders={len(open_orders)} open_algos={len(open_algos)} "
                f"recovered_updates={len(missed)}",
                now,
            )
        )
        for ev in emitted:
            self._emit(ev)
        return emitted

    @staticmethod
    def _synth_order_update(order: Mapping[str, Any], before_exec: float, now: int) -> OrderUpdate:
        fill = max(0.0, float(order["executed_qty"]) - before_exec)
        status = str(order["status"])
        return OrderUpdate(
            symbol=order["symbol"],
            order_id=str(order["order_id"]),
            client_order_id=str(order.get("client_order_id", "")),
            side=str(order["side"]),
            order_type=str(order.get("type", "")),
            status=status,
            execution_type="TRADE" if fill > 0 else status,
            price=float(order.get("price") or 0.0),
            qty=float(order.get("qty") or 0.0),
            executed_qty=float(order["executed_qty"]),
            avg_price=float(order.get("avg_price") or 0.0),
            last_fill_qty=fill,
            last_fill_price=float(order.get("avg_price") or 0.0) if fill > 0 else 0.0,
            commission=0.0,
            realized_pnl=0.0,
            reduce_only=bool(order.get("reduce_only")),
            event_time=int(order.get("update_time") or now),
        )

    @staticmethod
    def _synth_algo_update(algo: Mapping[str, Any], now: int) -> AlgoUpdate:
        return AlgoUpdate(
            symbol=algo["symbol"],
            algo_id=str(algo["algo_id"]),
            client_algo_id=str(algo.get("client_algo_id", "")),
            side=str(algo["side"]),
            status=str(algo["status"]),
            stop_price=float(algo.get("stop_price") or 0.0),
            qty=float(algo.get("qty") or 0.0),
            working_type=str(algo.get("working_type") or "MARK_PRICE"),
            order_id=algo.get("order_id"),
            event_time=int(algo.get("update_time") or now),
        )
