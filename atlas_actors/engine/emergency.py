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
    fresh_id: bool = False,
) -> tuple[float, dict[str, Any]]:
    """reduceOnly market close of what the venue holds for `symbol`: (qty, the order), or
    (0.0, {}) when it holds nothing. Retried (within well under a second) with the same
    client id. Binance executes a filled order's id again, and an "unknown" close can land
    after a query missed it, so the id is looked up before every try (but the first of a
    `fresh_id`, one never sent before): once it has filled or is working, that order is the
    answer and nothing is sent again. The position is read again before each try; `fallback`
    stands in when it cannot be read. Raises FlattenFailed when every try failed."""
    last: Exception | None = None
    for attempt in range(attempts):
        if attempt:
            sleep(min(0.05 * 2 ** (attempt - 1), 0.4))
        if attempt or not fresh_id:
            try:
                done = _earlier_close(venue, symbol, client_order_id)
            except VenueError as exc:
                last = exc  # an earlier try may have landed: never send again unlooked
                log.warning("%s: emergency close id lookup failed: %s", symbol, exc)
                continue
            if done is not None:
                return float(done.get("executed_qty") or done.get("qty") or 0.0), done
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


def _earlier_close(venue: Any, symbol: str, client_order_id: str) -> dict[str, Any] | None:
    """The order an earlier try with this id left at the venue, when it filled (even partly)
    or is still working; None when the venue does not know the id or the order ended unfilled
    (then the same id may be sent: it cannot execute twice)."""
    found: dict[str, Any] | None = venue.get_order(symbol=symbol, client_order_id=client_order_id)
    if found is None:
        return None
    if float(found.get("executed_qty") or 0.0) > 0 or found.get("status") in _WORKING:
        return found
    return None


_WORKING = ("NEW", "PARTIALLY_FILLED")
