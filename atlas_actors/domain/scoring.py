"""Candidate scoring and the §8 candidate record.

``final_score = base_score - sum(penalties)`` with named penalties:

- ``exec_quality``: poor recent execution (`exec_quality_roll`: unfilled / cancelled
  post-only orders, slippage cost in R), once the roll has ``roll_min_samples`` orders;
- ``health``: poor recent trades (`health_roll`: win rate under 40 %, negative average R);
- ``spread``: current spread in bps times ``spread_penalty_per_bps``;
- ``funding``: funding the position would pay (bps) times ``funding_penalty_per_bp``;
- ``regime_fit``: up to 10 points when the market only loosely fits the template's design.

Gates, in this fixed order, each PASS/FAIL with a reason: ``open_gate`` (§4 cooldowns and
B blacklist), ``actor`` (a refusal from the shell: actor not READY, account limits),
``regime`` (template allow-list), ``spread``, ``stop``, ``margin``, ``size`` (min qty /
notional after rounding) and ``score`` (final vs the tier threshold). Any FAIL rejects;
``reject_reason`` joins the failing gates' reasons in gate order.
"""

from __future__ import annotations

from typing import Any

from atlas_actors.domain.gate import open_allowed
from atlas_actors.domain.lifecycle import (
    LONG,
    ceil_to,
    floor_to,
    passive_price,
    size_entry,
    stop_round,
)
from atlas_actors.domain.params import Params
from atlas_actors.domain.records import SymbolState
from atlas_actors.domain.templates import Setup, Template

PASS = "PASS"
FAIL = "FAIL"
REGIME_FIT_MAX = 10.0


def penalties(
    st: SymbolState,
    setup: Setup,
    template: Template,
    ind: dict[str, Any],
    spread_bps: float,
    funding_rate: float,
    params: Params,
) -> dict[str, float]:
    sp = params.strategy
    eq = st.exec_quality_roll
    exec_pen = 0.0
    if eq.sample_n >= sp.roll_min_samples:
        slip = eq.slippage_cost30_r if eq.slippage_cost30_r > 0 else 0.0
        exec_pen = sp.exec_penalty_weight * (
            0.5 * (1.0 - eq.fill_rate_30) + 0.3 * eq.cancel_rate_30 + 0.2 * min(1.0, slip)
        )
    hr = st.health_roll
    health_pen = 0.0
    if hr.trade_n >= sp.roll_min_samples:
        health_pen = sp.health_penalty_weight * (
            2.0 * max(0.0, 0.4 - hr.win_rate) + max(0.0, -hr.avg_r)
        )
    paying = funding_rate if setup.side == LONG else -funding_rate  # longs pay positive funding
    return {
        "exec_quality": exec_pen,
        "health": health_pen,
        "spread": max(0.0, spread_bps) * sp.spread_penalty_per_bps,
        "funding": max(0.0, paying) * 1e4 * sp.funding_penalty_per_bp,
        "regime_fit": REGIME_FIT_MAX * (1.0 - template.fit(ind, sp)),
    }


_REGIME_REASON: dict[tuple[str, str], tuple[bool, str]] = {}


def _regime_reason(template: Template, regime: str) -> tuple[bool, str]:
    key = (template.name, regime)
    got = _REGIME_REASON.get(key)
    if got is None:
        if regime in template.regimes:
            got = (True, f"{regime} allowed for {template.name}")
        else:
            got = (
                False,
                f"regime {regime} not allowed for {template.name} "
                f"(allowed: {', '.join(template.regimes)})",
            )
        _REGIME_REASON[key] = got
    return got


def evaluate(
    st: SymbolState,
    setup: Setup,
    template: Template,
    regime: str,
    ind: dict[str, Any],
    *,
    spread_bps: float,
    funding_rate: float,
    equity: float,
    available: float,
    margin_used: float = 0.0,
    open_block_reason: str | None,
    tick: float,
    step: float,
    min_qty: float,
    min_notional: float,
    params: Params,
    now: int,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(§8 candidate record, entry plan or None). The plan has side, kind, price, sl, qty."""
    tier = params.tier(setup.tier)
    gates: dict[str, dict[str, str]] = {}

    cd = st.cooldown_until
    lock = max(cd.loss, cd.template, cd.freeze, cd.shock, st.b_blacklist_until)
    if now >= lock:
        gates["open_gate"] = {"status": PASS, "reason": "all cooldowns passed"}
    else:  # the gate module words the reason (which lock, until when)
        gates["open_gate"] = {"status": FAIL, "reason": open_allowed(st, now)[1]}
    if open_block_reason:
        gates["actor"] = {"status": FAIL, "reason": open_block_reason}
    else:
        gates["actor"] = {"status": PASS, "reason": "opens accepted"}
    ok_regime, why_regime = _regime_reason(template, regime)
    gates["regime"] = {"status": PASS if ok_regime else FAIL, "reason": why_regime}
    max_spread = params.strategy.max_spread_bps
    if spread_bps <= max_spread:
        gates["spread"] = {"status": PASS, "reason": "spread within max"}
    else:
        gates["spread"] = {
            "status": FAIL,
            "reason": f"spread {spread_bps:.2f} bps > max {max_spread:.2f} bps",
        }

    long = setup.side == LONG
    if setup.entry_kind == "limit":
        price = floor_to(setup.entry_price, tick) if long else ceil_to(setup.entry_price, tick)
        close = float(ind["c"])
        if (close - price) * (1 if long else -1) <= 0:  # a post-only entry must not take
            price = passive_price(close, "BUY" if long else "SELL", tick)
    else:
        price = setup.entry_price
    sl = stop_round(setup.sl_price, setup.side, tick)
    qty, failing, size_why = size_entry(
        price,
        sl,
        params.risk_share(setup.tier),
        tier.leverage,
        equity,
        available,
        step,
        min_qty,
        min_notional,
        margin_used,
        params.risk.max_margin_share,
    )
    if (price - sl) * (1 if long else -1) <= 0 and failing == "":
        failing, size_why = "stop", f"invalid stop: {sl} is not on the protective side of {price}"
    # stop -> margin -> size are checked in that order; after the first failure the rest
    # cannot be evaluated (FAIL, but only the first one is a reject reason)
    dependent: set[str] = set()
    seen_fail = False
    for name in ("stop", "margin", "size"):
        if seen_fail:
            gates[name] = {"status": FAIL, "reason": f"not evaluated: {failing} failed"}
            dependent.add(name)
        elif failing == name:
            gates[name] = {"status": FAIL, "reason": size_why}
            seen_fail = True
        else:
            gates[name] = {"status": PASS, "reason": size_why if name == "size" else "ok"}

    pens = penalties(st, setup, template, ind, spread_bps, funding_rate, params)
    base = setup.base_score
    final = base - sum(pens.values())
    if final >= tier.score_threshold:
        gates["score"] = {
            "status": PASS,
            "reason": f"final_score {final:.2f} >= threshold {tier.score_threshold:.2f} "
            f"(tier {setup.tier})",
        }
    else:
        gates["score"] = {
            "status": FAIL,
            "reason": f"final_score {final:.2f} < threshold {tier.score_threshold:.2f} "
            f"(tier {setup.tier})",
        }
    failed = [g["reason"] for n, g in gates.items() if g["status"] == FAIL and n not in dependent]
    action = "REJECT" if failed else "OPEN"
    record = {
        "kind": "candidate",
        "ts": now,
        "symbol": st.symbol,
        "regime": regime,
        "template": template.name,
        "gates": gates,
        "base_score": base,
        "penalties": pens,
        "final_score": final,
        "action": action,
        "reject_reason": "; ".join(failed) if failed else None,
    }
    if failed:
        return record, None
    return record, {
        "side": setup.side,
        "kind": setup.entry_kind,
        "price": price,
        "sl": sl,
        "qty": qty,
        "template": template.name,
        "tier": setup.tier,
        "targets": setup.uses_targets,
    }
