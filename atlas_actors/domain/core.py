"""The domain's entry points: what the engine (SymbolEngine) calls for each event.

Every function is pure: ``(state, event, ctx, params, now) -> Step(new state, commands,
§8 records)``. The input state is never mutated (copy-on-write through `Txn`); ``now`` is
epoch seconds supplied by the caller; nothing here reads a clock, does I/O or draws random
numbers, so identical inputs always give identical outputs.

Order of work on a closed bar (`on_bar`): bar_index++, regime update, ShockGuard update,
position tracking (``peak_pnl_r``, ``bars_after_tp2``), the §6 playbook when the regime
changed (else the per-bar de-risk rule), the template's own exit (ema_cross), §5 runner
management in RUNNER_ONLY, expiry of an unfilled post-only entry, then at most ONE candidate
evaluation when flat with nothing pending; every evaluation yields exactly one §8 candidate
record (OPEN or REJECT).

Fills are matched by our client ids (entry, TP, exits) and, for a triggered stop, by the
child order id the ALGO_UPDATE reported, never by time windows. A fill that arrives before
the ALGO_UPDATE naming its order is parked and applied when the update arrives.

A refused protective stop: with no live predecessor the position is unprotected, so an
EmergencyFlatten (P0); a refused *replacement* (break-even, profit lock) leaves the stop it
replaces live, so that one stays current and the position is closed at market instead.

`reconcile` (after a restart) makes the shard agree with the venue, which is the truth;
`desired_stop` is the stop the shell then makes real with ``recover_protection``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from atlas_actors.domain import lifecycle, playbook, regime, runner, scoring, shockguard
from atlas_actors.domain.commands import (
    CancelAlgo,
    CancelOrder,
    Command,
    EmergencyFlatten,
    PlaceLimit,
    PlaceMarket,
    SetCooldown,
    risk_record,
)
from atlas_actors.domain.events import AlgoUpdate, OrderUpdate
from atlas_actors.domain.lifecycle import LONG, NONE, QTY_EPS
from atlas_actors.domain.params import Params
from atlas_actors.domain.records import (
    AlgoRef,
    LastOrders,
    OrderRef,
    PositionStage,
    PositionState,
    SlAlgo,
    SymbolState,
)
from atlas_actors.domain.stops import StopSpec, closing_side
from atlas_actors.domain.templates import TEMPLATES, Setup, Template
from atlas_actors.domain.txn import Txn, client_id_head, role_of

TERMINAL = ("CANCELED", "EXPIRED", "REJECTED", "EXPIRED_IN_MATCH")
STOP_FIRED = ("TRIGGERING", "TRIGGERED", "FINISHED")
STOP_LOST = ("CANCELED", "EXPIRED", "REJECTED")
POST_ONLY_REJECT_CODE = -5022


@dataclass(frozen=True)
class SymbolFilters:
    """The symbol's trading filters (0 = no constraint)."""

    tick_size: float = 0.0
    step_size: float = 0.0
    min_qty: float = 0.0
    min_notional: float = 0.0


NO_FILTERS = SymbolFilters()


@dataclass(frozen=True)
class Step:
    state: SymbolState
    commands: list[Command] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class MarketCtx:
    """What the shell knows besides the event."""

    mark_price: float | None = None
    spread_bps: float = 0.0
    funding_rate: float = 0.0
    equity: float = 10_000.0
    available_balance: float = 10_000.0
    margin_used: float = 0.0
    open_block_reason: str | None = None  # set when the shell refuses opens (actor state, account)
    client_id_prefix: str = "atl"
    filters: SymbolFilters | None = None


def _filters(ctx: MarketCtx) -> SymbolFilters:
    return ctx.filters if ctx.filters is not None else NO_FILTERS


_ENABLED: dict[tuple[str, ...], tuple[Template, ...]] = {}


def _enabled(params: Params) -> tuple[Template, ...]:
    key = tuple(params.strategy.templates)
    got = _ENABLED.get(key)
    if got is None:
        got = tuple(TEMPLATES[n] for n in key)
        _ENABLED[key] = got
    return got


def _has_position(pos: PositionState) -> bool:
    return pos.side != NONE and pos.qty_total > QTY_EPS


def _pctx(
    st: SymbolState, ctx: MarketCtx, params: Params, now: int, price: float, shock_hit: bool
) -> dict[str, Any]:
    f = _filters(ctx)
    return {
        "params": params,
        "now": now,
        "price": price,
        "bar_index": st.bar_index,
        "prefix": ctx.client_id_prefix,
        "tick": f.tick_size,
        "step": f.step_size,
        "min_qty": f.min_qty,
        "spread_bps": ctx.spread_bps,
        "margin_used": ctx.margin_used,
        "equity": ctx.equity,
        "shock_hit": shock_hit,
        "mark": ctx.mark_price,
    }


# ====================================================================== closed bar


def on_bar(
    state: SymbolState, bar: dict[str, Any], ctx: MarketCtx, params: Params, now: int
) -> Step:
    tx = Txn(state)
    st = tx.st
    o = float(bar["open"])
    h = float(bar["high"])
    lo = float(bar["low"])
    c = float(bar["close"])
    close_time = int(bar["close_time"])
    interval_s = bar.get("interval_s") or max(1, (close_time - int(bar["open_time"]) + 1) // 1000)
    gap = int(bar.get("gap_before") or 0)
    st.bar_index += 1
    st.last_bar_close_time = close_time
    sp = params.strategy

    rs, reg = regime.update(st.regime_state, o, h, lo, c, gap, sp)
    st.regime_state = rs

    shock_hit = False
    if params.shockguard.enabled:
        ss, sg, cd, shock_hit = shockguard.update(
            st.shock_state,
            st.shockguard,
            st.cooldown_until,
            c,
            int(interval_s),
            gap,
            params.shockguard,
            now,
        )
        st.shock_state = ss
        st.shockguard = sg
        if cd is not st.cooldown_until:
            st.cooldown_until = cd
            tx.emit(SetCooldown(st.symbol, "shock", cd.shock))

    # exits are asynchronous (orders), so whether a position is open holds for the whole bar
    pos = st.position_state
    has_pos = pos.side != NONE and pos.qty_total > QTY_EPS
    if has_pos:
        lifecycle.track(tx, c)

    old = st.last_regime
    if reg != old:
        st.last_regime = reg
        playbook.run_steps(tx, old, reg, _pctx(st, ctx, params, now, c, shock_hit))
    elif has_pos:
        playbook.derisk(tx, params, _pctx(st, ctx, params, now, c, shock_hit))

    if has_pos:
        f = _filters(ctx)
        tmpl = TEMPLATES.get(pos.template)
        if (
            tmpl is not None
            and tmpl.exit_signal is not None
            and not st.pending.get("exit")
            and tmpl.exit_signal(rs, pos.side)
        ):
            lifecycle.issue_exit(
                tx,
                lifecycle.R_EXIT,
                "market",
                pos.qty_total,
                c,
                f"{tmpl.name}_exit",
                ctx.client_id_prefix,
                st.bar_index,
                ctx.spread_bps,
            )
        pos = st.position_state
        if pos.position_stage == PositionStage.RUNNER_ONLY:
            decision = runner.manage_runner(
                st.symbol,
                pos,
                st.bar_index,
                {
                    "regime": reg,
                    "price": c,
                    "params": params.runner,
                    "exit": st.pending.get("exit"),
                },
            )
            if decision["action"] != runner.HOLD:
                runner.exit_runner(
                    tx,
                    decision,
                    prefix=ctx.client_id_prefix,
                    tick=f.tick_size,
                    spread_bps=ctx.spread_bps,
                    bar_index=st.bar_index,
                    now=now,
                )

    pending = st.pending
    entry = pending.get("entry") if pending else None
    if entry is not None:
        if (
            entry.get("kind") == "limit"
            and not entry.get("cancel_sent")
            and st.bar_index >= int(entry["expiry_bar"])
        ):
            tx.emit(CancelOrder(st.symbol, None, str(entry["cid"])))
            tx.pending()["entry"] = {**entry, "cancel_sent": True}
    elif not has_pos and not (pending and pending.get("exit")) and rs["n"] >= sp.warmup_bars:
        _evaluate(tx, reg, rs, ctx, params, now)
    return Step(tx.st, tx.commands, tx.records)


def _pick(
    templates: tuple[Template, ...], reg: str, rs: dict[str, Any], params: Params
) -> tuple[Setup, Template] | None:
    best: tuple[Setup, Template] | None = None
    best_key = (False, -1.0)
    sp = params.strategy
    for t in templates:
        s = t.signal(rs, params.tier_a if t.tier == "A" else params.tier_b, sp)
        if s is None:
            continue
        key = (reg in t.regimes, s.base_score)
        if best is None or key > best_key:
            best, best_key = (s, t), key
    return best


def _evaluate(
    tx: Txn, reg: str, rs: dict[str, Any], ctx: MarketCtx, params: Params, now: int
) -> None:
    picked = _pick(_enabled(params), reg, rs, params)
    if picked is None:
        return  # no setup on this bar: nothing to evaluate
    setup, tmpl = picked
    f = _filters(ctx)
    record, plan = scoring.evaluate(
        tx.st,
        setup,
        tmpl,
        reg,
        rs,
        spread_bps=ctx.spread_bps,
        funding_rate=ctx.funding_rate,
        equity=ctx.equity,
        available=ctx.available_balance,
        margin_used=ctx.margin_used,
        open_block_reason=ctx.open_block_reason,
        tick=f.tick_size,
        step=f.step_size,
        min_qty=f.min_qty,
        min_notional=f.min_notional,
        params=params,
        now=now,
    )
    tx.record(record)
    if plan is not None:
        _open(tx, plan, ctx, params)


def _open(tx: Txn, plan: dict[str, Any], ctx: MarketCtx, params: Params) -> None:
    st = tx.st
    cid = tx.cid(lifecycle.R_ENTRY, ctx.client_id_prefix)
    side = lifecycle.order_side(str(plan["side"]), opening=True)
    qty = float(plan["qty"])
    if plan["kind"] == "limit":
        tx.emit(PlaceLimit(st.symbol, side, qty, float(plan["price"]), False, cid, "entry"))
    else:
        tx.emit(PlaceMarket(st.symbol, side, qty, False, cid, "entry"))
    tier = params.tier(str(plan["tier"]))
    tx.pending()["entry"] = {
        **plan,
        "cid": cid,
        "placed_bar": st.bar_index,
        "expiry_bar": st.bar_index + tier.entry_expiry_bars,
        "filled": 0.0,
        "spread_bps": ctx.spread_bps,
    }
    st.last_template = str(plan["template"])
    pos = tx.pos()
    pos.last_orders = LastOrders(entry=OrderRef(None, cid))


# ====================================================================== order updates


def _fill_args(ctx: MarketCtx) -> tuple[str, float, float, float, float]:
    f = _filters(ctx)
    return ctx.client_id_prefix, f.tick_size, f.step_size, f.min_qty, f.min_notional


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
    prefix, tick, step, min_qty, min_notional = _fill_args(ctx)

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
        elif terminal:
            _order_gone(tx, info)
        return Step(tx.st, tx.commands, tx.records)

    oid = str(upd.order_id)
    if oid and oid in (pend.get("stop_children") or []):
        if fq > 0:
            lifecycle.apply_reduce_fill(
                tx,
                {"role": "sl", "tag": "stop", "kind": "stop"},
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
        return Step(tx.st, tx.commands, tx.records)

    if fq > 0 and _has_position(state.position_state):
        if cid and cid == pend.get("emergency"):
            lifecycle.apply_reduce_fill(
                tx,
                {"role": lifecycle.R_FLAT, "tag": "emergency", "kind": "market"},
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


def _note_order_id(tx: Txn, cid: str, oid: str) -> None:
    """Fill in the venue's order id of our entry / TP orders in last_orders (contract §3)."""
    lo = tx.st.position_state.last_orders
    if lo.entry.client_order_id == cid and lo.entry.order_id != oid:
        tx.pos().last_orders = LastOrders(entry=OrderRef(oid, cid), tp=lo.tp, sl=lo.sl)
    elif any(r.client_order_id == cid and r.order_id != oid for r in lo.tp):
        tp = [OrderRef(oid, cid) if r.client_order_id == cid else r for r in lo.tp]
        tx.pos().last_orders = LastOrders(entry=lo.entry, tp=tp, sl=lo.sl)


def _order_gone(tx: Txn, info: dict[str, Any]) -> None:
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
    prefix, tick, step, _mq, _mn = _fill_args(ctx)
    prev = pend.get("prev_stop")
    if prev and prev.get("cid") == acid and status in STOP_FIRED + STOP_LOST:
        del tx.pending()["prev_stop"]  # no longer a live fallback
    if status in STOP_FIRED and upd.order_id and ours:
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
    elif status in STOP_LOST and acid == cur and cur and _has_position(pos):
        _recover_stop(tx, f"protective stop {acid} {status}", ctx, params, now)
    elif status in STOP_LOST and acid in (pend.get("old_stops") or []):
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
    prefix, tick, step, min_qty, min_notional = _fill_args(ctx)
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
        if _has_position(pos):
            _stop_refused(tx, client_id, code, reason, ctx, now)
    elif client_id in orders:
        info = {**orders[client_id], "cid": client_id}
        _order_gone(tx, info)
        code_ = str(info.get("role"))
        if info.get("kind") == "limit":
            lifecycle.record_exec(tx, "exit", True, "rejected", 0.0, ctx.spread_bps, now)
        if not _has_position(pos):
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
    """A protective stop placement was refused while a position is open.

    A replacement (break-even, profit lock, new quantity) leaves the stop it replaces live
    (the engine cancels it only once the new one is visible), so the position is still
    protected: keep that stop as the current one and, since the market is already beyond
    the level we wanted, close at market (reduce-only). Without a live predecessor the
    position is unprotected: emergency flatten (P0)."""
    st = tx.st
    pos = st.position_state
    prev = st.pending.get("prev_stop")
    live = prev is not None and prev.get("cid") in (st.pending.get("old_stops") or [])
    if client_id != pos.sl_algo.client_algo_id or not live or prev is None:
        _emergency(tx, f"protective stop {client_id} rejected: {reason} (code {code})", ctx)
        return
    p = tx.pos()
    kept = str(prev["cid"])
    p.sl_price = float(prev["price"])
    p.sl_algo = SlAlgo(None, kept, "MARK_PRICE")
    p.last_orders = LastOrders(
        entry=p.last_orders.entry, tp=p.last_orders.tp, sl=AlgoRef(None, kept)
    )
    pend = tx.pending()
    pend["old_stops"] = [s for s in pend.get("old_stops", []) if s != kept]
    del pend["prev_stop"]
    price = float(ctx.mark_price or p.sl_price)
    client_ids = [client_id, kept]
    if not (pend.get("exit") or {}).get("kind") == "market":
        cid = lifecycle.issue_exit(
            tx,
            lifecycle.R_EXIT,
            "market",
            p.qty_total,
            price,
            "stop_crossed",
            ctx.client_id_prefix,
            st.bar_index,
            ctx.spread_bps,
        )
        client_ids.append(cid)
    tx.record(
        risk_record(
            event_type="SL_RECOVER",
            symbol=st.symbol,
            side=p.side,
            qty=p.qty_total,
            price=p.sl_price,
            order_ids=[],
            client_ids=client_ids,
            reason=f"replacement stop {client_id} rejected: {reason} (code {code}); {kept} at "
            f"{p.sl_price:g} still protects; closing at market",
            ts=now,
        )
    )


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
    if _has_position(pos):
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


# ====================================================================== recovery


def desired_stop(state: SymbolState) -> StopSpec | None:
    """The protective stop the current position should have; None when flat."""
    pos = state.position_state
    if not _has_position(pos):
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
    prefix, tick, step, min_qty, min_notional = _fill_args(ctx)
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
        if _has_position(pos):
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
        if not _has_position(pos) or pos.side != v_side:
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
    if not _has_position(pos):
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


def next_client_id(state: SymbolState, role: str, prefix: str) -> tuple[SymbolState, str]:
    """Deterministic ``<prefix>-<symbol>-<seq>-<role>`` (<= 36 chars); returns the new state."""
    tx = Txn(state)
    cid = tx.cid(role, prefix)
    return tx.st, cid
