"""Replacing a stop in SymbolEngine (issue 13 B4): the old stop is cancelled only after the new
one is visible, and every stop it superseded goes, not only its immediate predecessor."""

from __future__ import annotations

from atlas_actors.domain.commands import PlaceAlgoStop
from atlas_actors.domain.params import default_params
from atlas_actors.engine import SymbolEngine
from atlas_actors.events import MemorySink
from atlas_actors.venues.sim import SimVenue

SYM = "BTCUSDT"


def stop(cid: str, replaces: str | None) -> PlaceAlgoStop:
    return PlaceAlgoStop(SYM, "SELL", 0.01, 49_000.0, "MARK_PRICE", cid, replaces=replaces)


def test_a_visible_stop_cancels_every_stop_it_superseded() -> None:
    venue = SimVenue(seed=2)
    venue.set_price(SYM, 50_000.0)
    venue.place_market(symbol=SYM, side="BUY", qty=0.01, reduce_only=False, client_order_id="e")
    sink = MemorySink()
    engine = SymbolEngine(SYM, venue=venue, params=default_params(), sink=sink, prefix="atl")
    engine._execute(stop("atl-BTCUSDT-1-sl", None))
    # B is not listed in time (the venue lagged): A, which it replaces, must stay
    venue.faults.arm("place_algo_stop", kind="invisible_algo")
    engine._execute(stop("atl-BTCUSDT-2-sl", "atl-BTCUSDT-1-sl"))
    assert venue.get_algo_order(symbol=SYM, client_algo_id="atl-BTCUSDT-1-sl")["status"] == "NEW"
    # C replaces B and is visible: B and A both go
    engine._execute(stop("atl-BTCUSDT-3-sl", "atl-BTCUSDT-2-sl"))
    opens = [a["client_algo_id"] for a in venue.get_open_algo_orders(SYM)]
    assert opens == ["atl-BTCUSDT-3-sl"]
    assert venue.get_algo_order(symbol=SYM, client_algo_id="atl-BTCUSDT-1-sl")["status"] == (
        "CANCELED"
    )
    invisible = [r for r in sink.records if r.get("kind") == "stop_invisible"]
    assert [r["client_algo_id"] for r in invisible] == ["atl-BTCUSDT-2-sl"]
    assert invisible[0]["superseded"]  # not the current stop: no flatten for it
    assert venue.get_positions()[SYM]["side"] == "LONG"
