"""MarketFeed: market data in, fanned out to the SymbolActors (and fills to the Sentinel).

Paper mode: `PaperReplay` merges the bundled real klines of many symbols into one
timeline and the feed thread replays it at `speed` x real time (or as fast as the actors
decide with `max`): for each close time, the SimVenue sees the bar first (resting orders
and stops fill along the bar's path), then every symbol's actor decides on the closed bar;
the feed waits for all of them (`pykka.get_all`) before the next close time, so memory stays
bounded and a paper run is reproducible.

Timeline policy: files cover different months, so each symbol's series is shifted by a
whole number of hours so that every series starts at the first symbol's start. A restarted
run resumes each symbol after the last bar its shard recorded (`last_bar_close_time`).

Live/testnet: the adapter's streams are the source; events are routed by symbol. After a
stream reconnect the adapter resyncs over REST and the feed asks every actor to reconcile.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pykka

from atlas_actors.domain.events import (
    AccountUpdate,
    AlgoUpdate,
    BarClosed,
    MarkPrice,
    OrderUpdate,
    StreamStatus,
    VenueEvent,
)

log = logging.getLogger("atlas.feed")

HOUR_MS = 3_600_000


class PaperReplay:
    """Merged, time-shifted replay of several symbols' closed bars."""

    def __init__(
        self,
        series: dict[str, list[dict[str, Any]]],
        *,
        resume_after: dict[str, int] | None = None,
        max_bars: int | None = None,
    ) -> None:
        self.series = series
        self.resume_after = resume_after or {}
        self.max_bars = max_bars
        self.shift_ms: dict[str, int] = {}
        firsts = {s: bars[0]["open_time"] for s, bars in series.items() if len(bars)}
        if firsts:
            base = firsts[next(iter(firsts))]
            for sym, first in firsts.items():
                self.shift_ms[sym] = round((base - first) / HOUR_MS) * HOUR_MS

    def start_time_s(self) -> float:
        """Where the replay (re)starts on its timeline, in epoch seconds."""
        if self.resume_after and max(self.resume_after.values()) > 0:
            return max(self.resume_after.values()) / 1000.0
        for sym, bars in self.series.items():
            if len(bars):
                return (bars[0]["open_time"] + self.shift_ms.get(sym, 0)) / 1000.0
        return 0.0

    def _shifted(self, sym: str) -> Iterator[dict[str, Any]]:
        shift = self.shift_ms.get(sym, 0)
        after = self.resume_after.get(sym, 0)
        n = 0
        for bar in self.series[sym]:
            ct = bar["close_time"] + shift
            if ct <= after:
                continue
            if self.max_bars is not None and n >= self.max_bars:
                return
            n += 1
            b = dict(bar)
            b["open_time"] = bar["open_time"] + shift
            b["close_time"] = ct
            yield b

    def _keyed(self, sym: str, rank: int) -> Iterator[tuple[int, int, str, dict[str, Any]]]:
        for b in self._shifted(sym):
            yield b["close_time"], rank, sym, b

    def groups(self) -> Iterator[tuple[int, list[tuple[str, dict[str, Any]]]]]:
        """Yield (close_time, [(symbol, bar), ...]) in time order, symbols in config order."""
        order = {s: i for i, s in enumerate(self.series)}
        merged: Iterable[tuple[int, int, str, dict[str, Any]]] = heapq.merge(
            *(self._keyed(s, order[s]) for s in self.series),
            key=lambda t: (t[0], t[1]),
        )
        current: int | None = None
        group: list[tuple[str, dict[str, Any]]] = []
        for ct, _, sym, bar in merged:
            if current is not None and ct != current:
                yield current, group
                group = []
            current = ct
            group.append((sym, bar))
        if current is not None and group:
            yield current, group

    def total_bars(self) -> int:
        return sum(1 for s in self.series for _ in self._shifted(s))


class EventRouter:
    """Venue listener: routes normalised events to the symbol actors and the Sentinel.

    Called on the venue's stream thread; it only does non-blocking tells and never raises,
    so a bad event cannot kill a stream. Registered once; actor restarts are followed via
    the `symbol_ref` / `sentinel_ref` lookups."""

    def __init__(
        self,
        symbol_ref: Callable[[str], Any],
        sentinel_ref: Callable[[], Any],
        *,
        bars_from_stream: bool,
        on_resync: Callable[[], None] | None = None,
        on_ban: Callable[[StreamStatus], None] | None = None,
    ) -> None:
        self.symbol_ref = symbol_ref
        self.sentinel_ref = sentinel_ref
        self.bars_from_stream = bars_from_stream
        self.on_resync = on_resync
        self.on_ban = on_ban
        self.dropped = 0
        self._down: set[str] = set()  # streams reported DISCONNECTED and not back yet

    def dispatch(self, event: VenueEvent) -> None:
        """Venue listener (called on the venue's thread): route, never block, never raise."""
        try:
            if isinstance(event, OrderUpdate):
                self._tell(event.symbol, {"msg": "order_update", "update": event})
            elif isinstance(event, AlgoUpdate):
                sentinel = self.sentinel_ref()
                if sentinel is not None:
                    sentinel.on_algo_update(event)
                self._tell(event.symbol, {"msg": "algo_update", "update": event})
            elif isinstance(event, BarClosed) and self.bars_from_stream:
                self._tell(event.symbol, {"msg": "bar", "bar": event.as_bar()})
            elif isinstance(event, MarkPrice):
                self._tell(
                    event.symbol,
                    {"msg": "mark", "price": event.mark_price, "funding_rate": event.funding_rate},
                )
            elif isinstance(event, StreamStatus):
                self._on_stream_status(event)
            elif isinstance(event, AccountUpdate):
                # balances are read through the account view; positions are checked by the
                # symbol's actor (a change no fill of ours explains must not go unnoticed)
                for key, pos in event.positions.items():
                    if ":" in key:
                        continue  # a hedge-mode row: Atlas runs one-way
                    self._tell(
                        str(pos.get("symbol") or key),
                        {
                            "msg": "venue_position",
                            "side": str(pos.get("side") or "NONE"),
                            "qty": float(pos.get("qty") or 0.0),
                        },
                    )
        except Exception:  # noqa: BLE001 - a bad event must not kill the stream thread
            log.exception("feed: cannot dispatch %r", event)

    def _on_stream_status(self, event: StreamStatus) -> None:
        # A venue that resyncs over REST after a reconnect says RESYNCED; one that only
        # reconnects (SimVenue) says CONNECTED. Either way, what the user stream dropped
        # meanwhile (fills, a lost stop) must be reconciled before it is trusted again.
        if event.status == "BANNED":
            if self.on_ban is not None:  # the venue says once per ban
                self.on_ban(event)
            return
        if event.status == "DISCONNECTED":
            self._down.add(event.stream)
            return
        back = event.status == "CONNECTED" and event.stream in self._down
        if event.status == "CONNECTED":
            self._down.discard(event.stream)
        if event.status == "RESYNCED" or (back and event.stream == "user"):
            if self.on_resync is not None:
                self.on_resync()

    def _tell(self, symbol: str, message: dict[str, Any]) -> None:
        ref = self.symbol_ref(symbol)
        if ref is None:
            self.dropped += 1
            return
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            pass


class MarketFeed(pykka.ThreadingActor):
    """Paper mode: drives the replay thread. Live: the stream is the adapter's; events reach
    the actors through the `EventRouter`."""

    # A stuck venue call must never keep the process alive after shutdown: the supervisor
    # stops actors with a deadline and the store is flushed by the main thread.
    use_daemon_thread = True

    def __init__(
        self,
        venue: Any,
        symbol_ref: Callable[[str], Any],
        *,
        replay: PaperReplay | None = None,
        speed: float | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        on_done: Callable[[], None] | None = None,
        bar_timeout_s: float = 30.0,
        max_in_flight: int = 4,
    ) -> None:
        super().__init__()
        self.venue = venue
        self.symbol_ref = symbol_ref
        self.replay = replay
        self.speed = speed  # None = max
        self.on_progress = on_progress
        self.on_done = on_done
        self.bar_timeout_s = bar_timeout_s
        self.max_in_flight = max(1, max_in_flight)
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self.bars_sent = 0
        self.last_close_time = 0
        self.decision_ms: list[float] = []
        self.done = False

    # -------------------------------------------------------------- actor API

    def ping(self) -> str:
        return "pong"

    def crash(self, reason: str) -> None:
        raise RuntimeError(f"injected MarketFeed crash: {reason}")

    def start_replay(self) -> None:
        if self.replay is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run_replay, name="paper-replay", daemon=True)
        self._thread.start()

    def stop_replay(self) -> None:
        self._halt.set()

    def stats(self) -> dict[str, Any]:
        return {
            "bars_sent": self.bars_sent,
            "last_close_time": self.last_close_time,
            "done": self.done,
        }

    def on_stop(self) -> None:
        self._halt.set()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self._halt.set()

    # -------------------------------------------------------------- paper replay

    def _decide(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        futures = []
        for sym, bar in batch:
            ref = self.symbol_ref(sym)
            if ref is None:
                continue
            try:
                futures.append(ref.ask({"msg": "bar", "bar": bar}, block=False))
            except pykka.ActorDeadError:
                continue
        for fut in futures:
            try:
                res = fut.get(timeout=self.bar_timeout_s)
            except Exception:  # noqa: BLE001 - a dead/crashed actor reports its own crash
                continue
            if isinstance(res, dict) and "decision_ms" in res:
                if len(self.decision_ms) >= 200_000:
                    del self.decision_ms[:100_000]  # bounded memory on long runs
                self.decision_ms.append(res["decision_ms"])

    def _run_replay(self) -> None:
        assert self.replay is not None
        total = self.replay.total_bars()
        prev_ct: int | None = None
        try:
            for ct, group in self.replay.groups():
                if self._halt.is_set():
                    return
                if self.speed is not None and prev_ct is not None:
                    delay = (ct - prev_ct) / 1000.0 / self.speed
                    if delay > 0 and self._halt.wait(delay):
                        return
                prev_ct = ct
                for sym, bar in group:
                    self.venue.feed_bar(sym, bar)
                # At most `max_in_flight` actors decide at once: with the GIL more runnable
                # threads add no throughput, only waiting inside every decision.
                for i in range(0, len(group), self.max_in_flight):
                    self._decide(group[i : i + self.max_in_flight])
                self.bars_sent += len(group)
                self.last_close_time = ct
                if self.on_progress is not None:
                    self.on_progress(self.bars_sent, total)
        finally:
            self.done = not self._halt.is_set()
            if self.done and self.on_done is not None:
                self.on_done()


def wait_until(pred: Callable[[], bool], timeout_s: float, interval_s: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval_s)
    return pred()
