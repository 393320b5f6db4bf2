"""SymbolState / PositionState: defaults, round trips, default filling, typed errors, contract names."""

from __future__ import annotations

import pytest

from atlas_actors.domain.records import (
    SCHEMA_VERSION,
    OrderRef,
    PositionStage,
    PositionState,
    RecordError,
    Side,
    SymbolState,
    default_symbol_state,
)

# Contract §2.1, verbatim: top-level fields and the exact keys of each nested dict.
CONTRACT_SYMBOL_FIELDS = [
    "last_regime",
    "last_template",
    "cooldown_until",
    "b_blacklist_until",
    "shockguard",
    "exec_quality_roll",
    "health_roll",
    "position_state",
]
CONTRACT_COOLDOWN_UNTIL = ["loss", "template", "freeze", "shock"]
CONTRACT_SHOCKGUARD = ["q95_1m", "q95_3m", "recalib_ts", "trigger_count_60m"]
CONTRACT_EXEC_QUALITY_ROLL = [
    "fill_rate_30",
    "slippage_cost30_r",
    "cancel_rate_30",
    "spread_p95",
    "sample_n",
    "last_update_ts",
]
CONTRACT_HEALTH_ROLL = [
    "win_rate",
    "avg_r",
    "max_dd",
    "profit_factor",
    "fallback_quality",
    "trade_n",
    "last_calib_ts",
]
# Contract §3, verbatim.
CONTRACT_POSITION_FIELDS = [
    "side",
    "entry_price",
    "qty_total",
    "qty_runner",
    "sl_price",
    "sl_algo",
    "tp1_done",
    "tp2_done",
    "peak_pnl_r",
    "bars_after_tp2",
    "last_orders",
]
CONTRACT_SL_ALGO = ["algo_id", "client_algo_id", "working_type"]
CONTRACT_LAST_ORDERS = ["entry", "tp", "sl"]
CONTRACT_ORDER_REF = ["order_id", "client_order_id"]
CONTRACT_ALGO_REF = ["algo_id", "client_algo_id"]
CONTRACT_STAGES = ["PRE_TP1", "BETWEEN_TP1_TP2", "RUNNER_ONLY"]


def _populated() -> SymbolState:
    st = SymbolState.fresh("BTCUSDC")
    st.last_regime = "TREND_UP"
    st.last_template = "trend_pullback"
    st.cooldown_until.loss = 1_767_263_400
    st.cooldown_until.shock = 1_767_263_999
    st.b_blacklist_until = 1_767_300_000
    st.shockguard.q95_1m = 0.0031
    st.shockguard.trigger_count_60m = 2
    st.exec_quality_roll.fill_rate_30 = 0.8
    st.health_roll.trade_n = 14
    ps = st.position_state
    ps.side = "LONG"
    ps.entry_price = 64_000.5
    ps.qty_total = 0.01
    ps.qty_runner = 0.004
    ps.sl_price = 63_500.0
    ps.sl_algo.algo_id = "4000001"
    ps.sl_algo.client_algo_id = "atl-BTCUSDC-7-sl"
    ps.tp1_done = True
    ps.position_stage = PositionStage.BETWEEN_TP1_TP2
    ps.last_orders.entry.order_id = "11"
    ps.last_orders.entry.client_order_id = "atl-BTCUSDC-5-entry"
    ps.last_orders.tp = []
    ps.last_orders.sl.algo_id = "4000001"
    st.regime_state = {"ema": [1.0, 2.5], "nested": {"a": None, "b": True}}
    st.exec_window = [{"filled": True, "slip_r": 0.02}]
    return st


def test_fresh_symbol_defaults() -> None:
    d = default_symbol_state("ETHUSDC")
    assert d["symbol"] == "ETHUSDC"
    assert d["schema_version"] == SCHEMA_VERSION
    assert d["cooldown_until"] == {"loss": 0, "template": 0, "freeze": 0, "shock": 0}
    assert d["b_blacklist_until"] == 0
    assert d["shockguard"] == {
        "q95_1m": None,
        "q95_3m": None,
        "recalib_ts": 0,
        "trigger_count_60m": 0,
    }
    ps = d["position_state"]
    assert ps["side"] == "NONE"
    assert ps["qty_total"] == 0.0 and ps["qty_runner"] == 0.0
    assert ps["tp1_done"] is False and ps["tp2_done"] is False
    assert ps["bars_after_tp2"] == 0
    assert ps["sl_algo"] == {"algo_id": None, "client_algo_id": None, "working_type": "MARK_PRICE"}
    assert ps["last_orders"] == {
        "entry": {"order_id": None, "client_order_id": None},
        "tp": [],
        "sl": {"algo_id": None, "client_algo_id": None},
    }
    assert ps["position_stage"] == "NONE"
    # A fresh dict each time: callers may mutate what they get.
    d["cooldown_until"]["loss"] = 5
    assert default_symbol_state("ETHUSDC")["cooldown_until"]["loss"] == 0


def test_to_dict_gives_plain_types_only() -> None:
    d = _populated().to_dict()
    assert type(d["position_state"]["side"]) is str
    assert type(d["position_state"]["position_stage"]) is str

    def walk(v: object, path: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                assert type(k) is str, path
                walk(x, f"{path}.{k}")
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, f"{path}[{i}]")
        else:
            assert v is None or type(v) in (str, int, float, bool), f"{path}: {type(v)}"

    walk(d, "")


def test_round_trip_is_lossless() -> None:
    st = _populated()
    d = st.to_dict()
    back = SymbolState.from_dict(d)
    assert back == st
    assert back.to_dict() == d
    ps_d = st.position_state.to_dict()
    assert PositionState.from_dict(ps_d) == st.position_state
    assert PositionState.from_dict(ps_d).to_dict() == ps_d


def test_missing_fields_are_filled_with_defaults() -> None:
    assert SymbolState.from_dict({}) == SymbolState()
    partial = {
        "last_regime": "CHOP",
        "cooldown_until": {"loss": 123},
        "position_state": {"side": "SHORT", "sl_algo": {"algo_id": "9"}, "last_orders": {}},
    }
    st = SymbolState.from_dict(partial)
    assert st.last_regime == "CHOP"
    assert st.cooldown_until.loss == 123
    assert st.cooldown_until.freeze == 0 and st.cooldown_until.template == 0
    assert st.b_blacklist_until == 0
    assert st.position_state.side == "SHORT"
    assert st.position_state.sl_algo.algo_id == "9"
    assert st.position_state.sl_algo.working_type == "MARK_PRICE"
    assert st.position_state.last_orders.tp == []
    assert st.health_roll.fallback_quality == SymbolState().health_roll.fallback_quality


def test_numeric_coercions_are_exact() -> None:
    st = SymbolState.from_dict(
        {"cooldown_until": {"loss": 1_700_000_000.0}, "position_state": {"entry_price": 100}}
    )
    assert st.cooldown_until.loss == 1_700_000_000 and type(st.cooldown_until.loss) is int
    assert st.position_state.entry_price == 100.0 and type(st.position_state.entry_price) is float


@pytest.mark.parametrize(
    ("stored", "path"),
    [
        ({"position_state": {"sl_algo": {"algo_id": 123}}}, "position_state.sl_algo.algo_id"),
        ({"cooldown_until": {"loss": "soon"}}, "cooldown_until.loss"),
        ({"cooldown_until": {"freeze": 1.5}}, "cooldown_until.freeze"),
        ({"b_blacklist_until": True}, "b_blacklist_until"),
        ({"position_state": {"tp1_done": 1}}, "position_state.tp1_done"),
        ({"position_state": {"entry_price": "64000"}}, "position_state.entry_price"),
        ({"shockguard": {"q95_1m": "x"}}, "shockguard.q95_1m"),
        ({"shockguard": []}, "shockguard"),
        ({"health_roll": {"trade_n": None}}, "health_roll.trade_n"),
        (
            {"position_state": {"last_orders": {"tp": [{"order_id": 5}]}}},
            "position_state.last_orders.tp[0].order_id",
        ),
        ({"position_state": {"last_orders": {"tp": {}}}}, "position_state.last_orders.tp"),
        ({"regime_state": [1, 2]}, "regime_state"),
    ],
)
def test_wrong_types_name_the_field_path(stored: dict[str, object], path: str) -> None:
    with pytest.raises(RecordError) as err:
        SymbolState.from_dict(stored)
    assert str(err.value).startswith(path + ":"), str(err.value)


def test_not_a_mapping_is_refused() -> None:
    with pytest.raises(RecordError, match="expected a mapping"):
        SymbolState.from_dict([])  # type: ignore[arg-type]
    with pytest.raises(RecordError, match="^position_state: expected a mapping"):
        PositionState.from_dict("LONG")  # type: ignore[arg-type]


def test_contract_symbol_state_field_names_and_nesting() -> None:
    d = SymbolState().to_dict()
    for name in CONTRACT_SYMBOL_FIELDS:
        assert name in d, name
    assert list(d["cooldown_until"]) == CONTRACT_COOLDOWN_UNTIL
    assert list(d["shockguard"]) == CONTRACT_SHOCKGUARD
    assert list(d["exec_quality_roll"]) == CONTRACT_EXEC_QUALITY_ROLL
    assert list(d["health_roll"]) == CONTRACT_HEALTH_ROLL
    assert isinstance(d["last_regime"], str) and isinstance(d["last_template"], str)
    assert all(type(v) is int for v in d["cooldown_until"].values())
    assert type(d["b_blacklist_until"]) is int
    assert type(d["shockguard"]["recalib_ts"]) is int
    assert type(d["shockguard"]["trigger_count_60m"]) is int
    for k in CONTRACT_EXEC_QUALITY_ROLL:
        expected = int if k in ("sample_n", "last_update_ts") else float
        assert type(d["exec_quality_roll"][k]) is expected, k
    for k in CONTRACT_HEALTH_ROLL:
        expected = int if k in ("trade_n", "last_calib_ts") else float
        assert type(d["health_roll"][k]) is expected, k


def test_contract_position_state_field_names_and_nesting() -> None:
    st = SymbolState()
    st.position_state.last_orders.tp = [OrderRef(order_id="1", client_order_id="c1")]
    ps = st.to_dict()["position_state"]
    for name in CONTRACT_POSITION_FIELDS:
        assert name in ps, name
    assert "position_stage" in ps
    assert list(ps["sl_algo"]) == CONTRACT_SL_ALGO
    assert list(ps["last_orders"]) == CONTRACT_LAST_ORDERS
    assert list(ps["last_orders"]["entry"]) == CONTRACT_ORDER_REF
    assert isinstance(ps["last_orders"]["tp"], list)
    assert list(ps["last_orders"]["tp"][0]) == CONTRACT_ORDER_REF
    assert list(ps["last_orders"]["sl"]) == CONTRACT_ALGO_REF
    for k in ("tp1_done", "tp2_done"):
        assert type(ps[k]) is bool
    for k in ("entry_price", "qty_total", "qty_runner", "sl_price", "peak_pnl_r"):
        assert type(ps[k]) is float, k
    assert type(ps["bars_after_tp2"]) is int


def test_contract_enums() -> None:
    assert {s.value for s in Side} == {"LONG", "SHORT", "NONE"}
    values = [s.value for s in PositionStage]
    for stage in CONTRACT_STAGES:
        assert stage in values
    assert set(values) - set(CONTRACT_STAGES) == {"NONE"}
