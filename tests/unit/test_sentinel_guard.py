"""The Sentinel's visibility verdicts (actors/sentinel.py VisibilityGuard) against a real
SimVenue: VISIBLE only for a stop seen open (or fired with a fill), ABSENT when a query answered
and it is neither, UNKNOWN when no query answered; the deadline starts at the acknowledgement
and a slow poll ends the wait."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from atlas_actors.actors.sentinel import ABSENT, UNKNOWN, VISIBLE, VisibilityGuard
from atlas_actors.venues.sim import SimVenue

SYM = "BTCUSDT"


def long_venue(**kw: Any) -> SimVenue:
    v = SimVenue(seed=5, **kw)
    v.set_price(SYM, 50_000.0)
    v.place_market(symbol=SYM, side="BUY", qty=0.01, reduce_only=False, client_order_id="e-1")
    return v


def place(v: SimVenue, cid: str) -> dict[str, Any]:
    return v.place_algo_stop(
        symbol=SYM,
        side="SELL",
        qty=0.01,
        stop_price=49_000.0,
        reduce_only=True,
        client_algo_id=cid,
        working_type="MARK_PRICE",
    )


@pytest.fixture
def guards():
    made: list[VisibilityGuard] = []
    yield made
    for g in made:
        g.close()


def guard(v: Any, guards: list[VisibilityGuard], **kw: Any) -> VisibilityGuard:
    g = VisibilityGuard(v, poll_interval_s=0.01, **kw)
    guards.append(g)
    return g


@pytest.mark.parametrize("status", ["CANCELED", "EXPIRED", "REJECTED", "FINISHED"])
def test_a_stop_the_venue_removed_is_absent_not_seen(status, guards) -> None:
    """Issue 13 B3: the old SEEN_FINAL counted CANCELED/EXPIRED/REJECTED as seen."""
    v = long_venue()
    place(v, "sl-1")
    assert v.exchange_cancels_algo(SYM, "sl-1", status)
    g = guard(v, guards)
    assert g.check(SYM, "sl-1", 100).state == ABSENT
    assert not g.ensure_algo_visible(SYM, "sl-1", 100)


def test_open_and_fired_with_a_fill_are_visible(guards) -> None:
    v = long_venue()
    place(v, "sl-1")
    g = guard(v, guards)
    assert g.check(SYM, "sl-1", 100).state == VISIBLE
    v.set_price(SYM, 48_000.0)  # it fires and its child fills
    assert v.get_positions()[SYM]["side"] == "NONE"
    assert g.check(SYM, "sl-1", 100).state == VISIBLE


def test_a_failed_query_is_unknown_not_absent(guards) -> None:
    v = long_venue()
    place(v, "sl-1")
    v.faults.arm("get_open_algo_orders", kind="unavailable", times=None)
    g = guard(v, guards)
    assert g.check(SYM, "sl-1", 100).state == UNKNOWN


def test_unknown_then_a_late_visible_answer_is_recorded_with_how_late(guards) -> None:
    v = long_venue()
    place(v, "sl-1")
    v.faults.arm("get_open_algo_orders", kind="unavailable", times=None)
    g = guard(v, guards)
    told: list[str] = []
    timer = threading.Timer(0.4, v.faults.clear)
    timer.start()
    verdict = g.verify(SYM, "sl-1", 100, on_unknown=lambda: told.append("unknown"))
    timer.join()
    assert verdict.state == VISIBLE and verdict.late_ms >= 200
    assert told == ["unknown"]


def test_unknown_then_absent_ends_with_absent(guards) -> None:
    v = long_venue()
    v.faults.arm("place_algo_stop", kind="invisible_algo")
    place(v, "sl-1")
    v.faults.arm("get_open_algo_orders", kind="unavailable", times=None)
    g = guard(v, guards)
    timer = threading.Timer(0.3, v.faults.clear)
    timer.start()
    verdict = g.verify(SYM, "sl-1", 100)
    timer.join()
    assert verdict.state == ABSENT and verdict.late_ms > 0  # the first answer decides


def test_the_deadline_starts_at_the_acknowledgement(guards) -> None:
    """Issue 14.2: a check picked up 0.9 s after the ack has 0.1 s left, not 1 s."""
    clock = [100.0]
    v = long_venue()
    v.faults.arm("place_algo_stop", kind="invisible_algo")
    place(v, "sl-1")

    def sleep(s: float) -> None:
        clock[0] += s

    g = guard(v, guards, clock=lambda: clock[0], sleep=sleep)
    verdict = g.check(SYM, "sl-1", 1000, acked_at=clock[0] - 0.9)
    assert verdict.state == ABSENT
    assert clock[0] == pytest.approx(100.1, abs=0.02)


class SlowAlgos(SimVenue):
    """A venue whose open-algo query takes 3 s (a stuck connection)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.returned = threading.Event()

    def get_open_algo_orders(self, symbol: str) -> list[dict[str, Any]]:
        try:
            time.sleep(3.0)
            return super().get_open_algo_orders(symbol)
        finally:
            self.returned.set()


def test_a_slow_poll_ends_the_wait_at_the_deadline(guards) -> None:
    """Issue 14.2: the deadline is enforced inside each poll, not only between polls."""
    v = SlowAlgos(seed=5)
    v.set_price(SYM, 50_000.0)
    place(v, "sl-1")
    g = guard(v, guards)
    verdict = g.check(SYM, "sl-1", 200)
    assert verdict.state == UNKNOWN  # no query answered in time: not known, not absent
    assert not v.returned.is_set()  # the verdict came before the slow poll answered
