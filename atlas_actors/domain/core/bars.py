"""A closed bar (`on_bar`): regime, ShockGuard, position tracking, the §6 playbook or the
per-bar de-risk, template exits, §5 runner management, entry expiry, then at most one
candidate evaluation (and the open it may lead to). See `atlas_actors.domain.core`."""

from __future__ import annotations

from typing import Any

from atlas_actors.domain import lifecycle, playbook, regime, runner, scoring, shockguard
from atlas_actors.domain.commands import CancelOrder, PlaceLimit, PlaceMarket, SetCooldown
from atlas_actors.domain.core.ctx import MarketCtx, Step, filters_of
from atlas_actors.domain.lifecycle import NONE, QTY_EPS
from atlas_actors.domain.params import Params
from atlas_actors.domain.records import LastOrders, OrderRef, PositionStage, SymbolState
from atlas_actors.domain.templates import TEMPLATES, Setup, Template
from atlas_actors.domain.txn import Txn

_ENABLED: dict[tuple[str, ...], tuple[Template, ...]] = {}


def _enabled(params: Params) -> tuple[Template, ...]:
    key = tuple(params.strategy.templates)
    got = _ENABLED.get(key)
    if got is None:
        got = tuple(TEMPLATES[n] for n in key)
        _ENABLED[key] = got
    return got


def _pctx(
    st: SymbolState, ctx: MarketCtx, params: Params, now: int, price: float, shock_hit: bool
) -> dict[str, Any]:
    f = filters_of(ctx)
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
        f = filters_of(ctx)
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
    f = filters_of(ctx)
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
