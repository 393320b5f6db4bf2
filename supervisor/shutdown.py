"""Shutdown hygiene: what a graceful stop cancels (resting entries) and what it never touches
(Algo stops and reduce-only take-profits of open positions: they protect while nobody watches)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from atlas_actors.domain.lifecycle import R_ENTRY
from atlas_actors.domain.txn import client_id_head, role_of
from atlas_actors.venues.base import VenueError

log = logging.getLogger("atlas.supervisor")


def cancel_resting_entries(
    venue: Any, symbols: list[str], prefix: str, sink: Any, clock: Callable[[], float]
) -> None:
    """Resting entry orders of ours would open positions while nobody watches: cancel
    them. Reduce-only orders (take-profits) and Algo stops stay where they are."""
    for sym in symbols:
        try:
            orders = venue.get_open_orders(sym)
        except VenueError as exc:
            log.warning("shutdown: cannot list %s's open orders: %s", sym, exc)
            continue
        head = client_id_head(prefix, sym)
        for o in orders:
            cid = str(o.get("client_order_id") or "")
            if not cid.startswith(head) or o.get("reduce_only"):
                continue
            if role_of(cid) != R_ENTRY:
                continue
            try:
                venue.cancel_order(symbol=sym, order_id=None, client_order_id=cid)
                sink.emit(
                    {
                        "kind": "order_cancel",
                        "ts": int(clock()),
                        "symbol": sym,
                        "client_id": cid,
                        "reason": "shutdown: resting entry cancelled",
                    }
                )
            except VenueError as exc:
                log.warning("shutdown: cannot cancel %s entry %s: %s", sym, cid, exc)
