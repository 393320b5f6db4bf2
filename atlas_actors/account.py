"""AccountView: balances and positions shared by every symbol, read from the venue sparingly.

Every bar of every symbol needs the equity (sizing) and the account limits need the open
positions. Asking a real venue for both on each bar would spend the request budget (and
the weight governor would then stall the actors), so reads are cached for `max_age_s` and
dropped early whenever the user stream reports a fill or an account change. With an
in-process SimVenue `max_age_s=0` reads straight through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from atlas_actors.domain.events import AccountUpdate, OrderUpdate, VenueEvent


class AccountView:
    def __init__(
        self, venue: Any, *, max_age_s: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.venue = venue
        self.max_age_s = max_age_s
        self.clock = clock
        self._lock = threading.Lock()
        self._balances: tuple[float, dict[str, Any]] | None = None
        self._positions: tuple[float, dict[str, dict[str, Any]]] | None = None
        self.reads = 0

    def invalidate(self) -> None:
        with self._lock:
            self._balances = None
            self._positions = None

    def on_event(self, event: VenueEvent) -> None:
        """Venue listener: a fill or an account change makes the cached view stale."""
        if isinstance(event, AccountUpdate) or (
            isinstance(event, OrderUpdate) and event.last_fill_qty > 0
        ):
            self.invalidate()

    def _fresh(self, entry: tuple[float, Any] | None) -> bool:
        return entry is not None and self.clock() - entry[0] <= self.max_age_s

    def balances(self) -> dict[str, Any]:
        if self.max_age_s <= 0:
            return self.venue.get_balances()  # type: ignore[no-any-return]
        with self._lock:
            if self._fresh(self._balances):
                assert self._balances is not None
                return self._balances[1]
        b = self.venue.get_balances()
        self.reads += 1
        with self._lock:
            self._balances = (self.clock(), b)
        return b  # type: ignore[no-any-return]

    def positions(self) -> dict[str, dict[str, Any]]:
        if self.max_age_s <= 0:
            return self.venue.get_positions()  # type: ignore[no-any-return]
        with self._lock:
            if self._fresh(self._positions):
                assert self._positions is not None
                return self._positions[1]
        p = self.venue.get_positions()
        self.reads += 1
        with self._lock:
            self._positions = (self.clock(), p)
        return p  # type: ignore[no-any-return]

    def snapshot(self) -> dict[str, float]:
        """The engine's AccountPort."""
        b = self.balances()
        return {
            "equity": float(b["total_equity"]),
            "available_balance": float(b["available_balance"]),
            "margin_used": float(b["margin_used"]),
        }
