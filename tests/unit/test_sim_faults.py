"""Every SimVenue fault switch, and that the venue then behaves as the real exchange would."""

from __future__ import annotations

import time
from typing import Any

import pytest

from atlas_actors.domain.events import AlgoUpdate, BarClosed, OrderUpdate, StreamStatus
from atlas_actors.venues.base import (
    InsufficientMargin,
    OrderRejected,
    RateLimited,
    UnknownOutcome,
    VenueError,
    VenueUnavailable,
)
from atlas_actors.venues.binance.codes import error_for_code
from atlas_actors.venues.sim import SimVenue

SYM = "BTCUSDT"


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def venue(**kw: Any) -> SimVenue:
    v = SimVenue(seed=3, **kw)
    v.set_price(SYM, 50_000.0)
    return v


def place_stop(v: SimVenue, cid: str = "sl-1") -> dict[str, Any]:
    return v.place_algo_stop(
        symbol=SYM,
        side="SELL",
        qty=0.01,
        stop_price=49_000.0,
        reduce_only=True,
        client_algo_id=cid,
        working_type="MARK_PRICE",
    )


def buy(v: SimVenue, cid: str) -> dict[str, Any]:
    return v.place_market(symbol=SYM, side="BUY", qty=0.01, reduce_only=False, client_order_id=cid)


def test_timeout_after_apply_order_exists_and_resend_creates_nothing() -> None:
    v = venue()
    v.faults.arm("place_market", kind="timeout_after_apply")
    with pytest.raises(UnknownOutcome):
        buy(v, "e-1")
    found = v.get_order(symbol=SYM, client_order_id="e-1")
    assert found is not None and found["status"] == "FILLED"
    # The order filled, so its id is free again at Binance: a resend would execute twice.
    again = buy(v, "e-1")
    assert again["order_id"] != found["order_id"]
    assert v.get_positions()[SYM]["qty"] == pytest.approx(0.02)
    assert v.faults.injected["timeout_after_apply"] == 1


def test_late_landing_is_not_found_first_then_executes() -> None:
    v = venue()
    fills: list[OrderUpdate] = []
    v.add_listener(lambda ev: fills.append(ev) if isinstance(ev, OrderUpdate) else None)
    v.faults.arm("place_market", kind="late_landing", land_after_ms=300)
    with pytest.raises(UnknownOutcome) as e:
        buy(v, "late-1")
    assert e.value.code == -1007
    assert v.get_order(symbol=SYM, client_order_id="late-1") is None  # "-2013" at first
    assert v.get_positions().get(SYM, {}).get("qty", 0.0) == 0.0
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and v.get_order(symbol=SYM, client_order_id="late-1") is None:
        time.sleep(0.02)
    landed = v.get_order(symbol=SYM, client_order_id="late-1")
    assert landed is not None and landed["status"] == "FILLED"
    assert v.get_positions()[SYM]["qty"] == pytest.approx(0.01)
    assert any(f.client_order_id == "late-1" and f.status == "FILLED" for f in fills)
    assert v.faults.injected["late_landing"] == 1


def test_late_landing_delay_is_drawn_within_the_window_and_only_for_placements() -> None:
    v = venue()
    v.faults.arm("*", kind="late_landing", times=None)
    assert v.faults.draw("get_order") is None
    assert v.faults.draw("cancel_order") is None
    plan = v.faults.draw("place_limit_postonly")
    assert plan is not None and plan.kind == "late_landing"
    assert 200.0 <= plan.land_after_ms <= 2000.0
    with pytest.raises(ValueError, match="late_landing"):
        v.faults.arm("cancel_order", kind="late_landing")
    with pytest.raises(ValueError, match="land_after_ms"):
        v.faults.arm("place_market", kind="late_landing", land_after_ms=-1)


def test_timeout_after_apply_on_algo_and_cancel() -> None:
    v = venue()
    buy(v, "e-1")
    v.faults.arm("place_algo_stop", kind="timeout_after_apply")
    with pytest.raises(UnknownOutcome):
        place_stop(v)
    assert v.get_algo_order(symbol=SYM, client_algo_id="sl-1") is not None
    assert place_stop(v)["algo_id"] == v.get_open_algo_orders(SYM)[0]["algo_id"]
    assert len(v.get_open_algo_orders(SYM)) == 1
    v.faults.arm("cancel_algo", kind="timeout_after_apply")
    with pytest.raises(UnknownOutcome):
        v.cancel_algo(symbol=SYM, algo_id=None, client_algo_id="sl-1")
    assert v.get_open_algo_orders(SYM) == []  # the cancel did happen
    assert v.cancel_algo(symbol=SYM, algo_id=None, client_algo_id="sl-1")["status"] == "CANCELED"


def test_timeout_before_apply_nothing_happened_so_a_resend_places() -> None:
    v = venue()
    v.faults.arm("place_market", kind="timeout_before_apply")
    with pytest.raises(UnknownOutcome):
        buy(v, "e-1")
    assert v.get_order(symbol=SYM, client_order_id="e-1") is None
    assert buy(v, "e-1")["status"] == "FILLED"
    assert v.get_positions()[SYM]["qty"] == pytest.approx(0.01)


def test_reject_with_a_binance_code_is_not_applied() -> None:
    v = venue()
    v.faults.arm("place_market", kind="reject", code=-2019, times=2)
    for _ in range(2):
        with pytest.raises(InsufficientMargin) as ei:
            buy(v, "e-1")
        assert ei.value.code == -2019
    assert v.get_order(symbol=SYM, client_order_id="e-1") is None
    assert buy(v, "e-1")["status"] == "FILLED"  # armed twice: the third call is clean
    v.faults.arm("cancel_order", kind="reject", code=-2022, msg="reduce only")
    with pytest.raises(OrderRejected) as ej:
        v.cancel_order(symbol=SYM, order_id=None, client_order_id="x")
    assert ej.value.code == -2022 and "reduce only" in str(ej.value)
    # -1021 (clock skew) is a request-level VenueError, not an order reject (codes.py).
    v.faults.arm("cancel_order", kind="reject", code=-1021, msg="clock skew")
    with pytest.raises(VenueError) as ek:
        v.cancel_order(symbol=SYM, order_id=None, client_order_id="x")
    assert not isinstance(ek.value, OrderRejected)
    assert ek.value.code == -1021 and "clock skew" in str(ek.value)


def test_rate_limit_carries_retry_after() -> None:
    v = venue()
    v.faults.arm("get_open_algo_orders", kind="rate_limit", retry_after=2.5)
    with pytest.raises(RateLimited) as ei:
        v.get_open_algo_orders(SYM)
    assert ei.value.retry_after == 2.5 and ei.value.code == -1003
    assert v.get_open_algo_orders(SYM) == []


def test_unavailable_is_not_applied() -> None:
    v = venue()
    v.faults.arm("place_algo_stop", kind="unavailable")
    buy(v, "e-1")
    with pytest.raises(VenueUnavailable):
        place_stop(v)
    assert v.get_algo_order(symbol=SYM, client_algo_id="sl-1") is None


def test_invisible_algo_is_acknowledged_but_never_visible_nor_triggers() -> None:
    v = venue()
    buy(v, "e-1")
    v.faults.arm("place_algo_stop", kind="invisible_algo")
    ack = place_stop(v)
    assert ack["status"] == "NEW" and ack["algo_id"]
    assert v.get_open_algo_orders(SYM) == []
    assert v.get_algo_order(symbol=SYM, algo_id=ack["algo_id"]) is None
    v.set_price(SYM, 48_000.0)
    assert v.get_positions()[SYM]["side"] == "LONG"  # the lost stop protected nothing
    assert v.cancel_algo(symbol=SYM, algo_id=ack["algo_id"], client_algo_id=None)["status"] in (
        "NOT_FOUND",
    )


@pytest.mark.parametrize("status", ["CANCELED", "EXPIRED", "REJECTED", "FINISHED"])
def test_exchange_cancels_algo_removes_the_stop_and_keeps_the_position(status: str) -> None:
    """Issue 13 A3: the venue ends an open stop by itself; the position stays, unprotected."""
    v = venue()
    seen: list[Any] = []
    v.add_listener(seen.append)
    buy(v, "e-1")
    place_stop(v)
    assert v.exchange_cancels_algo(SYM, "sl-1", status)
    assert v.get_open_algo_orders(SYM) == []
    assert v.get_positions()[SYM]["side"] == "LONG"
    ups = [e for e in seen if isinstance(e, AlgoUpdate) and e.client_algo_id == "sl-1"]
    assert ups[-1].status == status
    if status == "FINISHED":  # it triggered, its child order expired unfilled: aq = 0
        assert [u.status for u in ups[-2:]] == ["TRIGGERED", "FINISHED"]
        assert ups[-1].executed_qty == 0.0 and ups[-1].order_id
        child = v.get_order(symbol=SYM, order_id=ups[-1].order_id)
        assert child is not None and child["status"] == "EXPIRED"
        assert child["executed_qty"] == 0.0
    assert v.get_algo_order(symbol=SYM, client_algo_id="sl-1")["status"] == status
    assert not v.exchange_cancels_algo(SYM, "sl-1", status)  # no longer open
    with pytest.raises(ValueError, match="status must be one of"):
        v.exchange_cancels_algo(SYM, "sl-1", "FILLED")


def test_armed_exchange_cancels_algo_drops_the_stop_after_it_was_listed() -> None:
    v = venue()
    seen: list[Any] = []
    v.add_listener(seen.append)
    buy(v, "e-1")
    v.faults.arm("place_algo_stop", kind="exchange_cancels_algo", msg="FINISHED")
    place_stop(v)
    assert [a["client_algo_id"] for a in v.get_open_algo_orders(SYM)] == ["sl-1"]  # visible
    assert v.get_open_algo_orders(SYM) == []  # then the venue removed it by itself
    fin = [e for e in seen if isinstance(e, AlgoUpdate) and e.status == "FINISHED"]
    assert fin and fin[-1].executed_qty == 0.0
    assert v.get_positions()[SYM]["side"] == "LONG"
    assert v.faults.injected["exchange_cancels_algo"] == 1
    # a fired stop reports what its child executed
    place_stop(v, "sl-2")
    v.set_price(SYM, 48_000.0)
    fired = [e for e in seen if isinstance(e, AlgoUpdate) and e.client_algo_id == "sl-2"]
    assert fired[-1].status == "FINISHED" and fired[-1].executed_qty == pytest.approx(0.01)


def test_armed_exchange_cancels_algo_also_acts_at_the_next_bar() -> None:
    v = venue()
    buy(v, "e-1")
    v.faults.arm("place_algo_stop", kind="exchange_cancels_algo")
    place_stop(v)
    assert v.get_open_algo_orders(SYM)  # listed once
    bar = {"open_time": 0, "close_time": 59_999, "open": 50_000.0, "high": 50_010.0}
    bar |= {"low": 49_990.0, "close": 50_000.0, "volume": 1.0}
    v.feed_bar(SYM, bar)
    assert v.get_algo_order(symbol=SYM, client_algo_id="sl-1")["status"] == "EXPIRED"


def test_visibility_lag_on_the_injected_clock() -> None:
    clock = Clock()
    v = venue(clock=clock)
    buy(v, "e-1")
    v.faults.visibility_lag_ms = 300
    placed = place_stop(v)
    assert placed["status"] == "NEW"
    assert v.get_open_algo_orders(SYM) == []
    assert v.get_algo_order(symbol=SYM, client_algo_id="sl-1") is None
    clock.t += 0.299
    assert v.get_open_algo_orders(SYM) == []
    clock.t += 0.002
    assert [a["client_algo_id"] for a in v.get_open_algo_orders(SYM)] == ["sl-1"]
    # A resend during the lag would have returned the same algo (idempotent), not a second one.
    assert place_stop(v)["algo_id"] == placed["algo_id"]


def test_visibility_lag_on_the_monotonic_clock_by_default() -> None:
    v = venue()
    buy(v, "e-1")
    v.faults.visibility_lag_ms = 50
    place_stop(v)
    assert v.get_open_algo_orders(SYM) == []
    time.sleep(0.08)
    assert len(v.get_open_algo_orders(SYM)) == 1


def test_latency_uses_the_injected_sleep_and_real_sleep_works() -> None:
    slept: list[float] = []
    v = venue(sleep=slept.append)
    v.faults.arm("*", kind="latency", latency_ms=250, times=2)
    v.get_balances()
    v.get_positions()
    v.get_balances()
    assert slept == [0.25, 0.25]
    real = venue()
    real.faults.arm("get_balances", kind="latency", latency_ms=30)
    t0 = time.monotonic()
    real.get_balances()
    assert time.monotonic() - t0 >= 0.025


def test_probabilistic_faults_are_seeded_and_counted() -> None:
    def run() -> list[bool]:
        v = venue()
        v.faults.set_probability("rate_limit", 0.3, methods=["get_balances"], retry_after=1.0)
        out = []
        for _ in range(200):
            try:
                v.get_balances()
                out.append(False)
            except RateLimited:
                out.append(True)
        assert v.faults.injected["rate_limit"] == sum(out)
        return out

    a, b = run(), run()
    assert a == b
    assert 30 < sum(a) < 90


def test_probabilistic_latency_and_off_switch() -> None:
    slept: list[float] = []
    v = venue(sleep=slept.append)
    v.faults.set_probability("latency", 1.0, latency_ms=10)
    v.get_balances()
    assert slept == [0.01]
    v.faults.set_probability("latency", 0.0)
    v.get_balances()
    assert slept == [0.01]
    v.faults.set_probability("timeout_after_apply", 1.0)
    with pytest.raises(UnknownOutcome):
        buy(v, "e-1")
    v.faults.clear()
    assert not v.faults.active
    assert buy(v, "e-1")["status"] == "FILLED"


def test_stream_disconnect_loses_events_but_rest_state_is_right() -> None:
    v = venue()
    got: list[Any] = []
    v.add_listener(got.append)
    buy(v, "e-1")
    place_stop(v)
    got.clear()
    v.faults.disconnect_stream("user")
    assert [(e.stream, e.status) for e in got if isinstance(e, StreamStatus)] == [
        ("user", "DISCONNECTED")
    ]
    v.feed_bar(
        SYM,
        {
            "open_time": 0,
            "open": 50_000.0,
            "high": 50_000.0,
            "low": 48_000.0,
            "close": 48_500.0,
            "close_time": 59_999,
        },
    )
    assert not any(isinstance(e, (OrderUpdate, AlgoUpdate)) for e in got)  # lost
    assert any(isinstance(e, BarClosed) for e in got)  # the market stream is still up
    algo = v.get_algo_order(symbol=SYM, client_algo_id="sl-1")
    assert algo is not None and algo["status"] == "FINISHED"  # REST knows the truth
    assert v.get_positions()[SYM]["side"] == "NONE"
    v.faults.reconnect_stream("user")
    assert isinstance(got[-1], StreamStatus) and got[-1].status == "CONNECTED"
    buy(v, "e-2")
    assert any(isinstance(e, OrderUpdate) and e.client_order_id == "e-2" for e in got)
    assert v.faults.injected["stream_disconnect"] == 1


def test_disconnect_all_and_clear_reconnects() -> None:
    v = venue()
    got: list[Any] = []
    v.add_listener(got.append)
    v.faults.disconnect_stream()
    v.set_mark_price(SYM, 50_001.0)
    buy(v, "e-1")
    assert all(isinstance(e, StreamStatus) for e in got)
    v.faults.clear()
    statuses = [(e.stream, e.status) for e in got if isinstance(e, StreamStatus)]
    assert statuses == [
        ("market", "DISCONNECTED"),
        ("user", "DISCONNECTED"),
        ("market", "CONNECTED"),
        ("user", "CONNECTED"),
    ]


def test_fault_api_rejects_nonsense() -> None:
    v = venue()
    with pytest.raises(ValueError, match="unknown fault kind"):
        v.faults.arm("place_market", kind="explode")
    with pytest.raises(ValueError, match="unknown venue method"):
        v.faults.arm("place_markte", kind="reject")
    with pytest.raises(ValueError, match="invisible_algo"):
        v.faults.arm("place_market", kind="invisible_algo")
    with pytest.raises(ValueError, match="probability"):
        v.faults.set_probability("reject", 1.5)
    with pytest.raises(ValueError, match="stream"):
        v.faults.disconnect_stream("orders")


def test_write_count_counts_writes_only() -> None:
    v = venue()
    before = v.write_count
    v.get_balances()
    v.get_open_algo_orders(SYM)
    assert v.write_count == before
    buy(v, "e-1")
    v.cancel_order(symbol=SYM, order_id=None, client_order_id="missing")
    assert v.write_count == before + 2


def test_error_for_code_maps_to_the_hierarchy() -> None:
    assert isinstance(error_for_code(-1003, retry_after=3), RateLimited)
    assert isinstance(error_for_code(-2019), InsufficientMargin)
    assert isinstance(error_for_code(-1001), VenueUnavailable)
    e = error_for_code(-2022)
    assert isinstance(e, OrderRejected) and e.code == -2022 and "ReduceOnly" in str(e)
