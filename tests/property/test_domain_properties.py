"""Property tests of the pure domain over random bar paths and fills (the test fill model:
random partial fills, stop fills reported before or after their trigger update, random locks
and shell refusals).

Invariants: no OPEN while the §4 gate is closed or the shell refuses opens; every state with a
position has a protective stop (desired_stop, on the protective side when placed, never
loosened); 0 <= qty_runner <= qty_total; stages only move forward within a trade; playbook
steps in §6 order; no runner survives a SHOCK/CHOP shift; inputs never mutated; identical
inputs give identical outputs."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlas_actors.domain import core, playbook
from atlas_actors.domain.commands import PlaceAlgoStop, PlaceLimit, PlaceMarket, command_to_dict
from atlas_actors.domain.core import MarketCtx, SymbolFilters
from atlas_actors.domain.gate import open_allowed
from atlas_actors.domain.params import Params, load_params
from atlas_actors.domain.records import STAGE_ORDER, CooldownUntil, SymbolState
from tests.unit.test_domain_fillmodel import replay

FILTERS = SymbolFilters(tick_size=0.01, step_size=0.001, min_qty=0.001, min_notional=1.0)
PARAMS: Params = load_params(
    {
        "strategy": {
            "warmup_bars": 20,
            "regime_confirm_bars": 2,
            "trend_er": 0.25,
            "range_er": 0.15,
            "vol_len": 50,
            "shock_hold_bars": 3,
        },
        "tiers": {
            "A": {"score_threshold": 0.0, "entry_expiry_bars": 2},
            "B": {"score_threshold": 0.0, "blacklist_s": 600},
        },
        "cooldown": {"loss_s": 120, "template_s": 60},
        "runner": {
            "RUNNER_MAX_BARS_AFTER_TP2": 5,
            "RUNNER_MIN_PEAK_R": 1.0,
            "RUNNER_GIVEBACK": 0.3,
        },
        "shockguard": {"min_samples": 30, "recalib_every_s": 600, "window_s": 3600},
    }
)
T0 = 1_700_000_000_000
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def build_bars(
    segs: list[tuple[int, int]],
    noise: list[int],
    width: list[int],
    shocks: dict[int, int],
    gaps: dict[int, int],
) -> list[dict[str, Any]]:
    """A price path: drift segments (bars, bps per bar) + noise (bps), bar widths (bps),
    shock moves (bps) and data gaps (missing bars) at given indices."""
    n = len(noise)
    drift: list[int] = []
    for length, d in segs:
        drift += [d] * length
    drift = (drift * (n // max(1, len(drift)) + 1))[:n]
    bars, price, t = [], 100.0, T0
    for i in range(n):
        t += 60_000 * (1 + gaps.get(i, 0))
        o = price
        c = max(1.0, o * (1 + (drift[i] + noise[i] + shocks.get(i, 0)) / 10_000))
        h = max(o, c) * (1 + width[i] / 20_000)
        lo = min(o, c) * (1 - width[i] / 20_000)
        bar: dict[str, Any] = {
            "open_time": t,
            "open": round(o, 2),
            "high": round(h, 2),
            "low": round(lo, 2),
            "close": round(c, 2),
            "volume": 1.0,
            "close_time": t + 59_999,
        }
        if gaps.get(i):
            bar["gap_before"] = gaps[i]
        bars.append(bar)
        price = round(c, 2)
    return bars


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(120, 240))
    segs = draw(
        st.lists(st.tuples(st.integers(10, 80), st.integers(-25, 25)), min_size=2, max_size=6)
    )
    noise = draw(st.lists(st.integers(-40, 40), min_size=n, max_size=n))
    width = draw(st.lists(st.integers(2, 40), min_size=n, max_size=n))
    shocks = draw(
        st.dictionaries(st.integers(0, n - 1), st.sampled_from([-400, -250, 250, 400]), max_size=3)
    )
    gaps = draw(st.dictionaries(st.integers(1, n - 1), st.integers(1, 5), max_size=2))
    locks = draw(
        st.dictionaries(
            st.integers(0, n - 1),
            st.tuples(
                st.sampled_from(["loss", "template", "freeze", "shock", "b_blacklist"]),
                st.integers(60, 900),
            ),
            max_size=4,
        )
    )
    blocked = draw(st.lists(st.integers(0, n - 1), max_size=20))
    return {
        "bars": build_bars(segs, noise, width, shocks, gaps),
        "locks": locks,
        "blocked": set(blocked),
        "fill_before_trigger": draw(st.booleans()),
        "partial_fills": draw(st.booleans()),
    }


def run(sc: dict[str, Any], observer: Any = None, check_pure: bool = False) -> Any:
    def before_bar(i: int, state: SymbolState, now: int) -> SymbolState:
        if i not in sc["locks"]:
            return state
        which, dur = sc["locks"][i]
        if which == "b_blacklist":
            return dataclasses.replace(state, b_blacklist_until=now + dur)
        cd = dataclasses.asdict(state.cooldown_until)
        cd[which] = max(cd[which], now + dur)
        return dataclasses.replace(state, cooldown_until=CooldownUntil(**cd))

    def ctx_for_bar(i: int, ctx: MarketCtx) -> MarketCtx:
        if i in sc["blocked"]:
            return dataclasses.replace(ctx, open_block_reason="actor state RECOVERING")
        return ctx

    return replay(
        sc["bars"],
        PARAMS,
        filters=FILTERS,
        fill_before_trigger=sc["fill_before_trigger"],
        partial_fills=sc["partial_fills"],
        before_bar=before_bar,
        ctx_for_bar=ctx_for_bar,
        observer=observer,
        check_pure=check_pure,
    )


class Checker:
    def __init__(self) -> None:
        self.opens = 0
        self.positions = 0
        self.trade_stage: dict[str, int] = {}
        self.trade_sl: dict[str, float] = {}

    def __call__(
        self, kind: str, before: SymbolState, ev: Any, ctx: MarketCtx, step: core.Step, now: int
    ) -> None:
        after = step.state
        # --- the §4 gate and the shell's refusal
        opens = [r for r in step.records if r.get("action") == "OPEN"]
        entries = [
            c
            for c in step.commands
            if isinstance(c, PlaceLimit | PlaceMarket) and c.role == "entry"
        ]
        assert len(opens) == len(entries)
        cands = [r for r in step.records if r.get("kind") == "candidate"]
        assert len(cands) <= 1 and (kind == "bar" or not cands)
        if opens:
            self.opens += 1
            assert open_allowed(before, now)[0], (open_allowed(before, now), opens)
            assert ctx.open_block_reason is None
        # --- protection
        pos = after.position_state
        assert 0.0 <= pos.qty_runner <= pos.qty_total + 1e-12
        if pos.side != "NONE" and pos.qty_total > 0:
            self.positions += 1
            spec = core.desired_stop(after)
            assert (
                spec is not None
                and spec.qty == pos.qty_total
                and spec.stop_price == pos.sl_price > 0
            )
            assert (
                spec.side == ("SELL" if pos.side == "LONG" else "BUY")
                and spec.working_type == "MARK_PRICE"
            )
            assert spec.client_algo_id
            d = 1 if pos.side == "LONG" else -1
            if pos.position_stage == "PRE_TP1":
                assert (pos.entry_price - pos.sl_price) * d >= 0
            key = pos.last_orders.entry.client_order_id or f"{pos.opened_ts}"
            stage = STAGE_ORDER[pos.position_stage]
            assert stage >= self.trade_stage.get(key, 0), "stage moved backwards"
            self.trade_stage[key] = stage
            if key in self.trade_sl:
                assert (pos.sl_price - self.trade_sl[key]) * d >= -1e-9, "stop loosened"
            self.trade_sl[key] = pos.sl_price
            # a stop placed at a new price sits on the protective side of the market it saw
            ref = (
                float(ev["close"])
                if kind == "bar"
                else (
                    float(ev[1].last_fill_price)
                    if kind == "order" and ev[1].last_fill_qty
                    else None
                )
            )
            for c in step.commands:
                if (
                    isinstance(c, PlaceAlgoStop)
                    and ref is not None
                    and c.stop_price != before.position_state.sl_price
                ):
                    assert (ref - c.stop_price) * d > 0, (kind, ref, c)
        else:
            assert core.desired_stop(after) is None
        # --- runner vs SHOCK/CHOP
        bp = before.position_state
        if (
            kind == "bar"
            and after.last_regime in ("SHOCK", "CHOP")
            and bp.position_stage == "RUNNER_ONLY"
            and bp.qty_runner > 0
        ):
            in_flight = (before.pending.get("exit") or {}).get("kind") == "market"
            market_exit = [
                c
                for c in step.commands
                if isinstance(c, PlaceMarket) and c.reduce_only and c.qty == bp.qty_total
            ]
            assert in_flight or market_exit, "runner survived a SHOCK/CHOP bar"
        # --- playbook order in every REGIME_SHIFT record
        for r in step.records:
            if r.get("event_type") == "REGIME_SHIFT":
                text = r["reason"]
                idx = [text.index(f"{i} {n}:") for i, n in enumerate(playbook.STEP_NAMES, 1)]
                assert idx == sorted(idx)


@SETTINGS
@given(scenarios())
def test_domain_invariants_hold_on_random_paths_and_fills(sc: dict[str, Any]) -> None:
    checker = Checker()
    run(sc, observer=checker, check_pure=True)


def test_the_checker_sees_trades_runners_and_refusals() -> None:
    """Non-vacuity: a fixed trending path opens trades, reaches the runner, and meets locks."""
    n = 240
    noise = [(-30 if i % 3 == 0 else 20) for i in range(n)]
    sc = {
        "bars": build_bars(
            [(60, 12), (40, -15), (60, 0), (80, 14)], noise, [20] * n, {150: -400}, {}
        ),
        "locks": {70: ("freeze", 600), 130: ("b_blacklist", 300)},
        "blocked": set(range(140, 200)),
        "fill_before_trigger": True,
        "partial_fills": True,
    }
    checker = Checker()
    result = run(sc, observer=checker, check_pure=True)
    assert checker.opens >= 2 and checker.positions > 20
    assert 3 in checker.trade_stage.values()  # a runner
    rejects = [r["reject_reason"] for r in result.records if r.get("action") == "REJECT"]
    assert any("actor state RECOVERING" in r for r in rejects)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_identical_inputs_give_identical_outputs(sc: dict[str, Any]) -> None:
    a, b = run(sc), run(sc)
    assert a.records == b.records
    assert [command_to_dict(c) for c in a.commands] == [command_to_dict(c) for c in b.commands]
    assert a.state.to_dict() == b.state.to_dict()


@SETTINGS
@given(
    st.sampled_from(["TREND_UP", "TREND_DOWN", "RANGE", "CHOP", "SHOCK"]),
    st.sampled_from(["TREND_UP", "TREND_DOWN", "RANGE", "CHOP", "SHOCK"]),
    st.sampled_from(["NONE", "PRE_TP1", "BETWEEN_TP1_TP2", "RUNNER_ONLY"]),
    st.floats(50.0, 150.0),
    st.booleans(),
    st.floats(0.0, 10_000.0),
)
def test_playbook_steps_always_in_order_and_runner_closed_on_shock_or_chop(
    old: str, new: str, stage: str, price: float, shock_hit: bool, margin: float
) -> None:
    state = SymbolState.fresh("BTCUSDC")
    if stage != "NONE":
        p = state.position_state
        p.side, p.entry_price, p.qty_total, p.sl_price, p.risk_per_unit = (
            "LONG",
            100.0,
            1.0,
            40.0,
            60.0,
        )
        p.initial_qty, p.position_stage, p.tier, p.template = 1.0, stage, "A", "trend_pullback"
        p.sl_algo.client_algo_id = "atl-BTCUSDC-1-sl"
        p.tp1_done = stage != "PRE_TP1"
        p.tp2_done = stage == "RUNNER_ONLY"
        p.qty_runner = 1.0 if stage == "RUNNER_ONLY" else 0.0
    snap = state.to_dict()
    ctx = {
        "params": PARAMS,
        "now": 1_700_000_000,
        "price": price,
        "bar_index": 5,
        "prefix": "atl",
        "tick": 0.01,
        "step": 0.001,
        "spread_bps": 0.0,
        "margin_used": margin,
        "equity": 10_000.0,
        "shock_hit": shock_hit,
    }
    out = playbook.on_regime_shift("BTCUSDC", old, new, state, ctx)
    assert [s["name"] for s in out["steps"]] == list(playbook.STEP_NAMES)
    assert state.to_dict() == snap
    exits = [c for c in out["commands"] if isinstance(c, PlaceMarket) and c.role == "runner_exit"]
    if stage == "RUNNER_ONLY" and new in ("SHOCK", "CHOP"):
        assert len(exits) == 1 and exits[0].qty == 1.0 and exits[0].reduce_only
    else:
        assert not exits
    for c in out["commands"]:
        if isinstance(c, PlaceAlgoStop):
            assert c.stop_price < price  # a long's stop stays below the market
