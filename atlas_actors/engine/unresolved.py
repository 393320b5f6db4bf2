"""Orders whose outcome is unknown, and fills nobody here placed.

An opening order answered "unknown" (503 / -1007, a client timeout, a reply slower than the
gateway's wait) and not found by one query is NOT written off: Binance can execute it up to
seconds later, after a query said -2013, and a resend would execute twice (a filled order's id
is accepted again). Such an order stays the domain's pending entry and is resolved by the user
stream (its fill matches the entry) or by queries by client id spread over a window
(`RESOLVE_DELAYS_S`). Still not found after the window it is treated as "maybe filled": the
position is reconciled from the venue (`recover`) before anything else.

A fill for a client id the shard does not know while it is flat (an entry written off by a
predecessor, a landing later than the window) is adopted and protected at once: reconcile
with the venue, which adopts the position and places its stop, watched like any other.

`UnknownOutcomes` is mixed into `SymbolEngine` and uses its attributes (symbol, venue, state,
deadline_ms, visibility) and methods (now, _emit, _order_record, _apply_rest_fill, _rejected,
recover).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from atlas_actors.domain.events import OrderUpdate
from atlas_actors.domain.lifecycle import R_ENTRY
from atlas_actors.domain.txn import role_of
from atlas_actors.venues.base import VenueError

log = logging.getLogger("atlas.engine")

# Queries by client id after an unknown outcome, each this long after the previous one (s):
# Binance has been seen to execute a request ~2 s after answering 503 / -1007.
RESOLVE_DELAYS_S = (0.2, 0.4, 0.8, 1.5, 3.0)
_OPEN = ("NEW", "PARTIALLY_FILLED")


@dataclass
class Unresolved:
    role: str
    client_id: str
    queries: int = 0


class UnknownOutcomes:
    """The engine's book of opening orders with an unknown outcome (see module doc)."""

    # Set by the actor: run `resolve_unknown` after this many seconds (None: on the next event).
    schedule_resolve: Callable[[float], None] | None = None

    def _unresolved_book(self) -> dict[str, Unresolved]:
        book: dict[str, Unresolved] | None = self.__dict__.get("_unresolved")
        if book is None:
            book = self.__dict__["_unresolved"] = {}
        return book

    @property
    def unresolved(self) -> list[str]:
        return sorted(self._unresolved_book())

    def _keep_unresolved(self, role: str, client_id: str) -> None:
        """An opening order's outcome is unknown and one query did not find it: keep it."""
        self._order_record(role, client_id, None, outcome="unknown_pending")
        self._unresolved_book()[client_id] = Unresolved(role, client_id)
        self._schedule_next(0)

    def _schedule_next(self, queries: int) -> None:
        if self.schedule_resolve is not None and queries < len(RESOLVE_DELAYS_S):
            self.schedule_resolve(RESOLVE_DELAYS_S[queries])

    def resolve_unknown(self) -> None:
        """One query by client id for each unresolved order; give up after the window."""
        book = self._unresolved_book()
        for cid, item in list(book.items()):
            if cid not in book:
                continue  # resolved meanwhile (by the stream, through an earlier one)
            item.queries += 1
            try:
                found = self.venue.get_order(symbol=self.symbol, client_order_id=cid)
            except VenueError as exc:
                log.warning("%s: query of unresolved %s failed: %s", self.symbol, cid, exc)
                found = None
            if found is not None:
                book.pop(cid, None)
                self._order_record(item.role, cid, found, outcome="unknown_resolved")
                self._apply_found(item, found)
            elif item.queries >= len(RESOLVE_DELAYS_S):
                book.pop(cid, None)
                self._give_up(item)
            else:
                self._schedule_next(item.queries)

    def _apply_found(self, item: Unresolved, found: dict[str, Any]) -> None:
        status = str(found.get("status"))
        if float(found.get("executed_qty") or 0.0) > 0:
            self._apply_rest_fill(found)
        elif status not in _OPEN:
            self._rejected(item.role, item.client_id, None, f"ended {status} unfilled")
        # open: it rests; the stream brings its fills, the domain may cancel it as any other

    def _give_up(self, item: Unresolved) -> None:
        """Not found within the window: maybe filled all the same. The venue is the truth:
        reconcile (adopting and protecting whatever it holds) before anything else."""
        self._order_record(item.role, item.client_id, None, outcome="unknown_not_found")
        self._reconcile_and_protect(f"{item.client_id}: outcome still unknown")

    def _note_resolved(self, client_id: str) -> None:
        """The stream reported this order: it is resolved."""
        book = self.__dict__.get("_unresolved")
        if book:
            book.pop(client_id, None)

    def _unknown_fill(self, upd: OrderUpdate) -> bool:
        """True when a fill belongs to no order the shard knows and must be adopted: the
        shard is flat, or it is one of our entries (it added to the position)."""
        pend = self.state.pending
        cid = upd.client_order_id
        if cid and cid == (pend.get("entry") or {}).get("cid"):
            return False
        if cid and (cid in (pend.get("orders") or {}) or cid == pend.get("emergency")):
            return False
        if str(upd.order_id) in (pend.get("stop_children") or []):
            return False
        flat = self.state.position_state.side == "NONE"
        return flat or role_of(cid or "") == R_ENTRY

    def _reconcile_and_protect(self, why: str) -> None:
        """Make the shard the venue's position and protect it now: `recover` adopts what the
        venue holds and places its stop; the stop is then watched (1 s rule) like any other."""
        log.warning("%s: reconciling with the venue: %s", self.symbol, why)
        try:
            out = self.recover()
        except VenueError as exc:
            log.error("%s: reconcile after %s failed: %s", self.symbol, why, exc)
            raise
        algo = out.get("algo") or {}
        cid = algo.get("client_algo_id")
        if cid and out.get("action") not in (None, "FLATTENED"):
            self.visibility.request(self.symbol, str(cid), self.deadline_ms)
