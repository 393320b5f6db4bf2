"""A pure-domain replay of the bundled real BTC 1m month (fill model from
test_domain_fillmodel): trades of every tier and template, every exit type, and every record
carries exactly the §8 fields. It checks the fields, not the profit."""

from __future__ import annotations

from typing import Any

import pytest

from atlas_actors.domain.commands import RISK_EVENT_TYPES, EmergencyFlatten, PlaceLimit
from atlas_actors.domain.gate import open_allowed
from atlas_actors.domain.params import default_params
from atlas_actors.domain.records import SymbolState
from tests.support.params import params_from_toml
from tests.unit.test_domain_fillmodel import BUNDLED, REPO, Replay, load_btc_bars, replay
from tests.unit.test_domain_scoring import CANDIDATE_KEYS

RISK_KEYS = {
    "kind",
    "ts",
    "event_type",
    "symbol",
    "side",
    "qty",
    "price",
    "order_ids",
    "client_ids",
    "reason",
}


class Month:
    def __init__(self, params: Any) -> None:
        self.trades: list[dict[str, Any]] = []
        self.opens_while_closed: list[dict[str, Any]] = []

        def observe(kind: str, before: SymbolState, ev: Any, ctx: Any, step: Any, now: int) -> None:
            after = step.state.trade_window
            if after and (not before.trade_window or after[-1] is not before.trade_window[-1]):
                self.trades.append(after[-1])
            for rec in step.records:
                if rec.get("action") == "OPEN" and (
                    not open_allowed(before, now)[0] or ctx.open_block_reason
                ):
                    self.opens_while_closed.append(rec)

        self.result: Replay = replay(load_btc_bars(), params, observer=observe)


@pytest.fixture(scope="module")
def month() -> Month:
    return Month(default_params())


def test_the_bundled_gzipped_month_is_used() -> None:
    assert BUNDLED.exists(), (
        "atlas_actors/data/BTCPERP-1m-2022-01.csv.gz must ship with the package"
    )
    bars = load_btc_bars(3)
    assert {"open_time", "open", "high", "low", "close", "volume", "close_time"} <= set(bars[0])


def test_trades_of_every_tier_and_template(month: Month) -> None:
    tiers = {t["tier"] for t in month.trades}
    templates = {t["template"] for t in month.trades}
    assert tiers == {"A", "B"}
    assert templates == set(default_params().strategy.templates)


def test_every_exit_type_happens(month: Month) -> None:
    exits = {e for t in month.trades for e in t["exits"]}
    for needed in ("stop", "tp1", "tp2", "runner_time", "runner_giveback", "runner_regime"):
        assert needed in exits, (needed, exits)
    assert any(e.endswith("_fallback") for e in exits), exits  # market fallback of a limit exit
    reasons = [r["reason"] for r in month.result.records if r.get("event_type") == "RUNNER_EXIT"]
    assert any(r.startswith("time: ") for r in reasons)
    assert any(r.startswith("giveback: ") for r in reasons)
    assert any("regime" in r for r in reasons)
    assert any("market fallback" in r for r in reasons)


def test_every_record_has_exactly_the_contract_fields(month: Month) -> None:
    kinds = {"candidate": 0, "risk": 0}
    for rec in month.result.records:
        kinds[rec["kind"]] += 1
        assert isinstance(rec["ts"], int)
        if rec["kind"] == "candidate":
            assert set(rec) == CANDIDATE_KEYS
            assert rec["action"] in ("OPEN", "REJECT")
            assert rec["gates"] and all(
                g["status"] in ("PASS", "FAIL") and isinstance(g["reason"], str) and g["reason"]
                for g in rec["gates"].values()
            )
            failing = [n for n, g in rec["gates"].items() if g["status"] == "FAIL"]
            if rec["action"] == "OPEN":
                assert not failing and rec["reject_reason"] is None
            else:
                assert failing and rec["reject_reason"]
            assert set(rec["penalties"]) == {
                "exec_quality",
                "health",
                "spread",
                "funding",
                "regime_fit",
            }
            assert rec["final_score"] == pytest.approx(
                rec["base_score"] - sum(rec["penalties"].values())
            )
            assert rec["regime"] in ("TREND_UP", "TREND_DOWN", "RANGE", "CHOP", "SHOCK")
        else:
            assert set(rec) == RISK_KEYS and rec["event_type"] in RISK_EVENT_TYPES
    assert kinds["candidate"] > 100 and kinds["risk"] > 100
    seen = {r["event_type"] for r in month.result.records if r["kind"] == "risk"}
    assert {"LOSS_COOLDOWN", "REGIME_SHIFT", "RUNNER_EXIT"} <= seen


def test_no_open_while_the_gate_is_closed(month: Month) -> None:
    assert month.opens_while_closed == []
    reasons = [r["reject_reason"] for r in month.result.records if r.get("action") == "REJECT"]
    assert any("cooldown.loss until" in r for r in reasons)
    assert any("cooldown.template until" in r for r in reasons)
    assert any(" not allowed for " in r for r in reasons)
    assert any("final_score" in r for r in reasons)


def test_no_protective_stop_was_ever_refused(month: Month) -> None:
    assert not [c for c in month.result.commands if isinstance(c, EmergencyFlatten)]


def test_ema_cross_benchmark_config() -> None:
    params = params_from_toml(REPO / "config" / "bench.toml")
    m = Month(params)
    assert len(m.trades) > 100
    assert {t["template"] for t in m.trades} == {"ema_cross"}
    assert {t["side"] for t in m.trades} == {"LONG"}
    assert {t["exit_reason"] for t in m.trades} <= {"ema_cross_exit", "stop"}
    assert not [c for c in m.result.commands if isinstance(c, PlaceLimit)]  # no TP, no runner
    sg = m.result.state.shockguard
    assert sg.q95_1m is None and sg.recalib_ts == 0  # no ShockGuard
    for t in m.trades:
        assert t["stage"] == "PRE_TP1"


def test_a_persisted_and_reloaded_state_continues_identically() -> None:
    """Restart safety: msgpack round trips of the state mid-run change nothing."""
    import msgpack

    bars = load_btc_bars(6000)

    def reload(i: int, state: SymbolState, now: int) -> SymbolState:
        if i % 1000 != 999:
            return state
        blob = msgpack.packb(state.to_dict())
        return SymbolState.from_dict(msgpack.unpackb(blob))

    plain = replay(bars)
    reloaded = replay(bars, before_bar=reload)
    assert reloaded.records == plain.records
    assert reloaded.state.to_dict() == plain.state.to_dict()
    assert len(plain.records) > 100
