"""Typed, validated strategy parameters (tiers A/B, cooldown, runner, ShockGuard, risk, strategy).

`load_params(mapping)` reads only the strategy sections of the parsed TOML (``tiers``,
``cooldown``, ``runner``, ``shockguard``, ``risk``, ``strategy``); other top-level sections
belong to the service and are ignored. Inside those sections every key must be known and
in range, otherwise `ParamsError` names the key path and the allowed range, e.g.
``runner.RUNNER_GIVEBACK = 1.5 is out of range [0, 1]``. Missing keys take the documented
defaults below (the same values `config/atlas.toml` spells out).

Whether ``strategy.templates`` names known templates is the templates' own rule:
`atlas_actors.domain.templates.check_templates(load_params(doc))` is the complete validation
(this module sits below the templates and regime modules, which read its parameter types).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ParamsError(ValueError):
    """A strategy parameter is unknown, of the wrong type or out of range."""


def _p(default: Any, lo: float | None = None, hi: float | None = None) -> Any:
    """A parameter field: default plus inclusive allowed range (None = unbounded)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"range": (lo, hi)})
    return field(default=default, metadata={"range": (lo, hi)})


@dataclass(frozen=True)
class TierParams:
    """Per-tier entry, exit and sizing structure. B adds the blacklist rule."""

    leverage: int = _p(10, 1, 125)
    score_threshold: float = _p(60.0, 0, 100)
    sl_atr_mult: float = _p(1.5, 0.1, 20)  # stop distance in ATRs from the entry
    tp1_r: float = _p(1.0, 0.1, 20)  # TP1 distance in R
    tp2_r: float = _p(2.0, 0.1, 50)
    tp1_share: float = _p(0.4, 0, 1)  # share of the entry quantity closed at TP1
    tp2_share: float = _p(0.3, 0, 1)
    lock_r: float = _p(1.0, 0, 50)  # stop after TP2 at entry + lock_r * R (profit lock)
    entry_expiry_bars: int = _p(3, 1, 1000)  # cancel a post-only entry not filled after this
    # --- B only: blacklist when the B-tier health roll degrades past the bound
    blacklist_min_trades: int = _p(4, 1, 1000)
    blacklist_max_avg_r: float = _p(-0.3, -100, 100)
    blacklist_s: int = _p(7200, 0, 7 * 86400)


_B_ONLY = ("blacklist_min_trades", "blacklist_max_avg_r", "blacklist_s")


@dataclass(frozen=True)
class CooldownParams:
    loss_s: int = _p(900, 0, 7 * 86400)  # no opens after a losing trade
    template_s: int = _p(300, 0, 7 * 86400)  # no opens after any trade closes
    emergency_freeze_s: int = _p(1800, 0, 7 * 86400)  # loss + freeze after an emergency flat
    chop_s: int = _p(900, 0, 7 * 86400)  # §6 step 4: no template fires for this long after CHOP


@dataclass(frozen=True)
class RunnerParams:
    RUNNER_MAX_BARS_AFTER_TP2: int = _p(30, 1, 100_000)
    RUNNER_MIN_PEAK_R: float = _p(2.5, 0, 100)
    RUNNER_GIVEBACK: float = _p(0.4, 0, 1)


@dataclass(frozen=True)
class ShockGuardParams:
    enabled: bool = _p(True)
    trigger_mult: float = _p(2.5, 1, 100)  # shock when |return| > trigger_mult * q95
    window_s: int = _p(86400, 600, 30 * 86400)  # rolling calibration window
    recalib_every_s: int = _p(3600, 60, 7 * 86400)
    min_samples: int = _p(240, 10, 1_000_000)  # q95 stays None until this many returns
    cooldown_s: int = _p(900, 0, 7 * 86400)  # cooldown_until.shock after a trigger


@dataclass(frozen=True)
class RiskParams:
    risk_per_trade_a: float = _p(0.005, 0, 0.1)  # share of equity lost at the stop, tier A
    risk_per_trade_b: float = _p(0.0025, 0, 0.1)
    margin_derisk_share: float = _p(0.7, 0, 1)  # de-risk when margin_used > share * equity
    margin_derisk_reduce: float = _p(0.5, 0, 1)  # share of the position closed by a de-risk
    max_concurrent_positions: int = _p(5, 1, 1000)  # account-level, enforced by the shell
    max_margin_share: float = _p(0.5, 0, 1)  # opens keep total margin under this share
    daily_loss_halt_pct: float = _p(3.0, 0, 100)  # account-level, enforced by the shell
    recovery_stop_pct: float = _p(0.02, 0.001, 0.5)  # stop for a venue position with no plan
    max_stop_recoveries: int = _p(3, 0, 100)  # re-placed stops per trade before flattening


DEFAULT_TEMPLATES = ["trend_pullback", "trend_breakout", "range_fade", "squeeze_breakout"]


@dataclass(frozen=True)
class StrategyParams:
    templates: list[str] = _p(DEFAULT_TEMPLATES)
    ema_fast: int = _p(20, 2, 1000)
    ema_slow: int = _p(50, 3, 5000)
    atr_len: int = _p(14, 2, 1000)
    er_len: int = _p(20, 2, 1000)  # smoothing of the efficiency ratio
    vol_len: int = _p(240, 10, 100_000)  # slow ATR average (volatility baseline)
    warmup_bars: int = _p(60, 0, 100_000)  # no candidates before this many bars
    trend_er: float = _p(0.30, 0, 1)  # efficiency ratio that makes a trend
    range_er: float = _p(0.18, 0, 1)  # below: directionless (RANGE or CHOP)
    chop_vol_ratio: float = _p(1.3, 0.1, 100)  # ATR / baseline above this + low ER = CHOP
    shock_atr_mult: float = _p(5.0, 1, 100)  # |close change| > this * ATR = SHOCK
    shock_hold_bars: int = _p(10, 0, 10_000)  # SHOCK lasts at least this many bars
    regime_confirm_bars: int = _p(3, 1, 1000)  # hysteresis: bars a new regime must persist
    max_spread_bps: float = _p(8.0, 0, 10_000)  # spread gate
    spread_penalty_per_bps: float = _p(1.5, 0, 1000)
    funding_penalty_per_bp: float = _p(2.0, 0, 1000)  # per basis point of adverse funding
    exec_penalty_weight: float = _p(20.0, 0, 1000)
    health_penalty_weight: float = _p(10.0, 0, 1000)
    roll_min_samples: int = _p(5, 1, 1000)  # rolls penalise only with this many samples
    min_stop_bps: float = _p(25.0, 0, 10_000)  # stops at least this far (bps of price)
    shift_lock_min_r: float = _p(0.5, 0, 100)  # playbook step 3: lock at break-even above this
    ema_cross_stop_pct: float = _p(0.02, 0.0001, 0.5)  # ema_cross benchmark's stop distance


@dataclass(frozen=True)
class Tiers:
    A: TierParams
    B: TierParams


@dataclass(frozen=True)
class Params:
    tier_a: TierParams = field(default_factory=TierParams)
    tier_b: TierParams = field(
        default_factory=lambda: TierParams(
            leverage=8,
            score_threshold=55.0,
            sl_atr_mult=1.2,
            tp1_r=0.8,
            tp2_r=1.6,
            tp1_share=0.5,
            tp2_share=0.3,
            lock_r=0.6,
            entry_expiry_bars=2,
        )
    )
    cooldown: CooldownParams = field(default_factory=CooldownParams)
    runner: RunnerParams = field(default_factory=RunnerParams)
    shockguard: ShockGuardParams = field(default_factory=ShockGuardParams)
    risk: RiskParams = field(default_factory=RiskParams)
    strategy: StrategyParams = field(default_factory=StrategyParams)

    @property
    def tiers(self) -> Tiers:
        """``params.tiers.A`` / ``params.tiers.B``: the TOML's own spelling of the tiers."""
        return Tiers(self.tier_a, self.tier_b)

    def tier(self, name: str) -> TierParams:
        return self.tier_a if name == "A" else self.tier_b

    def risk_share(self, tier: str) -> float:
        return self.risk.risk_per_trade_a if tier == "A" else self.risk.risk_per_trade_b


_DEFAULT: Params | None = None


def default_params() -> Params:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Params()
    return _DEFAULT


SECTIONS = ("tiers", "cooldown", "runner", "shockguard", "risk", "strategy")


def _fmt(x: float | None) -> str:
    if x is None:
        return "inf"
    return str(int(x)) if float(x).is_integer() else repr(x)


def _section(cls: type[Any], raw: Any, path: str, base: Any, skip: tuple[str, ...] = ()) -> Any:
    if not isinstance(raw, Mapping):
        raise ParamsError(f"[{path}] must be a table, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        f = fields.get(key)
        if f is None:
            allowed = ", ".join(fields)
            raise ParamsError(f"{path}.{key} is not a known key (allowed: {allowed})")
        changes[key] = _check(f, value, f"{path}.{key}")
    return dataclasses.replace(base, **changes)


def _check(f: dataclasses.Field[Any], value: Any, path: str) -> Any:
    if f.default is not dataclasses.MISSING:
        default: Any = f.default
    else:
        factory: Any = f.default_factory
        default = factory()
    lo, hi = f.metadata["range"]
    raw = value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ParamsError(f"{path} = {value!r} must be true or false")
        return value
    if isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ParamsError(f"{path} = {value!r} must be a list of strings")
        return list(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ParamsError(f"{path} = {value!r} must be an integer")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamsError(f"{path} = {value!r} must be a number")
        value = float(value)
        if not math.isfinite(value):
            raise ParamsError(f"{path} = {value!r} must be finite")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ParamsError(f"{path} = {raw!r} is out of range [{_fmt(lo)}, {_fmt(hi)}]")
    return value


def load_params(mapping: Mapping[str, Any]) -> Params:
    """Params from a parsed TOML document (only the strategy sections are read)."""
    if not isinstance(mapping, Mapping):
        raise ParamsError(f"config must be a table, got {type(mapping).__name__}")
    base = default_params()
    kw: dict[str, Any] = {}
    tiers = mapping.get("tiers", {})
    if not isinstance(tiers, Mapping):
        raise ParamsError(f"[tiers] must be a table, got {type(tiers).__name__}")
    for name in tiers:
        if name not in ("A", "B"):
            raise ParamsError(f"tiers.{name} is not a known tier (allowed: A, B)")
    if "A" in tiers:
        kw["tier_a"] = _section(TierParams, tiers["A"], "tiers.A", base.tier_a, _B_ONLY)
    if "B" in tiers:
        kw["tier_b"] = _section(TierParams, tiers["B"], "tiers.B", base.tier_b)
    for name, cls in (
        ("cooldown", CooldownParams),
        ("runner", RunnerParams),
        ("shockguard", ShockGuardParams),
        ("risk", RiskParams),
        ("strategy", StrategyParams),
    ):
        if name in mapping:
            kw[name] = _section(cls, mapping[name], name, getattr(base, name))
    params = dataclasses.replace(base, **kw)
    _cross_check(params)
    return params


def _cross_check(p: Params) -> None:
    for tier_name in ("A", "B"):
        t = p.tier(tier_name)
        path = f"tiers.{tier_name}"
        if t.tp2_r <= t.tp1_r:
            raise ParamsError(f"{path}.tp2_r = {t.tp2_r} must be greater than tp1_r = {t.tp1_r}")
        if t.tp1_share + t.tp2_share > 1.0 + 1e-12:
            raise ParamsError(
                f"{path}.tp1_share + tp2_share = {t.tp1_share + t.tp2_share} is out of range [0, 1]"
            )
        if t.lock_r >= t.tp2_r:
            raise ParamsError(f"{path}.lock_r = {t.lock_r} must be below tp2_r = {t.tp2_r}")
    s = p.strategy
    if s.ema_slow <= s.ema_fast:
        raise ParamsError(
            f"strategy.ema_slow = {s.ema_slow} must be greater than ema_fast = {s.ema_fast}"
        )
    if s.range_er > s.trend_er:
        raise ParamsError(
            f"strategy.range_er = {s.range_er} must not exceed trend_er = {s.trend_er}"
        )
