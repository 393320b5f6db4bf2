"""§5 manage_runner at its boundaries, and the runner exit through on_bar (limit, then market
fallback on the next bar)."""

from __future__ import annotations

from typing import Any

import pytest

from atlas_actors.domain import core
from atlas_actors.domain.commands import CancelOrder, PlaceLimit, PlaceMarket
from atlas_actors.domain.params import RunnerParams, default_params
from atlas_actors.domain.records import PositionState, SymbolState
from atlas_actors.domain.runner import EXIT_LIMIT, EXIT_MARKET, HOLD, manage_runner
from tests.unit.test_domain_lifecycle import CTX, NOW, RISK_KEYS, of, ou

RP = RunnerParams(RUNNER_MAX_BARS_AFTER_TP2=30, RUNNER_MIN_PEAK_R=2.5, RUNNER_GIVEBACK=0.4)


def runner_pos(**kw: Any) -> PositionState:
    base: dict[str, Any] = {
        "side": "LONG",
        "entry_price": 100.0,
        "qty_total": 0.3,
        "qty_runner": 0.3,
        "sl_price": 102.0,
        "tp1_done": True,
        "tp2_done": True,
        "peak_pnl_r": 2.0,
        "bars_after_tp2": 1,
        "position_stage": "RUNNER_ONLY",
        "risk_per_unit": 2.0,
        "initial_qty": 1.0,
        "template": "trend_pullback",
        "tier": "A",
    }
    base.update(kw)
    return PositionState(**base)


def decide(
    pos: PositionState, price: float, regime: str = "TREND_UP", exit_: Any = None, bar: int = 10
) -> dict[str, Any]:
    return manage_runner(
        "BTCUSDC", pos, bar, {"regime": regime, "price": price, "params": RP, "exit": exit_}
    )


# ------------------------------------------------------------------ time exit


@pytest.mark.parametrize(("bars", "action"), [(29, HOLD), (30, EXIT_LIMIT), (31, EXIT_LIMIT)])
def test_time_exit_boundary(bars: int, action: str) -> None:
    d = decide(runner_pos(bars_after_tp2=bars), 104.0)
    assert d["action"] == action
    if action != HOLD:
        assert d["rule"] == "time"
        assert d["reason"] == f"time: bars_after_tp2 {bars} >= RUNNER_MAX_BARS_AFTER_TP2 30"


# ------------------------------------------------------------------ give-back exit


@pytest.mark.parametrize(
    ("peak", "price", "action"),
    [
        (2.5, 103.0, EXIT_LIMIT),  # pnl 1.5 R == 2.5 * (1 - 0.4): exits (<=)
        (2.5, 103.02, HOLD),  # pnl 1.51 R > 1.5 R
        (2.49, 102.0, HOLD),  # peak below RUNNER_MIN_PEAK_R: never a give-back exit
        (4.0, 104.8, EXIT_LIMIT),  # pnl 2.4 R == 4 * 0.6
        (4.0, 104.82, HOLD),
    ],
)
def test_giveback_boundary(peak: float, price: float, action: str) -> None:
    d = decide(runner_pos(peak_pnl_r=peak), price)
    assert d["action"] == action, d
    if action != HOLD:
        assert d["rule"] == "giveback"


def test_giveback_with_zero_giveback_exits_on_any_drop_from_peak() -> None:
    rp = RunnerParams(RUNNER_MAX_BARS_AFTER_TP2=30, RUNNER_MIN_PEAK_R=2.0, RUNNER_GIVEBACK=0.0)
    pos = runner_pos(peak_pnl_r=3.0)
    assert (
        manage_runner("X", pos, 1, {"regime": "TREND_UP", "price": 106.0, "params": rp})["action"]
        == EXIT_LIMIT
    )
    assert (
        manage_runner("X", pos, 1, {"regime": "TREND_UP", "price": 106.02, "params": rp})["action"]
        == HOLD
    )


def test_short_runner_pnl_is_mirrored() -> None:
    pos = runner_pos(side="SHORT", entry_price=100.0, sl_price=98.0, peak_pnl_r=2.5)
    assert decide(pos, 97.0)["action"] == EXIT_LIMIT  # 1.5 R
    assert decide(pos, 96.98)["action"] == HOLD


# ------------------------------------------------------------------ regime exit


@pytest.mark.parametrize("regime", ["SHOCK", "CHOP"])
def test_shock_or_chop_closes_the_runner_at_market_immediately(regime: str) -> None:
    d = decide(runner_pos(peak_pnl_r=3.0), 105.0, regime=regime)
    assert d["action"] == EXIT_MARKET and d["rule"] == "regime"


@pytest.mark.parametrize("regime", ["TREND_UP", "TREND_DOWN", "RANGE"])
def test_other_regimes_keep_the_runner(regime: str) -> None:
    assert decide(runner_pos(peak_pnl_r=3.0), 105.0, regime=regime)["action"] == HOLD


# ------------------------------------------------------------------ fallback and guards


def test_market_fallback_only_from_the_next_bar() -> None:
    pending = {"cid": "c", "kind": "limit", "placed_bar": 10, "tag": "runner_time"}
    assert decide(runner_pos(bars_after_tp2=40), 104.0, exit_=pending, bar=10)["action"] == HOLD
    d = decide(runner_pos(bars_after_tp2=40), 104.0, exit_=pending, bar=11)
    assert d["action"] == EXIT_MARKET and d["rule"] == "fallback"
    market = {"cid": "m", "kind": "market", "placed_bar": 5, "tag": "runner_regime"}
    assert (
        decide(runner_pos(bars_after_tp2=40), 104.0, "SHOCK", exit_=market, bar=11)["action"]
        == HOLD
    )


def test_no_runner_no_decision() -> None:
    assert (
        decide(
            runner_pos(position_stage="BETWEEN_TP1_TP2", qty_runner=0.0, bars_after_tp2=99), 104.0
        )["action"]
        == HOLD
    )
    assert decide(runner_pos(qty_runner=0.0, bars_after_tp2=99), 104.0)["action"] == HOLD


def test_accepts_the_plain_dict_form() -> None:
    d = manage_runner(
        "X",
        runner_pos(bars_after_tp2=30).to_dict(),
        1,
        {"regime": "RANGE", "price": 104.0, "params": RP},
    )
    assert d["action"] == EXIT_LIMIT


# ------------------------------------------------------------------ through on_bar


def runner_state(**kw: Any) -> SymbolState:
    st = SymbolState.fresh("BTCUSDC")
    st.seq = 10
    st.bar_index = 500
    st.position_state = runner_pos(**kw)
    st.position_state.sl_algo.client_algo_id = "atl-BTCUSDC-9-sl"
    st.pending = {
        "trade": {
            "exits": ["tp1", "tp2"],
            "limit_exits": 2,
            "fallbacks": 0,
            "derisked": False,
            "sl_recoveries": 0,
            "targets": True,
        }
    }
    # a calm, established RANGE so the bar does not change the regime
    st.regime_state = {
        "n": 500,
        "c": 104.0,
        "pc": 104.0,
        "h": 104.1,
        "l": 103.9,
        "o": 104.0,
        "ef": 104.0,
        "es": 104.0,
        "pef": 104.0,
        "pes": 104.0,
        "atr": 0.2,
        "atrb": 0.2,
        "dn": 0.0,
        "dd": 0.05,
        "er": 0.0,
        "chi": 104.1,
        "clo": 103.9,
        "pchi": 104.1,
        "pclo": 103.9,
        "reg": "RANGE",
        "cand": "RANGE",
        "cnt": 0,
        "shock": 0,
    }
    return st


def bar(close: float, i: int = 0) -> dict[str, Any]:
    return {
        "open_time": i * 60_000,
        "open": close,
        "high": close + 0.05,
        "low": close - 0.05,
        "close": close,
        "volume": 1.0,
        "close_time": i * 60_000 + 59_999,
    }


def test_time_exit_limit_then_market_fallback_through_on_bar() -> None:
    st = runner_state(bars_after_tp2=29)
    s1 = core.on_bar(st, bar(104.0), CTX, default_params(), NOW)
    (lim,) = of(s1.commands, PlaceLimit)
    assert (
        lim.reduce_only
        and lim.side == "SELL"
        and lim.qty == 0.3
        and lim.price == 104.1
        and lim.role == "runner_exit"
    )
    (rec,) = [r for r in s1.records if r.get("event_type") == "RUNNER_EXIT"]
    assert set(rec) == RISK_KEYS and rec["reason"].startswith("time: bars_after_tp2 30")
    s2 = core.on_bar(s1.state, bar(104.0, 1), CTX, default_params(), NOW + 60)
    assert [c.client_order_id for c in of(s2.commands, CancelOrder)] == [lim.client_order_id]
    (mkt,) = of(s2.commands, PlaceMarket)
    assert mkt.reduce_only and mkt.qty == 0.3 and mkt.role == "runner_exit"
    fill = core.on_order_update(
        s2.state, ou(mkt.client_order_id, "FILLED", 0.3, 103.9), CTX, default_params(), NOW + 61
    )
    st3 = fill.state
    assert st3.position_state.side == "NONE"
    trade = st3.trade_window[-1]
    assert trade["exit_reason"] == "runner_time_fallback" and trade["fallbacks"] == 1
    assert st3.health_roll.fallback_quality == pytest.approx(1 - 1 / 3)


def test_runner_limit_exit_filled_in_time() -> None:
    st = runner_state(bars_after_tp2=29)
    s1 = core.on_bar(st, bar(104.0), CTX, default_params(), NOW)
    (lim,) = of(s1.commands, PlaceLimit)
    f = core.on_order_update(
        s1.state, ou(lim.client_order_id, "FILLED", 0.3, 104.0), CTX, default_params(), NOW + 30
    )
    assert f.state.position_state.side == "NONE"
    assert f.state.trade_window[-1]["exit_reason"] == "runner_time"
    assert f.state.trade_window[-1]["exits"] == ["tp1", "tp2", "runner_time"]
    # the runner's stop is cancelled (the position left through the limit)
    assert any(type(c).__name__ == "CancelAlgo" for c in f.commands)


def test_contract_dict_shape_without_params_uses_the_defaults() -> None:
    """§5's signature with the contract's §3 dict (no position_stage, no risk_per_unit) and a
    ctx without params: the defaults decide, the stage follows tp2_done."""
    defaults = RunnerParams()
    pos = {
        "side": "LONG",
        "entry_price": 100.0,
        "qty_total": 0.3,
        "qty_runner": 0.3,
        "sl_price": 98.0,
        "tp1_done": True,
        "tp2_done": True,
        "peak_pnl_r": 0.0,
        "bars_after_tp2": defaults.RUNNER_MAX_BARS_AFTER_TP2,
    }
    out = manage_runner("BTCUSDC", pos, 10, {"price": 101.0, "regime": "RANGE"})
    assert out["action"] == "EXIT_LIMIT" and out["rule"] == "time"
    assert out["pnl_r"] == pytest.approx(0.5)  # 1.0 over the 2.0 entry-to-stop distance
    kept = manage_runner("BTCUSDC", {**pos, "bars_after_tp2": 1}, 10, {"price": 101.0})
    assert kept["action"] == "HOLD"
    pre = manage_runner("BTCUSDC", {**pos, "tp2_done": False}, 10, {"price": 101.0})
    assert pre["reason"] == "no runner"
    shock = manage_runner(
        "BTCUSDC", pos, 10, {"price": 101.0, "regime": "SHOCK", "params": default_params()}
    )
    assert shock["action"] == "EXIT_MARKET" and shock["rule"] == "regime"
