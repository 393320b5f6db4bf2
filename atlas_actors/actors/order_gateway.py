"""OrderGateway: the single writer to the venue.

`Lanes` (plain controller, testable without actors) runs every write in a per-symbol
lane (one worker thread per symbol, FIFO), so one symbol's slow or failing call never
delays another's, plus an emergency lane that never waits behind anything (its own
thread, exempt from the rate budget). A token bucket keeps normal writes within the
request budget. `OrderGateway` is the pykka actor shell owning the lanes; `GatewayPort`
is what a SymbolEngine holds: the ExchangeAdapter's method names, writes routed through
the lanes, reads sent straight to the venue.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import pykka

from atlas_actors.venues.base import UnknownOutcome, VenueUnavailable

log = logging.getLogger("atlas.gateway")

EMERGENCY = "__emergency__"
_STOP = object()


class TokenBucket:
    """`rate` requests per second with bursts up to `burst`; thread-safe."""

    def __init__(self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic):
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.updated = clock()
        self.lock = threading.Lock()

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Take one token, sleeping while none is left. Returns the time waited."""
        waited = 0.0
        while True:
            with self.lock:
                now = self.clock()
                self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return waited
                need = (1.0 - self.tokens) / self.rate if self.rate > 0 else 0.05
            sleep(need)
            waited += need


class _Lane:
    def __init__(self, name: str, budget: TokenBucket | None) -> None:
        self.name = name
        self.q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.budget = budget
        self.busy_since: float | None = None
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name=f"lane-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is _STOP:
                self._fail_queued()
                return
            fut, fn = item
            if not fut.set_running_or_notify_cancel():
                continue
            if self.stopped:
                fut.set_exception(
                    VenueUnavailable(f"order gateway lane {self.name} stopped before sending")
                )
                continue
            if self.budget is not None:
                self.budget.acquire()
            self.busy_since = time.monotonic()
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                fut.set_exception(exc)
            finally:
                self.busy_since = None

    def _fail_queued(self) -> None:
        """Requests still queued when the gateway stops were never sent: say so at once
        (a known "not applied", unlike a timeout) instead of letting callers wait."""
        while True:
            try:
                item = self.q.get_nowait()
            except queue.Empty:
                return
            if item is _STOP:
                continue
            fut, _ = item
            if fut.set_running_or_notify_cancel():
                fut.set_exception(
                    VenueUnavailable(f"order gateway lane {self.name} stopped before sending")
                )

    def stop(self) -> None:
        self.stopped = True
        self.q.put(_STOP)


class Lanes:
    def __init__(self, *, rate_per_s: float = 20.0, burst: float = 40.0) -> None:
        self.budget = TokenBucket(rate_per_s, burst)
        self._lanes: dict[str, _Lane] = {}
        self._lock = threading.Lock()
        self._stopped = False
        self.submitted = 0

    def _lane(self, key: str) -> _Lane:
        if self._stopped:
            raise VenueUnavailable("order gateway stopped")
        lane = self._lanes.get(key)
        if lane is None:
            with self._lock:
                if self._stopped:
                    raise VenueUnavailable("order gateway stopped")
                lane = self._lanes.get(key)
                if lane is None:
                    lane = _Lane(key, None if key == EMERGENCY else self.budget)
                    self._lanes[key] = lane
        return lane

    def submit(self, symbol: str, fn: Callable[[], Any], *, emergency: bool = False) -> Future[Any]:
        fut: Future[Any] = Future()
        self.submitted += 1
        lane = self._lane(EMERGENCY if emergency else symbol)
        lane.q.put((fut, fn))
        if lane.stopped:
            # Stopped meanwhile: the lane thread may already have drained its queue and
            # ended, leaving this request to wait forever. Fail it as never sent instead.
            lane.thread.join(1.0)
            if not lane.thread.is_alive():
                lane._fail_queued()
        return fut

    def stuck_lanes(self, older_than_s: float) -> list[str]:
        now = time.monotonic()
        return [
            k
            for k, lane in list(self._lanes.items())
            if lane.busy_since is not None and now - lane.busy_since > older_than_s
        ]

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            lanes = list(self._lanes.values())
        for lane in lanes:
            lane.stop()


class OrderGateway(pykka.ThreadingActor):
    """Actor shell around `Lanes`. Its inbox only enqueues; the lanes do the waiting."""

    # A stuck venue call must never keep the process alive after shutdown: the supervisor
    # stops actors with a deadline and the store is flushed by the main thread.
    use_daemon_thread = True

    def __init__(self, venue: Any, *, rate_per_s: float = 20.0, burst: float = 40.0) -> None:
        super().__init__()
        self.venue = venue
        self.lanes = Lanes(rate_per_s=rate_per_s, burst=burst)

    def lanes_ref(self) -> Lanes:
        return self.lanes

    def ping(self) -> str:
        return "pong"

    def stats(self) -> dict[str, Any]:
        return {"submitted": self.lanes.submitted, "lanes": len(self.lanes._lanes)}

    def crash(self, reason: str) -> None:
        raise RuntimeError(f"injected OrderGateway crash: {reason}")

    def on_stop(self) -> None:
        self.lanes.stop()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self.lanes.stop()


_WRITES = (
    "place_limit_postonly",
    "place_market",
    "cancel_order",
    "place_algo_stop",
    "cancel_algo",
    "recover_protection",
    "set_leverage",
    "set_position_mode_one_way",
)


class GatewayPort:
    """ExchangeAdapter-shaped handle for one symbol: writes go through its lane (or the
    emergency lane), reads go straight to the venue. `lanes_provider` returns the current
    gateway's Lanes (the gateway may have been restarted)."""

    def __init__(
        self,
        venue: Any,
        symbol: str,
        lanes_provider: Callable[[], Lanes | None],
        *,
        emergency: bool = False,
        timeout_s: float = 10.0,
    ) -> None:
        self._venue = venue
        self._symbol = symbol
        self._lanes_provider = lanes_provider
        self._emergency = emergency
        self._timeout_s = timeout_s

    @property
    def emergency(self) -> GatewayPort:
        return GatewayPort(
            self._venue,
            self._symbol,
            self._lanes_provider,
            emergency=True,
            timeout_s=self._timeout_s,
        )

    def _write(self, name: str, *args: Any, **kwargs: Any) -> Any:
        lanes = self._lanes_provider()
        if lanes is None:
            raise VenueUnavailable("order gateway is not running")
        method = getattr(self._venue, name)
        try:
            fut = lanes.submit(
                self._symbol, lambda: method(*args, **kwargs), emergency=self._emergency
            )
        except VenueUnavailable:
            raise
        try:
            return fut.result(timeout=self._timeout_s)
        except FutureTimeout as exc:
            # The call may still be applied later: the caller resolves it by client id.
            raise UnknownOutcome(f"{name} did not complete within {self._timeout_s}s") from exc

    def __getattr__(self, name: str) -> Any:
        if name in _WRITES:
            return lambda *a, **k: self._write(name, *a, **k)
        return getattr(self._venue, name)
