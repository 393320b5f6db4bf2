"""SimVenue: the in-process simulated Binance USD-M exchange (see `sim.venue`)."""

from atlas_actors.venues.sim.account import MAX_LEVERAGE
from atlas_actors.venues.sim.book import DEFAULT_LEVERAGE, KLINE_HISTORY
from atlas_actors.venues.sim.market import interval_of
from atlas_actors.venues.sim.snapshot import SNAPSHOT_VERSION
from atlas_actors.venues.sim.venue import SimVenue

__all__ = [
    "DEFAULT_LEVERAGE",
    "KLINE_HISTORY",
    "MAX_LEVERAGE",
    "SNAPSHOT_VERSION",
    "SimVenue",
    "interval_of",
]
