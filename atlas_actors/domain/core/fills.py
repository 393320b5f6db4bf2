"""Order updates (`on_order_update`): entry and reduce fills matched by our client ids, a
triggered stop's child by its order id, fills that arrive before their ALGO_UPDATE parked,
and the exchange's own closes (liquidation, ADL, settlement: `venue_close_kind`), which
belong to no order of ours and still change the position."""

from __future__ import annotations

from typing import Any

from atlas_actors.domain import lifecycle
from atlas_actors.domain.commands import SetCooldown, risk_record
from atlas_actors.domain.core.ctx import TERMINAL, MarketCtx, Step, fill_args, has_position
from atlas_actors.domain.events import OrderUpdate
from atlas_actors.domain.params import Params
from atlas_actors.domain.records import LastOrders, OrderRef, SymbolState
from atlas_actors.domain.txn import Txn, venue_close_kind

# ====================================================================== order updates


def on_order_update(
    state: SymbolState, upd: OrderUpdate, ctx: MarketCtx, params: Params, now: int
) -> Step:
    tx = Txn(state)
    pend = state.pending
    cid = upd.client_order_id
    fq = float(upd.last_fill_qty) if upd.last_fill_qty and upd.last_fill_qty > 0 else 0.0
    fp = float(upd.last_fill_price or upd.avg_price or upd.price)
    complete = upd.status == "FILLED"
    terminal = upd.status in TERMINAL
    prefix, tick, step, min_qty, min_notional = fill_args(ctx)

    def reduce(info: dict[str, Any]) -> None:
        """Book this fill as a reduce of the position, on behalf of `info`'s order."""
        lifecycle.apply_reduce_fill(
            tx,
            info,
            fq,
            fp,
            float(upd.commission),
            complete,
            params,
            prefix,
            tick,
            step,
            now,
            mark=ctx.mark_price,
        )

    entry = pend.get("entry")
    if upd.order_id:
        _note_order_id(tx, cid, str(upd.order_id))
    if entry is not None and cid == entry.get("cid"):
        if fq > 0 or complete:
            lifecycle.apply_entry_fill(
                tx,
                entry,
                str(upd.order_id),
                fq,
                fp,
                float(upd.commission),
                complete,
                params,
                prefix,
                tick,
                step,
                min_qty,
                min_notional,
                ctx.spread_bps,
                now,
                ctx.mark_price,
            )
        elif terminal:
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
                outcome="rejected" if upd.status == "REJECTED" else "canceled",
            )
        return Step(tx.st, tx.commands, tx.records)

    orders = pend.get("orders") or {}
    if cid in orders:
        info = {**orders[cid], "cid": cid}
        if fq > 0:
            reduce(info)
        elif terminal:
            order_gone(tx, info)
        return Step(tx.st, tx.commands, tx.records)

    oid = str(upd.order_id)
    if oid and oid in (pend.get("stop_children") or []):
        if fq > 0:
            reduce({"role": "sl", "tag": "stop", "kind": "stop"})
        return Step(tx.st, tx.commands, tx.records)

    # After our own ids and the stop children (matched by order id, whatever client id the
    # venue gave the child): the exchange's own closes.
    closed_by = venue_close_kind(cid, upd.execution_type)
    if closed_by is not None:
        if fq > 0 and has_position(state.position_state):
            _venue_closed(tx, closed_by, upd, fq, fp, ctx, params, now)
        return Step(tx.st, tx.commands, tx.records)

    if fq > 0 and has_position(state.position_state):
        if cid and cid == pend.get("emergency"):
            reduce({"role": lifecycle.R_FLAT, "tag": "emergency", "kind": "market"})
        else:
            # possibly a stop's child whose ALGO_UPDATE has not arrived yet: park it
            parked = {
                "order_id": oid,
                "qty": fq,
                "price": fp,
                "commission": float(upd.commission),
                "complete": complete,
            }
            p = tx.pending()
            p["orphan_fills"] = (p.get("orphan_fills", []) + [parked])[-20:]
    return Step(tx.st, tx.commands, tx.records)


_VENUE_CLOSE_WORDS = {
    "liquidation": "liquidated",
    "adl": "auto-deleveraged (ADL)",
    "settlement": "settled (delivery/delisting)",
}


def _venue_closed(
    tx: Txn,
    kind: str,
    upd: OrderUpdate,
    fq: float,
    fp: float,
    ctx: MarketCtx,
    params: Params,
    now: int,
) -> None:
    """The exchange closed (part of) the position itself. Flat: the stop and take-profits
    that protected it are cancelled (`close_trade`); partly closed: the stop is re-sized to
    what is left (the old one is cancelled once the new one is visible). Either way a risk
    record names what the venue did; a liquidation also freezes the symbol, since the stop
    should have closed the position first."""
    prefix, tick, step, _mq, _mn = fill_args(ctx)
    before = tx.st.position_state
    side, old_stop = before.side, before.sl_algo.client_algo_id
    lifecycle.apply_reduce_fill(
        tx,
        {"role": "venue", "tag": kind, "kind": "venue"},
        fq,
        fp,
        float(upd.commission),
        True,  # every venue close is a whole event: the stop follows each one
        params,
        prefix,
        tick,
        step,
        now,
        mark=ctx.mark_price,
    )
    after = tx.st.position_state
    what = _VENUE_CLOSE_WORDS[kind]
    head = f"{kind}: the venue {what} {fq:g} of the {side} position ({upd.client_order_id})"
    if has_position(after):
        new_stop = after.sl_algo.client_algo_id
        event_type = "SL_RECOVER"
        reason = f"{head}; {after.qty_total:g} left, stop re-sized as {new_stop}"
        client_ids = [c for c in (old_stop, new_stop) if c]
    else:
        event_type = "EMERGENCY_FLAT"
        reason = f"{head} at {fp:g}; now flat, its stop and take-profits cancelled"
        client_ids = [c for c in (old_stop,) if c]
        if kind == "liquidation":
            cd = tx.cd()
            until = now + params.cooldown.emergency_freeze_s
            for which in ("loss", "freeze"):
                if until > getattr(cd, which):
                    setattr(cd, which, until)
                    tx.emit(SetCooldown(tx.st.symbol, which, until))
    tx.record(
        risk_record(
            event_type=event_type,
            symbol=tx.st.symbol,
            side=side,
            qty=fq,
            price=fp,
            order_ids=[str(upd.order_id)] if upd.order_id else [],
            client_ids=client_ids,
            reason=reason,
            ts=now,
        )
    )


def _note_order_id(tx: Txn, cid: str, oid: str) -> None:
    """Fill in the venue's order id of our entry / TP orders in last_orders (contract §3)."""
    lo = tx.st.position_state.last_orders
    if lo.entry.client_order_id == cid and lo.entry.order_id != oid:
        tx.pos().last_orders = LastOrders(entry=OrderRef(oid, cid), tp=lo.tp, sl=lo.sl)
    elif any(r.client_order_id == cid and r.order_id != oid for r in lo.tp):
        tp = [OrderRef(oid, cid) if r.client_order_id == cid else r for r in lo.tp]
        tx.pos().last_orders = LastOrders(entry=lo.entry, tp=tp, sl=lo.sl)


def order_gone(tx: Txn, info: dict[str, Any]) -> None:
    """One of our reduce orders ended unfilled (cancelled / expired / rejected)."""
    pend = tx.pending()
    orders = dict(pend.get("orders") or {})
    orders.pop(str(info["cid"]), None)
    pend["orders"] = orders
    exit_ = pend.get("exit")
    if exit_ and exit_.get("cid") == info["cid"]:
        del pend["exit"]  # the runner / template exit is decided again on the next bar
    if info.get("role") in (lifecycle.R_TP1, lifecycle.R_TP2):
        pos = tx.pos()
        lo = pos.last_orders
        pos.last_orders = LastOrders(
            entry=lo.entry, tp=[r for r in lo.tp if r.client_order_id != info["cid"]], sl=lo.sl
        )
