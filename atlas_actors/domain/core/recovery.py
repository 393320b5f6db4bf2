"""After a restart: `reconcile` makes the shard agree with the venue (the truth) and
`desired_stop` is the stop the shell then makes real with ``recover_protection``;
`next_client_id` hands the shell a deterministic client id."""

from __future__ import annotations

from typing import Any

from atlas_actors.domain import lifecycle
from atlas_actors.domain.commands import CancelAlgo, CancelOrder
from atlas_actors.domain.core.ctx import MarketCtx, Step, fill_args, has_position
from atlas_actors.domain.lifecycle import LONG, NONE, QTY_EPS
from atlas_actors.domain.params import Params
from atlas_actors.domain.records import (
    AlgoRef,
    LastOrders,
    PositionStage,
    PositionState,
    SlAlgo,
    SymbolState,
)
from atlas_actors.domain.stops import StopSpec, closing_side
from atlas_actors.domain.txn import Txn, client_id_head

# ====================================================================== recovery


def desired_stop(state: SymbolState) -> StopSpec | None:
    """The protective stop the current position should have; None when flat."""
    pos = state.position_state
    if not has_position(pos):
        return None
    return StopSpec(
        side=closing_side(pos.side),
        qty=pos.qty_total,
        stop_price=pos.sl_price,
        working_type=pos.sl_algo.working_type or "MARK_PRICE",
        client_algo_id=pos.sl_algo.client_algo_id or "",
    )


def _num(d: dict[str, Any], key: str) -> float:
    v = d.get(key)
    return float(v) if v not in (None, "") else 0.0


def reconcile(
    state: SymbolState,
    venue_position: dict[str, Any],
    open_orders: list[dict[str, Any]],
    open_algos: list[dict[str, Any]],
    ctx: MarketCtx,
    params: Params,
    now: int,
) -> Step:
    """After a restart the venue is the truth: adapt the shard to it (see module doc)."""
    tx = Txn(state)
    sym = state.symbol
    prefix, tick, step, min_qty, min_notional = fill_args(ctx)
    head = client_id_head(prefix, sym)
    v_side = str(venue_position.get("side") or NONE).upper()
    v_qty = abs(_num(venue_position, "qty"))
    v_entry = _num(venue_position, "entry_price")
    if v_qty <= QTY_EPS or v_side not in (LONG, "SHORT"):
        v_side, v_qty = NONE, 0.0
    open_cids = {str(o.get("client_order_id") or "") for o in open_orders}
    open_acids = {str(a.get("client_algo_id") or "") for a in open_algos}
    pend = tx.pending()
    notes: list[str] = []

    # the pending entry: still working (kept), or resolved (its fills are in the venue position)
    entry: dict[str, Any] | None = pend.get("entry")
    if entry is not None and str(entry.get("cid")) not in open_cids:
        del pend["entry"]
        notes.append(f"entry {entry.get('cid')} no longer open")

    pos = state.position_state
    if v_side == NONE:
        if has_position(pos):
            price = ctx.mark_price or pos.sl_price or pos.entry_price
            notes.append(f"venue flat while the shard held {pos.side} {pos.qty_total:g}")
            p = tx.pos()
            p.realized_pnl += (price - p.entry_price) * lifecycle.direction(p.side) * p.qty_total
            p.qty_total = 0.0
            trade = dict(pend.get("trade") or lifecycle.new_trade_info())
            trade["exits"] = trade["exits"] + ["reconciled_flat"]
            pend["trade"] = trade
            lifecycle.close_trade(tx, "reconciled_flat", price, params, now)
        else:
            tx.set_pos(PositionState(last_orders=pos.last_orders))
            for k in (
                "exit",
                "orders",
                "trade",
                "old_stops",
                "prev_stop",
                "stop_children",
                "orphan_fills",
            ):
                tx.pending().pop(k, None)
    else:
        p = tx.pos()
        if not has_position(pos) or pos.side != v_side:
            plan = entry or {}
            d = lifecycle.direction(v_side)
            sl = float(plan.get("sl", 0.0)) if plan.get("side") == v_side else 0.0
            if sl <= 0 or (v_entry - sl) * d <= 0:
                sl = v_entry * (1.0 - d * params.risk.recovery_stop_pct)
            sl = lifecycle.stop_round(sl, v_side, tick)
            new = PositionState(
                side=v_side,
                entry_price=v_entry,
                qty_total=v_qty,
                sl_price=sl,
                position_stage=PositionStage.PRE_TP1,
                initial_qty=v_qty,
                risk_per_unit=abs(v_entry - sl),
                template=str(plan.get("template", "")),
                tier=str(plan.get("tier", "A")),
                opened_ts=now,
            )
            tx.set_pos(new)
            pend["trade"] = {
                **lifecycle.new_trade_info(),
                "targets": bool(plan.get("targets", bool(plan))),
            }
            for k in ("exit", "orders", "old_stops", "prev_stop", "stop_children", "orphan_fills"):
                pend.pop(k, None)
            notes.append(f"adopted venue position {v_side} {v_qty:g} @ {v_entry:g}, stop {sl:g}")
            if plan.get("targets") and plan.get("side") == v_side:
                lifecycle.place_targets(tx, params, prefix, tick, step, min_qty, min_notional)
        else:
            if abs(p.qty_total - v_qty) > QTY_EPS:
                notes.append(f"qty {p.qty_total:g} -> venue {v_qty:g}")
                p.qty_total = v_qty
                if p.initial_qty < v_qty:
                    p.initial_qty = v_qty
            if v_entry > 0:
                p.entry_price = v_entry
            p.qty_runner = p.qty_total if p.position_stage == PositionStage.RUNNER_ONLY else 0.0
            # forget reduce orders that are no longer open
            orders = pend.get("orders") or {}
            kept = {c: i for c, i in orders.items() if c in open_cids}
            if len(kept) != len(orders):
                notes.append(f"{len(orders) - len(kept)} reduce order(s) no longer open")
                pend["orders"] = kept
                lo = p.last_orders
                p.last_orders = LastOrders(
                    entry=lo.entry,
                    tp=[r for r in lo.tp if r.client_order_id in open_cids],
                    sl=lo.sl,
                )
            ex = pend.get("exit")
            if ex and ex.get("cid") not in open_cids:
                del pend["exit"]
    # our orders nobody tracks any more: cancel them (regular orders only; see stops below)
    tracked = set((tx.st.pending.get("orders") or {}).keys())
    e2 = tx.st.pending.get("entry")
    if e2:
        tracked.add(str(e2.get("cid")))
    for c in sorted(open_cids):
        if c.startswith(head) and c not in tracked:
            tx.emit(CancelOrder(sym, None, c))
            notes.append(f"cancel orphan order {c}")
    pos = tx.st.position_state
    ours = sorted(a for a in open_acids if a.startswith(head))
    live = _tightest_live_stop(open_algos, head, pos) if has_position(pos) else None
    if live is not None and live.get("client_algo_id") != pos.sl_algo.client_algo_id:
        # A flush that failed after a tighter stop went live leaves the shard with an older,
        # looser one: the live stop is the truth, never replaced by the shard's.
        _adopt_live_stop(tx, live)
        pos = tx.st.position_state
        notes.append(f"kept live stop {live.get('client_algo_id')} at {_num(live, 'stop_price'):g}")
    if not has_position(pos):
        for a in ours:
            tx.emit(CancelAlgo(sym, None, a))
            notes.append(f"cancel orphan stop {a}")
    else:
        cur = pos.sl_algo.client_algo_id
        others = [a for a in ours if a != cur]
        if cur and cur in open_acids:
            for a in others:
                tx.emit(CancelAlgo(sym, None, a))
        else:
            # the desired stop is not live: give it a fresh id (recover_protection creates it)
            # and cancel the others only once it is visible (never a moment without a stop)
            cid = tx.cid(lifecycle.R_SL, prefix)
            p = tx.pos()
            p.sl_algo = SlAlgo(None, cid, "MARK_PRICE")
            lo = p.last_orders
            p.last_orders = LastOrders(entry=lo.entry, tp=lo.tp, sl=AlgoRef(None, cid))
            tx.pending().pop("prev_stop", None)
            if others:
                tx.pending()["stale_stops"] = others
            notes.append(f"stop to (re)create as {cid}")
    if notes:
        pos = tx.st.position_state
        tx.record(
            {
                "kind": "reconcile",
                "ts": now,
                "symbol": sym,
                "side": pos.side,
                "qty": pos.qty_total,
                "reason": "; ".join(notes),
            }
        )
    return Step(tx.st, tx.commands, tx.records)


def _tightest_live_stop(
    open_algos: list[dict[str, Any]], head: str, pos: PositionState
) -> dict[str, Any] | None:
    """Our live stop closest to the market that closes the whole position, when it is at
    least as tight as the shard's stop (None otherwise)."""
    d = lifecycle.direction(pos.side)
    side = closing_side(pos.side)
    best: dict[str, Any] | None = None
    for a in open_algos:
        cid = str(a.get("client_algo_id") or "")
        covers = bool(a.get("close_position")) or _num(a, "qty") >= pos.qty_total - QTY_EPS
        price = _num(a, "stop_price")
        if not cid.startswith(head) or str(a.get("side")) != side or not covers or price <= 0:
            continue
        if best is None or (price - _num(best, "stop_price")) * d > 0:
            best = a
    if best is None or (_num(best, "stop_price") - pos.sl_price) * d < 0:
        return None
    for a in open_algos:  # the shard's own stop wins a tie
        if a.get("client_algo_id") == pos.sl_algo.client_algo_id and a is not best:
            if _num(a, "stop_price") == _num(best, "stop_price") and a.get("side") == side:
                return a
    return best


def _adopt_live_stop(tx: Txn, live: dict[str, Any]) -> None:
    p = tx.pos()
    algo_id = None if live.get("algo_id") is None else str(live["algo_id"])
    cid = str(live["client_algo_id"])
    p.sl_price = _num(live, "stop_price")
    p.sl_algo = SlAlgo(algo_id, cid, str(live.get("working_type") or "MARK_PRICE"))
    lo = p.last_orders
    p.last_orders = LastOrders(entry=lo.entry, tp=lo.tp, sl=AlgoRef(algo_id, cid))
    tx.pending().pop("prev_stop", None)


def next_client_id(state: SymbolState, role: str, prefix: str) -> tuple[SymbolState, str]:
    """Deterministic ``<prefix>-<symbol>-<seq>-<role>`` (<= 36 chars); returns the new state."""
    tx = Txn(state)
    cid = tx.cid(role, prefix)
    return tx.st, cid
