"""Restart reconciliation: the venue is the truth."""

from __future__ import annotations

from atlas_actors.domain import core
from atlas_actors.domain.commands import CancelAlgo, CancelOrder, PlaceLimit
from atlas_actors.domain.params import default_params
from atlas_actors.domain.records import SymbolState
from tests.unit.test_domain_lifecycle import CTX, NOW, au, of, opened, pending_entry

P = default_params()
FLAT = {"side": "NONE", "qty": 0.0, "entry_price": 0.0}


def test_flat_everywhere_is_a_no_op() -> None:
    st = SymbolState.fresh("BTCUSDC")
    step = core.reconcile(st, FLAT, [], [], CTX, P, NOW)
    assert not step.commands and not step.records
    assert step.state.to_dict() == st.to_dict()


def test_venue_flat_while_the_shard_holds_a_position() -> None:
    s = opened().state
    step = core.reconcile(s, FLAT, [], [], core.MarketCtx(mark_price=99.0), P, NOW)
    st = step.state
    assert st.position_state.side == "NONE" and core.desired_stop(st) is None
    assert st.trade_window[-1]["exit_reason"] == "reconciled_flat"
    assert st.trade_window[-1]["pnl"] == -1.0
    (rec,) = [r for r in step.records if r["kind"] == "reconcile"]
    assert "venue flat while the shard held LONG 1" in rec["reason"]
    assert st.cooldown_until.loss > 0  # a loss is a loss


def test_qty_follows_the_venue_and_vanished_targets_are_forgotten() -> None:
    s = opened()
    tp1, tp2 = of(s.commands, PlaceLimit)
    acid = s.state.position_state.sl_algo.client_algo_id
    venue = {"side": "LONG", "qty": 0.6, "entry_price": 100.0}
    step = core.reconcile(
        s.state,
        venue,
        [{"client_order_id": tp2.client_order_id}],
        [{"client_algo_id": acid}],
        CTX,
        P,
        NOW,
    )
    pos = step.state.position_state
    assert pos.qty_total == 0.6 and [r.client_order_id for r in pos.last_orders.tp] == [
        tp2.client_order_id
    ]
    assert set(step.state.pending["orders"]) == {tp2.client_order_id}
    assert pos.sl_algo.client_algo_id == acid  # the live stop is kept
    desired = core.desired_stop(step.state)
    assert desired is not None and desired.qty == 0.6 and desired.client_algo_id == acid


def test_entry_filled_while_down_is_adopted_with_its_plan() -> None:
    st = pending_entry()
    venue = {"side": "LONG", "qty": 1.0, "entry_price": 100.0}
    step = core.reconcile(st, venue, [], [], CTX, P, NOW)
    pos = step.state.position_state
    assert pos.side == "LONG" and pos.qty_total == 1.0 and pos.sl_price == 98.0
    assert pos.position_stage == "PRE_TP1" and pos.template == "trend_pullback"
    assert "entry" not in step.state.pending
    assert len(of(step.commands, PlaceLimit)) == 2  # its targets
    desired = core.desired_stop(step.state)
    assert desired is not None and desired.client_algo_id and desired.stop_price == 98.0


def test_unknown_venue_position_gets_a_recovery_stop() -> None:
    st = SymbolState.fresh("BTCUSDC")
    step = core.reconcile(
        st, {"side": "SHORT", "qty": 2.0, "entry_price": 50.0}, [], [], CTX, P, NOW
    )
    desired = core.desired_stop(step.state)
    assert desired is not None and desired.side == "BUY" and desired.qty == 2.0
    assert desired.stop_price == 51.0  # 2 % above a short
    assert not of(step.commands, PlaceLimit)


def test_orphans_of_ours_are_cancelled_others_untouched() -> None:
    st = SymbolState.fresh("BTCUSDC")
    orders = [{"client_order_id": "atl-BTCUSDC-7-t1"}, {"client_order_id": "manual-1"}]
    algos = [{"client_algo_id": "atl-BTCUSDC-8-sl"}, {"client_algo_id": "other-sl"}]
    step = core.reconcile(st, FLAT, orders, algos, CTX, P, NOW)
    assert [c.client_order_id for c in of(step.commands, CancelOrder)] == ["atl-BTCUSDC-7-t1"]
    assert [c.client_algo_id for c in of(step.commands, CancelAlgo)] == ["atl-BTCUSDC-8-sl"]


def test_missing_stop_gets_a_new_id_and_old_stops_wait_until_it_is_visible() -> None:
    s = opened().state
    old = s.position_state.sl_algo.client_algo_id
    venue = {"side": "LONG", "qty": 1.0, "entry_price": 100.0}
    step = core.reconcile(s, venue, [], [{"client_algo_id": "atl-BTCUSDC-1-sl"}], CTX, P, NOW)
    new = step.state.position_state.sl_algo.client_algo_id
    assert new and new != old
    assert not of(step.commands, CancelAlgo)  # never a moment without a stop
    assert step.state.pending["stale_stops"] == ["atl-BTCUSDC-1-sl"]
    vis = core.on_algo_update(step.state, au(new, "NEW"), CTX, P, NOW)
    assert [c.client_algo_id for c in of(vis.commands, CancelAlgo)] == ["atl-BTCUSDC-1-sl"]
    assert "stale_stops" not in vis.state.pending


def test_live_stop_present_cancels_the_other_stops_of_ours() -> None:
    s = opened().state
    cur = s.position_state.sl_algo.client_algo_id
    venue = {"side": "LONG", "qty": 1.0, "entry_price": 100.0}
    algos = [{"client_algo_id": cur}, {"client_algo_id": "atl-BTCUSDC-1-sl"}]
    step = core.reconcile(s, venue, [], algos, CTX, P, NOW)
    assert [c.client_algo_id for c in of(step.commands, CancelAlgo)] == ["atl-BTCUSDC-1-sl"]
    assert step.state.position_state.sl_algo.client_algo_id == cur


def test_working_entry_is_kept() -> None:
    st = pending_entry()
    step = core.reconcile(st, FLAT, [{"client_order_id": "atl-BTCUSDC-1-e"}], [], CTX, P, NOW)
    assert step.state.pending["entry"]["cid"] == "atl-BTCUSDC-1-e" and not step.commands


def _stop(cid: str, price: float, qty: float = 1.0, side: str = "SELL") -> dict[str, object]:
    return {
        "client_algo_id": cid,
        "algo_id": "9" + cid.split("-")[2],
        "side": side,
        "stop_price": price,
        "qty": qty,
        "working_type": "MARK_PRICE",
        "close_position": False,
    }


def test_a_live_tighter_stop_is_kept_over_the_shards_older_looser_one() -> None:
    """B15: the stop moved up to 99.5 (new id, live), then the flush failed: the shard on disk
    still names the old stop at 98, which is still live too. Recovery keeps the tighter one
    and cancels the looser, never the other way round."""
    s = opened().state
    old = s.position_state.sl_algo.client_algo_id
    assert s.position_state.sl_price == 98.0 and old
    venue = {"side": "LONG", "qty": 1.0, "entry_price": 100.0}
    tighter = "atl-BTCUSDC-40-sl"
    for algos in ([_stop(old, 98.0), _stop(tighter, 99.5)], [_stop(tighter, 99.5)]):
        step = core.reconcile(s, venue, [], algos, CTX, P, NOW)
        pos = step.state.position_state
        assert pos.sl_algo.client_algo_id == tighter and pos.sl_price == 99.5
        cancelled = [c.client_algo_id for c in of(step.commands, CancelAlgo)]
        assert tighter not in cancelled
        assert cancelled == ([old] if len(algos) == 2 else [])
        desired = core.desired_stop(step.state)
        assert desired is not None and desired.client_algo_id == tighter
        assert desired.stop_price == 99.5


def test_a_live_looser_or_partial_stop_does_not_replace_the_shards() -> None:
    s = opened().state
    cur = s.position_state.sl_algo.client_algo_id
    venue = {"side": "LONG", "qty": 1.0, "entry_price": 100.0}
    looser = [_stop(cur, 98.0), _stop("atl-BTCUSDC-40-sl", 97.0)]
    step = core.reconcile(s, venue, [], looser, CTX, P, NOW)
    assert step.state.position_state.sl_algo.client_algo_id == cur
    assert step.state.position_state.sl_price == 98.0
    partial = [_stop("atl-BTCUSDC-41-sl", 99.5, qty=0.4)]  # does not cover the position
    step = core.reconcile(s, venue, [], partial, CTX, P, NOW)
    assert step.state.position_state.sl_price == 98.0
    assert step.state.position_state.sl_algo.client_algo_id != "atl-BTCUSDC-41-sl"
