"""`atlas sim-exchange`: SimVenue behind Binance's USDⓈ-M REST and WebSocket wire, on loopback.

The real BinanceAdapter talks to this server exactly as it talks to Binance: signed REST
(`/fapi/...`, HMAC-SHA256 over the bytes sent, `X-MBX-APIKEY`, timestamp/recvWindow),
Binance error codes and payload shapes (`schemas.*_wire`), a request-weight counter with
`X-MBX-USED-WEIGHT-1M`, listenKeys, and streams on the same port (or `--ws-port`):

    /stream?streams=a/b, /market/stream?streams=..   combined market streams (wrapped)
    /ws/<stream>                                      one raw market stream
    /ws/<listenKey>, /private/ws?listenKey=<key>      the user-data stream

The market is SimVenue's: replayed bundled data (or `--data`) at `--speed` x real time in a
background thread — it goes on while clients are down, as a real market does. State is saved
to `--state` periodically and on shutdown, and loaded on start, so the exchange outlives the
trading process (and itself). Admin endpoints (tests, chaos; loopback only, no auth):

    POST /admin/faults    {"arm": {...}, "probability": {...}, "clear": true,
                           "visibility_lag_ms": n, "disconnect_stream": "user",
                           "reconnect_stream": "all", "clock_skew_ms": n, "weight_limit": n,
                           "http": {"path", "method", "status", "code", "msg", "times",
                                    "after_apply", "retry_after"}, "expire_listen_keys": true}
    POST /admin/price     {"symbol", "price"} and/or {"symbol", "mark_price"}
    POST /admin/feed_bar  {"symbol", "bar": {open_time, open, high, low, close, volume, close_time}}
    POST /admin/symbol    {"symbol", "tick_size", "step_size", "min_qty", "min_notional"}
    POST /admin/replay    {"stop": true}: the replayed market stops for good (audits, tests)
    GET  /admin/snapshot  the venue's snapshot()
    GET  /admin/requests  the last requests received (method, path, params, auth verdicts)
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import hmac
import json
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from hashlib import sha256
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from aiohttp import WSMsgType, web

from atlas_actors.domain.events import (
    AccountUpdate,
    AlgoUpdate,
    BarClosed,
    MarkPrice,
    OrderUpdate,
    StreamStatus,
    VenueEvent,
)
from atlas_actors.venues.base import (
    AuthError,
    OrderRejected,
    RateLimited,
    UnknownOutcome,
    VenueError,
    VenueUnavailable,
)
from atlas_actors.venues.binance import schemas
from atlas_actors.venues.binance.codes import BINANCE_MESSAGES
from atlas_actors.venues.filters import format_decimal
from atlas_actors.venues.sim import DEFAULT_LEVERAGE, SimVenue

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_SYMBOLS = ("BTCUSDC", "XRPUSDT", "ADABTC")
LISTEN_KEY_TTL_S = 60 * 60.0
UNKNOWN_OUTCOME_MSG = (
    "Timeout waiting for response from backend server. Send status unknown; "
    "execution status unknown."
)
CONDITIONAL_TYPES = schemas.CONDITIONAL_ORDER_TYPES


class WireError(Exception):
    """A Binance-style error reply: HTTP status + {"code", "msg"} (+ optional headers)."""

    def __init__(
        self, status: int, code: int, msg: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(msg or BINANCE_MESSAGES.get(code, "error"))
        self.status = status
        self.code = code
        self.msg = msg or BINANCE_MESSAGES.get(code, "error")
        self.headers = headers or {}


def _mandatory(params: Mapping[str, str], key: str) -> str:
    value = params.get(key)
    if value is None or value == "":
        raise WireError(
            400,
            -1102,
            f"Mandatory parameter '{key}' was not sent, was empty/null, or malformed.",
        )
    return value


def _number(params: Mapping[str, str], key: str) -> float:
    text = _mandatory(params, key)
    try:
        return float(text)
    except ValueError:
        raise WireError(400, -1102, f"Parameter '{key}' was malformed: {text!r}.") from None


def _bool(params: Mapping[str, str], key: str) -> bool:
    return str(params.get(key, "false")).strip().lower() == "true"


@dataclass
class WireRequest:
    """One request as the server saw it (tests assert on these)."""

    method: str
    path: str
    params: dict[str, str]
    api_key: str | None
    signed: bool
    signature_valid: bool | None
    status: int = 0
    code: int | None = None
    at: float = 0.0


@dataclass
class _HttpFault:
    path: str
    method: str
    status: int
    code: int
    msg: str | None
    times: int | None
    after_apply: bool
    retry_after: float | None


@dataclass
class _Route:
    fn: Callable[[dict[str, str]], Any]
    security: str  # NONE | USER_STREAM | SIGNED
    weight: Callable[[dict[str, str]], int]
    write: bool = False


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    kind: str  # market | user
    streams: frozenset[str]
    combined: bool
    listen_key: str | None
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)


def _w(n: int) -> Callable[[dict[str, str]], int]:
    return lambda _p: n


def _w_symbol(with_symbol: int, without: int) -> Callable[[dict[str, str]], int]:
    return lambda p: with_symbol if p.get("symbol") else without


def _w_klines(p: dict[str, str]) -> int:
    limit = int(p.get("limit") or 500)
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


class SimExchangeServer:
    """SimVenue behind Binance's wire format on loopback (see the module docstring)."""

    def __init__(
        self,
        venue: SimVenue,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ws_port: int | None = None,
        api_key: str = "paper",
        api_secret: str = "paper",
        state_path: str | Path | None = None,
        symbols: list[str] | tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
        weight_limit: int = 2400,
        save_interval_s: float = 5.0,
        max_recorded: int = 20_000,
    ) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"sim exchange binds only to loopback ({', '.join(LOOPBACK_HOSTS)}), got {host!r}"
            )
        if not api_key or not api_secret:
            raise ValueError("sim exchange needs a non-empty api key and secret")
        self.venue = venue
        self.host = "127.0.0.1" if host == "localhost" else host
        self._want_port = int(port)
        self._want_ws_port = ws_port
        self.api_key = api_key
        self._secret = api_secret.encode()
        self.state_path = Path(state_path) if state_path else None
        self._clock = clock
        self.weight_limit = int(weight_limit)
        self.clock_skew_ms = 0
        self.save_interval_s = save_interval_s
        self.requests: deque[WireRequest] = deque(maxlen=max_recorded)
        self._lock = threading.Lock()
        self._symbols: list[str] = []
        for s in symbols:
            self.add_known_symbol(s)
        self._weight_minute = -1
        self._weight_used = 0
        self._http_faults: list[_HttpFault] = []
        self._listen_keys: dict[str, float] = {}  # key -> expires at (wall seconds)
        self._streams_down: set[str] = set()
        self._algo_symbols: dict[str, str] = {}  # "id:<algoId>" / "cid:<clientAlgoId>" -> symbol
        self._next_cid = 1
        self._conns: set[_Conn] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop_event: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="simx")
        self.port = 0
        self.ws_port = 0
        self._replay: Replayer | None = None
        self._routes = self._build_routes()
        self._index_existing_algos()
        venue.add_listener(self._on_venue_event)

    # ================================================================== lifecycle

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}"

    def start(self, timeout: float = 10.0) -> SimExchangeServer:
        self._thread = threading.Thread(target=self._run, name="sim-exchange", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("sim exchange did not start in time")
        if self._start_error is not None:
            raise self._start_error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._replay is not None:
            self._replay.stop()
        loop, stop_event = self._loop, self._stop_event
        if loop is not None and stop_event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop_event.set)
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.save_state()
        self.venue.remove_listener(self._on_venue_event)

    def __enter__(self) -> SimExchangeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced to start() (e.g. port in use)
            self._start_error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop_event = asyncio.Event()
        app = web.Application(client_max_size=1 << 20)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._want_port, reuse_address=True)
        await site.start()
        self.port = int(runner.addresses[-1][1])
        if self._want_ws_port is not None:
            ws_site = web.TCPSite(runner, self.host, self._want_ws_port, reuse_address=True)
            await ws_site.start()
            self.ws_port = int(runner.addresses[-1][1])
        else:
            self.ws_port = self.port
        housekeeping = asyncio.ensure_future(self._housekeeping())
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            housekeeping.cancel()
            for conn in list(self._conns):
                conn.queue.put_nowait(None)
            await asyncio.sleep(0)
            for conn in list(self._conns):
                await conn.ws.close(code=1001, message=b"server shutdown")
            await runner.cleanup()

    async def _housekeeping(self) -> None:
        last_save = self._clock()
        while True:
            await asyncio.sleep(0.2)
            now = self._clock()
            for key, expires in list(self._listen_keys.items()):
                if expires <= now:
                    self._expire_listen_key(key)
            if self.state_path is not None and now - last_save >= self.save_interval_s:
                last_save = now
                await asyncio.get_running_loop().run_in_executor(self._executor, self.save_state)

    # ================================================================== state

    def save_state(self) -> None:
        """Write the venue snapshot (+ replay cursor) atomically to `state_path`."""
        if self.state_path is None:
            return
        state = {
            "venue": self.venue.snapshot(),
            "replay": self._replay.cursor() if self._replay is not None else None,
            "symbols": list(self._symbols),
        }
        tmp = self.state_path.with_suffix(self.state_path.suffix + ".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_path)

    @staticmethod
    def load_state(path: str | Path) -> tuple[SimVenue, dict[str, Any]]:
        """The venue and the rest of a saved state (replay cursor, symbols)."""
        p = Path(path)
        try:
            state = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{p}: unreadable sim exchange state: {exc}") from exc
        if not isinstance(state, dict) or "venue" not in state:
            raise ValueError(f"{p}: not a sim exchange state file (no 'venue' key)")
        return SimVenue.from_snapshot(state["venue"]), state

    def _index_existing_algos(self) -> None:
        for algo in self.venue.snapshot().get("algos", []):
            self._index_algo(str(algo["algo_id"]), str(algo["client_algo_id"]), algo["symbol"])
        for sym in self.venue.snapshot().get("symbols", {}):
            self.add_known_symbol(sym)

    def add_known_symbol(self, symbol: str) -> None:
        with self._lock:
            if symbol not in self._symbols:
                self._symbols.append(symbol)

    @property
    def symbols(self) -> list[str]:
        return list(self._symbols)

    def _index_algo(self, algo_id: str, client_algo_id: str, symbol: str) -> None:
        with self._lock:
            self._algo_symbols[f"id:{algo_id}"] = symbol
            if client_algo_id:
                self._algo_symbols[f"cid:{client_algo_id}"] = symbol

    # ================================================================== admin (programmatic)

    def arm_http_fault(
        self,
        path: str,
        *,
        method: str = "POST",
        status: int = 503,
        code: int = -1007,
        msg: str | None = None,
        times: int | None = 1,
        after_apply: bool = False,
        retry_after: float | None = None,
    ) -> None:
        """The next `times` requests to `path` answer `status`/`code`; with after_apply the
        request is processed first (the reply is lost, the effect is not)."""
        with self._lock:
            self._http_faults.append(
                _HttpFault(path, method.upper(), status, code, msg, times, after_apply, retry_after)
            )

    def clear_http_faults(self) -> None:
        with self._lock:
            self._http_faults.clear()

    def expire_listen_keys(self) -> None:
        """Expire every listenKey now (listenKeyExpired on their streams, then closed)."""
        loop = self._loop
        if loop is None:
            return
        done = threading.Event()

        def run() -> None:
            for key in list(self._listen_keys):
                self._expire_listen_key(key)
            done.set()

        loop.call_soon_threadsafe(run)
        done.wait(5.0)

    def drop_connections(self, kind: str = "all") -> None:
        """Close the stream connections of `kind` (market/user/all); clients may reconnect."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._close_conns, kind)

    def clear_requests(self) -> None:
        self.requests.clear()

    def recorded(self, path: str | None = None, method: str | None = None) -> list[WireRequest]:
        return [
            r
            for r in list(self.requests)
            if (path is None or r.path == path) and (method is None or r.method == method)
        ]

    def write_requests(self) -> list[WireRequest]:
        """Requests that can change the book (orders, cancels, algo orders, leverage, mode)."""
        return [r for r in list(self.requests) if self._is_write(r.method, r.path)]

    def _is_write(self, method: str, path: str) -> bool:
        route = self._routes.get((method, path))
        return route is not None and route.write

    # ================================================================== dispatch

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/admin/"):
            return await self._admin(request)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        return await self._rest(request)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000) + self.clock_skew_ms

    def _charge_weight(self, weight: int) -> int:
        with self._lock:
            minute = int(self._clock() // 60)
            if minute != self._weight_minute:
                self._weight_minute, self._weight_used = minute, 0
            self._weight_used += weight
            return self._weight_used

    def _take_http_fault(self, method: str, path: str) -> _HttpFault | None:
        with self._lock:
            for f in self._http_faults:
                if f.path == path and f.method in (method, "*"):
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            self._http_faults.remove(f)
                    return f
        return None

    def _check_signature(self, raw_query: str, raw_body: str) -> bool:
        def strip(raw: str) -> tuple[str, str | None]:
            sig = None
            keep = []
            for part in raw.split("&") if raw else []:
                if part.startswith("signature="):
                    sig = part[len("signature=") :]
                else:
                    keep.append(part)
            return "&".join(keep), sig

        q, sig_q = strip(raw_query)
        b, sig_b = strip(raw_body)
        sig = sig_q or sig_b
        if not sig:
            return False
        # Binance signs the bytes as sent; python-binance signs before the body is
        # form-encoded, so the decoded form is accepted as well.
        for payload in (q + b, unquote_plus(q) + unquote_plus(b)):
            expected = hmac.new(self._secret, payload.encode(), sha256).hexdigest()
            if hmac.compare_digest(expected, sig.lower()):
                return True
        return False

    async def _rest(self, request: web.Request) -> web.Response:
        method = request.method
        path = request.path
        raw_query = request.rel_url.raw_query_string
        raw_body = await request.text() if request.can_read_body else ""
        params = dict(parse_qsl(raw_body, keep_blank_values=True))
        params.update(parse_qsl(raw_query, keep_blank_values=True))  # query wins on duplicates
        api_key = request.headers.get("X-MBX-APIKEY")
        route = self._routes.get((method, path))
        rec = WireRequest(
            method=method,
            path=path,
            params={k: v for k, v in params.items() if k != "signature"},
            api_key=api_key,
            signed=route is not None and route.security == "SIGNED",
            signature_valid=None,
            at=self._clock(),
        )
        self.requests.append(rec)
        used = self._charge_weight(route.weight(params) if route is not None else 1)
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        try:
            if route is None:
                raise WireError(404, -5000, f"Path {method} {path} not found")
            if used > self.weight_limit:
                retry = max(1, int(60 - self._clock() % 60) + 1)
                raise WireError(
                    429,
                    -1003,
                    f"Too many requests; current limit is {self.weight_limit} requests per minute.",
                    {"Retry-After": str(retry)},
                )
            self._authenticate(route, api_key, params, raw_query, raw_body, rec)
            fault = self._take_http_fault(method, path)
            if fault is not None and not fault.after_apply:
                raise self._fault_error(fault)
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(self._executor, route.fn, params)
            if fault is not None:
                raise self._fault_error(fault)
            rec.status = 200
            return web.json_response(body, headers=headers)
        except WireError as exc:
            rec.status, rec.code = exc.status, exc.code
            return web.json_response(
                schemas.error_wire(exc.code, exc.msg),
                status=exc.status,
                headers={**headers, **exc.headers},
            )
        except Exception:
            log.exception("sim exchange: %s %s failed", method, path)
            rec.status, rec.code = 500, -1000
            return web.json_response(
                schemas.error_wire(
                    -1000, "An unknown error occurred while processing the request."
                ),
                status=500,
                headers=headers,
            )

    @staticmethod
    def _fault_error(fault: _HttpFault) -> WireError:
        extra = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
        msg = fault.msg or (UNKNOWN_OUTCOME_MSG if fault.code == -1007 else None)
        return WireError(fault.status, fault.code, msg, extra)

    def _authenticate(
        self,
        route: _Route,
        api_key: str | None,
        params: Mapping[str, str],
        raw_query: str,
        raw_body: str,
        rec: WireRequest,
    ) -> None:
        if route.security == "NONE":
            return
        if not api_key:
            raise WireError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(api_key.encode(), self.api_key.encode()):
            raise WireError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if route.security != "SIGNED":
            return
        ok = self._check_signature(raw_query, raw_body)
        rec.signature_valid = ok
        if not ok:
            raise WireError(400, -1022, "Signature for this request is not valid.")
        ts_text = _mandatory(params, "timestamp")
        try:
            ts = int(ts_text)
            window = int(params.get("recvWindow") or 5000)
        except ValueError:
            raise WireError(400, -1102, "Parameter 'timestamp' was malformed.") from None
        if not 0 < window <= 60_000:
            raise WireError(400, -1131, "recvWindow must be less than 60000")
        now = self._now_ms()
        if ts >= now + 1000:
            raise WireError(
                400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if now - ts > window:
            raise WireError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    # ================================================================== venue calls

    def _venue(self, fn: Callable[[], Any]) -> Any:
        """Run one SimVenue call, translating its exceptions into Binance replies."""
        try:
            return fn()
        except RateLimited as exc:
            retry = max(1, int(round(exc.retry_after)))
            raise WireError(429, exc.code or -1003, exc.msg, {"Retry-After": str(retry)}) from None
        except UnknownOutcome:
            raise WireError(503, -1007, UNKNOWN_OUTCOME_MSG) from None
        except VenueUnavailable as exc:
            raise WireError(503, exc.code or -1001, exc.msg or "Service Unavailable.") from None
        except AuthError as exc:
            raise WireError(401, exc.code or -2015, exc.msg) from None
        except OrderRejected as exc:
            raise WireError(400, exc.code if exc.code is not None else -2010, exc.msg) from None
        except VenueError as exc:
            raise WireError(400, exc.code if exc.code is not None else -1000, exc.msg) from None
        except ValueError as exc:
            raise WireError(400, -1102, str(exc)) from None

    def _build_routes(self) -> dict[tuple[str, str], _Route]:
        r: dict[tuple[str, str], _Route] = {}

        def add(
            method: str,
            paths: tuple[str, ...],
            fn: Callable[[dict[str, str]], Any],
            security: str,
            weight: Callable[[dict[str, str]], int],
            write: bool = False,
        ) -> None:
            for p in paths:
                r[(method, p)] = _Route(fn, security, weight, write)

        add("GET", ("/fapi/v1/ping",), lambda p: {}, "NONE", _w(1))
        add("GET", ("/fapi/v1/time",), lambda p: {"serverTime": self._now_ms()}, "NONE", _w(1))
        add("GET", ("/fapi/v1/exchangeInfo",), self._exchange_info, "NONE", _w(1))
        add("GET", ("/fapi/v1/klines",), self._klines, "NONE", _w_klines)
        add("GET", ("/fapi/v1/premiumIndex",), self._premium_index, "NONE", _w_symbol(1, 10))
        add(
            "GET",
            ("/fapi/v1/ticker/price", "/fapi/v2/ticker/price"),
            self._ticker_price,
            "NONE",
            _w_symbol(1, 2),
        )
        add("GET", ("/fapi/v1/fundingRate",), self._funding_rate, "NONE", _w(1))
        add("GET", ("/fapi/v1/openInterest",), self._open_interest, "NONE", _w(1))
        add("GET", ("/fapi/v2/account", "/fapi/v3/account"), self._account, "SIGNED", _w(5))
        add("GET", ("/fapi/v2/balance", "/fapi/v3/balance"), self._balance, "SIGNED", _w(5))
        add("GET", ("/fapi/v2/positionRisk",), self._position_risk_v2, "SIGNED", _w(5))
        add("GET", ("/fapi/v3/positionRisk",), self._position_risk_v3, "SIGNED", _w(5))
        add(
            "GET",
            ("/fapi/v1/positionSide/dual",),
            lambda p: {"dualSidePosition": False},
            "SIGNED",
            _w(30),
        )
        add("POST", ("/fapi/v1/positionSide/dual",), self._set_mode, "SIGNED", _w(1), True)
        add("POST", ("/fapi/v1/leverage",), self._leverage, "SIGNED", _w(1), True)
        add("POST", ("/fapi/v1/order",), self._new_order, "SIGNED", _w(0), True)
        add("GET", ("/fapi/v1/order",), self._get_order, "SIGNED", _w(1))
        add("DELETE", ("/fapi/v1/order",), self._cancel_order, "SIGNED", _w(1), True)
        add("GET", ("/fapi/v1/openOrders",), self._open_orders, "SIGNED", _w_symbol(1, 40))
        add("POST", ("/fapi/v1/algoOrder",), self._new_algo, "SIGNED", _w(0), True)
        add("GET", ("/fapi/v1/algoOrder",), self._get_algo, "SIGNED", _w(1))
        add("DELETE", ("/fapi/v1/algoOrder",), self._cancel_algo, "SIGNED", _w(1), True)
        add("GET", ("/fapi/v1/openAlgoOrders",), self._open_algos, "SIGNED", _w_symbol(1, 40))
        add("POST", ("/fapi/v1/listenKey",), self._listen_key_new, "USER_STREAM", _w(1))
        add("PUT", ("/fapi/v1/listenKey",), self._listen_key_keepalive, "USER_STREAM", _w(1))
        add("DELETE", ("/fapi/v1/listenKey",), self._listen_key_close, "USER_STREAM", _w(1))
        return r

    # ---------------------------------------------------------------- market data

    def _exchange_info(self, p: dict[str, str]) -> dict[str, Any]:
        entries = []
        for sym in self.symbols:
            f = self.venue.get_filters(sym)
            entries.append(
                schemas.symbol_entry_wire(
                    sym,
                    tick_size=format_decimal(f.tick_size, f.tick_size),
                    step_size=format_decimal(f.step_size, f.step_size),
                    min_qty=format_decimal(f.min_qty, f.step_size),
                    min_notional=schemas.decimal_str(f.min_notional),
                    max_qty=format_decimal(min(f.max_qty, 1e9), f.step_size),
                )
            )
        return {
            "timezone": "UTC",
            "serverTime": self._now_ms(),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": self.weight_limit,
                },
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": self.venue.asset, "marginAvailable": True}],
            "symbols": entries,
        }

    def _known(self, p: dict[str, str]) -> str:
        sym = _mandatory(p, "symbol")
        if sym not in self._symbols:
            raise WireError(400, -1121, "Invalid symbol.")
        return sym

    def _klines(self, p: dict[str, str]) -> list[list[Any]]:
        sym = self._known(p)
        limit = min(int(p.get("limit") or 500), 1500)
        bars = self._venue(lambda: self.venue.get_kline(sym, p.get("interval", ""), limit))
        return [schemas.kline_row_wire(b) for b in bars]

    def _premium_index(self, p: dict[str, str]) -> Any:
        def one(sym: str) -> dict[str, Any]:
            mark = self._venue(lambda: self.venue.get_mark_price(sym))
            rate = self._venue(lambda: self.venue.get_funding_rate(sym))
            return schemas.premium_index_wire(sym, mark, rate, 0, self._now_ms())

        if p.get("symbol"):
            return one(self._known(p))
        return [one(s) for s in self.symbols]

    def _ticker_price(self, p: dict[str, str]) -> dict[str, Any]:
        sym = self._known(p)
        price = self._venue(lambda: self.venue.get_last_price(sym))
        return {"symbol": sym, "price": schemas.decimal_str(price), "time": self._now_ms()}

    def _funding_rate(self, p: dict[str, str]) -> list[dict[str, Any]]:
        sym = self._known(p)
        rate = self._venue(lambda: self.venue.get_funding_rate(sym))
        return [
            {
                "symbol": sym,
                "fundingRate": schemas.decimal_str(rate),
                "fundingTime": int(self.venue.now() * 1000),
                "markPrice": "0",
            }
        ]

    def _open_interest(self, p: dict[str, str]) -> dict[str, Any]:
        sym = self._known(p)
        oi = self._venue(lambda: self.venue.get_open_interest(sym))
        return {"symbol": sym, "openInterest": schemas.decimal_str(oi), "time": self._now_ms()}

    # ---------------------------------------------------------------- account

    def _account(self, p: dict[str, str]) -> dict[str, Any]:
        b = self._venue(self.venue.get_balances)
        return schemas.account_wire(b, str(b.get("asset", self.venue.asset)), self._now_ms())

    def _balance(self, p: dict[str, str]) -> list[dict[str, Any]]:
        b = self._venue(self.venue.get_balances)
        return schemas.balance_rows_wire(b, str(b.get("asset", self.venue.asset)), self._now_ms())

    def _position_rows(self, include_flat: bool) -> list[dict[str, Any]]:
        positions = self._venue(self.venue.get_positions)
        rows = []
        for sym in sorted(set(self.symbols) | set(positions)):
            pos = positions.get(sym)
            if pos is None:
                if not include_flat:
                    continue
                pos = {"side": "NONE", "qty": 0.0, "leverage": DEFAULT_LEVERAGE}
            elif not include_flat and pos.get("side") == "NONE":
                continue
            rows.append(schemas.position_row_wire(sym, pos, float(pos.get("mark_price") or 0.0)))
        return rows

    def _position_risk_v2(self, p: dict[str, str]) -> list[dict[str, Any]]:
        rows = self._position_rows(include_flat=True)
        return [r for r in rows if not p.get("symbol") or r["symbol"] == p["symbol"]]

    def _position_risk_v3(self, p: dict[str, str]) -> list[dict[str, Any]]:
        rows = self._position_rows(include_flat=False)
        for r in rows:
            r.pop("leverage", None)
            r.pop("marginType", None)
            r.pop("isAutoAddMargin", None)
            r.pop("maxNotionalValue", None)
        return [r for r in rows if not p.get("symbol") or r["symbol"] == p["symbol"]]

    def _set_mode(self, p: dict[str, str]) -> dict[str, Any]:
        if _bool(p, "dualSidePosition"):
            raise WireError(400, -4068, "The sim exchange supports one-way mode only.")
        self._venue(self.venue.set_position_mode_one_way)
        raise WireError(400, -4059, "No need to change position side.")

    def _leverage(self, p: dict[str, str]) -> dict[str, Any]:
        sym = self._known(p)
        try:
            lev = int(_mandatory(p, "leverage"))
        except ValueError:
            raise WireError(400, -4028, "Leverage is not valid.") from None
        self._venue(lambda: self.venue.set_leverage(sym, lev))
        return {"leverage": lev, "maxNotionalValue": "1000000", "symbol": sym}

    # ---------------------------------------------------------------- regular orders

    def _client_id(self, p: dict[str, str], key: str) -> str:
        cid = p.get(key)
        if cid:
            return cid
        with self._lock:
            self._next_cid += 1
            return f"simx{secrets.token_hex(6)}{self._next_cid}"

    def _new_order(self, p: dict[str, str]) -> dict[str, Any]:
        sym = self._known(p)
        side = _mandatory(p, "side")
        if side not in ("BUY", "SELL"):
            raise WireError(400, -1117, "Invalid side.")
        otype = _mandatory(p, "type")
        if otype in CONDITIONAL_TYPES:
            raise WireError(
                400,
                -4120,
                "Order type not supported for this endpoint. Please use the Algo Order API "
                "endpoints instead.",
            )
        qty = _number(p, "quantity")
        reduce_only = _bool(p, "reduceOnly")
        cid = self._client_id(p, "newClientOrderId")
        if otype == "LIMIT":
            price = _number(p, "price")
            tif = _mandatory(p, "timeInForce")
            order = self._venue(
                lambda: self.venue.place_limit_postonly(
                    symbol=sym,
                    side=side,
                    qty=qty,
                    price=price,
                    tif=tif,
                    reduce_only=reduce_only,
                    client_order_id=cid,
                )
            )
        elif otype == "MARKET":
            order = self._venue(
                lambda: self.venue.place_market(
                    symbol=sym, side=side, qty=qty, reduce_only=reduce_only, client_order_id=cid
                )
            )
        else:
            raise WireError(400, -1116, "Invalid orderType.")
        return schemas.order_wire(order)

    def _order_ids(self, p: dict[str, str]) -> tuple[str | None, str | None]:
        oid = p.get("orderId") or None
        cid = p.get("origClientOrderId") or None
        if oid is None and cid is None:
            raise WireError(
                400,
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        return oid, cid

    def _get_order(self, p: dict[str, str]) -> dict[str, Any]:
        sym = self._known(p)
        oid, cid = self._order_ids(p)
        order = self._venue(
            lambda: self.venue.get_order(symbol=sym, order_id=oid, client_order_id=cid)
        )
        if order is None:
            raise WireError(400, -2013, "Order does not exist.")
        return schemas.order_wire(order)

    def _cancel_order(self, p: dict[str, str]) -> dict[str, Any]:
        sym = self._known(p)
        oid, cid = self._order_ids(p)
        result = self._venue(
            lambda: self.venue.cancel_order(symbol=sym, order_id=oid, client_order_id=cid)
        )
        if not result.get("canceled_now"):
            raise WireError(400, -2011, "Unknown order sent.")
        return schemas.order_wire(result)

    def _open_orders(self, p: dict[str, str]) -> list[dict[str, Any]]:
        syms = [self._known(p)] if p.get("symbol") else self.symbols
        out = []
        for sym in syms:
            orders = self._venue(partial(self.venue.get_open_orders, sym))
            out += [schemas.order_wire(o) for o in orders]
        return out

    # ---------------------------------------------------------------- algo orders

    def _new_algo(self, p: dict[str, str]) -> dict[str, Any]:
        if _mandatory(p, "algoType") != "CONDITIONAL":
            raise WireError(400, -1102, "Parameter 'algoType' must be CONDITIONAL.")
        sym = self._known(p)
        side = _mandatory(p, "side")
        if side not in ("BUY", "SELL"):
            raise WireError(400, -1117, "Invalid side.")
        otype = _mandatory(p, "type")
        if otype not in CONDITIONAL_TYPES:
            raise WireError(400, -1116, "Invalid orderType.")
        if otype != "STOP_MARKET":
            raise WireError(400, -1116, f"The sim exchange supports STOP_MARKET only, not {otype}.")
        trigger = _number(p, "triggerPrice")
        close_position = _bool(p, "closePosition")
        if close_position and "reduceOnly" in p:
            raise WireError(400, -1106, "Parameter 'reduceonly' sent when not required.")
        if close_position and p.get("quantity"):
            raise WireError(400, -4137, "Quantity must be zero with closePosition equals true.")
        qty = 0.0 if close_position else _number(p, "quantity")
        cid = self._client_id(p, "clientAlgoId")
        working = p.get("workingType") or "CONTRACT_PRICE"  # Binance's default
        algo = self._venue(
            lambda: self.venue.place_algo_stop(
                symbol=sym,
                side=side,
                qty=qty,
                stop_price=trigger,
                reduce_only=_bool(p, "reduceOnly"),
                client_algo_id=cid,
                working_type=working,
                close_position=close_position,
            )
        )
        self._index_algo(str(algo["algo_id"]), str(algo["client_algo_id"]), sym)
        return schemas.algo_wire(algo)

    def _algo_ref(self, p: dict[str, str]) -> tuple[str, str | None, str | None]:
        aid = p.get("algoId") or None
        cid = p.get("clientAlgoId") or None
        if aid is None and cid is None:
            raise WireError(400, -1102, "Param 'algoId' or 'clientAlgoId' must be sent.")
        sym = (
            p.get("symbol")
            or (self._algo_symbols.get(f"id:{aid}") if aid else None)
            or (self._algo_symbols.get(f"cid:{cid}") if cid else None)
        )
        return sym or "", aid, cid

    def _get_algo(self, p: dict[str, str]) -> dict[str, Any]:
        sym, aid, cid = self._algo_ref(p)
        algo = (
            self._venue(
                lambda: self.venue.get_algo_order(symbol=sym, algo_id=aid, client_algo_id=cid)
            )
            if sym
            else None
        )
        if algo is None:
            raise WireError(400, -2013, "Order does not exist.")
        return schemas.algo_wire(algo)

    def _cancel_algo(self, p: dict[str, str]) -> dict[str, Any]:
        sym, aid, cid = self._algo_ref(p)
        if not sym:
            raise WireError(400, -2011, "Unknown order sent.")
        result = self._venue(
            lambda: self.venue.cancel_algo(symbol=sym, algo_id=aid, client_algo_id=cid)
        )
        if not result.get("canceled_now"):
            raise WireError(400, -2011, "Unknown order sent.")
        algo_id = str(result["algo_id"])
        return {
            "algoId": int(algo_id) if algo_id.isdigit() else algo_id,
            "clientAlgoId": result["client_algo_id"],
            "code": "200",
            "msg": "success",
        }

    def _open_algos(self, p: dict[str, str]) -> list[dict[str, Any]]:
        syms = [self._known(p)] if p.get("symbol") else self.symbols
        out = []
        for sym in syms:
            algos = self._venue(partial(self.venue.get_open_algo_orders, sym))
            out += [schemas.algo_wire(a) for a in algos]
        return out

    # ---------------------------------------------------------------- listen keys

    def _listen_key_new(self, p: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            live = [k for k, exp in self._listen_keys.items() if exp > now]
            key = live[0] if live else secrets.token_hex(32)
            self._listen_keys[key] = now + LISTEN_KEY_TTL_S
        return {"listenKey": key}

    def _listen_key_keepalive(self, p: dict[str, str]) -> dict[str, Any]:
        key = _mandatory(p, "listenKey")
        with self._lock:
            if key not in self._listen_keys:
                raise WireError(400, -1125, "This listenKey does not exist.")
            self._listen_keys[key] = self._clock() + LISTEN_KEY_TTL_S
        return {"listenKey": key}

    def _listen_key_close(self, p: dict[str, str]) -> dict[str, Any]:
        key = _mandatory(p, "listenKey")
        with self._lock:
            self._listen_keys.pop(key, None)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._close_key_conns, key)
        return {}

    def _expire_listen_key(self, key: str) -> None:
        """(event loop) listenKeyExpired to the key's streams, then close them."""
        self._listen_keys.pop(key, None)
        msg = json.dumps(schemas.listen_key_expired_wire(key, self._now_ms()))
        for conn in list(self._conns):
            if conn.kind == "user" and conn.listen_key == key:
                conn.queue.put_nowait(msg)
                conn.queue.put_nowait(None)

    def _close_key_conns(self, key: str) -> None:
        for conn in list(self._conns):
            if conn.kind == "user" and conn.listen_key == key:
                conn.queue.put_nowait(None)

    # ================================================================== websockets

    def _parse_ws_target(
        self, request: web.Request
    ) -> tuple[str, frozenset[str], bool, str | None]:
        path = request.path.rstrip("/")
        for route in ("/market", "/public", "/private"):
            if path.startswith(route + "/"):
                path = path[len(route) :]
        if path == "/stream":
            streams = frozenset(s for s in request.query.get("streams", "").split("/") if s)
            return "market", streams, True, None
        if path == "/ws" and request.query.get("listenKey"):
            return "user", frozenset(), False, request.query["listenKey"]
        if path.startswith("/ws/"):
            target = path[len("/ws/") :]
            if "@" in target:
                return "market", frozenset({target}), False, None
            return "user", frozenset(), False, target
        raise WireError(404, -5000, f"no stream at {request.path}")

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        try:
            kind, streams, combined, key = self._parse_ws_target(request)
        except WireError as exc:
            return web.json_response(schemas.error_wire(exc.code, exc.msg), status=exc.status)
        if kind in self._streams_down:
            return web.Response(status=503, text="stream unavailable (injected fault)")
        if kind == "user" and (key is None or key not in self._listen_keys):
            return web.json_response(
                schemas.error_wire(-1125, "This listenKey does not exist."), status=400
            )
        ws = web.WebSocketResponse(autoping=True, heartbeat=None)
        await ws.prepare(request)
        conn = _Conn(ws, kind, streams, combined, key)
        self._conns.add(conn)
        sender = asyncio.ensure_future(self._sender(conn))
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self._conns.discard(conn)
            sender.cancel()
        return ws

    @staticmethod
    async def _sender(conn: _Conn) -> None:
        try:
            while True:
                text = await conn.queue.get()
                if text is None:
                    await conn.ws.close(code=1000, message=b"closed by server")
                    return
                await conn.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            return

    def _close_conns(self, kind: str) -> None:
        for conn in list(self._conns):
            if kind in ("all", conn.kind):
                conn.queue.put_nowait(None)

    def _broadcast(self, kind: str, symbol: str | None, stream_kind: str, payload: str) -> None:
        """(event loop) Send one event to the connections subscribed to it."""
        prefix = f"{symbol.lower()}@{stream_kind}" if symbol else ""
        for conn in list(self._conns):
            if conn.kind != kind:
                continue
            if kind == "user":
                conn.queue.put_nowait(payload)
                continue
            for name in conn.streams:
                if name.startswith(prefix):
                    text = (
                        f'{{"stream":{json.dumps(name)},"data":{payload}}}'
                        if conn.combined
                        else payload
                    )
                    conn.queue.put_nowait(text)
                    break

    def _on_venue_event(self, event: VenueEvent) -> None:
        """(any thread) A SimVenue event -> the wire message on the matching streams."""
        if isinstance(event, AlgoUpdate):
            self._index_algo(event.algo_id, event.client_algo_id, event.symbol)
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if isinstance(event, StreamStatus):
            if event.status == "DISCONNECTED":
                self._streams_down.add(event.stream)
                loop.call_soon_threadsafe(self._close_conns, event.stream)
            elif event.status == "CONNECTED":
                self._streams_down.discard(event.stream)
            return
        now = self._now_ms()
        if isinstance(event, BarClosed):
            bar = event.as_bar()
            wire = schemas.kline_event_wire(
                event.symbol, event.interval, bar, closed=True, event_time=now
            )
            args: tuple[str, str | None, str, str] = (
                "market",
                event.symbol,
                "kline_",
                json.dumps(wire),
            )
        elif isinstance(event, MarkPrice):
            wire = schemas.mark_price_event_wire(event)
            args = ("market", event.symbol, "markPrice", json.dumps(wire))
        elif isinstance(event, OrderUpdate):
            args = ("user", None, "", json.dumps(schemas.order_update_wire(event)))
        elif isinstance(event, AlgoUpdate):
            args = ("user", None, "", json.dumps(schemas.algo_update_wire(event)))
        elif isinstance(event, AccountUpdate):
            args = ("user", None, "", json.dumps(schemas.account_update_wire(event)))
        else:
            return
        try:
            loop.call_soon_threadsafe(self._broadcast, *args)
        except RuntimeError:
            pass  # loop closed during shutdown

    def publish_mark_price(self, symbol: str, mark_price: float, funding_rate: float = 0.0) -> None:
        """Send a markPriceUpdate for `symbol` (the replay does after each bar)."""
        self._on_venue_event(
            MarkPrice(symbol, float(mark_price), float(funding_rate), 0, self._now_ms())
        )

    # ================================================================== admin endpoint

    async def _admin(self, request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return web.json_response({"error": "admin body must be JSON"}, status=400)
        what = request.path[len("/admin/") :]
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(
                self._executor, self._admin_call, request.method, what, body
            )
        except (ValueError, KeyError, TypeError, VenueError) as exc:
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)
        return web.json_response(result)

    def _admin_call(self, method: str, what: str, body: dict[str, Any]) -> Any:
        if method == "GET" and what == "snapshot":
            return self.venue.snapshot()
        if method == "GET" and what == "requests":
            return [r.__dict__ for r in list(self.requests)[-1000:]]
        if method != "POST":
            raise ValueError(f"unknown admin call {method} /admin/{what}")
        if what == "faults":
            return self._admin_faults(body)
        if what == "price":
            sym = str(body["symbol"])
            if "price" in body:
                self.venue.set_price(sym, float(body["price"]))
            if "mark_price" in body:
                self.venue.set_mark_price(sym, float(body["mark_price"]))
            return {"ok": True}
        if what == "feed_bar":
            sym = str(body["symbol"])
            self.add_known_symbol(sym)
            self.venue.feed_bar(sym, body["bar"])
            self.publish_mark_price(sym, float(body["bar"]["close"]))
            return {"ok": True}
        if what == "replay":
            # {"stop": true}: the market stands still from now on (a frozen book to audit)
            if body.get("stop") and self._replay is not None:
                self._replay.stop()
            return {"ok": True, "cursor": self._replay.cursor() if self._replay else None}
        if what == "symbol":
            sym = str(body["symbol"])
            self.venue.add_symbol(
                sym,
                tick_size=float(body["tick_size"]),
                step_size=float(body["step_size"]),
                min_qty=float(body["min_qty"]),
                min_notional=float(body["min_notional"]),
            )
            self.add_known_symbol(sym)
            return {"ok": True}
        raise ValueError(f"unknown admin call POST /admin/{what}")

    def _admin_faults(self, body: dict[str, Any]) -> dict[str, Any]:
        faults = self.venue.faults
        if body.get("clear"):
            faults.clear()
            self.clear_http_faults()
            self.clock_skew_ms = 0
        if "arm" in body:
            a = dict(body["arm"])
            faults.arm(str(a.pop("method", "*")), kind=str(a.pop("kind")), **a)
        if "probability" in body:
            pr = dict(body["probability"])
            faults.set_probability(str(pr.pop("kind")), float(pr.pop("p")), **pr)
        if "visibility_lag_ms" in body:
            faults.visibility_lag_ms = float(body["visibility_lag_ms"])
        if "disconnect_stream" in body:
            faults.disconnect_stream(str(body["disconnect_stream"]))
        if "reconnect_stream" in body:
            faults.reconnect_stream(str(body["reconnect_stream"]))
        if "clock_skew_ms" in body:
            self.clock_skew_ms = int(body["clock_skew_ms"])
        if "weight_limit" in body:
            self.weight_limit = int(body["weight_limit"])
        if "http" in body:
            h = dict(body["http"])
            self.arm_http_fault(str(h.pop("path")), **h)
        if body.get("expire_listen_keys"):
            for key in list(self._listen_keys):
                if self._loop is not None:
                    self._loop.call_soon_threadsafe(self._expire_listen_key, key)
        return {"ok": True, "injected": dict(faults.injected)}

    # ================================================================== replay

    def start_replay(
        self,
        series: Mapping[str, Any],
        *,
        speed: float | None,
        marks: Mapping[str, Any] | None = None,
        funding: Mapping[str, list[tuple[int, float]]] | None = None,
        cursor: Mapping[str, Any] | None = None,
    ) -> Replayer:
        """Replay `series` (symbol -> KlineSeries) as the market; speed None = as fast as possible."""
        for sym in series:
            self.add_known_symbol(sym)
        for sym, sched in (funding or {}).items():
            if sched:
                self.venue.set_funding_schedule(sym, sched)
        self._replay = Replayer(self, series, speed=speed, marks=marks or {}, cursor=cursor)
        self._replay.start()
        return self._replay


class Replayer:
    """Feeds each symbol's bars to the venue in step, at `speed` x the bars' own pace.

    Series from different periods are aligned on their own start (elapsed market time), so a
    2018 and a 2022 file play side by side. The cursor (elapsed ms) survives restarts."""

    def __init__(
        self,
        server: SimExchangeServer,
        series: Mapping[str, Any],
        *,
        speed: float | None,
        marks: Mapping[str, Any],
        cursor: Mapping[str, Any] | None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"--speed must be a positive number or 'max', got {speed!r}")
        self.server = server
        self.series = dict(series)
        self.marks = dict(marks)
        self.speed = speed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.elapsed_ms = int((cursor or {}).get("elapsed_ms", 0))
        self.bars_fed = 0
        self.finished = threading.Event()

    def cursor(self) -> dict[str, Any]:
        return {"elapsed_ms": self.elapsed_ms, "bars_fed": self.bars_fed}

    def start(self) -> None:
        """Feed each symbol's first pending bar now (so prices and filters exist before any
        client asks), then replay the rest in the background."""
        heap = self._schedule()
        primed: set[str] = set()
        rest: list[tuple[int, int, str, str, int]] = []
        while heap:
            item = heapq.heappop(heap)
            if item[3] == "bar" and item[2] not in primed:
                primed.add(item[2])
                self._play(item, heap)
            else:
                rest.append(item)
        heapq.heapify(rest)
        self._thread = threading.Thread(
            target=self._run, args=(rest,), name="sim-replay", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _schedule(self) -> list[tuple[int, int, str, str, int]]:
        """(elapsed_ms, order, symbol, kind, index) for every bar and mark bar not yet played."""
        heap: list[tuple[int, int, str, str, int]] = []
        for order, (sym, s) in enumerate(self.series.items()):
            if len(s) == 0:
                continue
            start = s.open_time[0]
            first = next(
                (i for i in range(len(s)) if s.close_time[i] - start > self.elapsed_ms), None
            )
            if first is not None:
                heap.append((s.close_time[first] - start, order, sym, "bar", first))
            m = self.marks.get(sym)
            if m is not None and len(m):
                mi = next(
                    (i for i in range(len(m)) if m.close_time[i] - start > self.elapsed_ms), None
                )
                if mi is not None:
                    heap.append((m.close_time[mi] - start, order, sym, "mark", mi))
        heapq.heapify(heap)
        return heap

    def _run(self, heap: list[tuple[int, int, str, str, int]]) -> None:
        wall0 = time.monotonic()
        elapsed0 = self.elapsed_ms
        while heap and not self._stop.is_set():
            item = heapq.heappop(heap)
            if self.speed is not None:
                due = wall0 + (item[0] - elapsed0) / 1000.0 / self.speed
                delay = due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
            self._play(item, heap)
            if self.speed is None and self.bars_fed % 256 == 0:
                time.sleep(0)  # let the server threads breathe at max speed
        self.finished.set()

    def _play(
        self, item: tuple[int, int, str, str, int], heap: list[tuple[int, int, str, str, int]]
    ) -> None:
        """Feed one scheduled bar (or mark bar) and schedule that series' next one."""
        at, order, sym, kind, i = item
        s = self.series[sym] if kind == "bar" else self.marks[sym]
        bar = {
            "open_time": s.open_time[i],
            "open": s.open[i],
            "high": s.high[i],
            "low": s.low[i],
            "close": s.close[i],
            "volume": s.volume[i],
            "close_time": s.close_time[i],
        }
        venue = self.server.venue
        try:
            if kind == "bar":
                venue.feed_bar(sym, bar)
                if sym not in self.marks:
                    self.server.publish_mark_price(sym, bar["close"])
                self.bars_fed += 1
            else:
                venue.feed_mark_bar(sym, bar)
        except ValueError:
            log.warning("replay: %s bar %d rejected by the venue", sym, i, exc_info=True)
        self.elapsed_ms = max(self.elapsed_ms, at)
        if i + 1 < len(s):
            start = self.series[sym].open_time[0]
            heapq.heappush(heap, (s.close_time[i + 1] - start, order, sym, kind, i + 1))


# ====================================================================== CLI


def _parse_speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--speed must be a number or 'max', got {text!r}"
        ) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"--speed must be positive, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="atlas sim-exchange",
        description="Serve a simulated Binance USD-M exchange on loopback (REST + WebSocket).",
    )
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (only loopback)")
    p.add_argument("--port", type=int, default=0, help="REST (and WS) port; 0 = pick a free one")
    p.add_argument("--ws-port", type=int, default=None, help="serve the streams on this port too")
    p.add_argument(
        "--data", default="", help="kline CSV(.gz) files, comma separated, one per symbol"
    )
    p.add_argument(
        "--symbols",
        default=",".join(DEFAULT_SYMBOLS),
        help="symbols, comma separated (with --data: in the same order as the files)",
    )
    p.add_argument("--speed", type=_parse_speed, default=60.0, help="N x real time, or 'max'")
    p.add_argument("--api-key", default="paper")
    p.add_argument("--api-secret", default="paper")
    p.add_argument("--state", default=None, help="state file (loaded on start, saved periodically)")
    p.add_argument("--balance", type=float, default=10_000.0, help="starting wallet balance")
    return p


def _load_series(
    symbols: list[str], data: list[str]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, list[tuple[int, float]]]]:
    from atlas_actors.venues import replay

    if data and len(data) != len(symbols):
        raise ValueError(
            f"--data has {len(data)} files but --symbols has {len(symbols)} symbols; "
            "give one file per symbol, in the same order"
        )
    series: dict[str, Any] = {}
    marks: dict[str, Any] = {}
    funding: dict[str, list[tuple[int, float]]] = {}
    for i, sym in enumerate(symbols):
        if data:
            series[sym] = replay.load_klines(data[i], name=sym)
        else:
            series[sym] = replay.paper_series_for(sym)
            mark = replay.paper_mark_for(sym)
            if mark is not None:
                marks[sym] = mark
            funding[sym] = replay.paper_funding_for(sym)
    return series, marks, funding


def main_sim_exchange(argv: list[str]) -> int:
    """`atlas sim-exchange [--port P] [--ws-port Q] [--data ...] [--symbols ...] [--speed N|max]`."""
    args = _parser().parse_args(argv)
    try:
        if args.host not in LOOPBACK_HOSTS:
            raise ValueError(f"--host must be a loopback address, got {args.host!r}")
        symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
        if not symbols:
            raise ValueError("--symbols is empty")
        data = [d.strip() for d in args.data.split(",") if d.strip()]
        series, marks, funding = _load_series(symbols, data)
        cursor = None
        if args.state and Path(args.state).exists():
            venue, state = SimExchangeServer.load_state(args.state)
            cursor = state.get("replay")
            funding = {}  # already in the restored book
        else:
            venue = SimVenue(starting_balance=args.balance)
        server = SimExchangeServer(
            venue,
            host=args.host,
            port=args.port,
            ws_port=args.ws_port,
            api_key=args.api_key,
            api_secret=args.api_secret,
            state_path=args.state,
            symbols=symbols,
        )
        server.start()
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"atlas sim-exchange: error: {exc}", flush=True)
        return 2
    server.start_replay(series, speed=args.speed, marks=marks, funding=funding, cursor=cursor)
    secret_note = "default" if args.api_secret == "paper" else "as given"
    print(f"sim-exchange REST  {server.rest_url}", flush=True)
    print(f"sim-exchange WS    {server.ws_url}", flush=True)
    print(
        f"sim-exchange symbols {','.join(symbols)}  speed "
        f"{'max' if args.speed is None else f'{args.speed:g}x'}  api key {args.api_key!r} "
        f"(secret {secret_note})" + (f"  state {args.state}" if args.state else ""),
        flush=True,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        server.stop()
        print("sim-exchange stopped" + (f"; state saved to {args.state}" if args.state else ""))
    return 0


def free_port() -> int:
    """A currently free loopback TCP port (for tests that need to know it in advance)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":  # pragma: no cover
    import sys

    raise SystemExit(main_sim_exchange(sys.argv[1:]))
