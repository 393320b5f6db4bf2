"""The request-weight governor of one Binance REST session: the per-minute budget, request
priorities and venue bans.

- Budget: this process stays below `share` of the venue's per-minute weight limit. The
  window is the *server's* minute (host clock + the measured server offset): Binance counts
  `X-MBX-USED-WEIGHT-1M` per server minute, so a host minute would roll early or late. The
  server's count is the truth whenever a response carries it; between responses the governor
  adds the weight of what it lets through.
- Priorities (`venues/priority.py`): the others stop at `1 - protection_reserve` of the
  budget; PROTECTION requests may go on to `PROTECTION_CEILING` of the venue's limit, so
  stops, visibility checks and emergency closes always find room - also when a reply from
  the end of the last window (its server count) lands just after this window began. Whoever waits, the most urgent waiter goes first: a caller never
  overtakes a waiting caller of a higher priority.
- Bans: after an HTTP 429/418 (or -1003) nothing leaves the process until the venue's
  `Retry-After` / "banned until" has passed, whoever asks (protection included: every
  request during a ban extends it, and the stops already on the exchange protect). A caller
  either waits a short ban out or gets RateLimited at once without anything being sent.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from atlas_actors.venues.base import RateLimited
from atlas_actors.venues.priority import Priority

BAN_CODE = -1003
PROTECTION_CEILING = 0.95  # of the venue's limit: the margin is for counts still in flight


class WeightGovernor:
    """Keeps this process's request weight below its budget (see the module docstring)."""

    def __init__(
        self,
        *,
        limit: int = 2400,
        share: float = 0.8,
        protection_reserve: float = 0.25,
        priorities: bool = True,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float = 0.02,
    ) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"weight_limit_share must be within (0, 1], got {share!r}")
        if not 0.0 <= protection_reserve < 1.0:
            raise ValueError(
                f"protection_reserve must be within [0, 1), got {protection_reserve!r}"
            )
        self.limit = int(limit)
        self.share = float(share)
        self.protection_reserve = float(protection_reserve)
        # False: every request is alike (no reserve, no queue order) - the bench's baseline.
        self.priorities = bool(priorities)
        self._clock = clock
        self._sleep = sleep
        self._poll_s = float(poll_s)
        self._lock = threading.Lock()
        self._minute = -1
        self._used = 0
        self._waiting = [0] * len(Priority)
        self.server_offset_s = 0.0  # server clock - host clock (BinanceHttp.sync_time)
        self.banned_until = 0.0  # host clock; nothing is sent before it
        self.bans = 0  # bans begun (each alerted once by the owner's `on_ban`)
        self.on_ban: Callable[[float, str], None] | None = None
        self.waits: list[float] = []  # every wait the governor imposed (seconds), for status
        self.waited: dict[Priority, list[float]] = {p: [] for p in Priority}  # per acquire

    @property
    def budget(self) -> float:
        return self.limit * self.share

    @property
    def used(self) -> int:
        return self._used

    def cap(self, priority: Priority) -> float:
        """The weight `priority` may use in one window."""
        if not self.priorities:
            return self.budget
        if priority == Priority.PROTECTION:
            return max(self.budget, self.limit * PROTECTION_CEILING)
        return self.budget * (1.0 - self.protection_reserve)

    def _roll(self, now: float) -> int:
        minute = int((now + self.server_offset_s) // 60)
        if minute != self._minute:
            self._minute, self._used = minute, 0
        return minute

    def _to_window_end(self, now: float, minute: int) -> float:
        return (minute + 1) * 60.0 - self.server_offset_s - now

    def banned_for(self) -> float:
        """Seconds the current ban still lasts (0: none)."""
        return max(0.0, self.banned_until - self._clock())

    def acquire(
        self,
        weight: int,
        priority: Priority = Priority.TRADING,
        *,
        max_ban_wait_s: float = math.inf,
    ) -> float:
        """Wait until `weight` may be sent now; returns the time waited. Raises RateLimited
        (nothing sent) while a ban lasts longer than `max_ban_wait_s`."""
        prio = Priority(priority) if self.priorities else Priority.TRADING
        waited = 0.0
        queued = False
        try:
            while True:
                reason = ""
                with self._lock:
                    now = self._clock()
                    minute = self._roll(now)
                    wait = 0.0
                    if self.banned_until > now:
                        wait = self.banned_until - now
                        if wait > max_ban_wait_s:
                            raise RateLimited(
                                wait,
                                f"REST requests suspended: venue ban until "
                                f"{int((self.banned_until + self.server_offset_s) * 1000)} "
                                f"(request not sent)",
                                code=BAN_CODE,
                            )
                        reason, ban_end = "ban", self.banned_until
                    elif any(self._waiting[p] for p in range(prio)):
                        wait, reason = self._poll_s, "queue"  # a more urgent caller first
                    elif weight > 0 and self._used > 0 and self._used + weight > self.cap(prio):
                        wait, reason = self._to_window_end(now, minute) + 0.01, "budget"
                    if wait <= 0.0:
                        self._used += weight
                        self.waited[prio].append(waited)
                        return waited
                    if not queued:
                        self._waiting[prio] += 1
                        queued = True
                if reason != "queue":
                    self.waits.append(wait)
                self._sleep(wait)
                waited += wait
                with self._lock:
                    # The wait covered the window (or the ban): start afresh even if an
                    # injected clock did not move, so a test clock can never make this spin.
                    if reason == "ban" and self.banned_until <= ban_end:
                        self.banned_until = 0.0
                    elif (
                        reason == "budget"
                        and weight > 0
                        and self._used + weight > self.cap(prio)
                        and self._clock() < now + wait
                    ):
                        self._minute, self._used = -2, 0
        finally:
            if queued:
                with self._lock:
                    self._waiting[prio] -= 1

    def observe(self, used: int) -> None:
        with self._lock:
            self._roll(self._clock())
            self._used = max(self._used, int(used))

    def ban(self, seconds: float, why: str = "") -> bool:
        """The venue said stop (429/418) for `seconds`: nothing is sent until then. Returns
        True when this begins a ban (False: it extends or repeats the current one)."""
        with self._lock:
            now = self._clock()
            began = self.banned_until <= now
            self.banned_until = max(self.banned_until, now + max(0.0, seconds))
            until = self.banned_until
            if began:
                self.bans += 1
        if began and self.on_ban is not None:
            self.on_ban(until + self.server_offset_s, why)
        return began
