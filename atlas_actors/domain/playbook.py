"""§6 regime-shift playbook, always in the same four steps:

1. ``shockguard_derisk``: ShockGuard / margin de-risk of a non-runner position (reduce-only
   market of ``risk.margin_derisk_reduce`` of it when the ShockGuard fired on this bar or the
   account's margin use exceeds ``risk.margin_derisk_share`` of equity; once per trade);
2. ``runner``: a runner entering SHOCK or CHOP is closed at once (reduce-only market, §3);
3. ``position``: the rest of the position: on a shift against it (SHOCK, CHOP or the opposite
   trend) with at least ``strategy.shift_lock_min_r`` of profit the stop is tightened to
   break-even (lock profit); otherwise the stop stays;
4. ``cooldown``: entering SHOCK sets ``cooldown_until.shock = now + shockguard.cooldown_s``
   (whether or not the ShockGuard's own trigger is enabled: the regime is the market's, not the
   trigger's); entering CHOP sets ``cooldown_until.template = now + cooldown.chop_s``; a trend or
   range shift changes no lock. ``cooldown_until.freeze`` belongs to the Sentinel and the
   operator, never to a regime. Then the ``regime_shift_log`` event is written: the §8
   REGIME_SHIFT risk record, whose reason ends with ``regime_shift_log``.

`on_regime_shift(symbol, old_regime, new_regime, st, ctx) -> dict` is pure: ``st`` (a
SymbolState) is not modified; the result carries ``steps`` (the four step names in order
with what each did), ``state``, ``commands`` and ``records``.

``ctx`` keys: ``params`` (Params), ``now`` (int), ``price`` (the bar's close),
``bar_index`` (int), ``prefix`` (client-id prefix), ``tick`` and ``step`` (filters, 0 = none),
``spread_bps``, ``margin_used``, ``equity``, ``shock_hit`` (the ShockGuard fired this bar),
``mark`` (mark price or None: a tightened stop stays protective against it too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from atlas_actors.domain import lifecycle, runner
from atlas_actors.domain.commands import SetCooldown, risk_record
from atlas_actors.domain.params import Params, default_params
from atlas_actors.domain.records import PositionStage, SymbolState
from atlas_actors.domain.txn import Txn

STEP_NAMES = ("shockguard_derisk", "runner", "position", "cooldown")
ADVERSE_FOR = {"LONG": ("SHOCK", "CHOP", "TREND_DOWN"), "SHORT": ("SHOCK", "CHOP", "TREND_UP")}


def derisk(tx: Txn, params: Params, ctx: Mapping[str, Any]) -> str:
    """Step 1 (also run on ordinary bars): returns what was done."""
    pos = tx.st.position_state
    if pos.side == "NONE" or pos.qty_total <= 0:
        return "flat"
    if pos.position_stage == PositionStage.RUNNER_ONLY:
        return "runner: handled by step 2"
    trade = tx.st.pending.get("trade") or {}
    if trade.get("derisked"):
        return "already de-risked this trade"
    if tx.st.pending.get("exit"):
        return "exit in flight"
    equity = float(ctx.get("equity", 0.0))
    margin = float(ctx.get("margin_used", 0.0))
    rp = params.risk
    shock = bool(ctx.get("shock_hit")) and params.shockguard.enabled
    over = equity > 0 and margin > rp.margin_derisk_share * equity
    if not (shock or over):
        return "no de-risk needed"
    step = float(ctx.get("step", 0.0))
    q = lifecycle.floor_to(pos.qty_total * rp.margin_derisk_reduce, step)
    if q <= 0 or q < float(ctx.get("min_qty", 0.0)):
        return "de-risk quantity below min qty"
    why = (
        "shockguard trigger"
        if shock
        else f"margin {margin:.2f} > {rp.margin_derisk_share} x equity"
    )
    cid = lifecycle.issue_exit(
        tx,
        lifecycle.R_DERISK,
        "market",
        q,
        float(ctx["price"]),
        "derisk",
        str(ctx.get("prefix", "atl")),
        int(ctx.get("bar_index", 0)),
        float(ctx.get("spread_bps", 0.0)),
    )
    pend = tx.pending()
    pend["trade"] = {**(pend.get("trade") or lifecycle.new_trade_info()), "derisked": True}
    return f"de-risk {q:g} ({why}) {cid}"


def run_steps(
    tx: Txn, old_regime: str, new_regime: str, ctx: Mapping[str, Any]
) -> list[dict[str, Any]]:
    params: Params = ctx["params"]
    now = int(ctx["now"])
    price = float(ctx["price"])
    sym = tx.st.symbol
    steps: list[dict[str, Any]] = []
    n0 = len(tx.commands)

    # 1) ShockGuard / margin de-risk
    steps.append({"step": 1, "name": STEP_NAMES[0], "did": derisk(tx, params, ctx)})

    # 2) runner
    pos = tx.st.position_state
    did = "no runner"
    if pos.position_stage == PositionStage.RUNNER_ONLY and pos.qty_runner > 0:
        if new_regime in runner.EXIT_REGIMES:
            pending = tx.st.pending.get("exit")
            if pending and pending.get("kind") == "market":
                did = "market exit already in flight"
            else:
                runner.exit_runner(
                    tx,
                    {
                        "action": runner.EXIT_MARKET,
                        "rule": "regime",
                        "reason": f"regime shift {old_regime} -> {new_regime}: runner closed "
                        "immediately",
                        "price": price,
                    },
                    prefix=str(ctx.get("prefix", "atl")),
                    tick=float(ctx.get("tick", 0.0)),
                    spread_bps=float(ctx.get("spread_bps", 0.0)),
                    bar_index=int(ctx.get("bar_index", 0)),
                    now=now,
                )
                did = "runner closed at market"
        else:
            did = "runner kept"
    steps.append({"step": 2, "name": STEP_NAMES[1], "did": did})

    # 3) remaining position: stop / lock profit
    pos = tx.st.position_state
    did = "flat"
    if pos.side != "NONE" and pos.qty_total > 0 and pos.position_stage != PositionStage.RUNNER_ONLY:
        did = "stop kept"
        uses_targets = bool(tx.st.pending.get("trade", {}).get("targets", True))
        if new_regime in ADVERSE_FOR.get(pos.side, ()) and uses_targets:
            r_now = lifecycle.current_r(pos, price)
            ref = lifecycle.adverse_price(pos.side, price, ctx.get("mark"))
            if r_now >= params.strategy.shift_lock_min_r and lifecycle.tighten_stop(
                tx,
                pos.entry_price,
                ref,
                float(ctx.get("tick", 0.0)),
                str(ctx.get("prefix", "atl")),
            ):
                did = f"stop to break-even (pnl {r_now:.2f}R)"
    steps.append({"step": 3, "name": STEP_NAMES[2], "did": did})

    # 4) cooldown / freeze + regime_shift_log
    steps.append(
        {"step": 4, "name": STEP_NAMES[3], "did": _regime_cooldown(tx, new_regime, now, params)}
    )
    pos = tx.st.position_state
    client_ids = [
        c
        for cmd in tx.commands[n0:]
        for c in (getattr(cmd, "client_order_id", None), getattr(cmd, "client_algo_id", None))
        if c
    ]
    tx.record(
        risk_record(
            event_type="REGIME_SHIFT",
            symbol=sym,
            side=pos.side,
            qty=pos.qty_total,
            price=price,
            order_ids=[],
            client_ids=client_ids,
            reason=f"{old_regime} -> {new_regime}; "
            + "; ".join(f"{s['step']} {s['name']}: {s['did']}" for s in steps)
            + "; regime_shift_log",
            ts=now,
        )
    )
    return steps


REGIME_LOCKS = {"SHOCK": "shock", "CHOP": "template"}  # which §4 lock a regime sets


def _regime_cooldown(tx: Txn, new_regime: str, now: int, params: Params) -> str:
    which = REGIME_LOCKS.get(new_regime)
    if which is None:
        return "no cooldown change"
    span = params.shockguard.cooldown_s if which == "shock" else params.cooldown.chop_s
    until = now + span
    cd = tx.cd()
    if until <= getattr(cd, which):
        return f"cooldown_until.{which} already until {getattr(cd, which)}"
    setattr(cd, which, until)
    tx.emit(SetCooldown(tx.st.symbol, which, until))
    return f"cooldown_until.{which} = {until}"


def on_regime_shift(
    symbol: str,
    old_regime: str,
    new_regime: str,
    st: SymbolState | Mapping[str, Any],
    ctx: Mapping[str, Any],
) -> dict[str, Any]:
    """The contract's signature. `st` is a SymbolState or its §2.1 dict (then the result's
    ``state`` is a dict too); `ctx` without ``params`` uses the default parameters."""
    as_dict = isinstance(st, Mapping)
    state = SymbolState.from_dict(dict(st)) if isinstance(st, Mapping) else st
    if "params" not in ctx:
        ctx = {**ctx, "params": default_params()}
    ctx = {"now": 0, "bar_index": 0, **ctx}
    tx = Txn(state)
    if not tx.st.symbol:
        tx.st.symbol = symbol
    tx.st.last_regime = new_regime
    steps = run_steps(tx, old_regime, new_regime, ctx)
    return {
        "symbol": symbol,
        "old_regime": old_regime,
        "new_regime": new_regime,
        "steps": steps,
        "state": tx.st.to_dict() if as_dict else tx.st,
        "commands": tx.commands,
        "records": tx.records,
    }
