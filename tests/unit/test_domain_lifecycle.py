"""§3 lifecycle through the public entry points: entry fill -> PRE_TP1 -> BETWEEN_TP1_TP2 ->
RUNNER_ONLY -> flat; stops, rejections, recovery, emergency flat, client ids."""

from __future__ import annotations

import re
from typing import Any

import pytest

from atlas_actors.domain import core
from atlas_actors.domain.commands import (
    CancelAlgo,
    CancelOrder,
    EmergencyFlatten,
    PlaceAlgoStop,
    PlaceLimit,
    PlaceMarket,
    SetCooldown,
)
from atlas_actors.domain.core import MarketCtx, SymbolFilters
from atlas_actors.domain.events import AlgoUpdate, OrderUpdate
from atlas_actors.domain.params import default_params, load_params
from atlas_actors.domain.records import SymbolState

P = default_params()
CTX = MarketCtx(filters=SymbolFilters(tick_size=0.1, step_size=0.001, min_qty=0.001))
NOW = 1_700_000_000
RISK_KEYS = {
    "kind",
    "ts",
    "event_type",
    "symbol",
    "side",
    "qty",
    "price",
    "order_ids",
    "client_ids",
    "reason",
}


def ou(
    cid: str,
    status: str = "FILLED",
    qty: float = 0.0,
    price: float = 0.0,
    oid: str = "1",
) -> OrderUpdate:
    return OrderUpdate(
        symbol="BTCUSDC",
        order_id=oid,
        client_order_id=cid,
        side="BUY",
        order_type="LIMIT",
        status=status,
        execution_type="TRADE" if qty else status,
        price=price,
        qty=qty,
        executed_qty=qty,
        avg_price=price,
        last_fill_qty=qty,
        last_fill_price=price,
        commission=0.0,
        realized_pnl=0.0,
        reduce_only=False,
        event_time=0,
    )


def au(
    acid: str, status: str, child: str | None = None, executed: float | None = None
) -> AlgoUpdate:
    return AlgoUpdate(
        symbol="BTCUSDC",
        algo_id="a1",
        client_algo_id=acid,
        side="SELL",
        status=status,
        stop_price=0.0,
        qty=0.0,
        working_type="MARK_PRICE",
        order_id=child,
        event_time=0,
        executed_qty=executed,
    )


def pending_entry(
    side: str = "LONG",
    kind: str = "limit",
    price: float = 100.0,
    sl: float = 98.0,
    qty: float = 1.0,
    tier: str = "A",
    template: str = "trend_pullback",
    targets: bool = True,
) -> SymbolState:
    st = SymbolState.fresh("BTCUSDC")
    st.seq = 1
    st.bar_index = 100
    st.pending = {
        "entry": {
            "cid": "atl-BTCUSDC-1-e",
            "side": side,
            "kind": kind,
            "price": price,
            "sl": sl,
            "qty": qty,
            "template": template,
            "tier": tier,
            "targets": targets,
            "placed_bar": 100,
            "expiry_bar": 103,
            "filled": 0.0,
            "spread_bps": 0.0,
        }
    }
    return st


def of(cmds: list[Any], kind: type) -> list[Any]:
    return [c for c in cmds if isinstance(c, kind)]


def opened(**kw: Any) -> core.Step:
    st = pending_entry(**kw)
    return core.on_order_update(
        st,
        ou("atl-BTCUSDC-1-e", "FILLED", st.pending["entry"]["qty"], st.pending["entry"]["price"]),
        CTX,
        P,
        NOW,
    )


def test_entry_fill_places_stop_first_then_targets() -> None:
    step = opened()
    pos = step.state.position_state
    assert pos.side == "LONG" and pos.qty_total == 1.0 and pos.position_stage == "PRE_TP1"
    assert pos.risk_per_unit == pytest.approx(2.0) and pos.sl_price == 98.0
    stop, tp1, tp2 = step.commands
    assert isinstance(stop, PlaceAlgoStop)
    assert (stop.side, stop.qty, stop.stop_price, stop.working_type) == (
        "SELL",
        1.0,
        98.0,
        "MARK_PRICE",
    )
    assert stop.replaces is None and stop.client_algo_id == pos.sl_algo.client_algo_id
    assert isinstance(tp1, PlaceLimit) and isinstance(tp2, PlaceLimit)
    assert (tp1.price, tp1.qty, tp1.reduce_only, tp1.role) == (102.0, 0.4, True, "tp1")
    assert (tp2.price, tp2.qty, tp2.reduce_only, tp2.role) == (104.0, 0.3, True, "tp2")
    assert "entry" not in step.state.pending
    assert [r.client_order_id for r in pos.last_orders.tp] == [
        tp1.client_order_id,
        tp2.client_order_id,
    ]
    desired = core.desired_stop(step.state)
    assert desired is not None and desired.stop_price == 98.0 and desired.qty == 1.0
    assert desired.side == "SELL" and desired.client_algo_id == stop.client_algo_id


def test_input_state_is_never_mutated() -> None:
    st = pending_entry()
    snap = st.to_dict()
    core.on_order_update(st, ou("atl-BTCUSDC-1-e", "FILLED", 1.0, 100.0), CTX, P, NOW)
    assert st.to_dict() == snap


def test_partial_entry_fill_protects_the_partial_qty_then_targets_on_completion() -> None:
    st = pending_entry()
    s1 = core.on_order_update(
        st, ou("atl-BTCUSDC-1-e", "PARTIALLY_FILLED", 0.4, 100.0), CTX, P, NOW
    )
    assert [type(c) for c in s1.commands] == [PlaceAlgoStop]
    assert s1.commands[0].qty == 0.4 and "entry" in s1.state.pending
    s2 = core.on_order_update(s1.state, ou("atl-BTCUSDC-1-e", "FILLED", 0.6, 99.9), CTX, P, NOW)
    stop = of(s2.commands, PlaceAlgoStop)[0]
    assert stop.qty == pytest.approx(1.0) and stop.replaces == s1.commands[0].client_algo_id
    assert len(of(s2.commands, PlaceLimit)) == 2
    assert s2.state.position_state.entry_price == pytest.approx(99.94)


def test_expired_partial_entry_places_targets_for_what_filled() -> None:
    st = pending_entry()
    s1 = core.on_order_update(
        st, ou("atl-BTCUSDC-1-e", "PARTIALLY_FILLED", 0.5, 100.0), CTX, P, NOW
    )
    s2 = core.on_order_update(s1.state, ou("atl-BTCUSDC-1-e", "CANCELED"), CTX, P, NOW)
    tps = of(s2.commands, PlaceLimit)
    assert [t.qty for t in tps] == [0.2, 0.15] and "entry" not in s2.state.pending


def test_entry_expiry_cancels_an_unfilled_post_only_entry() -> None:
    st = pending_entry()
    bar = {
        "open_time": 0,
        "open": 100.0,
        "high": 100.5,
        "low": 99.5,
        "close": 100.2,
        "volume": 1.0,
        "close_time": 59_999,
    }
    s = st
    cancels = []
    for _ in range(3):
        step = core.on_bar(s, bar, CTX, P, NOW)
        cancels += of(step.commands, CancelOrder)
        s = step.state
    assert [c.client_order_id for c in cancels] == ["atl-BTCUSDC-1-e"]
    assert s.pending["entry"]["cancel_sent"] is True
    done = core.on_order_update(s, ou("atl-BTCUSDC-1-e", "CANCELED"), CTX, P, NOW)
    assert "entry" not in done.state.pending
    assert done.state.exec_quality_roll.cancel_rate_30 == 1.0
    assert done.state.exec_quality_roll.fill_rate_30 == 0.0


def test_market_entry_beyond_the_planned_stop_keeps_the_planned_risk() -> None:
    st = pending_entry(kind="market", price=100.0, sl=98.0)
    step = core.on_order_update(st, ou("atl-BTCUSDC-1-e", "FILLED", 1.0, 97.5), CTX, P, NOW)
    pos = step.state.position_state
    assert pos.sl_price == pytest.approx(95.5) and pos.sl_price < 97.5
    # bought 2.5 below the reference with R = 2: a negative slippage cost of 1.25 R
    assert step.state.exec_quality_roll.slippage_cost30_r == pytest.approx(-1.25)


def test_tp1_moves_stop_to_break_even_tp2_to_profit_lock_and_runner() -> None:
    s = opened()
    tp1, tp2 = of(s.commands, PlaceLimit)
    old_stop = s.state.position_state.sl_algo.client_algo_id
    s1 = core.on_order_update(s.state, ou(tp1.client_order_id, "FILLED", 0.4, 102.0), CTX, P, NOW)
    pos = s1.state.position_state
    assert pos.position_stage == "BETWEEN_TP1_TP2" and pos.tp1_done and pos.qty_total == 0.6
    stop = of(s1.commands, PlaceAlgoStop)[0]
    assert stop.stop_price == 100.0 and stop.qty == 0.6 and stop.replaces == old_stop
    assert not of(
        s1.commands, CancelAlgo
    )  # the engine cancels the old stop once the new is visible
    s2 = core.on_order_update(s1.state, ou(tp2.client_order_id, "FILLED", 0.3, 104.0), CTX, P, NOW)
    pos = s2.state.position_state
    assert pos.position_stage == "RUNNER_ONLY" and pos.tp2_done
    assert pos.qty_runner == pytest.approx(0.3) == pos.qty_total
    stop2 = of(s2.commands, PlaceAlgoStop)[0]
    assert stop2.stop_price == pytest.approx(102.0) and stop2.replaces == stop.client_algo_id
    assert pos.peak_pnl_r == pytest.approx(2.0)


def test_stop_child_fill_matched_by_algo_order_id_closes_with_loss_cooldown() -> None:
    s = opened()
    acid = s.state.position_state.sl_algo.client_algo_id
    t = core.on_algo_update(s.state, au(acid, "TRIGGERED", child="777"), CTX, P, NOW)
    assert t.state.pending["stop_children"] == ["777"]
    # an unrelated fill at the same moment is not taken for the stop
    other = core.on_order_update(
        t.state, ou("someone-else", "FILLED", 1.0, 98.0, oid="778"), CTX, P, NOW
    )
    assert other.state.position_state.qty_total == 1.0
    f = core.on_order_update(
        t.state, ou("autoclose-x", "FILLED", 1.0, 98.0, oid="777"), CTX, P, NOW + 5
    )
    st = f.state
    assert st.position_state.side == "NONE" and core.desired_stop(st) is None
    assert {c.client_order_id for c in of(f.commands, CancelOrder)} == {
        r.client_order_id for r in s.state.position_state.last_orders.tp
    }
    assert not of(f.commands, CancelAlgo)  # the stop itself fired
    assert st.cooldown_until.loss == NOW + 5 + P.cooldown.loss_s
    assert st.cooldown_until.template == NOW + 5 + P.cooldown.template_s
    assert {(c.which, c.until) for c in of(f.commands, SetCooldown)} == {
        ("loss", NOW + 5 + 900),
        ("template", NOW + 5 + 300),
    }
    (rec,) = f.records
    assert set(rec) == RISK_KEYS and rec["event_type"] == "LOSS_COOLDOWN"
    trade = st.trade_window[-1]
    assert trade["r"] == pytest.approx(-1.0) and trade["exit_reason"] == "stop"
    assert st.health_roll.trade_n == 1 and st.health_roll.win_rate == 0.0


def test_fill_before_its_trigger_update_is_parked_then_applied() -> None:
    s = opened()
    acid = s.state.position_state.sl_algo.client_algo_id
    early = core.on_order_update(
        s.state, ou("autoclose-x", "FILLED", 1.0, 98.0, oid="900"), CTX, P, NOW
    )
    assert early.state.position_state.qty_total == 1.0
    assert early.state.pending["orphan_fills"][0]["order_id"] == "900"
    late = core.on_algo_update(early.state, au(acid, "TRIGGERED", child="900"), CTX, P, NOW)
    assert late.state.position_state.side == "NONE"
    assert late.state.trade_window[-1]["exit_reason"] == "stop"


def test_winning_exit_sets_only_the_template_cooldown() -> None:
    s = opened()
    tp1, tp2 = of(s.commands, PlaceLimit)
    s1 = core.on_order_update(s.state, ou(tp1.client_order_id, "FILLED", 0.4, 102.0), CTX, P, NOW)
    acid = s1.state.position_state.sl_algo.client_algo_id
    t = core.on_algo_update(s1.state, au(acid, "TRIGGERED", child="55"), CTX, P, NOW)
    f = core.on_order_update(t.state, ou("x", "FILLED", 0.6, 100.0, oid="55"), CTX, P, NOW)
    assert f.state.cooldown_until.loss == 0 and f.state.cooldown_until.template == NOW + 300
    assert not f.records
    assert [c.client_order_id for c in of(f.commands, CancelOrder)] == [tp2.client_order_id]
    assert f.state.trade_window[-1]["r"] == pytest.approx(0.4 * 2 / 2.0)


def test_stop_placement_rejected_with_a_position_is_an_emergency_flatten() -> None:
    s = opened()
    acid = s.state.position_state.sl_algo.client_algo_id
    r = core.on_order_rejected(s.state, "sl", acid, -2021, "would immediately trigger", CTX, P, NOW)
    (cmd,) = r.commands
    assert isinstance(cmd, EmergencyFlatten) and re.fullmatch(
        r"atl-BTCUSDC-\d+-fx", cmd.client_order_id
    )
    again = core.on_order_rejected(r.state, "sl", acid, -2021, "again", CTX, P, NOW)
    assert not again.commands  # one flatten in flight is enough


def test_emergency_flat_freezes_and_records() -> None:
    s = opened()
    e = core.on_emergency_flat(
        s.state,
        "stop not visible",
        CTX,
        P,
        NOW,
        qty=1.0,
        price=99.0,
        order_ids=["o9"],
        client_ids=["atl-BTCUSDC-9-fx"],
    )
    st = e.state
    assert st.position_state.side == "NONE" and st.pending == {}
    assert st.cooldown_until.loss == NOW + 1800 and st.cooldown_until.freeze == NOW + 1800
    rec = [r for r in e.records if r["event_type"] == "EMERGENCY_FLAT"][0]
    assert set(rec) == RISK_KEYS
    assert (rec["qty"], rec["price"], rec["order_ids"], rec["client_ids"]) == (
        1.0,
        99.0,
        ["o9"],
        ["atl-BTCUSDC-9-fx"],
    )
    cancelled = {c.client_order_id for c in of(e.commands, CancelOrder)}
    assert cancelled == {r.client_order_id for r in s.state.position_state.last_orders.tp}
    assert (
        of(e.commands, CancelAlgo)[0].client_algo_id
        == s.state.position_state.sl_algo.client_algo_id
    )
    assert st.trade_window[-1]["exit_reason"] == "emergency"


def test_lost_current_stop_is_re_placed_then_flattened_after_too_many() -> None:
    p = load_params({"risk": {"max_stop_recoveries": 2}})
    s = opened().state
    for _ in range(2):
        acid = s.position_state.sl_algo.client_algo_id
        r = core.on_algo_update(s, au(acid, "CANCELED"), CTX, p, NOW)
        (stop,) = of(r.commands, PlaceAlgoStop)
        assert stop.stop_price == 98.0 and stop.qty == 1.0 and stop.client_algo_id != acid
        (rec,) = r.records
        assert rec["event_type"] == "SL_RECOVER" and acid in rec["client_ids"]
        s = r.state
    r = core.on_algo_update(s, au(s.position_state.sl_algo.client_algo_id, "EXPIRED"), CTX, p, NOW)
    assert [type(c) for c in r.commands] == [EmergencyFlatten]


def test_cancel_of_a_replaced_stop_is_not_a_loss_of_protection() -> None:
    s = opened()
    tp1 = of(s.commands, PlaceLimit)[0]
    old = s.state.position_state.sl_algo.client_algo_id
    s1 = core.on_order_update(s.state, ou(tp1.client_order_id, "FILLED", 0.4, 102.0), CTX, P, NOW)
    r = core.on_algo_update(s1.state, au(old, "CANCELED"), CTX, P, NOW)
    assert not r.commands and not r.records
    assert old not in r.state.pending.get("old_stops", [])


def test_new_ack_records_the_algo_id() -> None:
    s = opened()
    acid = s.state.position_state.sl_algo.client_algo_id
    r = core.on_algo_update(s.state, au(acid, "NEW"), CTX, P, NOW)
    assert r.state.position_state.sl_algo.algo_id == "a1"
    assert r.state.position_state.last_orders.sl.algo_id == "a1"


def test_post_only_entry_rejected_clears_pending() -> None:
    st = pending_entry()
    r = core.on_order_rejected(st, "entry", "atl-BTCUSDC-1-e", -5022, "post only", CTX, P, NOW)
    assert "entry" not in r.state.pending and not r.commands
    assert r.state.exec_quality_roll.sample_n == 1 and r.state.exec_quality_roll.fill_rate_30 == 0.0


def test_post_only_tp_that_would_take_becomes_a_reduce_only_market() -> None:
    s = opened()
    tp1 = of(s.commands, PlaceLimit)[0]
    r = core.on_order_rejected(s.state, "tp1", tp1.client_order_id, -5022, "post only", CTX, P, NOW)
    (m,) = of(r.commands, PlaceMarket)
    assert m.reduce_only and m.qty == 0.4 and m.role == "tp1" and m.side == "SELL"
    f = core.on_order_update(r.state, ou(m.client_order_id, "FILLED", 0.4, 102.3), CTX, P, NOW)
    assert (
        f.state.position_state.tp1_done
        and f.state.position_state.position_stage == "BETWEEN_TP1_TP2"
    )


def test_b_tier_blacklist_when_its_health_degrades() -> None:
    p = load_params({"tiers": {"B": {"blacklist_min_trades": 2, "blacklist_max_avg_r": -0.5}}})
    s: SymbolState = SymbolState.fresh("BTCUSDC")
    for i in range(2):
        e = pending_entry(tier="B", template="range_fade")
        e.trade_window = s.trade_window
        step = core.on_order_update(e, ou("atl-BTCUSDC-1-e", "FILLED", 1.0, 100.0), CTX, p, NOW)
        acid = step.state.position_state.sl_algo.client_algo_id
        t = core.on_algo_update(step.state, au(acid, "TRIGGERED", child=f"c{i}"), CTX, p, NOW)
        s = core.on_order_update(
            t.state, ou("x", "FILLED", 1.0, 98.0, oid=f"c{i}"), CTX, p, NOW + i
        ).state
        if i == 0:
            assert s.b_blacklist_until == 0
    assert s.b_blacklist_until == NOW + 1 + p.tier_b.blacklist_s


@pytest.mark.parametrize(
    ("prefix", "symbol"),
    [
        ("atl", "BTCUSDC"),
        ("abcdefgh", "1000SHIBUSDC"),
        ("atl", "VERYLONGSYMBOLNAMEUSDT"),
        ("a b", "X/Y"),
    ],
)
def test_client_ids_are_deterministic_short_and_in_the_binance_charset(
    prefix: str, symbol: str
) -> None:
    st = SymbolState.fresh(symbol)
    ids = []
    for role in ("e", "t1", "t2", "sl", "rx", "rm", "x", "dr", "fx"):
        st, cid = core.next_client_id(st, role, prefix)
        ids.append(cid)
    assert len(set(ids)) == len(ids)
    for cid in ids:
        assert re.fullmatch(r"[.A-Z:/a-z0-9_-]{1,36}", cid), cid
    st2 = SymbolState.fresh(symbol)
    st2, first = core.next_client_id(st2, "e", prefix)
    assert first == ids[0] and st2.seq == 1
    big = SymbolState.fresh(symbol)
    big.seq = 9_999_999_998
    _, cid = core.next_client_id(big, "sl", prefix)
    assert len(cid) <= 36 and cid.endswith("-9999999999-sl")


def test_long_symbols_sharing_a_prefix_get_distinct_ids() -> None:
    a = core.next_client_id(SymbolState.fresh("VERYLONGSYMBOLNAMEAUSDT"), "e", "abcdefgh")[1]
    b = core.next_client_id(SymbolState.fresh("VERYLONGSYMBOLNAMEBUSDT"), "e", "abcdefgh")[1]
    assert a != b


def test_venue_order_ids_are_noted_in_last_orders() -> None:
    st = pending_entry()
    st.position_state.last_orders.entry.client_order_id = "atl-BTCUSDC-1-e"
    ack = core.on_order_update(st, ou("atl-BTCUSDC-1-e", "NEW", oid="555"), CTX, P, NOW)
    assert ack.state.position_state.last_orders.entry.order_id == "555"
    assert st.position_state.last_orders.entry.order_id is None  # input untouched
    s = opened()
    tp1 = of(s.commands, PlaceLimit)[0]
    ack2 = core.on_order_update(s.state, ou(tp1.client_order_id, "NEW", oid="556"), CTX, P, NOW)
    assert ack2.state.position_state.last_orders.tp[0].order_id == "556"
    assert not ack2.commands


def test_refused_replacement_stop_is_a_p0_emergency_flatten() -> None:
    """Issue 14.4: a break-even stop refused with -2021 (the price already crossed it) is a
    P0 event - EMERGENCY_FLAT through the reduce-only close, 30-minute freeze - not an
    SL_RECOVER market exit without a freeze; the replaced stop is cancelled after the close."""
    s = opened()
    tp1 = of(s.commands, PlaceLimit)[0]
    first = s.state.position_state.sl_algo.client_algo_id
    s1 = core.on_order_update(s.state, ou(tp1.client_order_id, "FILLED", 0.4, 102.0), CTX, P, NOW)
    be = s1.state.position_state.sl_algo.client_algo_id
    assert be != first and s1.state.position_state.sl_price == 100.0
    ctx = MarketCtx(mark_price=99.5, filters=CTX.filters)
    r = core.on_order_rejected(s1.state, "sl", be, -2021, "would immediately trigger", ctx, P, NOW)
    flat, cancel = r.commands
    assert isinstance(flat, EmergencyFlatten) and "-2021" in flat.reason
    assert isinstance(cancel, CancelAlgo) and cancel.client_algo_id == first
    assert not of(r.commands, PlaceMarket)
    assert not [x for x in r.records if x.get("event_type") == "SL_RECOVER"]
    done = core.on_emergency_flat(
        r.state, flat.reason, ctx, P, NOW, qty=0.6, price=99.5, order_ids=["9"], client_ids=[]
    )
    assert done.state.cooldown_until.freeze == NOW + 1800
    assert [x["event_type"] for x in done.records if x.get("kind") == "risk"][-1] == (
        "EMERGENCY_FLAT"
    )


def test_finished_stop_whose_child_did_not_fill_is_a_lost_stop() -> None:
    """Issue 13 B3: FINISHED with aq = 0 means the venue removed the stop (its child order
    did not fill): the position stays and must be protected again, not booked as stopped."""
    s = opened()
    acid = s.state.position_state.sl_algo.client_algo_id
    t = core.on_algo_update(s.state, au(acid, "TRIGGERED", child="777"), CTX, P, NOW)
    r = core.on_algo_update(t.state, au(acid, "FINISHED", child="777", executed=0.0), CTX, P, NOW)
    (stop,) = of(r.commands, PlaceAlgoStop)
    assert stop.qty == 1.0 and stop.stop_price == 98.0 and stop.client_algo_id != acid
    (rec,) = r.records
    assert rec["event_type"] == "SL_RECOVER" and "without a fill" in rec["reason"]
    assert r.state.position_state.qty_total == 1.0
    # a FINISHED whose child filled is a fired stop: nothing is re-placed
    fired = core.on_algo_update(
        t.state, au(acid, "FINISHED", child="777", executed=1.0), CTX, P, NOW
    )
    assert not of(fired.commands, PlaceAlgoStop)


def test_entry_stop_stays_protective_against_the_mark() -> None:
    st = pending_entry(kind="market", price=100.0, sl=98.0)
    ctx = MarketCtx(mark_price=97.9, filters=CTX.filters)  # the mark already below the plan
    step = core.on_order_update(st, ou("atl-BTCUSDC-1-e", "FILLED", 1.0, 100.0), ctx, P, NOW)
    stop = of(step.commands, PlaceAlgoStop)[0]
    assert stop.stop_price == pytest.approx(95.9) and stop.stop_price < 97.9  # planned R below
    calm = core.on_order_update(st, ou("atl-BTCUSDC-1-e", "FILLED", 1.0, 100.0), CTX, P, NOW)
    assert of(calm.commands, PlaceAlgoStop)[0].stop_price == 98.0


@pytest.mark.parametrize("kind", ["limit", "market"])
def test_exits_are_reduce_only(kind: str) -> None:
    from atlas_actors.domain import lifecycle
    from atlas_actors.domain.txn import Txn

    tx = Txn(opened().state)
    lifecycle.issue_exit(tx, lifecycle.R_EXIT, kind, 1.0, 101.0, "test_exit", "atl", 101, 0.0)
    (cmd,) = [c for c in tx.commands if isinstance(c, PlaceLimit | PlaceMarket)]
    assert cmd.reduce_only is True and cmd.side == "SELL" and cmd.role == "exit"
