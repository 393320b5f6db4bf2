"""A SymbolActor opens only when READY: a bar that reaches it before `recover` (the supervisor
starts the actor, then sends `recover`; in live mode a kline can come in between) or while it
is RECOVERING yields a candidate rejected with the actor state as reason, and no entry order.

Real pykka SymbolActor, a real SymbolEngine on a SimVenue restored from a seed of real trading
whose next bar opens a position when nothing blocks it."""

from __future__ import annotations

from typing import Any

from atlas_actors.actors import symbol as sa
from atlas_actors.domain.params import default_params
from atlas_actors.domain.records import SymbolState
from atlas_actors.engine import SymbolEngine
from atlas_actors.events import MemorySink
from atlas_actors.venues.sim import SimVenue
from tests.chaos.rig import PREFIX, SYMBOL, stage_seeds


def _entries(venue: SimVenue) -> list[dict[str, Any]]:
    return [o for o in venue.snapshot()["orders"] if str(o["client_order_id"]).endswith("-e")]


class _Actor(sa.SymbolActor):
    """The real actor; only remembers itself so a test can hand it a message re-entrantly."""

    started: list[sa.SymbolActor] = []

    def on_start(self) -> None:
        _Actor.started.append(self)
        super().on_start()


def _start(on_lifecycle: Any = None) -> tuple[Any, SimVenue, MemorySink, list[Exception]]:
    seed = stage_seeds()["FLAT"]
    venue = SimVenue.from_snapshot(seed.snapshot)
    sink = MemorySink()

    def make() -> SymbolEngine:
        eng = SymbolEngine(
            SYMBOL, venue=venue, params=default_params(), sink=sink, clock=venue.now, prefix=PREFIX
        )
        eng.state = SymbolState.from_dict(seed.state)
        return eng

    crashes: list[Exception] = []
    ref = _Actor.start(
        SYMBOL,
        make,
        on_crash=lambda sym, exc: crashes.append(exc),
        on_lifecycle=on_lifecycle,
    )
    return ref, venue, sink, crashes


def _candidates(sink: MemorySink) -> list[dict[str, Any]]:
    return [r for r in sink.records if r.get("kind") == "candidate"]


def test_bar_before_recover_is_rejected_naming_the_actor_state():
    ref, venue, sink, crashes = _start()
    try:
        bar = dict(stage_seeds()["FLAT"].after[0])
        venue.feed_bar(SYMBOL, bar)
        ref.ask({"msg": "bar", "bar": bar})
        assert ref.ask({"msg": "status"})["state"] == sa.STARTING
        cands = _candidates(sink)
        assert len(cands) == 1 and cands[0]["action"] != "OPEN"
        assert cands[0]["reject_reason"] == "actor state STARTING"
        assert _entries(venue) == []
        assert ref.ask({"msg": "recover", "why": "start"}) is not None
        assert ref.ask({"msg": "status"})["state"] == sa.READY
        assert not crashes
    finally:
        ref.stop()


def test_bar_while_recovering_is_rejected_naming_the_actor_state():
    seen: list[dict[str, Any]] = []
    holder: dict[str, Any] = {}

    def on_lifecycle(symbol: str, state: str, why: str) -> None:
        # Runs on the actor's own thread in the middle of `recover`: the bar is handled
        # exactly while the actor is RECOVERING.
        if state == sa.RECOVERING:
            bar = dict(stage_seeds()["FLAT"].after[0])
            holder["venue"].feed_bar(SYMBOL, bar)
            seen.append(_Actor.started[-1].on_receive({"msg": "bar", "bar": bar}))

    ref, venue, sink, crashes = _start(on_lifecycle)
    holder["venue"] = venue
    try:
        ref.ask({"msg": "recover", "why": "restart"})
        assert len(seen) == 1 and "crashed" not in seen[0]
        cands = _candidates(sink)
        assert len(cands) == 1 and cands[0]["action"] != "OPEN"
        assert cands[0]["reject_reason"] == "actor state RECOVERING"
        assert _entries(venue) == []
        assert ref.ask({"msg": "status"})["state"] == sa.READY
        assert not crashes
    finally:
        ref.stop()
