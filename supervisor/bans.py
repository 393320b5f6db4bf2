"""One alert per venue ban, with its end.

Both the Binance transport (a StreamStatus("rest", "BANNED", "until <ms>: why") venue event)
and the tree's BanGate (any venue answering RateLimited) see a ban begin; whichever sees it
first alerts, the other is the same ban. Nothing is sent until it ends: the stops already on
the exchange protect meanwhile."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("atlas.supervisor")


def ban_until_s(detail: str) -> float:
    """The end (server seconds) in a BANNED status's "until <ms>: why" (0: none)."""
    head = detail.split(":", 1)[0].removeprefix("until ").strip()
    return int(head) / 1000.0 if head.isdigit() else 0.0


class BanAlerts:
    def __init__(self, alerts: Callable[[], Any]) -> None:
        self._alerts = alerts
        self._lock = threading.Lock()
        self._alerted_until = float("-inf")  # monotonic

    def on_venue_ban(self, event: Any) -> None:
        until = ban_until_s(event.detail)
        self._alert(until - event.event_time / 1000.0 if until else 0.0, event.detail)

    def on_gate_ban(self, seconds: float, why: str) -> None:
        until_ms = int((time.time() + seconds) * 1000)
        self._alert(seconds, f"until {until_ms}: {why}")

    def _alert(self, seconds: float, detail: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._alerted_until:
                return  # the same ban, seen by the other side
            self._alerted_until = now + max(seconds, 1.0)
        log.error("venue ban: %s", detail)
        alerts = self._alerts()
        if alerts is not None:
            alerts.venue_banned(detail)
