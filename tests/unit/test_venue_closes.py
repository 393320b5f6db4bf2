"""The exchange closes positions by itself (reference §8): liquidation (`autoclose-…`, x =
CALCULATED), ADL (`adl_autoclose`) and settlement (`settlement_autoclose-…`). Those fills
belong to no order of ours and must still change the position, cancel what protected it (or
re-size the stop of what is left), write a risk record naming the cause and alert.

Real SimVenue restored from the chaos rig's seeds of real trading, the real SymbolEngine."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from atlas_actors.domain import core
from atlas_actors.domain.commands import CancelAlgo, CancelOrder, PlaceAlgoStop
from atlas_actors.domain.events import AlgoUpdate, MarkPrice, OrderUpdate
from atlas_actors.domain.params import default_params
from atlas_actors.domain.records import SymbolState
from atlas_actors.domain.txn import venue_close_kind
from atlas_actors.engine import SymbolEngine
from atlas_actors.events import MemorySink
from atlas_actors.venues.binance import schemas
from atlas_actors.venues.sim import SimVenue
from tests.chaos.rig import POSITION_STAGES, PREFIX, SYMBOL, stage_seeds

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "binance-usdm"


def _fixture_update(name: str) -> OrderUpdate:
    msg = json.loads((FIXTURES / f"user_data_json__{name}.json").read_text())
    upd = schemas.parse_stream_message(msg)
    assert isinstance(upd, OrderUpdate)
    return upd


def _venue_update(name: str, state: SymbolState, qty: float, price: float) -> OrderUpdate:
    """A Binance fixture of the venue's own close, moved onto the seed's symbol and size."""
    upd = _fixture_update(name)
    side = "SELL" if state.position_state.side == "LONG" else "BUY"
    return replace(
        upd,
        symbol=SYMBOL,
        side=side,
        qty=qty,
        executed_qty=qty,
        last_fill_qty=qty,
        last_fill_price=price,
        avg_price=price,
        status="FILLED",
    )


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("order_update_calculated", "liquidation"),
        ("order_update_adl", "adl"),
        ("order_update_settlement", "settlement"),
    ],
)
def test_fixture_client_ids_name_the_venue_close(name, kind):
    upd = _fixture_update(name)
    assert venue_close_kind(upd.client_order_id, upd.execution_type) == kind


@pytest.mark.parametrize("cid", ["atl-ADABTC-3-t1", "algo-5000001", "ext-chaos-1", ""])
def test_other_client_ids_are_no_venue_close(cid):
    assert venue_close_kind(cid, "CALCULATED") is None


def test_an_autoclose_id_without_calculated_is_no_liquidation():
    """A liquidation is `autoclose-…` with x = CALCULATED; a TRADE under such an id (a stop's
    child, as some models name it) goes the way of a stop child's fill."""
    assert venue_close_kind("autoclose-x", "TRADE") is None


@pytest.mark.parametrize("stage", POSITION_STAGES)
@pytest.mark.parametrize("name", ["order_update_calculated", "order_update_settlement"])
def test_a_whole_venue_close_flattens_the_shard_and_cancels_its_protection(stage, name):
    """Failed before: the fill was parked as a stop child's orphan and the shard kept a
    phantom position with its stop and take-profits."""
    state = SymbolState.from_dict(stage_seeds()[stage].state)
    pos = state.position_state
    upd = _venue_update(name, state, pos.qty_total, pos.sl_price)
    step = core.on_order_update(state, upd, core.MarketCtx(), default_params(), 1_700_000_000)
    assert step.state.position_state.side == "NONE"
    assert step.state.position_state.qty_total == 0.0
    cancelled = {c.client_algo_id for c in step.commands if isinstance(c, CancelAlgo)}
    assert pos.sl_algo.client_algo_id in cancelled
    tps = {c for c, i in (state.pending.get("orders") or {}).items() if i.get("kind") == "limit"}
    assert tps <= {c.client_order_id for c in step.commands if isinstance(c, CancelOrder)}
    risk = [r for r in step.records if r["kind"] == "risk" and r["event_type"] == "EMERGENCY_FLAT"]
    assert len(risk) == 1, step.records
    assert venue_close_kind(upd.client_order_id, upd.execution_type) in risk[0]["reason"]
    assert risk[0]["order_ids"] == [upd.order_id]


def test_a_liquidation_freezes_the_symbol():
    state = SymbolState.from_dict(stage_seeds()["PRE_TP1"].state)
    pos = state.position_state
    upd = _venue_update("order_update_calculated", state, pos.qty_total, pos.sl_price)
    now = 1_700_000_000
    params = default_params()
    step = core.on_order_update(state, upd, core.MarketCtx(), params, now)
    assert step.state.cooldown_until.freeze >= now + params.cooldown.emergency_freeze_s


@pytest.mark.parametrize("stage", POSITION_STAGES)
def test_a_partial_adl_resizes_the_stop_to_what_is_left(stage):
    """Failed before: the ADL fill was parked, the shard and its stop kept the old size."""
    state = SymbolState.from_dict(stage_seeds()[stage].state)
    pos = state.position_state
    half = pos.qty_total / 2
    upd = _venue_update("order_update_adl", state, half, pos.entry_price)
    step = core.on_order_update(state, upd, core.MarketCtx(), default_params(), 1_700_000_000)
    left = step.state.position_state
    assert left.side == pos.side
    assert left.qty_total == pytest.approx(pos.qty_total - half)
    stops = [c for c in step.commands if isinstance(c, PlaceAlgoStop)]
    assert len(stops) == 1 and stops[0].qty == pytest.approx(left.qty_total)
    assert stops[0].replaces == pos.sl_algo.client_algo_id
    risk = [r for r in step.records if r["kind"] == "risk"]
    assert [r["event_type"] for r in risk] == ["SL_RECOVER"]
    assert "adl" in risk[0]["reason"] and stops[0].client_algo_id in risk[0]["client_ids"]


# ====================================================================== engine + SimVenue


def _engine(stage: str) -> tuple[SimVenue, SymbolEngine, list[tuple[str, dict[str, Any]]]]:
    venue = SimVenue.from_snapshot(stage_seeds()[stage].snapshot)
    engine = SymbolEngine(
        SYMBOL,
        venue=venue,
        params=default_params(),
        sink=MemorySink(),
        clock=venue.now,
        prefix=PREFIX,
    )
    engine.state = SymbolState.from_dict(stage_seeds()[stage].state)
    alerts: list[tuple[str, dict[str, Any]]] = []
    engine.on_venue_close = lambda kind, rec: alerts.append((kind, rec))

    def route(ev: Any) -> None:
        if isinstance(ev, OrderUpdate):
            engine.on_order_update(ev)
        elif isinstance(ev, AlgoUpdate):
            engine.on_algo_update(ev)
        elif isinstance(ev, MarkPrice):
            engine.on_mark_price(ev.mark_price, ev.funding_rate)

    venue.add_listener(route)
    return venue, engine, alerts


def _our_open_algos(venue: SimVenue) -> list[dict[str, Any]]:
    return [a for a in venue.get_open_algo_orders(SYMBOL) if a["client_algo_id"].startswith(PREFIX)]


@pytest.mark.parametrize("stage", POSITION_STAGES)
@pytest.mark.parametrize("kind", ["liquidation", "settlement"])
def test_sim_venue_close_leaves_no_phantom_position_and_no_stop(stage, kind):
    venue, engine, alerts = _engine(stage)
    assert _our_open_algos(venue), "the seeded position had no stop"
    assert venue.venue_close(SYMBOL, kind) is not None
    assert venue.get_positions()[SYMBOL]["qty"] == 0.0
    assert engine.state.position_state.side == "NONE"
    assert _our_open_algos(venue) == []
    assert [
        o for o in venue.get_open_orders(SYMBOL) if o["client_order_id"].startswith(PREFIX)
    ] == []
    assert [k for k, _ in alerts] == [kind]
    assert alerts[0][1]["event_type"] == "EMERGENCY_FLAT"


def test_two_adls_with_the_same_client_id_both_count():
    """Binance gives every ADL the client id `adl_autoclose`: the second must not be taken
    for a duplicate of the first (failed before: deduplicated by client id)."""
    venue, engine, alerts = _engine("PRE_TP1")
    venue.venue_close(SYMBOL, "adl")
    venue.venue_close(SYMBOL, "adl")
    held = venue.get_positions()[SYMBOL]["qty"]
    assert held > 0
    assert engine.state.position_state.qty_total == pytest.approx(held)
    algos = _our_open_algos(venue)
    assert len(algos) == 1 and algos[0]["qty"] == pytest.approx(held)
    assert [k for k, _ in alerts] == ["adl", "adl"]


def test_armed_venue_close_fault_acts_at_the_next_call_with_a_position():
    venue, engine, _alerts = _engine("PRE_TP1")
    venue.faults.arm("*", kind="liquidation", times=1)
    venue.get_mark_price(SYMBOL)
    assert venue.faults.injected["liquidation"] == 1
    assert engine.state.position_state.side == "NONE"
    assert venue.get_positions()[SYMBOL]["qty"] == 0.0


def test_venue_close_faults_cannot_be_probabilistic():
    with pytest.raises(ValueError, match="arm it"):
        SimVenue().faults.set_probability("adl", 0.5)
