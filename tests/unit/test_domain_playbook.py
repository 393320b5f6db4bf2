"""§6 regime-shift playbook: fixed step order, runner closed on SHOCK/CHOP, lock, cooldown."""

from __future__ import annotations

from typing import Any

import pytest

from atlas_actors.domain import core, playbook
from atlas_actors.domain.commands import PlaceAlgoStop, PlaceMarket, SetCooldown
from atlas_actors.domain.params import default_params, load_params
from atlas_actors.domain.records import SymbolState
from tests.unit.test_domain_lifecycle import CTX, NOW, RISK_KEYS, of, opened
from tests.unit.test_domain_runner import runner_state

P = default_params()


def ctx(price: float, **kw: Any) -> dict[str, Any]:
    base = {
        "params": P,
        "now": NOW,
        "price": price,
        "bar_index": 10,
        "prefix": "atl",
        "tick": 0.1,
        "step": 0.001,
        "spread_bps": 0.0,
        "margin_used": 0.0,
        "equity": 10_000.0,
        "shock_hit": False,
    }
    base.update(kw)
    return base


def names(out: dict[str, Any]) -> list[str]:
    return [s["name"] for s in out["steps"]]


def test_steps_are_always_in_the_fixed_order() -> None:
    for st in (SymbolState.fresh("BTCUSDC"), runner_state(), opened().state):
        for old, new in (("RANGE", "SHOCK"), ("TREND_UP", "RANGE"), ("RANGE", "CHOP")):
            out = playbook.on_regime_shift("BTCUSDC", old, new, st, ctx(104.0))
            assert names(out) == ["shockguard_derisk", "runner", "position", "cooldown"]
            assert [s["step"] for s in out["steps"]] == [1, 2, 3, 4]
            (rec,) = [r for r in out["records"] if r["event_type"] == "REGIME_SHIFT"]
            assert set(rec) == RISK_KEYS and rec["reason"].startswith(f"{old} -> {new}")
            assert out["state"].last_regime == new


@pytest.mark.parametrize("new", ["SHOCK", "CHOP"])
def test_runner_is_closed_at_market_on_shock_or_chop(new: str) -> None:
    st = runner_state(peak_pnl_r=3.0)
    snap = st.to_dict()
    out = playbook.on_regime_shift("BTCUSDC", "TREND_UP", new, st, ctx(104.0))
    (m,) = of(out["commands"], PlaceMarket)
    assert m.reduce_only and m.qty == 0.3 and m.side == "SELL" and m.role == "runner_exit"
    assert out["steps"][1]["did"] == "runner closed at market"
    assert out["state"].pending["exit"]["kind"] == "market"
    assert any(r["event_type"] == "RUNNER_EXIT" for r in out["records"])
    assert st.to_dict() == snap  # pure


def test_runner_survives_a_shift_to_a_trend_or_range() -> None:
    for new in ("RANGE", "TREND_DOWN"):
        out = playbook.on_regime_shift("BTCUSDC", "TREND_UP", new, runner_state(), ctx(104.0))
        assert not of(out["commands"], PlaceMarket) and out["steps"][1]["did"] == "runner kept"


def test_shift_against_a_profitable_position_locks_break_even() -> None:
    st = opened().state  # long 1 @ 100, stop 98, R = 2
    out = playbook.on_regime_shift("BTCUSDC", "TREND_UP", "CHOP", st, ctx(101.2))  # +0.6 R
    (stop,) = of(out["commands"], PlaceAlgoStop)
    assert (
        stop.stop_price == 100.0
        and stop.qty == 1.0
        and stop.replaces == st.position_state.sl_algo.client_algo_id
    )
    out2 = playbook.on_regime_shift("BTCUSDC", "TREND_UP", "CHOP", st, ctx(100.8))  # +0.4 R
    assert not of(out2["commands"], PlaceAlgoStop) and out2["steps"][2]["did"] == "stop kept"
    out3 = playbook.on_regime_shift("BTCUSDC", "RANGE", "TREND_UP", st, ctx(101.2))  # with it
    assert not of(out3["commands"], PlaceAlgoStop)


def test_lock_never_puts_the_stop_through_the_market() -> None:
    p = load_params({"strategy": {"shift_lock_min_r": 0.0}})
    st = opened().state
    out = playbook.on_regime_shift("BTCUSDC", "TREND_UP", "SHOCK", st, ctx(100.05, params=p))
    (stop,) = of(out["commands"], PlaceAlgoStop)
    assert stop.stop_price < 100.05


def test_entering_shock_sets_the_shock_cooldown() -> None:
    out = playbook.on_regime_shift(
        "BTCUSDC", "RANGE", "SHOCK", SymbolState.fresh("BTCUSDC"), ctx(100.0)
    )
    assert out["state"].cooldown_until.shock == NOW + P.shockguard.cooldown_s
    assert of(out["commands"], SetCooldown)[0].which == "shock"
    # the regime is the market's: SHOCK locks opens even with the ShockGuard trigger off
    off = load_params({"shockguard": {"enabled": False, "cooldown_s": 600}})
    out2 = playbook.on_regime_shift(
        "BTCUSDC", "RANGE", "SHOCK", SymbolState.fresh("BTCUSDC"), ctx(100.0, params=off)
    )
    assert out2["state"].cooldown_until.shock == NOW + 600
    assert out2["records"][-1]["reason"].endswith(
        f"4 cooldown: cooldown_until.shock = {NOW + 600}; regime_shift_log"
    )


def test_entering_chop_sets_the_template_cooldown_and_trends_lock_nothing() -> None:
    out = playbook.on_regime_shift(
        "BTCUSDC", "TREND_UP", "CHOP", SymbolState.fresh("BTCUSDC"), ctx(100.0)
    )
    assert out["state"].cooldown_until.template == NOW + P.cooldown.chop_s
    (cmd,) = of(out["commands"], SetCooldown)
    assert cmd.which == "template" and cmd.until == NOW + P.cooldown.chop_s
    assert out["state"].cooldown_until.freeze == 0  # freeze is the Sentinel's and the operator's
    calm = playbook.on_regime_shift(
        "BTCUSDC", "RANGE", "TREND_UP", SymbolState.fresh("BTCUSDC"), ctx(100.0)
    )
    assert not of(calm["commands"], SetCooldown)
    assert calm["steps"][3]["did"] == "no cooldown change"


def test_contract_dict_shapes_are_accepted() -> None:
    """§6's signature with the contract's plain dicts; ctx without params uses the defaults."""
    st = opened().state.to_dict()
    out = playbook.on_regime_shift(
        "BTCUSDC", "TREND_UP", "SHOCK", st, {"price": 100.0, "now": NOW, "tick": 0.1}
    )
    assert isinstance(out["state"], dict)
    assert out["state"]["last_regime"] == "SHOCK"
    assert out["state"]["cooldown_until"]["shock"] == NOW + P.shockguard.cooldown_s
    assert names(out) == ["shockguard_derisk", "runner", "position", "cooldown"]


def test_step_one_derisks_on_margin_or_shockguard_once_per_trade() -> None:
    st = opened().state
    out = playbook.on_regime_shift(
        "BTCUSDC", "RANGE", "TREND_DOWN", st, ctx(100.0, margin_used=7_500.0)
    )
    (m,) = of(out["commands"], PlaceMarket)
    assert m.role == "derisk" and m.qty == 0.5 and m.reduce_only
    assert out["steps"][0]["did"].startswith("de-risk 0.5")
    again = playbook.on_regime_shift(
        "BTCUSDC", "TREND_DOWN", "RANGE", out["state"], ctx(100.0, margin_used=7_500.0)
    )
    assert not of(again["commands"], PlaceMarket)
    shock = playbook.on_regime_shift("BTCUSDC", "RANGE", "SHOCK", st, ctx(100.0, shock_hit=True))
    assert of(shock["commands"], PlaceMarket)[0].role == "derisk"
    calm = playbook.on_regime_shift(
        "BTCUSDC", "RANGE", "SHOCK", st, ctx(100.0, margin_used=7_000.0)
    )
    assert not of(calm["commands"], PlaceMarket)


def test_on_bar_runs_the_playbook_when_the_regime_changes() -> None:
    st = runner_state(peak_pnl_r=3.0)
    jump = {
        "open_time": 0,
        "open": 104.0,
        "high": 108.0,
        "low": 104.0,
        "close": 108.0,
        "volume": 1.0,
        "close_time": 59_999,
    }
    step = core.on_bar(st, jump, CTX, P, NOW)  # 4 / 0.2 = 20 ATRs: SHOCK
    assert step.state.last_regime == "SHOCK"
    shift = [r for r in step.records if r["event_type"] == "REGIME_SHIFT"]
    assert len(shift) == 1 and "2 runner: runner closed at market" in shift[0]["reason"]
    (m,) = of(step.commands, PlaceMarket)
    assert m.qty == 0.3 and m.reduce_only
    # the next bar does not issue a second exit while the market order is in flight
    nxt = core.on_bar(
        step.state, dict(jump, open_time=60_000, close_time=119_999), CTX, P, NOW + 60
    )
    assert not of(nxt.commands, PlaceMarket)
