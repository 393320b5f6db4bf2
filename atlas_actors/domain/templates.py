"""Entry templates: named setups, each allowed only in the regimes it is built for.

A template looks at the regime module's indicator dict (``SymbolState.regime_state``) of the
bar that just closed and either proposes a `Setup` (side, entry kind and price, stop, base
score) or nothing. Signals are computed in every regime so that a setup firing in the wrong
regime is still evaluated and rejected with a reason (a §8 record), never silently dropped.

| template          | tier | regimes               | entry       | idea |
|-------------------|------|-----------------------|-------------|------|
| trend_pullback    | A    | TREND_UP, TREND_DOWN  | post-only   | dip to the fast EMA that closes back with the trend |
| trend_breakout    | A    | TREND_UP, TREND_DOWN  | market      | strong bar closing beyond the price channel |
| range_fade        | B    | RANGE                 | post-only   | stretch of > 2.5 ATR from the slow EMA, fade back |
| squeeze_breakout  | B    | RANGE                 | market      | break of the channel after volatility contracted |
| ema_cross         | A    | all                   | market      | benchmark: EMA fast/slow cross, long only, exit on the opposite cross, fixed % stop, no TP |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from atlas_actors.domain.params import Params, ParamsError, StrategyParams, TierParams
from atlas_actors.domain.regime import CHOP, RANGE, SHOCK, TREND_DOWN, TREND_UP

LONG = "LONG"
SHORT = "SHORT"


@dataclass(frozen=True)
class Setup:
    template: str
    tier: str
    side: str  # LONG / SHORT
    entry_kind: str  # "limit" (post-only) / "market"
    entry_price: float  # limit price, or the reference price of a market entry
    sl_price: float
    base_score: float
    uses_targets: bool = True


Signal = Callable[[dict[str, Any], TierParams, StrategyParams], "Setup | None"]
Fit = Callable[[dict[str, Any], StrategyParams], float]


@dataclass(frozen=True)
class Template:
    name: str
    tier: str
    regimes: tuple[str, ...]
    entry_kind: str
    signal: Signal
    fit: Fit  # 0..1: how well the current market fits the template's design
    uses_targets: bool = True
    # (indicators, position side) -> True when the template's own exit fires
    exit_signal: Callable[[dict[str, Any], str], bool] | None = None


def _clamp01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def _trend_fit(ind: dict[str, Any], sp: StrategyParams) -> float:
    return _clamp01(float(ind["er"]) / (sp.trend_er + 0.2))


def _range_fit(ind: dict[str, Any], sp: StrategyParams) -> float:
    return _clamp01(1.0 - float(ind["er"]) / sp.trend_er) if sp.trend_er > 0 else 1.0


def _squeeze_fit(ind: dict[str, Any], sp: StrategyParams) -> float:
    base = float(ind["atrb"])
    return _clamp01(1.5 * (1.0 - float(ind["atr"]) / base)) if base > 0 else 0.0


def _any_fit(ind: dict[str, Any], sp: StrategyParams) -> float:
    return 1.0


def _stop_dist(c: float, atr: float, tp: TierParams, sp: StrategyParams) -> float:
    """Stop distance: sl_atr_mult ATRs, but never closer than min_stop_bps of the price (on
    quiet bars an ATR stop is so tight that fees and slippage would be a large part of R)."""
    d = tp.sl_atr_mult * atr
    floor = c * sp.min_stop_bps * 1e-4
    return d if d > floor else floor


def _trend_pullback(ind: dict[str, Any], tp: TierParams, sp: StrategyParams) -> Setup | None:
    atr = ind["atr"]
    if atr <= 0:
        return None
    c, ef, es = ind["c"], ind["ef"], ind["es"]
    er = ind["er"]
    if er < sp.range_er:
        return None  # no directional drift at all: not a pullback within a trend
    if ef > es and ind["dn"] > 0 and ind["l"] <= ef < c and c > ind["o"]:
        side, sl = LONG, c - _stop_dist(c, atr, tp, sp)
    elif ef < es and ind["dn"] < 0 and ind["h"] >= ef > c and c < ind["o"]:
        side, sl = SHORT, c + _stop_dist(c, atr, tp, sp)
    else:
        return None
    base = 55.0 + 45.0 * _clamp01(er / 0.6)
    entry = c - 0.1 * atr if side == LONG else c + 0.1 * atr  # resting just inside the dip
    return Setup("trend_pullback", "A", side, "limit", entry, sl, base)


def _trend_breakout(ind: dict[str, Any], tp: TierParams, sp: StrategyParams) -> Setup | None:
    atr = ind["atr"]
    if atr <= 0:
        return None
    c, o = ind["c"], ind["o"]
    body = (c - o) / atr
    if ind["ef"] > ind["es"] and c > ind["pchi"] and body > 0.8:
        side, sl = LONG, c - _stop_dist(c, atr, tp, sp)
    elif ind["ef"] < ind["es"] and c < ind["pclo"] and body < -0.8:
        side, sl = SHORT, c + _stop_dist(c, atr, tp, sp)
    else:
        return None
    base = 50.0 + 30.0 * _clamp01(ind["er"] / 0.6) + 20.0 * _clamp01(abs(body) - 0.8)
    return Setup("trend_breakout", "A", side, "market", c, sl, base)


def _range_fade(ind: dict[str, Any], tp: TierParams, sp: StrategyParams) -> Setup | None:
    atr = ind["atr"]
    if atr <= 0:
        return None
    if ind["er"] >= sp.trend_er:
        return None  # a trending market: stretches are momentum, not to be faded
    c, h, lo = ind["c"], ind["h"], ind["l"]
    z = (c - ind["es"]) / atr
    rng = h - lo
    if z <= -2.5 and rng > 0 and c - lo >= 0.3 * rng:
        side, sl = LONG, c - _stop_dist(c, atr, tp, sp)
    elif z >= 2.5 and rng > 0 and h - c >= 0.3 * rng:
        side, sl = SHORT, c + _stop_dist(c, atr, tp, sp)
    else:
        return None
    base = 55.0 + 15.0 * _clamp01(abs(z) - 2.5) + 20.0 * _clamp01(1.0 - ind["er"] / 0.3)
    entry = c - 0.1 * atr if side == LONG else c + 0.1 * atr
    return Setup("range_fade", "B", side, "limit", entry, sl, base)


def _squeeze_breakout(ind: dict[str, Any], tp: TierParams, sp: StrategyParams) -> Setup | None:
    atr, atrb = ind["atr"], ind["atrb"]
    if atr <= 0 or atrb <= 0 or atr > 0.8 * atrb:
        return None
    c, o = ind["c"], ind["o"]
    if c > ind["pchi"] and c > o:
        side, sl = LONG, c - _stop_dist(c, atr, tp, sp)
    elif c < ind["pclo"] and c < o:
        side, sl = SHORT, c + _stop_dist(c, atr, tp, sp)
    else:
        return None
    base = 55.0 + 40.0 * _clamp01((0.8 - atr / atrb) / 0.4)
    return Setup("squeeze_breakout", "B", side, "market", c, sl, base)


def _ema_cross(ind: dict[str, Any], tp: TierParams, sp: StrategyParams) -> Setup | None:
    if ind["ef"] > ind["es"] and ind["pef"] <= ind["pes"]:
        c = ind["c"]
        return Setup(
            "ema_cross", "A", LONG, "market", c, c * (1.0 - sp.ema_cross_stop_pct), 100.0, False
        )
    return None


def _ema_cross_exit(ind: dict[str, Any], side: str) -> bool:
    return side == LONG and ind["ef"] < ind["es"] and ind["pef"] >= ind["pes"]


ALL_REGIMES = (TREND_UP, TREND_DOWN, RANGE, CHOP, SHOCK)

TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            "trend_pullback", "A", (TREND_UP, TREND_DOWN), "limit", _trend_pullback, _trend_fit
        ),
        Template(
            "trend_breakout", "A", (TREND_UP, TREND_DOWN), "market", _trend_breakout, _trend_fit
        ),
        Template("range_fade", "B", (RANGE,), "limit", _range_fade, _range_fit),
        Template("squeeze_breakout", "B", (RANGE,), "market", _squeeze_breakout, _squeeze_fit),
        Template(
            "ema_cross", "A", ALL_REGIMES, "market", _ema_cross, _any_fit, False, _ema_cross_exit
        ),
    )
}


def enabled(names: list[str]) -> tuple[Template, ...]:
    return tuple(TEMPLATES[n] for n in names)


def check_templates(params: Params) -> Params:
    """Template-name validation of loaded parameters: every name in ``strategy.templates`` is
    a known template and none is listed twice. Returns `params`; raises `ParamsError`."""
    names = params.strategy.templates
    for i, name in enumerate(names):
        if name not in TEMPLATES:
            raise ParamsError(
                f"strategy.templates[{i}] = {name!r} is not a known template "
                f"(allowed: {', '.join(TEMPLATES)})"
            )
    if len(set(names)) != len(names):
        raise ParamsError(f"strategy.templates = {names!r} lists a template twice")
    return params
