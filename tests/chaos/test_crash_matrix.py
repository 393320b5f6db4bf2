"""Actor crashes x position stages: a SymbolActor crashing on each kind of message it
handles, and each shared actor (OrderGateway, Sentinel, MarketFeed) dying mid-trading; the
supervisor restarts it, and every case ends with the invariant checker green.

The crash loses the message that caused it (a fill, a stop's ALGO_UPDATE, the Sentinel's
verdict, an operator command): the restarted actor must find the truth at the venue.
"""

from __future__ import annotations

from typing import Any

import pykka
import pytest

from atlas_actors.actors.symbol import MESSAGE_KINDS
from tests.integration.tree_harness import wait_for

from .rig import POSITION_STAGES, STAGES, SYMBOL, ChaosCase, start_case, stop_current_stop


def _external_order(case: ChaosCase) -> None:
    """An order of someone else on the symbol: its ORDER_TRADE_UPDATE reaches the actor."""
    view = case.view()
    price = case.venue.get_last_price(SYMBOL)
    f = case.venue.get_filters(SYMBOL)
    qty = max(f.min_qty, f.step_size) * 10
    while qty * price * 0.5 < f.min_notional:
        qty *= 10
    assert view is not None
    case.venue.place_limit_postonly(
        symbol=SYMBOL,
        side="BUY",
        qty=qty,
        price=round(price * 0.5 / f.tick_size) * f.tick_size,
        tif="GTX",
        reduce_only=False,
        client_order_id="ext-chaos-1",
    )


def _admin(case: ChaosCase, kind: str) -> None:
    tree = case.tree
    calls: dict[str, Any] = {
        "pause": lambda: tree.pause(SYMBOL),
        "resume": lambda: tree.resume(SYMBOL),
        "freeze": lambda: tree.freeze(SYMBOL, 1),
        "flatten": lambda: tree.flatten(SYMBOL, "chaos"),
        "status": tree.status,
        "state": lambda: tree.state(SYMBOL),
    }
    try:
        calls[kind]()
    except (pykka.ActorDeadError, pykka.Timeout, KeyError):
        pass  # the actor died on it: what the test is about


def provoke(case: ChaosCase, kind: str, stage: str) -> bool:
    """Make a message of `kind` reach the symbol's actor; True when it started the replay."""
    has_position = stage in POSITION_STAGES
    if kind == "bar":
        case.tree.start_market()
        return True
    if kind == "mark":  # a mark price tick (the paper data has no mark series of its own)
        case.venue.set_mark_price(SYMBOL, case.venue.get_last_price(SYMBOL))
        case.venue.clear_mark_price(SYMBOL)
        return False
    if kind == "order_update":
        _external_order(case)
        return False
    if kind == "venue_position":  # every fill's ACCOUNT_UPDATE; the venue's own ADL here
        if has_position:
            assert case.venue.venue_close(SYMBOL, "adl") is not None
            return False
        case.tree.start_market()  # the entry's fill brings the first one
        return True
    if kind in ("algo_update", "stop_visibility", "emergency_flattened"):
        if kind == "emergency_flattened":
            # every stop invisible until the crash: the first position then opened is sure to
            # still be open when the Sentinel's 1 s deadline passes
            case.venue.faults.arm("place_algo_stop", kind="invisible_algo", times=None)
        if has_position:
            assert stop_current_stop(case) is not None, "the seeded position had no stop"
            return False
        case.tree.start_market()  # the next bars open a position, then its stop is placed
        return True
    if kind == "recover":
        case.tree._on_resync()
        return False
    if kind == "ping":
        return False  # the supervisor's liveness ping comes by itself
    _admin(case, kind)
    return False


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_symbol_actor_crash_on_each_message_kind(tmp_path, kind, stage):
    case = start_case(tmp_path, stage)
    try:
        restarts = case.restarts()
        case.ref().tell({"msg": "inject_crash", "on": kind})
        replaying = provoke(case, kind, stage)
        case.wait_crashed_since(restarts, timeout_s=15.0)
        case.venue.faults.clear()
        case.wait_settled()
        if not replaying:
            # recovered means protected, before any further bar could move the stop
            assert wait_for(case.quiet, 5.0), "the restarted actor left the position bare"
            case.tree.start_market()  # the restarted actor trades on
        assert case.tree.replay_done.wait(30.0)
        if kind == "emergency_flattened":  # the Sentinel tells the restarted actor again
            wait_for(lambda: case.rig.of_kind("risk", event_type="EMERGENCY_FLAT"), 10.0)
        case.settle()
        lifecycle = case.rig.lifecycle(SYMBOL)
        state = case.tree.state(SYMBOL)
    finally:
        report = case.finish()
    if kind == "emergency_flattened":
        # the verdict the crash swallowed is delivered again: recorded, and the freeze holds
        flats = case.rig.of_kind("risk", event_type="EMERGENCY_FLAT")
        assert flats, "the emergency flatten was never recorded"
        assert state["cooldown_until"]["freeze"] >= flats[0]["ts"] + 1800 - 1
    crash = lifecycle.index("CRASHED")
    assert lifecycle[crash : crash + 3] == ["CRASHED", "STARTING", "RECOVERING"]
    assert f"on message {kind!r}" in str(case.tree.crash_log[0]["error"])
    assert report.ok, report.format()


def _shared(case: ChaosCase, name: str) -> Any:
    return {
        "OrderGateway": case.tree.gateway,
        "Sentinel": case.tree.sentinel,
        "MarketFeed": case.tree.feed,
    }[name]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("name", ("OrderGateway", "Sentinel", "MarketFeed"))
def test_shared_actor_dies_mid_trading(tmp_path, name, stage):
    case = start_case(tmp_path, stage)
    try:
        old = _shared(case, name)
        case.tree.start_market()
        old.stop(block=False)  # dead, as after a crash: the supervisor's pings find out
        if stage in POSITION_STAGES:
            stop_current_stop(case)  # a stop must be placed again while it is down
        assert wait_for(lambda: _shared(case, name) is not old, 10.0), f"{name} not restarted"
        assert wait_for(lambda: _shared(case, name).is_alive(), 10.0)
        assert case.tree.replay_done.wait(30.0), "the replay did not finish"
        case.settle()
        restarted = [r for r in case.rig.of_kind("lifecycle", state="RESTART") if r["why"] == name]
    finally:
        report = case.finish()
    assert restarted, f"no RESTART record for {name}"
    assert report.ok, report.format()
