"""The one meaning of "covering stop" and of "a stop the venue removed" (domain/covering.py)."""

from __future__ import annotations

import pytest

from atlas_actors.domain.covering import covering_stop, covers_position, stop_fired, stop_removed


def algo(side: str = "SELL", qty: float = 1.0, **kw: object) -> dict[str, object]:
    return {"side": side, "qty": qty, "reduce_only": True, "close_position": False, **kw}


@pytest.mark.parametrize(
    ("stop", "covered"),
    [
        (algo(), True),
        (algo(qty=0.9995), True),  # within half a step of 0.001
        (algo(qty=0.001), False),  # a token stop for a 1.0 position protects nothing
        (algo(qty=0.998), False),
        (algo(side="BUY"), False),  # the opening side
        (algo(reduce_only=False), False),  # could open a position
        (algo(qty=0.0, reduce_only=False, close_position=True), True),
    ],
)
def test_covers_position(stop: dict[str, object], covered: bool) -> None:
    assert covers_position(stop, "LONG", 1.0, 0.001) is covered


def test_covering_stop_picks_the_one_that_covers_and_flat_needs_none() -> None:
    small, whole = algo(qty=0.001, client_algo_id="a"), algo(qty=1.0, client_algo_id="b")
    assert covering_stop([small, whole], "LONG", 1.0, 0.001) is whole
    assert covering_stop([small], "LONG", 1.0, 0.001) is None
    assert not covers_position(whole, "NONE", 0.0, 0.001)
    assert covers_position(algo(side="BUY", qty=2.0), "SHORT", 2.0, 0.001)


@pytest.mark.parametrize(
    ("status", "aq", "removed", "fired"),
    [
        ("CANCELED", None, True, False),
        ("EXPIRED", 0.0, True, False),
        ("REJECTED", None, True, False),
        ("FINISHED", 0.0, True, False),
        ("FINISHED", 0.5, False, True),
        ("FINISHED", None, False, True),
        ("TRIGGERED", 0.0, False, True),
        ("NEW", None, False, False),
    ],
)
def test_removed_versus_fired(status: str, aq: float | None, removed: bool, fired: bool) -> None:
    assert stop_removed(status, aq) is removed
    assert stop_fired(status, aq) is fired
