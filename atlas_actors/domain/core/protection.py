"""The protective stop and its failures: algo updates (`on_algo_update`), refused orders
(`on_order_rejected`: a refused stop, a post-only exit that would take) and the booking of an
emergency flat (`on_emergency_flat`)."""

from __future__ import annotations

from atlas_actors.domain import lifecycle
from atlas_actors.domain.commands import (
    CancelAlgo,
    CancelOrder,
    EmergencyFlatten,
    PlaceMarket,
    SetCooldown,
    risk_record,
)
from atlas_actors.domain.core.ctx import (
    POST_ONLY_REJECT_CODE,
    STOP_FIRED,
    STOP_LOST,
    MarketCtx,
    Step,
    fill_args,
    has_position,
)
from atlas_actors.domain.core.fills import order_gone
from atlas_actors.domain.covering import stop_removed
from atlas_actors.domain.events import AlgoUpdate
from atlas_actors.domain.params import Params
from atlas_actors.domain.records import AlgoRef, LastOrders, SlAlgo, SymbolState
from atlas_actors.domain.txn import Txn, client_id_head, role_of

# ====================================================================== algo updates


def on_algo_update(
    state: SymbolState, upd: AlgoUpdate, ctx: MarketCtx, params: Params, now: int
) -> Step:
    tx = Txn(state)
    pend = state.pending
    pos = state.position_state
    cur = pos.sl_algo.client_algo_id
    acid = upd.client_algo_id
    ours = acid == cur or acid in (pend.get("old_stops") or []) or _is_our_stop(state, acid, ctx)
    status = upd.status
    prefix, tick, step, _mq, _mn = fill_args(ctx)
    # FINISHED with nothing executed is a stop the venue removed (its child did not fill),
    # exactly like CANCELED / EXPIRED / REJECTED: the position is unprotected, not closed.
    removed = stop_removed(status, upd.executed_qty)
    fired = status in STOP_FIRED and not removed
    prev = pend.get("prev_stop")
    if prev and prev.get("cid") == acid and (fired or removed):
        del tx.pending()["prev_stop"]  # no longer a live fallback
    if fired and upd.order_id and ours:
        child = str(upd.order_id)
        p = tx.pending()
        kids = p.get("stop_children") or []
        if child not in kids:
            p["stop_children"] = (kids + [child])[-16:]
        parked = [x for x in (p.get("orphan_fills") or []) if x.get("order_id") == child]
        if parked:
            p["orphan_fills"] = [x for x in p["orphan_fills"] if x.get("order_id") != child]
            for x in parked:
                lifecycle.apply_reduce_fill(
                    tx,
                    {"role": "sl", "tag": "stop", "kind": "stop"},
                    float(x["qty"]),
                    float(x["price"]),
                    float(x["commission"]),
                    bool(x["complete"]),
                    params,
                    prefix,
                    tick,
                    step,
                    now,
                    mark=ctx.mark_price,
                )
    elif status == "NEW" and acid == cur and cur:
        p2 = tx.pos()
        p2.sl_algo = SlAlgo(upd.algo_id or None, cur, p2.sl_algo.working_type)
        lo = p2.last_orders
        p2.last_orders = LastOrders(entry=lo.entry, tp=lo.tp, sl=AlgoRef(upd.algo_id or None, cur))
        stale = pend.get("stale_stops")
        if stale:
            for s in stale:
                tx.emit(CancelAlgo(state.symbol, None, str(s)))
            del tx.pending()["stale_stops"]
    elif removed and acid == cur and cur and has_position(pos):
        what = status if status in STOP_LOST else f"{status} without a fill"
        _recover_stop(tx, f"protective stop {acid} {what}", ctx, params, now)
    elif removed and acid in (pend.get("old_stops") or []):
        p = tx.pending()
        p["old_stops"] = [s for s in p["old_stops"] if s != acid]
    return Step(tx.st, tx.commands, tx.records)


def _is_our_stop(state: SymbolState, acid: str, ctx: MarketCtx) -> bool:
    return (
        acid.startswith(client_id_head(ctx.client_id_prefix, state.symbol))
        and role_of(acid) == lifecycle.R_SL
    )


def _recover_stop(tx: Txn, why: str, ctx: MarketCtx, params: Params, now: int) -> None:
    pos = tx.st.position_state
    pend = tx.pending()
    trade = dict(pend.get("trade") or lifecycle.new_trade_info())
    trade["sl_recoveries"] = int(trade.get("sl_recoveries", 0)) + 1
    pend["trade"] = trade
    if trade["sl_recoveries"] > params.risk.max_stop_recoveries:
        _emergency(tx, f"{why}; re-placed {trade['sl_recoveries'] - 1} times already", ctx)
        return
    old = pos.sl_algo.client_algo_id
    cmd = lifecycle.place_stop(tx, pos.sl_price, pos.qty_total, ctx.client_id_prefix)
    tx.pending().pop("prev_stop", None)  # the lost stop is no fallback
    tx.record(
        risk_record(
            event_type="SL_RECOVER",
            symbol=tx.st.symbol,
            side=pos.side,
            qty=pos.qty_total,
            price=pos.sl_price,
            order_ids=[],
            client_ids=[c for c in (old, cmd.client_algo_id) if c],
            reason=f"{why}: re-placed as {cmd.client_algo_id}",
            ts=now,
        )
    )


def _emergency(tx: Txn, why: str, ctx: MarketCtx) -> None:
    if tx.st.pending.get("emergency"):
        return  # one flatten in flight is enough
    cid = tx.cid(lifecycle.R_FLAT, ctx.client_id_prefix)
    tx.pending()["emergency"] = cid
    tx.emit(EmergencyFlatten(tx.st.symbol, why, cid))


# ====================================================================== rejections


def _would_take(code: int | None, reason: str) -> bool:
    low = reason.lower()
    return code == POST_ONLY_REJECT_CODE or "post" in low or "would" in low or "gtx" in low


def on_order_rejected(
    state: SymbolState,
    role: str,
    client_id: str,
    code: int | None,
    reason: str,
    ctx: MarketCtx,
    params: Params,
    now: int,
) -> Step:
    tx = Txn(state)
    pend = state.pending
    pos = state.position_state
    prefix, tick, step, min_qty, min_notional = fill_args(ctx)
    entry = pend.get("entry")
    orders = pend.get("orders") or {}
    if entry is not None and client_id == entry.get("cid"):
        lifecycle.finish_entry(
            tx,
            entry,
            params,
            prefix,
            tick,
            step,
            min_qty,
            min_notional,
            ctx.spread_bps,
            now,
            outcome="rejected",
        )
    elif client_id not in orders and (
        (client_id and client_id == pos.sl_algo.client_algo_id)
        or role in ("sl", "stop")
        or role_of(client_id) == lifecycle.R_SL
    ):
        if has_position(pos):
            _stop_refused(tx, client_id, code, reason, ctx, now)
    elif client_id in orders:
        info = {**orders[client_id], "cid": client_id}
        order_gone(tx, info)
        code_ = str(info.get("role"))
        if info.get("kind") == "limit":
            lifecycle.record_exec(tx, "exit", True, "rejected", 0.0, ctx.spread_bps, now)
        if not has_position(pos):
            pass
        elif info.get("kind") == "limit" and _would_take(code, reason):
            # the market already passed the limit: take it now with a reduce-only market order
            price = float(info.get("ref") or ctx.mark_price or pos.entry_price)
            if code_ in (lifecycle.R_TP1, lifecycle.R_TP2):
                qty = min(float(info.get("qty", pos.qty_total)), pos.qty_total)
                cid = tx.cid(code_, prefix)
                tx.emit(
                    PlaceMarket(
                        state.symbol,
                        lifecycle.order_side(pos.side, False),
                        qty,
                        True,
                        cid,
                        lifecycle.COMMAND_ROLE[code_],
                    )
                )
                p = tx.pending()
                p["orders"] = {**p["orders"], cid: {**orders[client_id], "kind": "market"}}
            else:
                p = tx.pending()
                trade = dict(p.get("trade") or lifecycle.new_trade_info())
                trade["limit_exits"] += 1
                trade["fallbacks"] += 1
                p["trade"] = trade
                lifecycle.issue_exit(
                    tx,
                    lifecycle.R_RUNNER_MKT,
                    "market",
                    pos.qty_total,
                    price,
                    f"{info.get('tag', 'runner')}_fallback",
                    prefix,
                    state.bar_index,
                    ctx.spread_bps,
                )
        elif code_ == lifecycle.R_DERISK:
            pass  # de-risk is best effort, once per trade
    return Step(tx.st, tx.commands, tx.records)


def _stop_refused(
    tx: Txn, client_id: str, code: int | None, reason: str, ctx: MarketCtx, now: int
) -> None:
    """A protective stop placement was refused while a position is open: a P0 event.

    Also for a replacement (break-even, profit lock, new quantity; e.g. -2021, the level is
    already crossed): the stop it replaces may still be live, but the position no longer has
    the protection the strategy decided on, so the P0 rule applies - EMERGENCY_FLAT record,
    reduce-only market close, 30-minute loss/freeze. The replaced stop (reduce-only) is
    cancelled after the close."""
    st = tx.st
    if st.pending.get("emergency"):
        return  # one flatten in flight is enough
    prev = st.pending.get("prev_stop")
    _emergency(tx, f"protective stop {client_id} rejected: {reason} (code {code})", ctx)
    if prev is not None and prev.get("cid") and prev.get("cid") != client_id:
        tx.emit(CancelAlgo(st.symbol, None, str(prev["cid"])))


# ====================================================================== emergency flat


def on_emergency_flat(
    state: SymbolState,
    reason: str,
    ctx: MarketCtx,
    params: Params,
    now: int,
    *,
    qty: float,
    price: float,
    order_ids: list[str],
    client_ids: list[str],
) -> Step:
    tx = Txn(state)
    pos = state.position_state
    side = pos.side
    if has_position(pos):
        p = tx.pos()
        d = lifecycle.direction(p.side)
        p.realized_pnl += (price - p.entry_price) * d * p.qty_total
        p.qty_total = 0.0
        pend = tx.pending()
        trade = dict(pend.get("trade") or lifecycle.new_trade_info())
        trade["exits"] = trade["exits"] + ["emergency"]
        pend["trade"] = trade
        lifecycle.close_trade(tx, "emergency", price, params, now)
    else:
        entry = state.pending.get("entry")
        if entry:
            tx.emit(CancelOrder(state.symbol, None, str(entry["cid"])))
    cd = tx.cd()
    until = now + params.cooldown.emergency_freeze_s
    for which in ("loss", "freeze"):
        if until > getattr(cd, which):
            setattr(cd, which, until)
            tx.emit(SetCooldown(state.symbol, which, until))
    tx.st.pending = {k: v for k, v in tx.st.pending.items() if k == "stale_stops"}
    tx.record(
        risk_record(
            event_type="EMERGENCY_FLAT",
            symbol=state.symbol,
            side=side,
            qty=qty,
            price=price,
            order_ids=list(order_ids),
            client_ids=list(client_ids),
            reason=reason,
            ts=now,
        )
    )
    return Step(tx.st, tx.commands, tx.records)
