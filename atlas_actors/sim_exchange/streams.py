"""The sim exchange's WebSocket side: market streams (combined or raw) and the user-data
stream, fed from SimVenue events; listenKey expiry and injected disconnects close them."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from atlas_actors.domain.events import (
    AccountUpdate,
    AlgoUpdate,
    BarClosed,
    MarkPrice,
    OrderUpdate,
    StreamStatus,
)
from atlas_actors.sim_exchange.core import ServerCore
from atlas_actors.sim_exchange.wire import WireError
from atlas_actors.venues.base import VenueEvent
from atlas_actors.venues.binance import schemas


@dataclass(eq=False)
class Conn:
    ws: web.WebSocketResponse
    kind: str  # market | user
    streams: frozenset[str]
    combined: bool
    listen_key: str | None
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)


class StreamsWire(ServerCore):
    """Stream connections and what is sent on them."""

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
        conn = Conn(ws, kind, streams, combined, key)
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
    async def _sender(conn: Conn) -> None:
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
