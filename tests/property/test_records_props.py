"""Random SymbolStates survive to_dict/from_dict and a real LMDB + msgpack StateStore unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlas_actors.domain.records import (
    AlgoRef,
    CooldownUntil,
    ExecQualityRoll,
    HealthRoll,
    LastOrders,
    OrderRef,
    PositionStage,
    PositionState,
    ShockGuardState,
    SlAlgo,
    SymbolState,
)
from atlas_actors.store import StateStore

ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
epochs = st.integers(min_value=0, max_value=2**40)
floats = st.floats(allow_nan=False)
texts = st.text(max_size=24)
opt_texts = st.none() | texts

# Free-form structs (regime_state, windows): what msgpack carries losslessly.
json_like = st.recursive(
    st.none() | st.booleans() | ints | floats | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
free_dicts = st.dictionaries(texts, json_like, max_size=4)

order_refs = st.builds(OrderRef, order_id=opt_texts, client_order_id=opt_texts)
position_states = st.builds(
    PositionState,
    side=st.sampled_from(["LONG", "SHORT", "NONE"]) | texts,
    entry_price=floats,
    qty_total=floats,
    qty_runner=floats,
    sl_price=floats,
    sl_algo=st.builds(SlAlgo, algo_id=opt_texts, client_algo_id=opt_texts, working_type=texts),
    tp1_done=st.booleans(),
    tp2_done=st.booleans(),
    peak_pnl_r=floats,
    bars_after_tp2=ints,
    last_orders=st.builds(
        LastOrders,
        entry=order_refs,
        tp=st.lists(order_refs, max_size=3),
        sl=st.builds(AlgoRef, algo_id=opt_texts, client_algo_id=opt_texts),
    ),
    position_stage=st.sampled_from([s.value for s in PositionStage]),
    initial_qty=floats,
    risk_per_unit=floats,
    tp1_price=floats,
    tp2_price=floats,
    template=texts,
    tier=texts,
    opened_ts=epochs,
    realized_pnl=floats,
    fees=floats,
)
symbol_states = st.builds(
    SymbolState,
    last_regime=texts,
    last_template=texts,
    cooldown_until=st.builds(
        CooldownUntil, loss=epochs, template=epochs, freeze=epochs, shock=epochs
    ),
    b_blacklist_until=epochs,
    shockguard=st.builds(
        ShockGuardState,
        q95_1m=st.none() | floats,
        q95_3m=st.none() | floats,
        recalib_ts=epochs,
        trigger_count_60m=ints,
    ),
    exec_quality_roll=st.builds(
        ExecQualityRoll,
        fill_rate_30=floats,
        slippage_cost30_r=floats,
        cancel_rate_30=floats,
        spread_p95=floats,
        sample_n=ints,
        last_update_ts=epochs,
    ),
    health_roll=st.builds(
        HealthRoll,
        win_rate=floats,
        avg_r=floats,
        max_dd=floats,
        profit_factor=floats,
        fallback_quality=floats,
        trade_n=ints,
        last_calib_ts=epochs,
    ),
    position_state=position_states,
    schema_version=st.integers(min_value=0, max_value=10),
    symbol=texts,
    seq=ints,
    bar_index=ints,
    last_bar_close_time=ints,
    regime_state=free_dicts,
    shock_state=free_dicts,
    pending=free_dicts,
    exec_window=st.lists(free_dicts, max_size=3),
    trade_window=st.lists(free_dicts, max_size=3),
)
symbols = st.sampled_from(["BTCUSDC", "ETHUSDT", "XRPUSDT"]) | st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=12,
)


@given(symbol_states)
def test_dict_round_trip_is_lossless(state: SymbolState) -> None:
    d = state.to_dict()
    back = SymbolState.from_dict(d)
    assert back == state
    assert back.to_dict() == d
    assert PositionState.from_dict(d["position_state"]) == state.position_state


@given(symbol_states)
def test_from_dict_result_is_independent_of_the_input(state: SymbolState) -> None:
    d = state.to_dict()
    back = SymbolState.from_dict(d)
    d["cooldown_until"]["loss"] = -1
    d["position_state"]["last_orders"]["tp"].append({"order_id": "x"})
    assert back.cooldown_until.loss == state.cooldown_until.loss
    assert back.position_state.last_orders.tp == state.position_state.last_orders.tp


def test_round_trip_through_lmdb_and_msgpack(tmp_path: Path) -> None:
    written: dict[str, dict[str, Any]] = {}
    with StateStore(tmp_path / "state", map_size=1 << 20) as store:

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(symbol=symbols, state=symbol_states)
        def check(symbol: str, state: SymbolState) -> None:
            d = state.to_dict()
            store.set_symbol_state(symbol, d)
            assert store.get_symbol_state(symbol) == d  # buffered read
            store.flush()
            assert store.get_symbol_state(symbol) == d  # read back from LMDB
            assert SymbolState.from_dict(store.get_symbol_state(symbol)) == state
            written[symbol] = d

        check()
    # And after the environment is closed and reopened.
    with StateStore(tmp_path / "state") as store:
        assert set(store.symbols()) == set(written)
        for symbol, d in written.items():
            assert store.get_symbol_state(symbol) == d
