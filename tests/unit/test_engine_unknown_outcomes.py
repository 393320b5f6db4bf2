"""Duplicate executions and written-off entries (issue 13, B1/B2/B15), driven on SymbolEngine
with a real SimVenue restored from a seed of real trading and, where it matters, a real LMDB
store - the venue behaves like Binance: a filled order's client id executes again, and an order
answered "unknown" can execute seconds after a query said "not found" (late_landing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from atlas_actors.domain.txn import make_client_id
from atlas_actors.engine.emergency import close_at_market
from atlas_actors.venues.sim import SimVenue
from tests.chaos.rig import PREFIX, SYMBOL, stage_seeds
from tests.unit.test_engine_safety import _bar, _engine, _records, _venue


def _wait(cond: Callable[[], Any], timeout_s: float = 6.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        v = cond()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(0.02)


def _covering_stop(venue: SimVenue) -> dict[str, Any] | None:
    pos = venue.get_positions().get(SYMBOL) or {}
    for a in venue.get_open_algo_orders(SYMBOL):
        if a["reduce_only"] and a["qty"] >= float(pos.get("qty") or 0.0) - 1e-9:
            return a
    return None


def _entry_orders(venue: SimVenue) -> list[dict[str, Any]]:
    return [o for o in venue.snapshot()["orders"] if str(o["client_order_id"]).endswith("-e")]


def test_a_late_landing_entry_executes_once_and_is_protected():
    """B1: the entry is answered "unknown", a query finds nothing, and the venue executes it
    0.3 s later. The engine neither writes it off (it would then be an unprotected position the
    shard calls flat) nor sends anything again: the fill is its entry's, and it gets a stop."""
    venue = _venue("FLAT")
    engine = _engine(venue, "FLAT", None)
    for method in ("place_limit_postonly", "place_market"):
        venue.faults.arm(method, kind="late_landing", land_after_ms=300)
    bars = stage_seeds()["FLAT"].after
    _bar(venue, engine, bars[0])
    sent = [c for c in venue.sent if c.endswith("-e")]
    assert len(sent) == 1
    assert _wait(lambda: venue.get_order(symbol=SYMBOL, client_order_id=sent[0]))
    for bar in bars[1:4]:
        _bar(venue, engine, bar)
    assert [c for c in venue.sent if c.endswith("-e")] == sent  # never resent, no new entry
    assert len(_entry_orders(venue)) == 1
    pos = venue.get_positions()[SYMBOL]
    (entry,) = _entry_orders(venue)
    assert entry["type"] == "MARKET" and pos["qty"] == pytest.approx(entry["executed_qty"])
    assert engine.state.position_state.side == pos["side"] != "NONE"
    assert engine.state.position_state.qty_total == pytest.approx(pos["qty"])
    assert _covering_stop(venue) is not None
    assert _records(engine, "order", outcome="unknown_pending")


def test_an_entry_never_found_is_reconciled_from_the_venue_not_resent(tmp_path):
    """B1: still not found after the whole window of queries: the engine reconciles with the
    venue (maybe filled) and gives the entry up; it is never sent again."""
    from atlas_actors.engine.unresolved import RESOLVE_DELAYS_S

    venue = _venue("FLAT")
    engine = _engine(venue, "FLAT", None)
    for method in ("place_limit_postonly", "place_market"):
        venue.faults.arm(method, kind="timeout_before_apply")
    _bar(venue, engine, stage_seeds()["FLAT"].after[0])
    (cid,) = [c for c in venue.sent if c.endswith("-e")]
    assert engine.unresolved == [cid]
    assert (engine.state.pending.get("entry") or {}).get("cid") == cid  # not written off yet
    for _ in RESOLVE_DELAYS_S:
        engine.resolve_unknown()
    assert engine.unresolved == []
    assert [r["client_id"] for r in _records(engine, "order", outcome="unknown_not_found")] == [cid]
    assert "entry" not in engine.state.pending and engine.state.position_state.side == "NONE"
    assert _records(engine, "reconcile")
    assert [c for c in venue.sent if c.endswith("-e")] == [cid]


def test_a_fill_of_an_unknown_entry_while_flat_is_adopted_and_protected_at_once():
    """B2: an entry the shard wrote off (a reply slower than the gateway's wait, an actor
    replaced while its request was in flight) fills later. The shard is flat and does not know
    the id: the fill is adopted and a protective stop placed at once, not at the next audit."""
    venue = _venue("FLAT")
    engine = _engine(venue, "FLAT", None)
    assert engine.state.position_state.side == "NONE"
    stray = make_client_id(PREFIX, SYMBOL, engine.state.seq + 7, "e")
    price = float(venue.get_mark_price(SYMBOL))
    qty = venue.get_filters(SYMBOL).round_qty(200.0 / price)
    venue.place_market(symbol=SYMBOL, side="BUY", qty=qty, reduce_only=False, client_order_id=stray)
    pos = venue.get_positions()[SYMBOL]
    assert pos["side"] == "LONG"
    assert engine.state.position_state.side == "LONG"
    assert engine.state.position_state.qty_total == pytest.approx(pos["qty"])
    stop = _covering_stop(venue)
    assert stop is not None and stop["side"] == "SELL"
    assert stop["client_algo_id"] == engine.state.position_state.sl_algo.client_algo_id


def test_an_emergency_close_retry_looks_its_id_up_and_never_closes_twice():
    """B1 (emergency.py): the first close answers "unknown" and lands late; meanwhile the
    position re-opens partly. The retry must not send the same id again (Binance would
    execute a filled id again): it finds the close by its id and stops there."""
    venue = _venue("PRE_TP1")
    side = venue.get_positions()[SYMBOL]["side"]
    assert side == "LONG"
    venue.faults.arm("place_market", kind="late_landing", land_after_ms=20)
    cid = make_client_id(PREFIX, SYMBOL, 9_000, "fx")
    reopened: list[float] = []

    def sleep(s: float) -> None:
        _wait(lambda: venue.get_order(symbol=SYMBOL, client_order_id=cid), 3.0)
        if not reopened:
            pos = venue.get_positions().get(SYMBOL) or {}
            assert pos.get("side", "NONE") == "NONE"  # the late close landed
            price = float(venue.get_mark_price(SYMBOL))
            q = venue.get_filters(SYMBOL).round_qty(200.0 / price)
            venue.place_market(
                symbol=SYMBOL, side="BUY", qty=q, reduce_only=False, client_order_id="other-1"
            )
            reopened.append(q)

    qty, orders = close_at_market(venue, SYMBOL, cid, sleep=sleep)
    (res,) = orders
    assert res["client_order_id"] == cid and res["status"] == "FILLED"
    closes = [o for o in venue.snapshot()["orders"] if o["client_order_id"] == cid]
    assert len(closes) == 1, closes
    assert venue.get_positions()[SYMBOL]["qty"] == pytest.approx(reopened[0])


def test_an_id_handed_out_while_the_disk_refused_writes_is_never_reused(tmp_path):
    """B15: the disk refuses the flush, the emergency close goes out all the same (its id
    only in memory) and fills; the process dies. The restarted engine must not hand that id
    out again: Binance would accept it (the order filled) and execute it again."""
    from atlas_actors.domain import core
    from atlas_actors.store import StateStore
    from tests.chaos.test_disk_full import PAD_EVENTS, disk_full

    venue = _venue("PRE_TP1")
    store = StateStore(tmp_path / "state")
    engine = _engine(venue, "PRE_TP1", store)
    engine._persist(flush=True)  # the engine is running: its shard (and reservation) durable
    for _ in range(PAD_EVENTS):
        store.append_event({"kind": "padding", "blob": "x" * 1000})
    store.flush()
    with disk_full(tmp_path / "state" / "data.mdb"):
        store.append_event({"kind": "padding", "blob": "x" * 200_000})  # the file must grow
        engine.emergency_flatten("test: operator flatten")
    (used,) = [c for c in venue.sent if c.endswith("-fx")]
    assert venue.get_order(symbol=SYMBOL, client_order_id=used)["status"] == "FILLED"  # type: ignore[index]
    assert engine.store_error  # the flush before the close failed
    store.close(flush=False)  # the crash: what was only buffered is gone

    with StateStore(tmp_path / "state") as again:
        restarted = _engine_from_store(venue, again)
        ids = []
        state = restarted.state
        for _ in range(20):
            state, cid = core.next_client_id(state, "fx", PREFIX)
            ids.append(cid)
        assert used not in ids
        assert min(int(c.rsplit("-", 2)[-2]) for c in ids) > int(used.rsplit("-", 2)[-2])


def _engine_from_store(venue: SimVenue, store: Any) -> Any:
    from atlas_actors.domain.params import default_params
    from atlas_actors.engine import SymbolEngine
    from atlas_actors.events import MemorySink

    return SymbolEngine(
        SYMBOL,
        venue=venue,
        params=default_params(),
        store=store,
        sink=MemorySink(),
        clock=venue.now,
        prefix=PREFIX,
    )


def test_an_unknown_emergency_close_is_looked_up_at_once_not_after_a_back_off():
    """The close was applied but its reply lost: the query right after finds it - no back-off
    (the position is unprotected while it waits) and no second request."""
    venue = _venue("PRE_TP1")
    qty = venue.get_positions()[SYMBOL]["qty"]
    venue.faults.arm("place_market", kind="timeout_after_apply")
    cid = make_client_id(PREFIX, SYMBOL, 9_001, "fx")
    sleeps: list[float] = []
    closed, orders = close_at_market(venue, SYMBOL, cid, sleep=sleeps.append, fresh_id=True)
    (res,) = orders
    assert sleeps == [] and closed == pytest.approx(qty)
    assert res["client_order_id"] == cid and res["status"] == "FILLED"
    assert [c for c in venue.sent if c == cid] == [cid]
