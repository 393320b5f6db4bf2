"""Templates, scoring and the §8 candidate record: every gate and every reject reason."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from atlas_actors.domain import core, scoring
from atlas_actors.domain.params import default_params, load_params
from atlas_actors.domain.records import CooldownUntil, HealthRoll, SymbolState
from atlas_actors.domain.templates import TEMPLATES, Setup

P = default_params()
CANDIDATE_KEYS = {
    "kind",
    "ts",
    "symbol",
    "regime",
    "template",
    "gates",
    "base_score",
    "penalties",
    "final_score",
    "action",
    "reject_reason",
}
NOW = 1_700_000_000


def ind(**kw: float) -> dict[str, Any]:
    base = {
        "n": 500,
        "c": 100.0,
        "o": 99.8,
        "h": 100.2,
        "l": 99.7,
        "ef": 99.9,
        "es": 99.5,
        "pef": 99.85,
        "pes": 99.49,
        "atr": 0.5,
        "atrb": 0.5,
        "dn": 0.05,
        "dd": 0.1,
        "er": 0.5,
        "chi": 100.2,
        "clo": 99.0,
        "pchi": 100.1,
        "pclo": 99.0,
    }
    base.update(kw)
    return base


def evaluate(
    st: SymbolState | None = None,
    setup: Setup | None = None,
    regime: str = "TREND_UP",
    **kw: Any,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    st = st or SymbolState.fresh("BTCUSDC")
    setup = setup or Setup("trend_pullback", "A", "LONG", "limit", 100.0, 99.0, 80.0)
    args: dict[str, Any] = {
        "spread_bps": 1.0,
        "funding_rate": 0.0,
        "equity": 10_000.0,
        "available": 10_000.0,
        "margin_used": 0.0,
        "open_block_reason": None,
        "tick": 0.1,
        "step": 0.001,
        "min_qty": 0.001,
        "min_notional": 5.0,
        "params": P,
        "now": NOW,
    }
    args.update(kw)
    return scoring.evaluate(st, setup, TEMPLATES[setup.template], regime, ind(), **args)


# ------------------------------------------------------------------ templates


def test_each_tier_has_at_least_two_templates_with_allow_lists() -> None:
    by_tier: dict[str, list[str]] = {}
    for t in TEMPLATES.values():
        by_tier.setdefault(t.tier, []).append(t.name)
        assert t.regimes and set(t.regimes) <= {"TREND_UP", "TREND_DOWN", "RANGE", "CHOP", "SHOCK"}
    assert len(by_tier["A"]) >= 2 and len(by_tier["B"]) >= 2
    for name in P.strategy.templates:
        assert "CHOP" not in TEMPLATES[name].regimes and "SHOCK" not in TEMPLATES[name].regimes


@pytest.mark.parametrize(
    ("name", "indicators", "side", "kind"),
    [
        ("trend_pullback", {"l": 99.8, "ef": 99.9, "c": 100.0, "o": 99.85}, "LONG", "limit"),
        (
            "trend_pullback",
            {"h": 100.3, "ef": 100.1, "es": 100.5, "c": 100.0, "o": 100.2, "dn": -0.05},
            "SHORT",
            "limit",
        ),
        ("trend_breakout", {"c": 100.5, "o": 100.0, "pchi": 100.2}, "LONG", "market"),
        (
            "trend_breakout",
            {"c": 98.5, "o": 99.0, "pclo": 98.8, "ef": 99.0, "es": 99.5},
            "SHORT",
            "market",
        ),
        ("range_fade", {"c": 98.2, "es": 99.5, "l": 98.0, "h": 98.6, "er": 0.1}, "LONG", "limit"),
        (
            "range_fade",
            {"c": 100.8, "es": 99.5, "l": 100.5, "h": 101.0, "er": 0.1},
            "SHORT",
            "limit",
        ),
        ("squeeze_breakout", {"atr": 0.3, "c": 100.3, "o": 100.0, "pchi": 100.2}, "LONG", "market"),
        ("squeeze_breakout", {"atr": 0.3, "c": 98.9, "o": 99.2, "pclo": 99.0}, "SHORT", "market"),
        ("ema_cross", {"ef": 99.6, "es": 99.5, "pef": 99.4, "pes": 99.45}, "LONG", "market"),
    ],
)
def test_template_signals(name: str, indicators: dict[str, float], side: str, kind: str) -> None:
    t = TEMPLATES[name]
    s = t.signal(ind(**indicators), P.tier(t.tier), P.strategy)
    assert s is not None and s.side == side and s.entry_kind == kind and s.tier == t.tier
    assert (s.entry_price - s.sl_price) * (1 if side == "LONG" else -1) > 0
    assert 0 < s.base_score <= 100


def test_templates_stay_quiet_without_their_setup() -> None:
    quiet = ind(l=99.95, c=99.96, o=99.97, pchi=101.0, pclo=98.0, er=0.25)
    for t in TEMPLATES.values():
        assert t.signal(quiet, P.tier(t.tier), P.strategy) is None, t.name


def test_ema_cross_is_long_only_with_a_fixed_percent_stop_and_exit_on_the_down_cross() -> None:
    t = TEMPLATES["ema_cross"]
    s = t.signal(ind(ef=99.6, es=99.5, pef=99.4, pes=99.45), P.tier_a, P.strategy)
    assert s is not None and s.sl_price == pytest.approx(98.0) and s.uses_targets is False
    assert t.signal(ind(ef=99.4, es=99.5, pef=99.6, pes=99.45), P.tier_a, P.strategy) is None
    assert t.exit_signal is not None
    assert t.exit_signal(ind(ef=99.4, es=99.5, pef=99.6, pes=99.45), "LONG")
    assert not t.exit_signal(ind(), "LONG")


# ------------------------------------------------------------------ the record


def test_open_record_has_exactly_the_contract_fields_and_a_plan() -> None:
    rec, plan = evaluate()
    assert set(rec) == CANDIDATE_KEYS
    assert rec["action"] == "OPEN" and rec["reject_reason"] is None
    assert rec["kind"] == "candidate" and rec["ts"] == NOW and rec["symbol"] == "BTCUSDC"
    assert all(g["status"] == "PASS" and g["reason"] for g in rec["gates"].values())
    assert list(rec["gates"]) == [
        "open_gate",
        "actor",
        "regime",
        "spread",
        "stop",
        "margin",
        "size",
        "score",
    ]
    assert set(rec["penalties"]) == {"exec_quality", "health", "spread", "funding", "regime_fit"}
    assert rec["final_score"] == pytest.approx(rec["base_score"] - sum(rec["penalties"].values()))
    assert plan is not None and plan["qty"] > 0 and plan["sl"] == 99.0


def test_sizing_risks_the_tier_share_and_rounds_down() -> None:
    _, plan = evaluate(setup=Setup("trend_pullback", "A", "LONG", "limit", 99.96, 98.93, 80.0))
    assert plan is not None
    assert plan["price"] == pytest.approx(99.9)  # buy limit rounded down to the tick
    assert plan["sl"] == pytest.approx(98.9)  # long stop rounded down (away from the market)
    # risk 0.5 % of 10,000 = 50 over R = 1.0 -> 50 units, capped by margin room:
    # 0.5 x 10,000 x leverage 10 / 100 = 500 units
    assert plan["qty"] == pytest.approx(50.0)
    _, plan_b = evaluate(
        setup=Setup("range_fade", "B", "SHORT", "limit", 100.04, 101.03, 80.0), regime="RANGE"
    )
    assert plan_b is not None
    assert plan_b["price"] == pytest.approx(100.1) and plan_b["sl"] == pytest.approx(101.1)
    assert plan_b["qty"] == pytest.approx(25.0)  # 0.25 % risk, R = 1.0


def test_post_only_entry_is_kept_strictly_passive() -> None:
    # the close is 100.0: a buy at or above it would take and be refused
    _, plan = evaluate(setup=Setup("trend_pullback", "A", "LONG", "limit", 100.04, 99.0, 80.0))
    assert plan is not None and plan["price"] == pytest.approx(99.9)
    _, plan = evaluate(
        setup=Setup("trend_pullback", "A", "SHORT", "limit", 99.97, 101.0, 80.0),
        regime="TREND_DOWN",
    )
    assert plan is not None and plan["price"] == pytest.approx(100.1)


def lock_state(which: str) -> SymbolState:
    st = SymbolState.fresh("BTCUSDC")
    if which == "b_blacklist":
        return dataclasses.replace(st, b_blacklist_until=NOW + 60)
    cd = CooldownUntil(**{which: NOW + 60})
    return dataclasses.replace(st, cooldown_until=cd)


@pytest.mark.parametrize("which", ["loss", "template", "freeze", "shock", "b_blacklist"])
def test_reject_reason_names_each_lock(which: str) -> None:
    rec, plan = evaluate(st=lock_state(which))
    assert plan is None and rec["action"] == "REJECT"
    assert rec["gates"]["open_gate"]["status"] == "FAIL"
    name = "b_blacklist" if which == "b_blacklist" else f"cooldown.{which}"
    assert rec["reject_reason"].startswith(f"{name} until ")


def test_lock_at_exactly_now_is_open() -> None:
    st = dataclasses.replace(SymbolState.fresh("X"), cooldown_until=CooldownUntil(loss=NOW))
    rec, _ = evaluate(st=st)
    assert rec["action"] == "OPEN"


def test_lock_one_second_ahead_still_rejects() -> None:
    st = dataclasses.replace(SymbolState.fresh("X"), cooldown_until=CooldownUntil(loss=NOW + 1))
    rec, plan = evaluate(st=st)
    assert plan is None and rec["action"] == "REJECT"
    assert rec["gates"]["open_gate"]["status"] == "FAIL"


@pytest.mark.parametrize(
    ("kw", "gate", "reason"),
    [
        ({"open_block_reason": "actor state RECOVERING"}, "actor", "actor state RECOVERING"),
        (
            {"open_block_reason": "account: max concurrent positions 5 reached"},
            "actor",
            "account: max concurrent positions 5 reached",
        ),
        ({"regime": "CHOP"}, "regime", "regime CHOP not allowed for trend_pullback"),
        ({"regime": "RANGE"}, "regime", "regime RANGE not allowed for trend_pullback"),
        ({"spread_bps": 8.5}, "spread", "spread 8.50 bps > max 8.00 bps"),
        (
            {"setup": Setup("trend_pullback", "A", "LONG", "limit", 100.0, 100.0, 80.0)},
            "stop",
            "invalid stop",
        ),
        (
            {"setup": Setup("trend_pullback", "A", "LONG", "limit", 100.0, 101.0, 80.0)},
            "stop",
            "invalid stop",
        ),
        ({"available": 0.0}, "margin", "insufficient margin"),
        ({"margin_used": 5_000.0}, "margin", "insufficient margin"),
        ({"equity": 0.001, "available": 0.001}, "size", "below min qty/notional"),
        ({"min_notional": 100_000.0}, "size", "below min qty/notional"),
        (
            {"setup": Setup("trend_pullback", "A", "LONG", "limit", 100.0, 99.0, 55.0)},
            "score",
            "final_score",
        ),
        ({"funding_rate": 0.001}, "score", "< threshold 60.00 (tier A)"),
    ],
)
def test_every_reject_reason(kw: dict[str, Any], gate: str, reason: str) -> None:
    rec, plan = evaluate(**kw)
    assert plan is None and rec["action"] == "REJECT"
    assert rec["gates"][gate]["status"] == "FAIL"
    assert reason in rec["reject_reason"]
    assert set(rec) == CANDIDATE_KEYS


def test_unsized_gates_fail_but_only_the_cause_is_the_reason() -> None:
    rec, _ = evaluate(setup=Setup("trend_pullback", "A", "LONG", "limit", 100.0, 100.0, 80.0))
    assert rec["gates"]["margin"]["status"] == "FAIL" and rec["gates"]["size"]["status"] == "FAIL"
    assert "not evaluated" in rec["gates"]["size"]["reason"]
    assert "not evaluated" not in rec["reject_reason"]


def test_several_failing_gates_are_all_named_in_order() -> None:
    rec, _ = evaluate(st=lock_state("loss"), regime="CHOP", open_block_reason="actor state PAUSED")
    reason = rec["reject_reason"]
    assert reason.index("cooldown.loss") < reason.index("actor state PAUSED") < reason.index("CHOP")


def test_penalties_respond_to_rolls_spread_and_funding() -> None:
    poor = dataclasses.replace(
        SymbolState.fresh("X"),
        health_roll=HealthRoll(win_rate=0.2, avg_r=-0.5, trade_n=10),
    )
    rec, _ = evaluate(st=poor, spread_bps=2.0, funding_rate=0.0002)
    pens = rec["penalties"]
    assert pens["health"] == pytest.approx(10.0 * (2 * 0.2 + 0.5))
    assert pens["spread"] == pytest.approx(3.0)
    assert pens["funding"] == pytest.approx(4.0)  # 2 bps paid by a long x 2 points
    rec_short, _ = evaluate(
        setup=Setup("trend_pullback", "A", "SHORT", "limit", 100.0, 101.0, 80.0),
        funding_rate=0.0002,
        regime="TREND_DOWN",
    )
    assert rec_short["penalties"]["funding"] == 0.0  # shorts receive positive funding
    few = dataclasses.replace(SymbolState.fresh("X"), health_roll=HealthRoll(avg_r=-5, trade_n=2))
    assert evaluate(st=few)[0]["penalties"]["health"] == 0.0  # not enough trades yet


def test_score_threshold_boundary() -> None:
    p = load_params({"tiers": {"A": {"score_threshold": 70.0}}})
    # regime_fit: er 0.5 / (0.3 + 0.2) = 1 -> 0; spread 1 bps x 1.5 = 1.5
    rec, _ = evaluate(
        setup=Setup("trend_pullback", "A", "LONG", "limit", 100.0, 99.0, 71.5), params=p
    )
    assert rec["final_score"] == pytest.approx(70.0) and rec["action"] == "OPEN"
    rec, _ = evaluate(
        setup=Setup("trend_pullback", "A", "LONG", "limit", 100.0, 99.0, 71.4), params=p
    )
    assert (
        rec["action"] == "REJECT" and "final_score 69.90 < threshold 70.00" in rec["reject_reason"]
    )


# ------------------------------------------------------------------ through on_bar


def test_on_bar_emits_one_record_per_evaluation_and_never_opens_when_blocked() -> None:
    from tests.unit.test_domain_fillmodel import load_btc_bars

    bars = load_btc_bars(3000)
    blocked = core.MarketCtx(
        open_block_reason="actor state RECOVERING", filters=core.SymbolFilters()
    )
    st = SymbolState.fresh("BTCUSDC")
    n_records = 0
    for b in bars:
        step = core.on_bar(st, b, blocked, P, int(b["close_time"]) // 1000 + 1)
        cands = [r for r in step.records if r["kind"] == "candidate"]
        assert len(cands) <= 1
        for r in cands:
            assert r["action"] == "REJECT" and "actor state RECOVERING" in r["reject_reason"]
        assert not any(type(c).__name__ in ("PlaceLimit", "PlaceMarket") for c in step.commands)
        n_records += len(cands)
        st = step.state
    assert n_records > 20
