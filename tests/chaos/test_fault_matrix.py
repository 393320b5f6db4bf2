"""Every venue fault x every position stage, each with a SymbolActor crash while the fault
is on; every case ends with the invariant checker (atlas_actors.audit) green.

A case: restore the stage's seed (real trading state) into a fresh SimVenue + LMDB store,
start the real actor tree, switch the fault on, make the venue drop the position's stop
(so a protective stop must be placed again under the fault), arm a crash on the next
message of a kind (rotating over the kinds that arrive while trading), replay the bars that
followed the seed, crash the actor now if it has not crashed yet, let the restarted actor
recover under the fault (a dropped user stream comes back after the replay), switch the
fault off, let it settle, stop the tree and audit:
protection now and over time, client ids, state = venue, open gating, event log.
"""

from __future__ import annotations

import pytest

from .rig import (
    FAULTS,
    POSITION_STAGES,
    STAGES,
    apply_fault,
    fault_injected,
    start_case,
    stop_current_stop,
)

# Messages that arrive on their own while the symbol trades (the crash matrix covers all).
TRADING_KINDS = ("bar", "mark", "order_update", "algo_update", "stop_visibility", "ping")


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("fault", FAULTS)
def test_fault_at_stage_with_a_crash_keeps_every_invariant(tmp_path, fault, stage):
    n = FAULTS.index(fault) * len(STAGES) + STAGES.index(stage)
    case = start_case(tmp_path, stage, seed_no=n)
    try:
        # reused_client_id: the venue has seen the ids above the seed's durable sequence
        apply_fault(case.venue, fault, next_seq=int(case.seed.state["seq"]) + 1)
        if stage in POSITION_STAGES:
            assert stop_current_stop(case) is not None, "the seeded position had no stop"
        restarts = case.restarts()
        case.ref().tell({"msg": "inject_crash", "on": TRADING_KINDS[n % len(TRADING_KINDS)]})
        case.replay()
        if fault == "stream_disconnect":
            case.venue.faults.reconnect_stream("user")  # what the stream dropped: reconciled
        if case.restarts() == restarts and case.ref() is not None:
            case.ref().tell({"msg": "inject_crash"})
        case.wait_crashed_since(restarts)
        case.wait_settled()
        injected = fault_injected(case.venue, fault)
        case.settle()
    finally:
        report = case.finish()
    assert injected > 0, f"the {fault} fault was never exercised"
    assert report.ok, report.format()
