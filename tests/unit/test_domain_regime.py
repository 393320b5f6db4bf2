"""Regime classification: incremental indicators, SHOCK at once, hysteresis elsewhere."""

from __future__ import annotations

import dataclasses
import itertools

from atlas_actors.domain import regime
from atlas_actors.domain.params import default_params
from tests.unit.test_domain_fillmodel import load_btc_bars

SP = default_params().strategy


def run(closes: list[float], sp=SP, rs=None):  # type: ignore[no-untyped-def]
    rs = dict(rs or {})
    out = []
    prev = closes[0]
    for c in closes:
        rs, reg = regime.update(rs, prev, max(prev, c) + 0.01, min(prev, c) - 0.01, c, 0, sp)
        out.append(reg)
        prev = c
    return rs, out


def wiggle(n: int, base: float = 100.0, amp: float = 0.05) -> list[float]:
    return [base + (amp if i % 2 else -amp) for i in range(n)]


def test_warmup_is_range() -> None:
    _, regs = run([100.0 + 0.5 * i for i in range(SP.warmup_bars - 1)])
    assert set(regs) == {"RANGE"}


def test_steady_rise_becomes_trend_up_and_fall_trend_down() -> None:
    _, up = run(wiggle(80) + [100.0 + 0.2 * i for i in range(80)])
    assert up[-1] == "TREND_UP"
    _, down = run(wiggle(80) + [100.0 - 0.2 * i for i in range(80)])
    assert down[-1] == "TREND_DOWN"


def test_noise_is_range_and_noisy_high_volatility_is_chop() -> None:
    rs, regs = run(wiggle(400))
    assert regs[-1] == "RANGE"
    # the same zig-zag, suddenly 3x wider (but not a shock): directionless and volatile
    _, regs2 = run(wiggle(40, amp=0.6), rs=rs)
    assert regs2[-1] == "CHOP"


def test_shock_enters_at_once_and_holds() -> None:
    rs, regs = run(wiggle(300))
    assert regs[-1] == "RANGE"
    rs, regs = run([100.0, 104.0], rs=rs)  # a move of many ATRs
    assert regs[-1] == "SHOCK"
    rs, regs = run(wiggle(SP.shock_hold_bars - 1, base=104.0), rs=rs)
    assert set(regs) == {"SHOCK"}


def test_a_new_regime_needs_confirm_bars() -> None:
    sp = dataclasses.replace(SP, regime_confirm_bars=5)
    rs, regs = run(wiggle(100) + [100.0 + 0.2 * i for i in range(60)], sp)
    assert regs[-1] == "TREND_UP"
    first = regs.index("TREND_UP")
    # the raw classification already said TREND_UP for 4 bars before the switch
    raw_state = run(wiggle(100) + [100.0 + 0.2 * i for i in range(first - 100 + 1 - 4)], sp)[0]
    assert raw_state["cand"] == "TREND_UP" and raw_state["reg"] != "TREND_UP"


def test_no_flapping_on_real_data() -> None:
    """Every regime that is not interrupted by a SHOCK lasts at least regime_confirm_bars."""
    bars = load_btc_bars(15_000)
    rs: dict[str, object] = {}
    regs = []
    for b in bars:
        rs, r = regime.update(rs, b["open"], b["high"], b["low"], b["close"], 0, SP)
        regs.append(r)
    runs = [(k, len(list(g))) for k, g in itertools.groupby(regs)]
    assert len(runs) > 50  # it does change
    for (name, length), (nxt, _) in itertools.pairwise(runs[1:]):
        if nxt != "SHOCK":
            assert length >= SP.regime_confirm_bars, (name, length, nxt)
    assert {"TREND_UP", "TREND_DOWN", "RANGE", "CHOP", "SHOCK"} <= set(regs)


def test_update_does_not_mutate_its_input() -> None:
    rs, _ = run(wiggle(100))
    snapshot = dict(rs)
    regime.update(rs, 100.0, 101.0, 99.0, 100.5, 0, SP)
    assert rs == snapshot


def test_gap_bar_is_not_a_shock() -> None:
    rs, _ = run(wiggle(300))
    new, reg = regime.update(rs, 100.0, 104.0, 100.0, 104.0, 5, SP)
    assert reg != "SHOCK" and new["shock"] == 0
