"""The ExchangeAdapter contract suite bound to SimVenue (in-process)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from atlas_actors.venues.sim import SimVenue
from tests.contract.suite import *  # noqa: F403
from tests.contract.suite import VenueHarness


class SimHarness(VenueHarness):
    def __init__(self) -> None:
        self.venue = SimVenue(seed=7)
        self.symbol = "BTCUSDT"
        self.tick_size = 0.1
        self.step_size = 0.001
        self.qty = 0.01
        self.venue.add_symbol(
            self.symbol, tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100.0
        )
        self.venue.set_price(self.symbol, 50_000.0)

    def set_price(self, symbol: str, price: float) -> None:
        self.venue.set_price(symbol, price)

    def price(self) -> float:
        return self.venue.get_last_price(self.symbol)

    def writes(self) -> int:
        return self.venue.write_count


@pytest.fixture
def venue_harness() -> Iterator[SimHarness]:
    yield SimHarness()
