"""The invariant checker itself: each check catches what it is there for (real SimVenue,
real LMDB store, records as the service writes them), and `atlas audit` exits 1 / 0 / 2."""

from __future__ import annotations

import json
import struct

import lmdb
import pytest

from atlas_actors.audit import ProtectionWatch, VenueView, audit, main_audit
from atlas_actors.domain.records import PositionState, SymbolState
from atlas_actors.store import StateStore
from atlas_actors.venues.sim import SimVenue

SYM = "AAAUSDT"
PAPER_VENUE_META = "paper_venue"
SEEDED = ["atl-AAAUSDT-1-e"]  # the entry that built the book, older than the records


def _venue_long(qty: float = 1.0) -> SimVenue:
    venue = SimVenue(starting_balance=100_000.0)
    venue.add_symbol(SYM, tick_size=0.01, step_size=0.001, min_qty=0.001, min_notional=5.0)
    venue.set_price(SYM, 100.0)
    venue.place_market(
        symbol=SYM, side="BUY", qty=qty, reduce_only=False, client_order_id="atl-AAAUSDT-1-e"
    )
    return venue


def _stop(venue: SimVenue, qty: float = 1.0, cid: str = "atl-AAAUSDT-2-sl") -> None:
    venue.place_algo_stop(
        symbol=SYM,
        side="SELL",
        qty=qty,
        stop_price=95.0,
        reduce_only=True,
        client_algo_id=cid,
        working_type="MARK_PRICE",
    )


def _store(tmp_path, qty: float = 1.0, side: str = "LONG") -> StateStore:
    store = StateStore(tmp_path / "state")
    ps = PositionState(side=side, entry_price=100.0, qty_total=qty if side != "NONE" else 0.0)
    store.set_symbol_state(SYM, SymbolState(symbol=SYM, position_state=ps).to_dict())
    store.flush()
    return store


def _candidate(action: str = "OPEN", gate: str = "PASS") -> dict:
    return {
        "kind": "candidate",
        "ts": 1,
        "symbol": SYM,
        "gates": {"open_gate": {"status": gate, "reason": "x"}},
        "action": action,
    }


def _lifecycle(state: str) -> dict:
    return {"kind": "lifecycle", "ts": 1, "symbol": SYM, "state": state, "why": "t"}


def test_clean_book_is_clean(tmp_path):
    venue = _venue_long()
    _stop(venue)
    with _store(tmp_path) as store:
        records = [_lifecycle("READY"), _candidate()]
        report = audit(store=store, records=records, venue=venue, prefix="atl")
    assert report.ok, report.format()
    assert report.checked["positions"] == 1 and report.checked["records"] == 2


@pytest.mark.parametrize("stop_qty", [None, 0.5])
def test_position_without_a_covering_stop_is_a_violation(tmp_path, stop_qty):
    venue = _venue_long()
    if stop_qty is not None:
        _stop(venue, qty=stop_qty)  # covers half the position only
    with _store(tmp_path) as store:
        report = audit(store=store, records=[], venue=venue, ignore_client_ids=SEEDED)
    assert report.by_check() == {"protection": 1}
    assert report.violations[0].evidence["position"]["qty"] == pytest.approx(1.0)


def test_stored_position_must_equal_the_venues(tmp_path):
    venue = _venue_long(qty=2.0)
    _stop(venue, qty=2.0)
    with _store(tmp_path, qty=1.0) as store:
        report = audit(store=store, records=[], venue=venue, ignore_client_ids=SEEDED)
    assert report.by_check() == {"state_vs_venue": 1}


def test_open_while_gate_closed_or_not_ready(tmp_path):
    records = [
        _lifecycle("RECOVERING"),
        _candidate(),  # not READY
        _lifecycle("READY"),
        _candidate(gate="FAIL"),  # gate closed
        _candidate(action="REJECT", gate="FAIL"),  # fine
        _lifecycle("FROZEN"),
        _candidate(action="REJECT"),  # fine
    ]
    report = audit(records=records)
    assert report.by_check() == {"open_not_ready": 1, "open_gate": 1}


def test_duplicate_client_ids_in_records_and_extra_entries_at_the_venue():
    venue = _venue_long()
    _stop(venue)
    venue.place_market(
        symbol=SYM, side="BUY", qty=1.0, reduce_only=False, client_order_id="atl-AAAUSDT-3-e"
    )
    records = [
        _lifecycle("READY"),
        _candidate(),  # one OPEN, two entry orders at the venue
        {"kind": "order", "symbol": SYM, "role": "tp1", "client_id": "c-1", "venue_id": "7"},
        {"kind": "order", "symbol": SYM, "role": "tp1", "client_id": "c-1", "venue_id": "8"},
    ]
    report = audit(records=records, venue=venue, prefix="atl")
    # (and the second entry doubled the position its stop was sized for)
    assert report.by_check() == {"duplicate_client_id": 1, "duplicate_order": 1, "protection": 1}


def test_blind_resend_and_conditional_order_on_the_order_endpoint():
    snap = _venue_long().snapshot()
    legacy = {"order_id": "9", "client_order_id": "atl-AAAUSDT-9-sl", "type": "STOP_MARKET"}
    snap["orders"].append({**snap["orders"][0], **legacy})
    stop_record = {"kind": "order", "role": "sl", "client_id": "atl-AAAUSDT-9-sl", "venue_id": "9"}
    requests = [
        {"client_id": "a", "applied": False},
        {"client_id": "a", "applied": True},  # resent after proven absent: fine
        {"client_id": "b", "applied": True},
        {"client_id": "b", "applied": True},  # resent after it was applied
    ]
    report = audit(records=[stop_record], venue=snap, requests=requests, ignore_client_ids=SEEDED)
    # the legacy stop is flagged twice: as an order on the regular endpoint, and as the stop
    # Atlas recorded that is not an Algo order; and it does not protect the position
    assert report.by_check() == {"blind_resend": 1, "algo_endpoint": 2, "protection": 1}


def test_invisible_stop_needs_an_emergency_flat_within_a_second():
    invisible = {"kind": "stop_invisible", "ts": 100, "symbol": SYM, "client_algo_id": "x"}
    late = {"kind": "risk", "event_type": "EMERGENCY_FLAT", "ts": 105, "symbol": SYM}
    ontime = {**late, "ts": 101}
    assert audit(records=[invisible, late]).by_check() == {"protection": 1}
    assert audit(records=[invisible, ontime]).ok


def test_protection_watch_measures_unprotected_time():
    venue = _venue_long()
    now = [0.0]
    watch = ProtectionWatch(lambda: VenueView.from_snapshot(venue.snapshot()), clock=lambda: now[0])
    watch.sample()
    now[0] = 1.7
    _stop(venue)
    watch.sample()
    assert [round(g["s"], 6) for g in watch.gaps] == [1.7]
    report = audit(
        records=[], venue=venue, gaps=watch.gaps, max_unprotected_s=1.0, ignore_client_ids=SEEDED
    )
    assert report.by_check() == {"protection_gap": 1}


def test_event_log_hole_is_found(tmp_path):
    path = tmp_path / "state"
    with StateStore(path) as store:
        for i in range(5):
            store.append_event({"kind": "lifecycle", "n": i})
    env = lmdb.open(str(path), max_dbs=8)
    with env.begin(write=True) as txn:
        assert txn.delete(struct.pack(">Q", 3), db=env.open_db(b"events", txn=txn))
    env.close()
    report = audit(path)
    assert report.by_check() == {"event_log": 1}
    assert report.violations[0].evidence == {"after": 2, "next": 4}


def test_cli_exit_codes_and_evidence(tmp_path, capsys):
    venue = _venue_long()
    with _store(tmp_path) as store:
        store.put_meta(PAPER_VENUE_META, venue.snapshot())  # the paper venue's book
        store.append_event(_lifecycle("READY"))
        store.append_event(_candidate())  # the decision behind the venue's entry order
    assert main_audit(["--state-dir", str(tmp_path / "state")]) == 1
    out = capsys.readouterr().out
    assert "VIOLATION protection: [AAAUSDT]" in out and "evidence:" in out
    _stop(venue)
    with StateStore(tmp_path / "state") as store:
        store.put_meta(PAPER_VENUE_META, venue.snapshot())
    assert main_audit(["--state-dir", str(tmp_path / "state")]) == 0
    assert "audit CLEAN" in capsys.readouterr().out
    assert main_audit(["--state-dir", str(tmp_path / "missing")]) == 2
    records = tmp_path / "logs" / "records.jsonl"
    records.parent.mkdir()
    records.write_text(json.dumps(_candidate()) + "\n")
    assert audit(records=None, log_dir=tmp_path / "logs").checked["records"] == 1


def test_a_lost_stop_needs_its_emergency_flat():
    venue = _venue_long()
    _stop(venue)  # the position is protected by this one
    venue.faults.arm("place_algo_stop", kind="invisible_algo", times=1)
    ack = venue.place_algo_stop(
        symbol=SYM,
        side="SELL",
        qty=1.0,
        stop_price=96.0,
        reduce_only=True,
        client_algo_id="atl-AAAUSDT-3-sl",
        working_type="MARK_PRICE",
    )
    placed = {
        "kind": "order",
        "symbol": SYM,
        "role": "sl",
        "client_id": "atl-AAAUSDT-3-sl",
        "venue_id": ack["algo_id"],
    }
    flat = {
        "kind": "risk",
        "event_type": "EMERGENCY_FLAT",
        "ts": 2,
        "symbol": SYM,
        "reason": "protective stop atl-AAAUSDT-3-sl not visible within 1000 ms",
    }
    lone = audit(records=[placed], venue=venue, ignore_client_ids=SEEDED)
    assert lone.by_check() == {"protection": 1}
    assert "never became visible" in lone.violations[0].message
    assert audit(records=[placed, flat], venue=venue, ignore_client_ids=SEEDED).ok
