"""The sim exchange's market: bar series replayed into SimVenue at a chosen speed."""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atlas_actors.sim_exchange.server import SimExchangeServer

log = logging.getLogger("atlas_actors.sim_exchange")


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
