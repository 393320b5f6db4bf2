"""Strategy parameters: defaults, the documented config, validation messages."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from atlas_actors.domain.params import (
    DEFAULT_TEMPLATES,
    Params,
    ParamsError,
    default_params,
    load_params,
)
from atlas_actors.domain.templates import check_templates
from tests.support.params import params_from_toml

REPO = Path(__file__).resolve().parents[2]


def test_documented_config_equals_the_defaults() -> None:
    assert params_from_toml(REPO / "config" / "atlas.toml") == default_params()


def test_every_default_key_is_spelled_out_in_atlas_toml() -> None:
    doc = tomllib.loads((REPO / "config" / "atlas.toml").read_text())
    p = default_params()
    assert set(doc["runner"]) == {
        "RUNNER_MAX_BARS_AFTER_TP2",
        "RUNNER_MIN_PEAK_R",
        "RUNNER_GIVEBACK",
    }
    for section, obj in (
        ("cooldown", p.cooldown),
        ("shockguard", p.shockguard),
        ("risk", p.risk),
        ("strategy", p.strategy),
    ):
        assert set(doc[section]) == set(vars(obj)), section
    assert set(doc["tiers"]["B"]) == set(vars(p.tier_b))
    assert set(doc["tiers"]["A"]) == set(vars(p.tier_a)) - {
        "blacklist_min_trades",
        "blacklist_max_avg_r",
        "blacklist_s",
    }


def test_bench_config_selects_only_ema_cross_without_shockguard() -> None:
    p = params_from_toml(REPO / "config" / "bench.toml")
    assert p.strategy.templates == ["ema_cross"]
    assert p.shockguard.enabled is False
    assert p.cooldown.loss_s == 0 and p.cooldown.template_s == 0
    assert p.strategy.ema_cross_stop_pct == 0.02
    doc = tomllib.loads((REPO / "config" / "bench.toml").read_text())
    atlas = tomllib.loads((REPO / "config" / "atlas.toml").read_text())
    assert doc["run"] == atlas["run"]


def test_defaults_enable_the_four_strategy_templates() -> None:
    p = default_params()
    assert p.strategy.templates == DEFAULT_TEMPLATES
    assert p.cooldown.emergency_freeze_s == 1800
    assert p.runner.RUNNER_MAX_BARS_AFTER_TP2 == 30


def test_other_top_level_sections_are_ignored() -> None:
    p = load_params(
        {"run": {"mode": "live"}, "venue": {"x": 1}, "runner": {"RUNNER_GIVEBACK": 0.5}}
    )
    assert p.runner.RUNNER_GIVEBACK == 0.5


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"runner": {"RUNNER_GIVEBACK": 1.5}},
            "runner.RUNNER_GIVEBACK = 1.5 is out of range [0, 1]",
        ),
        (
            {"runner": {"RUNNER_MAX_BARS_AFTER_TP2": 0}},
            "runner.RUNNER_MAX_BARS_AFTER_TP2 = 0 is out of range [1, 100000]",
        ),
        ({"tiers": {"A": {"leverage": 200}}}, "tiers.A.leverage = 200 is out of range [1, 125]"),
        ({"cooldown": {"loss_s": -1}}, "cooldown.loss_s = -1 is out of range [0, 604800]"),
        (
            {"risk": {"risk_per_trade_b": 0.5}},
            "risk.risk_per_trade_b = 0.5 is out of range [0, 0.1]",
        ),
        ({"runner": {"RUNNER_GIVEBAK": 0.3}}, "runner.RUNNER_GIVEBAK is not a known key"),
        ({"tiers": {"A": {"blacklist_s": 10}}}, "tiers.A.blacklist_s is not a known key"),
        ({"tiers": {"C": {}}}, "tiers.C is not a known tier"),
        ({"shockguard": {"enabled": "yes"}}, "shockguard.enabled = 'yes' must be true or false"),
        ({"cooldown": {"loss_s": 1.5}}, "cooldown.loss_s = 1.5 must be an integer"),
        ({"runner": {"RUNNER_GIVEBACK": "x"}}, "runner.RUNNER_GIVEBACK = 'x' must be a number"),
        ({"runner": {"RUNNER_GIVEBACK": float("nan")}}, "must be finite"),
        ({"runner": 3}, "[runner] must be a table"),
        ({"strategy": {"templates": ["nope"]}}, "strategy.templates[0] = 'nope' is not a known"),
        ({"strategy": {"templates": ["ema_cross", "ema_cross"]}}, "lists a template twice"),
        ({"strategy": {"templates": "ema_cross"}}, "must be a list of strings"),
        ({"tiers": {"B": {"tp1_r": 2.0, "tp2_r": 1.0}}}, "tiers.B.tp2_r = 1.0 must be greater"),
        ({"tiers": {"A": {"tp1_share": 0.7, "tp2_share": 0.5}}}, "tp1_share + tp2_share"),
        ({"strategy": {"ema_fast": 60, "ema_slow": 50}}, "strategy.ema_slow = 50 must be greater"),
    ],
)
def test_bad_values_name_the_key_and_the_range(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ParamsError) as exc:
        check_templates(load_params(doc))  # the complete validation (as supervisor.config)
    assert message in str(exc.value)


def test_integral_float_is_accepted_for_an_int_key() -> None:
    assert load_params({"cooldown": {"loss_s": 60.0}}).cooldown.loss_s == 60


def test_toml_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[runner]\nRUNNER_GIVEBACK = 2\n")
    with pytest.raises(
        ParamsError, match=r"bad\.toml: runner\.RUNNER_GIVEBACK = 2 is out of range"
    ):
        params_from_toml(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("[runner\n")
    with pytest.raises(ParamsError, match=r"broken\.toml"):
        params_from_toml(broken)
    with pytest.raises(ParamsError, match="cannot read"):
        params_from_toml(tmp_path / "missing.toml")


def test_params_are_frozen() -> None:
    p = Params()
    with pytest.raises(AttributeError):
        p.runner.RUNNER_GIVEBACK = 0.9  # type: ignore[misc]
