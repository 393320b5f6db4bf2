"""BanGate: while the venue has told us to stop (RateLimited: HTTP 429/418), no request of
this process reaches it, whoever asks (protection included).

Binance extends a ban with every request made during it (2 minutes up to 3 days), so the
only safe reaction is silence until `retry_after` has passed; the stops already on the
exchange protect meanwhile. The gate is venue-agnostic (the Binance transport has the same
rule in its weight governor; the gate also covers SimVenue and anything else): every venue
request of the tree's ports passes `call`, which refuses at once during a ban and starts
one when the venue answers RateLimited. `on_ban(seconds, why)` is told once per ban.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from atlas_actors.venues.base import RateLimited

T = TypeVar("T")

BAN_CODE = -1003


class BanGate:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_ban: Callable[[float, str], None] | None = None,
    ) -> None:
        self._clock = clock
        self.on_ban = on_ban
        self._lock = threading.Lock()
        self.until = 0.0  # on `clock`
        self.bans = 0
        self.refused = 0  # requests kept in the process during a ban

    def remaining(self) -> float:
        return max(0.0, self.until - self._clock())

    def check(self, what: str) -> None:
        """Raise RateLimited (nothing sent) while a ban lasts."""
        left = self.remaining()
        if left > 0.0:
            with self._lock:
                self.refused += 1
            raise RateLimited(
                left, f"{what}: not sent: venue ban for {left:.2f} s more", code=BAN_CODE
            )

    def note(self, exc: RateLimited) -> None:
        """The venue answered RateLimited: silence for its retry_after."""
        with self._lock:
            now = self._clock()
            began = self.until <= now
            self.until = max(self.until, now + max(0.0, exc.retry_after))
            if began:
                self.bans += 1
            left = self.until - now
        if began and self.on_ban is not None:
            self.on_ban(left, exc.msg)

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self.check(what)
        try:
            return fn(*args, **kwargs)
        except RateLimited as exc:
            self.note(exc)
            raise
