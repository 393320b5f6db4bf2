"""SymbolEngine's red-line paths, driven directly: a real SimVenue restored from a seed of real
trading (tests/chaos/rig.py), a real LMDB StateStore in tmp_path, no actors.

Each test guards one red line that only slow chaos tests (or nothing) caught before:
write-ahead of client ids (the commit's flush, the emergency close's flush), unknown outcomes
resolved by client id (never a resend with a new id), and an invisible stop flattened on the
in-process / backtest path (SyncVisibility).
"""

from __future__ import annotations

from typing import Any

import pytest

from atlas_actors.domain.events import AlgoUpdate, MarkPrice, OrderUpdate
from atlas_actors.domain.params import default_params
from atlas_actors.engine import SymbolEngine
from atlas_actors.events import MemorySink
from atlas_actors.store import StateStore
from atlas_actors.venues.sim import SimVenue
from tests.chaos.rig import PREFIX, SYMBOL, stage_seeds


class Crash(BaseException):
    """The process dies right after the venue applied a request (not a VenueError: nothing
    in the engine handles it)."""


class CrashingVenue(SimVenue):
    """SimVenue that "kills the process" right after it applied an order with a given role."""

    crash_role: str | None = None
    sent: list[str]

    def _after(self, cid: str) -> None:
        if self.crash_role is not None and cid.endswith("-" + self.crash_role):
            raise Crash(cid)

    def place_limit_postonly(self, **kw: Any) -> dict[str, Any]:
        self.sent.append(kw["client_order_id"])  # every request, whatever its outcome
        res = super().place_limit_postonly(**kw)
        self._after(kw["client_order_id"])
        return res

    def place_market(self, **kw: Any) -> dict[str, Any]:
        self.sent.append(kw["client_order_id"])
        res = super().place_market(**kw)
        self._after(kw["client_order_id"])
        return res


def _venue(stage: str) -> CrashingVenue:
    venue = CrashingVenue.from_snapshot(stage_seeds()[stage].snapshot)
    assert isinstance(venue, CrashingVenue)
    venue.sent = []
    return venue


def _engine(venue: SimVenue, stage: str, store: StateStore | None) -> SymbolEngine:
    seed = stage_seeds()[stage]
    if store is not None:
        store.set_symbol_state(SYMBOL, seed.state)
        store.flush()
    engine = SymbolEngine(
        SYMBOL,
        venue=venue,
        params=default_params(),
        store=store,
        sink=MemorySink(),
        clock=venue.now,
        prefix=PREFIX,
    )
    if store is None:
        from atlas_actors.domain.records import SymbolState

        engine.state = SymbolState.from_dict(seed.state)

    def route(ev: Any) -> None:
        if isinstance(ev, OrderUpdate):
            engine.on_order_update(ev)
        elif isinstance(ev, AlgoUpdate):
            engine.on_algo_update(ev)
        elif isinstance(ev, MarkPrice):
            engine.on_mark_price(ev.mark_price, ev.funding_rate)

    venue.add_listener(route)
    return engine


def _bar(venue: SimVenue, engine: SymbolEngine, bar: dict[str, Any]) -> None:
    venue.feed_bar(SYMBOL, bar)
    engine.on_bar(dict(bar))


def _records(engine: SymbolEngine, kind: str, **match: Any) -> list[dict[str, Any]]:
    return [
        r
        for r in engine.sink.records
        if r.get("kind") == kind and all(r.get(k) == v for k, v in match.items())
    ]


def _seq_of(cid: str) -> int:
    return int(cid.rsplit("-", 2)[-2])


def _durable_seq(path: Any) -> int:
    with StateStore(path) as store:
        return int(store.get_symbol_state(SYMBOL)["seq"])


def test_the_seed_bar_opens():
    """The premise of the tests below: the FLAT seed's next bar sends an entry."""
    venue = _venue("FLAT")
    engine = _engine(venue, "FLAT", None)
    _bar(venue, engine, stage_seeds()["FLAT"].after[0])
    opens = _records(engine, "candidate", action="OPEN")
    assert len(opens) == 1
    assert [c for c in venue.sent if c.endswith("-e")], venue.sent
    # ...and the position it opened is protected by a reduce-only Algo stop covering it
    pos = venue.get_positions()[SYMBOL]
    assert pos["side"] == engine.state.position_state.side != "NONE"
    (algo,) = venue.get_open_algo_orders(SYMBOL)
    assert algo["client_algo_id"] == engine.state.position_state.sl_algo.client_algo_id
    assert algo["reduce_only"] is True and algo["qty"] == pytest.approx(pos["qty"])
    assert not [r for r in engine.sink.records if r.get("event_type") == "EMERGENCY_FLAT"]


def test_entry_client_id_is_durable_before_the_entry_is_sent(tmp_path):
    """Write-ahead in `_commit`: the process dies right after the venue took the entry; the
    shard on disk already holds the entry's client id, so the restarted engine can find it
    (and never hands out the same id again)."""
    venue = _venue("FLAT")
    venue.crash_role = "e"
    store = StateStore(tmp_path / "state")
    engine = _engine(venue, "FLAT", store)
    with pytest.raises(Crash) as crashed:
        _bar(venue, engine, stage_seeds()["FLAT"].after[0])
    cid = str(crashed.value)
    store.close(flush=False)  # the crash: whatever was only buffered is gone
    assert venue.get_order(symbol=SYMBOL, client_order_id=cid)  # it did reach the venue
    assert _durable_seq(tmp_path / "state") >= _seq_of(cid)


def test_emergency_close_id_is_durable_before_the_close_is_sent(tmp_path):
    """Write-ahead in `_flatten`: the fresh emergency client id is flushed before
    `place_market`. Without it a crash inside the flush interval rewinds the sequence and a
    later close reuses the id (which the venue's duplicate-id handling then calls done)."""
    venue = _venue("PRE_TP1")
    venue.crash_role = "fx"
    store = StateStore(tmp_path / "state")
    engine = _engine(venue, "PRE_TP1", store)
    assert engine.state.position_state.side != "NONE"
    with pytest.raises(Crash) as crashed:
        engine.emergency_flatten("test: operator flatten")
    cid = str(crashed.value)
    store.close(flush=False)
    assert venue.get_positions().get(SYMBOL, {}).get("side", "NONE") == "NONE"
    assert _durable_seq(tmp_path / "state") >= _seq_of(cid)


def test_unknown_emergency_close_is_found_by_its_client_id():
    """The emergency close's reply is lost but the close was applied: it is found by its
    client id and booked as that close (its id, its quantity), not as "already flat"."""
    venue = _venue("PRE_TP1")
    engine = _engine(venue, "PRE_TP1", None)
    qty = venue.get_positions()[SYMBOL]["qty"]
    venue.faults.arm("place_market", kind="timeout_after_apply", times=1)
    engine.emergency_flatten("test: operator flatten")
    assert venue.get_positions().get(SYMBOL, {}).get("side", "NONE") == "NONE"
    fx = [c for c in venue.sent if c.endswith("-fx")]
    assert len(fx) == 1  # one request: the lookup answered, no second try
    (flat,) = [r for r in engine.sink.records if r.get("event_type") == "EMERGENCY_FLAT"]
    assert flat["client_ids"] == fx and flat["qty"] == pytest.approx(qty)
    assert flat["order_ids"] and flat["price"] > 0


@pytest.mark.parametrize("fault", ["timeout_after_apply", "timeout_before_apply"])
def test_unknown_entry_outcome_is_resolved_by_client_id_never_resent(tmp_path, fault):
    """An entry whose reply is lost: the engine asks the venue for that client id. Applied:
    it is kept (pending or filled) and no other entry is sent. Not applied: it stays unresolved
    over the window of queries, then is given up (order record `unknown_not_found`) after a
    reconcile with the venue; nothing is resent, with any id."""
    venue = _venue("FLAT")
    store = StateStore(tmp_path / "state")
    engine = _engine(venue, "FLAT", store)
    for method in ("place_limit_postonly", "place_market"):
        venue.faults.arm(method, kind=fault, times=1)
    _bar(venue, engine, stage_seeds()["FLAT"].after[0])
    entries = [c for c in venue.sent if c.endswith("-e")]
    assert len(entries) == 1  # one entry request, never a second one (same id or new)
    st = engine.state
    cid = entries[0]
    if fault == "timeout_after_apply":  # applied, looked up by client id, kept
        assert venue.get_order(symbol=SYMBOL, client_order_id=cid)
        known = (st.pending.get("entry") or {}).get("cid") == cid or (
            st.position_state.last_orders.entry.client_order_id == cid
            and st.position_state.side != "NONE"
        )
        assert known, st.to_dict()
        assert not _records(engine, "order", outcome="unknown_not_found")
    else:  # not found once: kept unresolved (it may land later), given up after the window
        kept = _records(engine, "order", outcome="unknown_pending")
        assert [(r["role"], r["client_id"]) for r in kept] == [("entry", cid)]
        assert engine.unresolved == [cid]
        while engine.unresolved:
            engine.resolve_unknown()
        lost = _records(engine, "order", outcome="unknown_not_found")
        assert [(r["role"], r["client_id"]) for r in lost] == [("entry", cid)]
        assert venue.get_order(symbol=SYMBOL, client_order_id=cid) is None
        st = engine.state
        assert "entry" not in st.pending and st.position_state.side == "NONE"
        assert [c for c in venue.sent if c.endswith("-e")] == [cid]
    store.close()


def test_invisible_stop_in_a_backtest_is_flattened_and_frozen():
    """The in-process path (SyncVisibility, as in backtests): the venue swallows the entry's
    protective stop, the engine sees it is not listed and closes the position at market with
    reduceOnly, records EMERGENCY_FLAT and sets the loss and freeze cooldowns (30 minutes)."""
    venue = _venue("FLAT")
    engine = _engine(venue, "FLAT", None)
    venue.faults.arm("place_algo_stop", kind="invisible_algo", times=1)
    _bar(venue, engine, stage_seeds()["FLAT"].after[0])
    flats = [r for r in engine.sink.records if r.get("event_type") == "EMERGENCY_FLAT"]
    assert len(flats) == 1, [r for r in engine.sink.records if r.get("kind") == "risk"]
    assert "not visible" in flats[0]["reason"]
    assert venue.get_positions().get(SYMBOL, {}).get("side", "NONE") == "NONE"
    fx = [c for c in venue.sent if c.endswith("-fx")]
    assert len(fx) == 1
    assert venue.get_order(symbol=SYMBOL, client_order_id=fx[0])["reduce_only"] is True
    cd = engine.state.cooldown_until
    now = engine.now()
    freeze_s = default_params().cooldown.emergency_freeze_s
    assert freeze_s == 1800
    assert cd.freeze >= now + freeze_s - 1 and cd.loss >= now + freeze_s - 1
    assert engine.state.position_state.side == "NONE"


def test_no_opening_order_when_the_write_ahead_flush_fails(tmp_path):
    """The disk refuses the write-ahead flush (RLIMIT_FSIZE, as in the chaos disk-full test):
    the engine does not send the entry whose client id is not durable; the candidate is
    turned down naming the storage failure."""
    from tests.chaos.test_disk_full import PAD_EVENTS, disk_full

    venue = _venue("FLAT")
    store = StateStore(tmp_path / "state")
    engine = _engine(venue, "FLAT", store)
    for _ in range(PAD_EVENTS):
        store.append_event({"kind": "padding", "blob": "x" * 1000})
    store.flush()
    with disk_full(tmp_path / "state" / "data.mdb"):
        store.append_event({"kind": "padding", "blob": "x" * 200_000})  # the file must grow
        _bar(venue, engine, stage_seeds()["FLAT"].after[0])
    assert [c for c in venue.sent if c.endswith("-e")] == []
    not_sent = _records(engine, "order", outcome="not_sent")
    assert [r["role"] for r in not_sent] == ["entry"]
    assert engine.store_error and "entry" not in engine.state.pending
    store.close(flush=False)


def test_a_fresh_engine_survives_an_unreadable_account_and_opens_nothing():
    """A bar that reaches a (re)started engine while the balances cannot be read (503, rate
    limit) is still judged, but sizes nothing: no crash, no order, the reason named."""
    venue = _venue("FLAT")
    engine = _engine(venue, "FLAT", None)
    venue.faults.arm("get_balances", kind="rate_limit", times=None)
    _bar(venue, engine, stage_seeds()["FLAT"].after[0])
    assert not [c for c in venue.sent if c.endswith("-e")]
    (cand,) = _records(engine, "candidate")
    assert cand["action"] == "REJECT" and "account unavailable" in cand["reject_reason"]
