"""Crash loops and HALTED (issue: Binance is not polite, B12): restarts back off, transient
venue errors during recovery are retried inside recovery (not crashes, never toward HALT),
alerts for one symbol's repeated crashes are rate-limited, an operator restart is not a
crash, and `resume` of a HALTED symbol clears the supervisor's record of it."""

from __future__ import annotations

import pytest

from supervisor.tree import CRASH_LOG_MAX, restart_delay

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


def test_restart_delay_backs_off_exponentially_with_jitter_and_a_cap():
    mid = lambda: 0.5  # noqa: E731 - jitter factor exactly 1.0
    assert restart_delay(1, halted=False, base_s=0.5, max_s=60.0, rng=mid) == 0.0
    assert [restart_delay(n, halted=False, base_s=0.5, max_s=60.0, rng=mid) for n in (2, 3, 4)] == [
        0.5,
        1.0,
        2.0,
    ]
    assert restart_delay(30, halted=False, base_s=0.5, max_s=60.0, rng=mid) == 60.0
    assert restart_delay(1, halted=True, base_s=0.5, max_s=60.0, rng=mid) == 60.0
    low = restart_delay(3, halted=False, base_s=0.5, max_s=60.0, rng=lambda: 0.0)
    high = restart_delay(3, halted=False, base_s=0.5, max_s=60.0, rng=lambda: 0.999999)
    assert low == pytest.approx(0.8) and high == pytest.approx(1.2, rel=1e-5)


def _crash_and_wait(rig: TreeRig, symbol: str) -> None:
    before = len(rig.of_kind("lifecycle", symbol=symbol, state="RECOVERING"))
    rig.tree.symbol_ref(symbol).tell({"msg": "inject_crash"})
    assert wait_for(
        lambda: (
            len(rig.of_kind("lifecycle", symbol=symbol, state="RECOVERING")) > before
            and rig.tree.symbol_ref(symbol) is not None
        ),
        15,
    ), rig.lifecycle(symbol)


def test_second_crash_waits_the_back_off_and_alerts_are_rate_limited(tmp_path, rigs):
    rig = TreeRig(tmp_path, ["AAAUSDT"], restart_backoff_s=0.4, restart_backoff_max_s=5.0)
    rigs.append(rig)
    seed_long_position(rig, "AAAUSDT")
    rig.start()
    _crash_and_wait(rig, "AAAUSDT")  # first crash: restarted at once
    crashed = rig.of_kind("lifecycle", symbol="AAAUSDT", state="CRASHED")
    assert len(crashed) == 1
    rig.tree.symbol_ref("AAAUSDT").tell({"msg": "inject_crash"})
    assert wait_for(lambda: len(rig.of_kind("lifecycle", state="CRASHED")) == 2, 5)
    # within the back-off (0.4 s +- 20 %) there is no instance at all
    assert wait_for(lambda: rig.tree.symbol_ref("AAAUSDT") is None, 0.3)
    assert wait_for(lambda: rig.status("AAAUSDT") == "READY", 10), rig.lifecycle("AAAUSDT")
    crash_alerts = [k for k, _ in rig.alerts.sent if k == "actor_crashed"]
    assert len(crash_alerts) == 1  # the second crash within 5 minutes is counted, not sent
    assert rig.tree.children["AAAUSDT"].alerts_suppressed == 1
    assert rig.venue.get_positions()["AAAUSDT"]["side"] == "LONG"
    assert len(open_algos(rig.venue, "AAAUSDT")) == 1


def test_transient_venue_errors_in_recovery_are_retried_not_crashes(tmp_path, rigs):
    rig = TreeRig(tmp_path, ["AAAUSDT", "BBBUSDT"], restart_intensity=1)
    rigs.append(rig)
    seed_long_position(rig, "AAAUSDT")
    seed_long_position(rig, "BBBUSDT")
    # a 503 storm on the reads recovery makes, then a rate limit: four failed recoveries
    rig.venue.faults.arm("get_positions", kind="unavailable", times=3)
    rig.venue.faults.arm("get_open_orders", kind="rate_limit", times=1, retry_after=0.1)
    rig.start(ready=False)
    assert rig.tree.wait_ready(20.0), {s: c.status for s, c in rig.tree.children.items()}
    assert rig.of_kind("lifecycle", state="CRASHED") == []
    assert rig.tree.restarts_total == 0
    assert all(not c.halted for c in rig.tree.children.values())
    for sym in ("AAAUSDT", "BBBUSDT"):
        assert len(open_algos(rig.venue, sym)) == 1, sym  # protection recovered


def test_operator_restart_is_not_a_crash(tmp_path, rigs):
    rig = TreeRig(tmp_path, ["AAAUSDT"], restart_intensity=1)
    rigs.append(rig)
    rig.start()
    first = rig.tree.symbol_ref("AAAUSDT")
    for _ in range(3):
        rig.tree.restart("AAAUSDT")
    assert wait_for(lambda: rig.status("AAAUSDT") == "READY", 10)
    assert rig.tree.symbol_ref("AAAUSDT") is not first
    assert rig.tree.restarts_total == 0 and not rig.tree.children["AAAUSDT"].halted
    assert not [k for k, _ in rig.alerts.sent if k in ("actor_crashed", "halted")]
    assert rig.of_kind("lifecycle", state="CRASHED") == []


def test_resume_of_a_halted_symbol_clears_the_supervisors_record(tmp_path, rigs):
    rig = TreeRig(tmp_path, ["AAAUSDT"], restart_intensity=1, restart_backoff_max_s=0.5)
    rigs.append(rig)
    rig.start()
    for _ in range(2):
        _crash_and_wait(rig, "AAAUSDT")
    assert wait_for(lambda: rig.status("AAAUSDT") == "HALTED", 10), rig.lifecycle("AAAUSDT")
    child = rig.tree.children["AAAUSDT"]
    assert child.halted and len(child.restarts) == 2
    rig.tree.resume("AAAUSDT")
    assert rig.status("AAAUSDT") == "READY"
    assert not child.halted and len(child.restarts) == 0
    _crash_and_wait(rig, "AAAUSDT")  # one crash after resume: not HALTED again
    assert wait_for(lambda: rig.status("AAAUSDT") == "READY", 10), rig.lifecycle("AAAUSDT")


def test_crash_log_is_bounded(tmp_path, rigs):
    rig = TreeRig(tmp_path, ["AAAUSDT"])
    rigs.append(rig)
    for i in range(CRASH_LOG_MAX + 50):
        rig.tree.crash_log.append({"symbol": "AAAUSDT", "error": str(i), "at": 0.0})
    assert len(rig.tree.crash_log) == CRASH_LOG_MAX
    assert rig.tree.crash_log[0]["error"] == "50"
