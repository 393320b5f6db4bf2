"""OrderGateway: the single writer to the venue.

`Lanes` (plain controller, testable without actors) runs every write in a per-symbol
lane (one worker thread per symbol, FIFO), so one symbol's slow or failing call never
delays another's, plus an emergency lane that never waits behind anything (its own
thread, exempt from the rate budget). A symbol's protection writes (stop placement and
replacement: `request_priority(PROTECTION)`) have a lane of their own, so a stop never
queues behind a slow entry of the same symbol. A token bucket keeps normal writes within
the request budget, with a reserve only protection may use. `OrderGateway` is the pykka
actor shell owning the lanes; `GatewayPort` is what a SymbolEngine holds: the
ExchangeAdapter's method names, writes routed through the lanes, reads sent straight to the
venue; the caller's request priority travels with each write to its lane thread, and every
request passes the tree's `BanGate` (nothing is sent during a venue ban).
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import pykka

from atlas_actors.venues.ban_gate import BanGate
from atlas_actors.venues.base import UnknownOutcome, VenueUnavailable
from atlas_actors.venues.priority import (
    Priority,
    current_priority,
    effective_priority,
    request_priority,
)

log = logging.getLogger("atlas.gateway")

EMERGENCY = "__emergency__"
PROTECTION_LANE = "!protection"  # suffix of a symbol's protection lane
_STOP = object()


class TokenBucket:
    """`rate` requests per second with bursts up to `burst`; thread-safe. Protection may
    borrow `protection_reserve` x burst tokens beyond empty (the others wait for them)."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        protection_reserve: float = 0.25,
    ):
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.updated = clock()
        self.lock = threading.Lock()
        self.reserve = max(0.0, float(protection_reserve)) * self.burst

    def acquire(
        self,
        sleep: Callable[[float], None] = time.sleep,
        priority: Priority = Priority.TRADING,
    ) -> float:
        """Take one token, sleeping while none is left. Returns the time waited."""
        floor = 1.0 - self.reserve if priority == Priority.PROTECTION else 1.0
        waited = 0.0
        while True:
            with self.lock:
                now = self.clock()
                self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= floor:
                    self.tokens -= 1.0
                    return waited
                need = (floor - self.tokens) / self.rate if self.rate > 0 else 0.05
            sleep(need)
            waited += need


class InFlight:
    """Which symbols' actors are inside a venue call right now, since when (monotonic).
    A slow reply keeps an actor busy for up to the gateway's timeout: the supervisor asks
    this before it takes a missed ping for a dead actor."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: dict[str, list[float]] = {}

    def enter(self, key: str) -> float:
        t = time.monotonic()
        with self._lock:
            self._since.setdefault(key, []).append(t)
        return t

    def exit(self, key: str, t: float) -> None:
        with self._lock:
            calls = self._since.get(key)
            if calls and t in calls:
                calls.remove(t)
            if not calls:
                self._since.pop(key, None)

    def busy_for(self, key: str) -> float | None:
        """Seconds the oldest venue call of `key` has been running (None: none)."""
        with self._lock:
            calls = self._since.get(key)
            return time.monotonic() - min(calls) if calls else None


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
            fut, fn, priority = item
            if not fut.set_running_or_notify_cancel():
                continue
            if self.stopped:
                fut.set_exception(
                    VenueUnavailable(f"order gateway lane {self.name} stopped before sending")
                )
                continue
            if self.budget is not None:
                self.budget.acquire(priority=priority)
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
            fut = item[0]
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

    def submit(
        self,
        symbol: str,
        fn: Callable[[], Any],
        *,
        emergency: bool = False,
        priority: Priority = Priority.TRADING,
    ) -> Future[Any]:
        fut: Future[Any] = Future()
        self.submitted += 1
        if emergency:
            key = EMERGENCY
        elif priority == Priority.PROTECTION:
            key = symbol + PROTECTION_LANE
        else:
            key = symbol
        lane = self._lane(key)
        lane.q.put((fut, fn, priority))
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
_READS = (
    "get_kline",
    "get_mark_price",
    "get_last_price",
    "get_funding_rate",
    "get_open_interest",
    "get_balances",
    "get_positions",
    "get_open_orders",
    "get_order",
    "get_open_algo_orders",
    "get_algo_order",
    "get_position_mode",
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
        gate: BanGate | None = None,
        in_flight: InFlight | None = None,
    ) -> None:
        self._venue = venue
        self._symbol = symbol
        self._lanes_provider = lanes_provider
        self._emergency = emergency
        self._timeout_s = timeout_s
        self._gate = gate
        self._in_flight = in_flight

    @property
    def emergency(self) -> GatewayPort:
        return GatewayPort(
            self._venue,
            self._symbol,
            self._lanes_provider,
            emergency=True,
            timeout_s=self._timeout_s,
            gate=self._gate,
            in_flight=self._in_flight,
        )

    def _waiting(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn` on the caller's thread, noted as a venue call in flight."""
        if self._in_flight is None:
            return fn(*args, **kwargs)
        t = self._in_flight.enter(self._symbol)
        try:
            return fn(*args, **kwargs)
        finally:
            self._in_flight.exit(self._symbol, t)

    def _request(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self._venue, name)
        if self._gate is None:
            return method(*args, **kwargs)
        return self._gate.call(name, method, *args, **kwargs)

    def _write(self, name: str, *args: Any, **kwargs: Any) -> Any:
        lanes = self._lanes_provider()
        if lanes is None:
            raise VenueUnavailable("order gateway is not running")
        # The lane thread runs the call in a copy of this context with the caller's declared
        # priority (the emergency lane: protection), so it reaches the venue adapter's weight
        # governor too.
        declared = Priority.PROTECTION if self._emergency else current_priority()
        ctx = contextvars.copy_context()

        def send() -> Any:
            return ctx.run(self._in_priority, declared, name, args, kwargs)

        try:
            fut = lanes.submit(
                self._symbol,
                send,
                emergency=self._emergency,
                priority=effective_priority() if declared is None else declared,
            )
        except VenueUnavailable:
            raise
        try:
            return self._waiting(fut.result, timeout=self._timeout_s)
        except FutureTimeout as exc:
            # The call may still be applied later: the caller resolves it by client id.
            raise UnknownOutcome(f"{name} did not complete within {self._timeout_s}s") from exc

    def _in_priority(
        self, declared: Priority | None, name: str, args: Any, kwargs: dict[str, Any]
    ) -> Any:
        with request_priority(declared):
            return self._request(name, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in _WRITES:
            return lambda *a, **k: self._write(name, *a, **k)
        if name in _READS and (self._gate is not None or self._in_flight is not None):
            return lambda *a, **k: self._waiting(self._request, name, *a, **k)
        return getattr(self._venue, name)
