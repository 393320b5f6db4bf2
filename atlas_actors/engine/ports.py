"""The engine's ports: how it asks for a stop's visibility and reads the account, with the
synchronous implementations the backtest (and paper without actors) uses, and the reading of a
venue's symbol filters."""

from __future__ import annotations

import time
from typing import Any, Protocol

from atlas_actors.domain import core
from atlas_actors.venues.base import VenueError


class VisibilityPort(Protocol):
    """Asks for a stop's visibility; the verdict comes back via engine.on_stop_visibility.
    `acked_at`: when the venue acknowledged the placement (time.monotonic): the deadline
    starts there. `replaces`: the stop this one supersedes (its verdicts never flatten)."""

    def request(
        self,
        symbol: str,
        client_algo_id: str,
        deadline_ms: int,
        *,
        acked_at: float | None = None,
        replaces: str | None = None,
    ) -> None: ...


class AccountPort(Protocol):
    """equity / available_balance / margin_used. Return a new dict whenever a figure changes:
    while the same dict object comes back, the engine reuses its last MarketCtx."""

    def snapshot(self) -> dict[str, float]: ...


class VisibilityListener(Protocol):
    """Who hears a visibility verdict (SymbolEngine.on_stop_visibility)."""

    def on_stop_visibility(self, client_algo_id: str, visible: bool) -> None: ...


class SyncVisibility:
    """Backtest/paper-without-actors: check `get_open_algo_orders` right away (and poll
    within the deadline on a real clock when `poll` is True)."""

    def __init__(self, venue: Any, *, poll: bool = False, interval_s: float = 0.02) -> None:
        self.venue = venue
        self.poll = poll
        self.interval_s = interval_s
        self.engine: VisibilityListener | None = None

    def request(
        self,
        symbol: str,
        client_algo_id: str,
        deadline_ms: int,
        *,
        acked_at: float | None = None,
        replaces: str | None = None,
    ) -> None:
        deadline = (time.monotonic() if acked_at is None else acked_at) + deadline_ms / 1000.0
        visible = False
        while True:
            try:
                algos = self.venue.get_open_algo_orders(symbol)
                visible = any(a.get("client_algo_id") == client_algo_id for a in algos)
            except VenueError:
                visible = False
            if visible or not self.poll or time.monotonic() >= deadline:
                break
            time.sleep(self.interval_s)
        if self.engine is not None:
            self.engine.on_stop_visibility(client_algo_id, visible)


class VenueAccount:
    """Balances read straight from the venue (SimVenue: cheap)."""

    def __init__(self, venue: Any) -> None:
        self.venue = venue

    def snapshot(self) -> dict[str, float]:
        b = self.venue.get_balances()
        return {
            "equity": float(b["total_equity"]),
            "available_balance": float(b["available_balance"]),
            "margin_used": float(b["margin_used"]),
        }


def symbol_filters(venue: Any, symbol: str) -> core.SymbolFilters | None:
    """The symbol's exchange filters (BinanceAdapter: get_symbol_filters dict; SimVenue:
    get_filters object); None when the venue cannot tell yet."""
    getter = getattr(venue, "get_symbol_filters", None)
    try:
        if getter is not None:
            f = getter(symbol)
        elif hasattr(venue, "get_filters"):
            obj = venue.get_filters(symbol)
            f = {k: getattr(obj, k) for k in ("tick_size", "step_size", "min_qty", "min_notional")}
        else:
            return None
    except (VenueError, KeyError, ValueError):
        return None
    return core.SymbolFilters(
        tick_size=float(f["tick_size"]),
        step_size=float(f["step_size"]),
        min_qty=float(f["min_qty"]),
        min_notional=float(f["min_notional"]),
    )
