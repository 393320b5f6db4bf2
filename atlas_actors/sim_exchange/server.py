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
                                    "after_apply", "retry_after"}, "expire_listen_keys": true,
                           "wallet": {"USDC": n, "BNB": n}, "multi_assets_margin": bool,
                           "symbol_status": {"SYM": "SETTLING"},
                           "venue_close": {"symbol", "kind": liquidation|adl|settlement,
                                           "fraction"}}   (arm kinds liquidation/adl/settlement
                           to have the venue close a position at a later request)
    POST /admin/price     {"symbol", "price"} and/or {"symbol", "mark_price"}
    POST /admin/feed_bar  {"symbol", "bar": {open_time, open, high, low, close, volume, close_time}}
    POST /admin/symbol    {"symbol", "tick_size", "step_size", "min_qty", "min_notional",
                           optional "market_max_qty" (MARKET_LOT_SIZE.maxQty; -4005 above)}
    (a ban: POST /admin/faults {"arm": {"kind": "ban", "retry_after": s, "ban_s": s}}: the
     next request gets 429 + Retry-After, whoever goes on a 418 "banned until <ms>" that every
     request extends; a slow reply: {"arm": {"method": m, "kind": "slow_reply", "reply_s": [lo, hi]}})
    POST /admin/replay    {"stop": true}: the replayed market stops for good (audits, tests)
    GET  /admin/snapshot  the venue's snapshot()
    GET  /admin/requests  the last requests received (method, path, params, auth verdicts)
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from atlas_actors.sim_exchange.admin import AdminApi
from atlas_actors.sim_exchange.core import HttpFault
from atlas_actors.sim_exchange.replayer import Replayer
from atlas_actors.sim_exchange.rest import RestWire
from atlas_actors.sim_exchange.routes import RestRoutes
from atlas_actors.sim_exchange.streams import Conn
from atlas_actors.sim_exchange.wire import WireRequest
from atlas_actors.venues.sim import SimVenue

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class SimExchangeServer(AdminApi, RestWire, RestRoutes):
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
        self._http_faults: list[HttpFault] = []
        self._listen_keys: dict[str, float] = {}  # key -> expires at (wall seconds)
        self._streams_down: set[str] = set()
        self._algo_symbols: dict[str, str] = {}  # "id:<algoId>" / "cid:<clientAlgoId>" -> symbol
        self._next_cid = 1
        self._conns: set[Conn] = set()
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

    # ================================================================== dispatch

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/admin/"):
            return await self._admin(request)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        return await self._rest(request)

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


def free_port() -> int:
    """A currently free loopback TCP port (for tests that need to know it in advance)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
