"""The emergency close: a reduceOnly market order for whatever the venue holds, retried with
the same client id (SymbolEngine's flatten and the Sentinel's both use it)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from atlas_actors.domain.stops import closing_side
from atlas_actors.venues.base import UnknownOutcome, VenueError

log = logging.getLogger("atlas.engine")


FLATTEN_ATTEMPTS = 5


class FlattenFailed(RuntimeError):
    """An emergency close could not be placed after every retry: the position is still open."""


def close_at_market(
    venue: Any,
    symbol: str,
    client_order_id: str,
    *,
    fallback: dict[str, Any] | None = None,
    attempts: int = FLATTEN_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[float, dict[str, Any]]:
    """reduceOnly market close of what the venue holds for `symbol`: (qty, the order), or
    (0.0, {}) when it holds nothing. Retried (within well under a second) with the same
    client id: an unknown outcome is looked up first, and the same id cannot fill twice. The
    position is read again before each try; `fallback` stands in when it cannot be read.
    Raises FlattenFailed when every try failed."""
    last: Exception | None = None
    for attempt in range(attempts):
        if attempt:
            sleep(min(0.05 * 2 ** (attempt - 1), 0.4))
        try:
            pos = venue.get_positions().get(symbol) or {}
        except VenueError as exc:
            last = exc
            if fallback is None:
                continue
            pos = fallback
        side = str(pos.get("side", "NONE"))
        qty = abs(float(pos.get("qty") or 0.0))
        if side == "NONE" or qty <= 0:
            return 0.0, {}
        try:
            res = venue.place_market(
                symbol=symbol,
                side=closing_side(side),
                qty=qty,
                reduce_only=True,
                client_order_id=client_order_id,
            )
            return qty, res
        except UnknownOutcome as exc:
            last = exc
            try:
                found = venue.get_order(symbol=symbol, client_order_id=client_order_id)
            except VenueError:
                found = None
            if found:
                return qty, found
        except VenueError as exc:
            last = exc
        log.warning("%s: emergency close attempt %d failed: %s", symbol, attempt + 1, last)
    raise FlattenFailed(f"{symbol}: emergency close failed {attempts} times: {last}")
