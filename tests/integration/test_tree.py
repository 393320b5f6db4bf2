"""The supervised actor tree with real pykka actors, a real LMDB store and SimVenue."""

from __future__ import annotations

import threading
import time

import pytest

from atlas_actors.actors.order_gateway import GatewayPort, Lanes
from atlas_actors.actors.sentinel import flatten_position
from atlas_actors.venues.sim import SimVenue

from .tree_harness import TreeRig, open_algos, seed_long_position, wait_for


@pytest.fixture
def rigs():
    made: list[TreeRig] = []
    yield made
    for rig in made:
        try:
            rig.stop()
        except Exception:  # noqa: BLE001 - a test already failed; clean up what is left
            pass


def test_start_recovers_a_lost_stop_then_confirms_after_crash(tmp_path, rigs):
    rig = TreeRig(tmp_path, ["AAAUSDT", "BBBUSDT"])
    rigs.append(rig)
    seed_long_position(rig, "AAAUSDT", stop=95.0)
    assert open_algos(rig.venue, "AAAUSDT") == []  # the venue lost the stop
    rig.start()

    algos = open_algos(rig.venue, "AAAUSDT")
    assert len(algos) == 1
    cid = algos[0]["client_algo_id"]
    assert rig.tree.state("AAAUSDT")["position_state"]["sl_algo"]["client_algo_id"] == cid
    assert algos[0]["side"] == "SELL" and algos[0]["stop_price"] == pytest.approx(95.0)
    recov = rig.of_kind("risk", event_type="SL_RECOVER", symbol="AAAUSDT")
    assert recov and "CREATED" in recov[-1]["reason"]
    assert rig.lifecycle("AAAUSDT")[-1] == "READY"

    # crash while holding the position: restarted, stop CONFIRMED (no new write), READY again
    writes_before = rig.venue.write_count
    ref = rig.tree.symbol_ref("AAAUSDT")
    ref.tell({"msg": "inject_crash"})
    assert wait_for(lambda: rig.lifecycle("AAAUSDT").count("READY") >= 2, 10)
    states = rig.lifecycle("AAAUSDT")
    crash_at = states.index("CRASHED")
    assert states[crash_at:] == ["CRASHED", "STARTING", "RECOVERING", "READY"]
    recov = rig.of_kind("risk", event_type="SL_RECOVER", symbol="AAAUSDT")
    assert "CONFIRMED" in recov[-1]["reason"]
    assert rig.venue.write_count == writes_before
    assert [a["client_algo_id"] for a in open_algos(rig.venue, "AAAUSDT")] == [cid]
    assert rig.alerts.sent and rig.alerts.sent[-1][0] in ("actor_crashed", "crash")
    # the other symbol was never disturbed
    assert "CRASHED" not in rig.lifecycle("BBBUSDT")


def test_no_open_before_ready_records_prove_the_order(tmp_path, rigs):
    rig = TreeRig(tmp_path, ["AAAUSDT"])
    rigs.append(rig)
    seed_long_position(rig, "AAAUSDT")
    rig.start()
    recs = rig.records
    ready_at = next(
        i for i, r in enumerate(recs) if r.get("kind") == "lifecycle" and r.get("state") == "READY"
    )
    for r in recs[:ready_at]:
        assert not (r.get("kind") == "candidate" and r.get("action") == "OPEN")
        assert not (r.get("kind") == "order" and r.get("role") in ("e", "entry"))


def test_invisible_recovered_stop_is_flattened_and_frozen(tmp_path, rigs):
    venue = SimVenue(starting_balance=100_000.0)
    rig = TreeRig(tmp_path, ["AAAUSDT"], venue=venue)
    rigs.append(rig)
    seed_long_position(rig, "AAAUSDT")
    venue.faults.arm("place_algo_stop", kind="invisible_algo", times=None)
    t0 = time.monotonic()
    rig.start()
    elapsed = time.monotonic() - t0
    pos = venue.get_positions().get("AAAUSDT", {})
    assert pos.get("side", "NONE") == "NONE"
    flats = rig.of_kind("risk", event_type="EMERGENCY_FLAT", symbol="AAAUSDT")
    assert len(flats) == 1
    assert "not visible" in flats[0]["reason"]
    st = rig.tree.state("AAAUSDT")
    now = int(rig.clock_s)
    assert st["cooldown_until"]["freeze"] >= now + 1800 - 1
    assert st["cooldown_until"]["loss"] >= now + 1800 - 1
    assert rig.status("AAAUSDT") == "FROZEN"
    assert elapsed < 5.0  # 1 s deadline plus actor start-up, with a wide margin
    assert any(kind == "emergency_flat" for kind, _ in rig.alerts.sent) or flats


def test_stop_visible_after_300ms_lag_is_not_flattened(tmp_path, rigs):
    venue = SimVenue(starting_balance=100_000.0)
    rig = TreeRig(tmp_path, ["AAAUSDT"], venue=venue)
    rigs.append(rig)
    seed_long_position(rig, "AAAUSDT")
    venue.faults.visibility_lag_ms = 300
    rig.start()
    assert venue.get_positions()["AAAUSDT"]["side"] == "LONG"
    assert rig.of_kind("risk", event_type="EMERGENCY_FLAT") == []
    cid = rig.tree.state("AAAUSDT")["position_state"]["sl_algo"]["client_algo_id"]
    assert [a["client_algo_id"] for a in open_algos(venue, "AAAUSDT")] == [cid]
    assert rig.status("AAAUSDT") == "READY"


def test_sentinel_watch_flattens_within_the_deadline(tmp_path, rigs):
    venue = SimVenue(starting_balance=100_000.0)
    rig = TreeRig(tmp_path, ["AAAUSDT"], venue=venue)
    rigs.append(rig)
    rig.start()
    venue.add_symbol("AAAUSDT", tick_size=0.01, step_size=0.001, min_qty=0.001, min_notional=5.0)
    venue.set_price("AAAUSDT", 100.0)
    venue.place_market(
        symbol="AAAUSDT", side="BUY", qty=2.0, reduce_only=False, client_order_id="ext-1"
    )
    venue.faults.arm("place_algo_stop", kind="invisible_algo", times=1)
    venue.place_algo_stop(
        symbol="AAAUSDT",
        side="SELL",
        qty=2.0,
        stop_price=90.0,
        reduce_only=True,
        client_algo_id="atl-AAAUSDT-9-sl",
        working_type="MARK_PRICE",
    )
    t0 = time.monotonic()
    rig.tree.sentinel.proxy().watch("AAAUSDT", "atl-AAAUSDT-9-sl", 1000).get()
    assert wait_for(lambda: venue.get_positions()["AAAUSDT"]["side"] == "NONE", 5.0)
    flat_after = time.monotonic() - t0
    assert 0.9 <= flat_after < 3.0  # waited the full 1 s deadline, then flattened promptly
    assert wait_for(lambda: rig.of_kind("risk", event_type="EMERGENCY_FLAT"), 5.0)
    assert wait_for(lambda: rig.status("AAAUSDT") == "FROZEN", 5.0)


class SlowForOneSymbol(SimVenue):
    """A venue whose writes for one symbol hang (a stuck connection for that symbol)."""

    def __init__(self, slow_symbol: str, delay_s: float, **kw):
        super().__init__(**kw)
        self.slow_symbol = slow_symbol
        self.delay_s = delay_s

    def place_limit_postonly(self, **kw):
        if kw["symbol"] == self.slow_symbol:
            time.sleep(self.delay_s)
        return super().place_limit_postonly(**kw)


def test_stuck_symbol_does_not_delay_another_symbols_emergency_flatten():
    venue = SlowForOneSymbol("AAAUSDT", 3.0, starting_balance=100_000.0)
    for sym in ("AAAUSDT", "BBBUSDT"):
        venue.add_symbol(sym, tick_size=0.01, step_size=0.001, min_qty=0.001, min_notional=5.0)
        venue.set_price(sym, 100.0)
    venue.place_market(
        symbol="BBBUSDT", side="BUY", qty=1.0, reduce_only=False, client_order_id="x-1"
    )
    lanes = Lanes(rate_per_s=1000, burst=1000)
    try:
        slow = GatewayPort(venue, "AAAUSDT", lambda: lanes)
        fast = GatewayPort(venue, "BBBUSDT", lambda: lanes)
        stuck = threading.Thread(
            target=lambda: slow.place_limit_postonly(
                symbol="AAAUSDT",
                side="BUY",
                qty=1.0,
                price=99.0,
                tif="GTX",
                reduce_only=False,
                client_order_id="a-1",
            ),
            daemon=True,
        )
        stuck.start()
        time.sleep(0.1)  # AAAUSDT's lane is now blocked for 3 s
        t0 = time.monotonic()
        res = flatten_position(fast.emergency, "BBBUSDT", "b-fx")
        took = time.monotonic() - t0
        assert res["qty"] == pytest.approx(1.0)
        assert venue.get_positions()["BBBUSDT"]["side"] == "NONE"
        assert took < 1.0  # not queued behind the 3 s call
        # and a normal lane for another symbol is not blocked either
        t0 = time.monotonic()
        fast.place_limit_postonly(
            symbol="BBBUSDT",
            side="BUY",
            qty=1.0,
            price=90.0,
            tif="GTX",
            reduce_only=False,
            client_order_id="b-2",
        )
        assert time.monotonic() - t0 < 1.0
        stuck.join(5)
    finally:
        lanes.stop()


def test_restart_intensity_exceeded_halts_and_keeps_protection(tmp_path, rigs):
    rig = TreeRig(tmp_path, ["AAAUSDT"], restart_intensity=2, restart_window_s=60.0)
    rigs.append(rig)
    seed_long_position(rig, "AAAUSDT")
    rig.start()
    cid = rig.tree.state("AAAUSDT")["position_state"]["sl_algo"]["client_algo_id"]
    for i in range(3):
        ready_count = rig.lifecycle("AAAUSDT").count("READY") + rig.lifecycle("AAAUSDT").count(
            "HALTED"
        )
        rig.tree.symbol_ref("AAAUSDT").tell({"msg": "inject_crash"})
        assert wait_for(
            lambda n=ready_count: (
                rig.lifecycle("AAAUSDT").count("READY") + rig.lifecycle("AAAUSDT").count("HALTED")
                > n
            ),
            10,
        ), (i, rig.lifecycle("AAAUSDT"))
    assert rig.status("AAAUSDT") == "HALTED"
    assert any(kind == "halted" for kind, _ in rig.alerts.sent)
    assert [a["client_algo_id"] for a in open_algos(rig.venue, "AAAUSDT")] == [cid]
    assert rig.venue.get_positions()["AAAUSDT"]["side"] == "LONG"
    st = rig.tree.status()["symbols"][0]
    assert st["state"] == "HALTED" and st["open_block_reason"] == "actor state HALTED"


def test_shared_actor_crash_is_restarted(tmp_path, rigs):
    rig = TreeRig(tmp_path, ["AAAUSDT"])
    rigs.append(rig)
    rig.start()
    old = rig.tree.gateway
    old.tell({"msg": "not a proxy call"})  # ignored by pykka's default on_receive
    old.proxy().crash("test")  # raises in the actor: a proxy call's failure is returned ...
    old.stop()  # ... so kill it for real, as a crash would
    assert wait_for(lambda: rig.tree.gateway is not old and rig.tree.gateway.is_alive(), 10)
    assert rig.tree.critical_healthy()
    assert rig.of_kind("lifecycle", state="RESTART", why="OrderGateway")


def test_requests_queued_when_the_gateway_stops_fail_fast_as_not_sent():
    from atlas_actors.venues.base import VenueUnavailable

    venue = SlowForOneSymbol("AAAUSDT", 1.0, starting_balance=100_000.0)
    venue.add_symbol("AAAUSDT", tick_size=0.01, step_size=0.001, min_qty=0.001, min_notional=5.0)
    venue.set_price("AAAUSDT", 100.0)
    lanes = Lanes(rate_per_s=1000, burst=1000)

    def order(cid: str):
        return lambda: venue.place_limit_postonly(
            symbol="AAAUSDT",
            side="BUY",
            qty=1.0,
            price=90.0,
            tif="GTX",
            reduce_only=False,
            client_order_id=cid,
        )

    first = lanes.submit("AAAUSDT", order("q-1"))  # occupies the lane for 1 s
    queued = lanes.submit("AAAUSDT", order("q-2"))
    time.sleep(0.1)
    lanes.stop()
    assert first.result(timeout=5)["client_order_id"] == "q-1"
    with pytest.raises(VenueUnavailable):
        queued.result(timeout=5)
    assert venue.get_order(symbol="AAAUSDT", client_order_id="q-2") is None  # never sent
