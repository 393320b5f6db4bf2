"""The ExchangeAdapter contract suite bound to BinanceAdapter <-> the sim exchange over loopback.

Every call of the suite goes through python-binance, signed HTTP on 127.0.0.1, the sim
exchange's Binance wire format and back; the market is moved in-process on the SimVenue
behind the server (what the suite's `set_price` means)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from atlas_actors.sim_exchange import SimExchangeServer
from atlas_actors.venues.binance import BinanceAdapter
from atlas_actors.venues.sim import SimVenue
from tests.contract.suite import *  # noqa: F403
from tests.contract.suite import VenueHarness


class BinanceSimHarness(VenueHarness):
    remembers_placed_ids = True  # BinanceAdapter's OpenTracker, within one process

    def __init__(self) -> None:
        self.symbol = "BTCUSDT"
        self.tick_size = 0.1
        self.step_size = 0.001
        self.qty = 0.01
        self.sim = SimVenue(seed=7)
        self.sim.add_symbol(
            self.symbol, tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100.0
        )
        self.sim.set_price(self.symbol, 50_000.0)
        self.server = SimExchangeServer(self.sim, symbols=[self.symbol]).start()
        self.venue = BinanceAdapter(
            "paper",
            "paper",
            rest_url=self.server.rest_url,
            symbols=[self.symbol],
            request_timeout_s=5.0,
        )

    def set_price(self, symbol: str, price: float) -> None:
        self.sim.set_price(symbol, price)

    def price(self) -> float:
        return self.venue.get_last_price(self.symbol)

    def writes(self) -> int:
        return len(self.server.write_requests())

    def close(self) -> None:
        self.venue.close()
        self.server.stop()


@pytest.fixture
def venue_harness() -> Iterator[BinanceSimHarness]:
    h = BinanceSimHarness()
    try:
        yield h
    finally:
        h.close()
