"""SymbolEngine: one symbol's imperative shell around the pure domain (see symbol_engine).

ports       VisibilityPort / AccountPort and their synchronous implementations
emergency   close_at_market, FlattenFailed (the emergency reduceOnly close)
ledger      TradeLedger: per-trade PnL and fees from the venue's fills, the `trade` record
commands    VenueCommands: applying the domain's commands to the venue
"""

from __future__ import annotations

from atlas_actors.engine.emergency import FLATTEN_ATTEMPTS, FlattenFailed, close_at_market
from atlas_actors.engine.ledger import TradeLedger
from atlas_actors.engine.ports import AccountPort, SyncVisibility, VenueAccount, VisibilityPort
from atlas_actors.engine.symbol_engine import SymbolEngine

__all__ = [
    "FLATTEN_ATTEMPTS",
    "AccountPort",
    "FlattenFailed",
    "SymbolEngine",
    "SyncVisibility",
    "TradeLedger",
    "VenueAccount",
    "VisibilityPort",
    "close_at_market",
]
