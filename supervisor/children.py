"""The supervisor's record of one symbol actor, and its restart policy (back-off, alerts)."""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import pykka

from atlas_actors.actors import symbol as sa

CRASH_LOG_MAX = 200  # the newest crashes kept for `atlas admin status` and post-mortems
CRASH_ALERT_EVERY_S = 300.0  # one symbol's repeated crashes alert at most this often


def restart_delay(
    crashes_in_window: int,
    *,
    halted: bool,
    base_s: float,
    max_s: float,
    rng: Callable[[], float] = random.random,
) -> float:
    """Back-off before restarting a crashed symbol actor: the first crash restarts at once
    (recovery must not wait), then base, 2x base, 4x base ... capped at max, with +-20 %
    jitter so that symbols failing together do not retry in lock-step. A HALTED symbol that
    crashes again waits the cap: it keeps its protection but must not crash-loop."""
    if halted:
        delay = max_s
    elif crashes_in_window <= 1:
        return 0.0
    else:
        delay = min(max_s, base_s * 2 ** (crashes_in_window - 2))
    return float(delay * (0.8 + 0.4 * rng()))


class Child:
    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.ref: pykka.ActorRef[Any] | None = None
        self.restarts: deque[float] = deque()
        self.halted = False
        self.status = sa.STARTING
        self.restart_count = 0
        self.fence = threading.Event()  # set when this child's current instance is replaced
        self.generation = 0  # bumped by every (re)start: a delayed restart that lost its turn
        self.last_alert_at = float("-inf")
        self.alerts_suppressed = 0
