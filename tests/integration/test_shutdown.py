"""The tree's graceful stop: resting entry orders are cancelled, protection stays, and the
stop is bounded even when an actor is stuck in a venue call."""

from __future__ import annotations

import threading
import time

from atlas_actors.venues.sim import SimVenue

from .tree_harness import TreeRig, open_algos, seed_long_position


def test_stop_cancels_resting_entries_and_keeps_stops_and_take_profits(tmp_path):
    rig = TreeRig(tmp_path, ["AAAUSDT", "BBBUSDT"])
    seed_long_position(rig, "AAAUSDT")  # LONG 1.0 @ 100, stop placed by recovery
    rig.venue.add_symbol("BBBUSDT", tick_size=0.01, step_size=0.001, min_qty=0.001, min_notional=5)
    rig.venue.set_price("BBBUSDT", 50.0)
    rig.start()
    v = rig.venue
    v.place_limit_postonly(  # a take-profit of the open position: reduce-only, stays
        symbol="AAAUSDT",
        side="SELL",
        qty=0.4,
        price=110.0,
        tif="GTX",
        reduce_only=True,
        client_order_id="atl-AAAUSDT-7-t1",
    )
    v.place_limit_postonly(  # a resting entry: would open while nobody watches, cancelled
        symbol="BBBUSDT",
        side="BUY",
        qty=1.0,
        price=45.0,
        tif="GTX",
        reduce_only=False,
        client_order_id="atl-BBBUSDT-3-e",
    )
    v.place_limit_postonly(  # not ours (another prefix): never touched
        symbol="BBBUSDT",
        side="BUY",
        qty=1.0,
        price=44.0,
        tif="GTX",
        reduce_only=False,
        client_order_id="manual-entry-1",
    )
    rig.stop()
    assert [o["client_order_id"] for o in v.get_open_orders("AAAUSDT")] == ["atl-AAAUSDT-7-t1"]
    assert [o["client_order_id"] for o in v.get_open_orders("BBBUSDT")] == ["manual-entry-1"]
    assert len(open_algos(v, "AAAUSDT")) == 1
    cancels = [r for r in rig.records if r.get("kind") == "order_cancel"]
    assert [c["client_id"] for c in cancels] == ["atl-BBBUSDT-3-e"]


class StuckAfterStart(SimVenue):
    """Every open-orders read blocks (a venue call that never returns) once armed."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.stuck = threading.Event()
        self.release = threading.Event()

    def get_open_orders(self, symbol):
        if self.stuck.is_set():
            self.release.wait(60)
        return super().get_open_orders(symbol)


def test_stop_is_bounded_when_the_venue_hangs(tmp_path):
    venue = StuckAfterStart(starting_balance=100_000.0)
    rig = TreeRig(tmp_path, ["AAAUSDT"], venue=venue)
    seed_long_position(rig, "AAAUSDT")
    rig.start()
    venue.stuck.set()
    rig.tree.symbol_ref("AAAUSDT").tell({"msg": "recover", "why": "test"})  # stuck inside
    t0 = time.monotonic()
    try:
        rig.tree.stop(timeout_s=3.0)
        elapsed = time.monotonic() - t0
    finally:
        venue.release.set()
        rig.sink.close()
        rig.store.close()
    assert elapsed < 20.0  # bounded (3 s asked; a wide margin for a loaded machine)
    assert len(open_algos(venue, "AAAUSDT")) == 1  # the stop stays on the exchange
