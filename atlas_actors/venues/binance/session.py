"""The live side of one BinanceAdapter: the market stream (klines of `interval` and mark
prices of `symbols`) and the user-data stream, each a `StreamWorker`, with listenKey upkeep,
kline backfill after a market reconnect, and a REST resync after every user (re)connect that
synthesises the order/algo updates missed while disconnected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from atlas_actors.domain.events import (
    AccountUpdate,
    AlgoUpdate,
    BarClosed,
    MarkPrice,
    OrderUpdate,
    StreamStatus,
)
from atlas_actors.venues.base import VenueError, VenueEvent
from atlas_actors.venues.binance import schemas
from atlas_actors.venues.binance.codes import INVALID_LISTEN_KEY_CODE
from atlas_actors.venues.binance.http import BinanceHttp
from atlas_actors.venues.binance.streams import StreamWorker
from atlas_actors.venues.binance.tracking import OpenTracker

if TYPE_CHECKING:
    from atlas_actors.venues.binance.adapter import BinanceAdapter

log = logging.getLogger(__name__)

LISTEN_KEY_KEEPALIVE_S = 30 * 60.0
KLINE_BACKFILL_LIMIT = 499  # weight 2; bars missed during a longer market outage stay missed


class StreamSession:
    """Streams of one adapter; REST reads for backfill and resync go through `venue`."""

    def __init__(
        self,
        venue: BinanceAdapter,
        http: BinanceHttp,
        tracker: OpenTracker,
        emit: Callable[[VenueEvent], None],
        *,
        ws_url: str,
        symbols: tuple[str, ...],
        interval: str,
        rotate_after_s: float | None,
        stream_backoff_s: float,
    ) -> None:
        self._venue = venue
        self._http = http
        self._tracker = tracker
        self._emit = emit
        self.ws_url = ws_url
        self.symbols = symbols
        self.interval = interval
        self._last_bar_open: dict[str, int] = {}
        self._listen_key: str | None = None
        self._last_keepalive = 0.0
        self._rotate_after_s = rotate_after_s
        self._stream_backoff_s = float(stream_backoff_s)
        self._market: StreamWorker | None = None
        self._user: StreamWorker | None = None

    def ws_start(self) -> None:
        """Start the market stream (klines of `interval` + mark price of `symbols`) and the
        user-data stream. Reconnects and REST resyncs are handled here from then on."""
        try:
            self._http.sync_time()
        except VenueError:
            log.warning("ws_start: time sync failed; streams will retry", exc_info=True)
        opts: dict[str, Any] = {
            "clock": self._http.clock,
            "backoff_initial_s": self._stream_backoff_s,
        }
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
                self._emit(
                    StreamStatus(worker.name, "DISCONNECTED", "ws_stop", self._http.now_ms())
                )
        self._market = self._user = None
        key, self._listen_key = self._listen_key, None
        if key is not None:
            try:
                self._http.call(
                    "listenKey close",
                    self._http.client.futures_stream_close,
                    {"listenKey": key},
                    signed=False,
                    read_attempts_max=1,  # best effort: an unclosed key expires by itself
                )
            except VenueError:
                log.info("ws_stop: closing the listenKey failed (it expires by itself)")

    def _market_url(self) -> str:
        streams = []
        for sym in self.symbols:
            s = sym.lower()
            streams += [f"{s}@kline_{self.interval}", f"{s}@markPrice@1s"]
        return f"{self.ws_url}/market/stream?streams={'/'.join(streams)}"

    def _user_url(self) -> str:
        if self._listen_key is None:
            self._listen_key = self._http.call(
                "listenKey", self._http.client.futures_stream_get_listen_key, None, signed=False
            )
            self._last_keepalive = self._http.clock()
        return f"{self.ws_url}/private/ws?listenKey={self._listen_key}"

    def _on_disconnected(self, stream: str, reason: str) -> None:
        self._emit(StreamStatus(stream, "DISCONNECTED", reason[:200], self._http.now_ms()))

    def _user_upkeep(self) -> None:
        now = self._http.clock()
        if self._listen_key is not None and now - self._last_keepalive >= LISTEN_KEY_KEEPALIVE_S:
            self._last_keepalive = now
            try:
                self._http.call(
                    "listenKey keepalive",
                    self._http.client.futures_stream_keepalive,
                    {"listenKey": self._listen_key},
                    signed=False,
                )
            except VenueError as exc:
                if exc.code == INVALID_LISTEN_KEY_CODE:
                    self._renew_listen_key("keep-alive: listenKey no longer valid (-1125)")
                else:
                    log.warning("listenKey keep-alive failed: %s", exc)
        if self._http.time_sync_due():
            try:
                self._http.sync_time()
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
            StreamStatus(
                "market", "CONNECTED", "reconnect" if reconnect else "", self._http.now_ms()
            )
        )
        if not reconnect:
            return
        # Bars that closed while the stream was down: fetch and deliver them in order.
        for sym in self.symbols:
            last = self._last_bar_open.get(sym)
            if last is None:
                continue
            for bar in self._venue.get_kline(sym, self.interval, KLINE_BACKFILL_LIMIT):
                if bar["open_time"] > self._last_bar_open.get(sym, last):
                    self._last_bar_open[sym] = bar["open_time"]
                    self._emit(BarClosed(symbol=sym, interval=self.interval, **bar))
        self._emit(StreamStatus("market", "RESYNCED", "klines backfilled", self._http.now_ms()))

    def _on_user_message(self, message: dict[str, Any]) -> None:
        event = schemas.parse_stream_message(message)
        if isinstance(event, OrderUpdate):
            self._tracker.apply_order_update(event)
            self._emit(event)
        elif isinstance(event, AlgoUpdate):
            self._tracker.apply_algo_update(event)
            self._emit(event)
        elif isinstance(event, AccountUpdate):
            self._emit(event)
        elif isinstance(event, StreamStatus) and event.status == "LISTEN_KEY_EXPIRED":
            self._emit(event)
            self._renew_listen_key("listenKeyExpired")

    def _on_user_connected(self, reconnect: bool) -> None:
        self._emit(
            StreamStatus("user", "CONNECTED", "reconnect" if reconnect else "", self._http.now_ms())
        )
        try:
            self.resync()
        except VenueError as exc:
            # Without a resync missed fills stay unknown: say so, and reconnect to try again
            # (the pre-disconnect view is kept until a resync succeeds).
            self._emit(StreamStatus("user", "RESYNC_FAILED", str(exc)[:200], self._http.now_ms()))
            if self._user is not None:
                self._user.reconnect("resync failed")

    def resync(self) -> list[VenueEvent]:
        """REST resync after a (re)connect: positions, balances, open orders and algos.

        Orders and algos that were open before and are gone now (or filled further) are
        queried by id and delivered as synthesized OrderUpdate/AlgoUpdate events, so a fill
        that happened while the stream was down is never lost. Returns what was emitted."""
        before_orders, before_algos = self._tracker.snapshot()
        symbols = sorted(
            set(self.symbols)
            | {o["symbol"] for o in before_orders.values()}
            | {a["symbol"] for a in before_algos.values()}
        )
        positions = self._venue.get_positions()
        balances = self._venue.get_balances()
        open_orders: dict[str, dict[str, Any]] = {}
        open_algos: dict[str, dict[str, Any]] = {}
        for sym in symbols:
            open_orders.update({o["order_id"]: o for o in self._venue.get_open_orders(sym)})
            open_algos.update({a["algo_id"]: a for a in self._venue.get_open_algo_orders(sym)})
        now = self._http.now_ms()
        missed: list[VenueEvent] = []
        children: set[str] = set()
        for aid, old in before_algos.items():
            if aid in open_algos:
                continue
            cur = self._venue.get_algo_order(symbol=old["symbol"], algo_id=aid)
            if cur is None:
                continue
            missed.append(self._synth_algo_update(cur, now))
            child = cur.get("order_id")
            if child and child not in before_orders:
                order = self._venue.get_order(symbol=cur["symbol"], order_id=child)
                if order is not None and order["executed_qty"] > 0:
                    children.add(child)
                    missed.append(self._synth_order_update(order, 0.0, now))
        for oid, old in before_orders.items():
            cur = open_orders.get(oid) or self._venue.get_order(symbol=old["symbol"], order_id=oid)
            if cur is None or oid in children:
                continue
            before_exec = float(old.get("executed_qty") or 0.0)
            if cur["executed_qty"] > before_exec or cur["status"] != old.get("status"):
                missed.append(self._synth_order_update(cur, before_exec, now))
        self._tracker.replace(open_orders, open_algos)
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
