"""Binance is not polite (issue 13), in-process: SimVenue's ban / slow_reply / market lot
size faults behave as the reference §8 says, the process-wide BanGate keeps every request in
the process during a ban, and an emergency close larger than MARKET_LOT_SIZE.maxQty goes in
reduce-only chunks with their own deterministic client ids, never sending an id twice."""

from __future__ import annotations

import time
from typing import Any

import pytest

from atlas_actors.actors.order_gateway import GatewayPort, Lanes
from atlas_actors.engine import FlattenFailed, close_at_market
from atlas_actors.engine.emergency import chunk_client_id
from atlas_actors.venues.ban_gate import BanGate
from atlas_actors.venues.base import FilterError, RateLimited, VenueUnavailable
from atlas_actors.venues.priority import Priority, request_priority
from atlas_actors.venues.sim import SimVenue

SYM = "BTCUSDT"


def long_venue(qty: float = 1.0, *, market_max: float | None = 0.3, **kw: Any) -> SimVenue:
    v = SimVenue(seed=3, **kw)
    v.add_symbol(SYM, tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=5.0)
    v.set_price(SYM, 50_000.0)
    v.place_market(symbol=SYM, side="BUY", qty=qty, reduce_only=False, client_order_id="open-1")
    if market_max is not None:
        v.set_market_max_qty(SYM, market_max)
    return v


# ====================================================================== MARKET_LOT_SIZE


def test_a_market_order_above_the_market_lot_size_is_refused_with_4005() -> None:
    v = long_venue(1.0, market_max=0.3)
    with pytest.raises(FilterError) as err:
        v.place_market(symbol=SYM, side="SELL", qty=0.5, reduce_only=True, client_order_id="x-1")
    assert err.value.code == -4005
    # LOT_SIZE still governs LIMIT orders: a 0.5 limit is fine
    v.place_limit_postonly(
        symbol=SYM,
        side="SELL",
        qty=0.5,
        price=60_000.0,
        tif="GTX",
        reduce_only=True,
        client_order_id="tp-1",
    )
    assert v.market_max_qty(SYM) == 0.3
    assert SimVenue.from_snapshot(v.snapshot()).market_max_qty(SYM) == 0.3


def test_big_emergency_close_goes_in_reduce_only_chunks_with_their_own_ids() -> None:
    v = long_venue(1.0, market_max=0.3)
    closed, orders = close_at_market(v, SYM, "atl-BTCUSDT-7-fx")
    assert closed == pytest.approx(1.0)
    ids = [o["client_order_id"] for o in orders]
    assert ids == [
        "atl-BTCUSDT-7-fx",
        "atl-BTCUSDT-7.1-fx",
        "atl-BTCUSDT-7.2-fx",
        "atl-BTCUSDT-7.3-fx",
    ]
    assert [o["qty"] for o in orders] == pytest.approx([0.3, 0.3, 0.3, 0.1])
    assert all(o["reduce_only"] for o in orders)
    assert v.get_positions()[SYM]["side"] == "NONE"


class FailsOnce(SimVenue):
    """The venue refuses one given MARKET order (503, not applied) once."""

    fail_cid = ""
    sent: list[str]

    def place_market(self, **kw: Any) -> dict[str, Any]:
        self.sent.append(kw["client_order_id"])
        if kw["client_order_id"] == self.fail_cid:
            self.fail_cid = ""
            raise VenueUnavailable("Service Unavailable.", code=-1001)
        return super().place_market(**kw)


def test_a_retried_big_close_never_sends_a_chunk_id_twice() -> None:
    v = FailsOnce(seed=3)
    v.sent = []
    v.add_symbol(SYM, tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=5.0)
    v.set_price(SYM, 50_000.0)
    v.place_market(symbol=SYM, side="BUY", qty=1.0, reduce_only=False, client_order_id="open-1")
    v.set_market_max_qty(SYM, 0.3)
    v.sent.clear()
    v.fail_cid = "atl-BTCUSDT-7.2-fx"
    # one try only: the close fails after two chunks filled
    with pytest.raises(FlattenFailed):
        close_at_market(v, SYM, "atl-BTCUSDT-7-fx", attempts=1)
    assert v.get_positions()[SYM]["qty"] == pytest.approx(0.4)
    # the whole close again with the same id (a restart): the spent ids are skipped
    closed, orders = close_at_market(v, SYM, "atl-BTCUSDT-7-fx")
    assert closed == pytest.approx(0.4)
    assert v.get_positions()[SYM]["side"] == "NONE"
    # the filled chunks were never sent again; the refused one was resent with its own id
    assert v.sent.count("atl-BTCUSDT-7-fx") == 1 and v.sent.count("atl-BTCUSDT-7.1-fx") == 1
    assert v.sent.count("atl-BTCUSDT-7.2-fx") == 2, v.sent
    assert [o["client_order_id"] for o in orders] == ["atl-BTCUSDT-7.2-fx", "atl-BTCUSDT-7.3-fx"]


def test_chunk_ids_stay_within_36_characters_and_keep_the_role() -> None:
    base = "atl-" + "X" * 27 + "-fx"  # 34 characters
    for k in (1, 12, 123):
        cid = chunk_client_id(base, k)
        assert len(cid) <= 36 and cid.endswith(f".{k}-fx")
    assert len({chunk_client_id(base, k) for k in range(50)}) == 50


# ====================================================================== bans


def test_a_ban_escalates_while_the_caller_goes_on() -> None:
    v = long_venue(0.01, market_max=None)
    v.faults.arm("*", kind="ban", retry_after=0.2, ban_s=0.3, max_ban_s=10.0)
    with pytest.raises(RateLimited) as first:
        v.get_positions()
    assert first.value.retry_after == pytest.approx(0.2)
    waits = []
    for _ in range(3):  # impolite: goes on during the ban
        with pytest.raises(RateLimited) as more:
            v.get_mark_price(SYM)
        assert "banned until" in more.value.msg
        waits.append(more.value.retry_after)
    assert waits[0] == pytest.approx(0.3, abs=0.05)
    assert waits[1] > waits[0] + 0.2 and waits[2] > waits[1] + 0.5, waits  # 0.3, 0.6, 1.2 ...
    assert v.faults.injected["ban"] == 4


def test_a_polite_caller_is_served_once_the_retry_after_has_passed() -> None:
    v = long_venue(0.01, market_max=None)
    v.faults.arm("*", kind="ban", retry_after=0.1, ban_s=5.0)
    with pytest.raises(RateLimited):
        v.get_positions()
    time.sleep(0.15)
    assert v.get_positions()[SYM]["side"] == "LONG"
    assert not v.faults.active  # the ban is spent


def test_during_a_ban_no_request_leaves_the_process_protection_included() -> None:
    v = long_venue(0.01, market_max=None)
    gate = BanGate()
    lanes = Lanes(rate_per_s=1000.0, burst=1000.0)
    try:
        port = GatewayPort(v, SYM, lambda: lanes, gate=gate)
        v.faults.arm("*", kind="ban", retry_after=30.0, ban_s=120.0)
        with pytest.raises(RateLimited):
            port.get_positions()
        with request_priority(Priority.PROTECTION):
            with pytest.raises(RateLimited):
                port.get_open_algo_orders(SYM)  # a visibility check
            with pytest.raises(RateLimited):
                port.emergency.place_market(  # an emergency close
                    symbol=SYM, side="SELL", qty=0.01, reduce_only=True, client_order_id="fx-1"
                )
        with pytest.raises(RateLimited):
            port.place_algo_stop(
                symbol=SYM,
                side="SELL",
                qty=0.01,
                stop_price=40_000.0,
                reduce_only=True,
                client_algo_id="sl-1",
                working_type="MARK_PRICE",
            )
        assert v.faults.injected["ban"] == 1, "a request reached the venue during its ban"
        assert gate.bans == 1 and gate.refused == 3
    finally:
        lanes.stop()


def test_slow_reply_is_applied_and_answers_late() -> None:
    slept: list[float] = []
    v = long_venue(0.01, market_max=None, sleep=slept.append)
    v.faults.arm("place_market", kind="slow_reply", times=1)
    res = v.place_market(
        symbol=SYM, side="BUY", qty=0.01, reduce_only=False, client_order_id="slow-1"
    )
    assert res["status"] == "FILLED"
    assert len(slept) == 1 and 2.0 <= slept[0] <= 12.0
    assert v.faults.injected["slow_reply"] == 1
