"""A venue reply slower than the supervisor's ping timeout (issue 13, A9): the symbol's actor
is busy waiting on the venue, not dead, so the supervisor neither restarts nor HALTs it, and
the other actors' pings are not held up behind it."""

from __future__ import annotations

from tests.integration.tree_harness import wait_for

from .rig import SYMBOL, start_case, stop_current_stop


def test_a_slow_stop_reply_neither_restarts_nor_halts_the_symbol(tmp_path) -> None:
    case = start_case(tmp_path, "PRE_TP1", ping_timeout_s=0.3, ping_interval_s=0.1)
    try:
        restarts = case.restarts()
        # the stop is re-placed (the venue dropped it); its reply takes 1.5-2 s
        case.venue.faults.arm("place_algo_stop", kind="slow_reply", reply_s=(1.5, 2.0))
        assert stop_current_stop(case) is not None
        assert wait_for(lambda: case.venue.faults.injected["slow_reply"] == 1, 15.0)
        assert wait_for(lambda: case.tree.in_flight.busy_for(SYMBOL) is None, 15.0)
        case.wait_settled()
        assert case.restarts() == restarts, case.rig.lifecycle(SYMBOL)[-6:]
        assert case.status() == "READY"
    finally:
        report = case.finish()
    assert report.ok, report.format()
