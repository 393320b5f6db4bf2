"""The emergency close: reduceOnly market orders for whatever the venue holds, retried with
the same client ids (SymbolEngine's flatten, the operator's and the Sentinel's all use it).

A position larger than the symbol's MARKET_LOT_SIZE.maxQty cannot be closed by one MARKET
order (-4005): it goes in reduce-only chunks of at most that size, chunk k with its own
deterministic client id (`chunk_client_id`), so a retry (of one chunk, or of the whole close
after a restart) finds the chunks already sent by their ids instead of sending them again.
Every request of a close is a protection request (`request_priority`)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from atlas_actors.domain.stops import closing_side
from atlas_actors.domain.txn import CLIENT_ID_MAX
from atlas_actors.venues.base import UnknownOutcome, VenueError
from atlas_actors.venues.priority import Priority, request_priority

log = logging.getLogger("atlas.engine")


FLATTEN_ATTEMPTS = 5


class FlattenFailed(RuntimeError):
    """An emergency close could not be placed after every retry: the position is still open."""


def chunk_client_id(client_order_id: str, k: int) -> str:
    """The client id of chunk `k` of a close: chunk 0 keeps the close's id, chunk k > 0
    inserts ".k" before the role (``atl-X-12-fx`` -> ``atl-X-12.2-fx``), cut to 36."""
    if k == 0:
        return client_order_id
    i = client_order_id.rfind("-")
    head, role = (client_order_id[:i], client_order_id[i:]) if i > 0 else (client_order_id, "")
    tag = f".{k}"
    return head[: CLIENT_ID_MAX - len(role) - len(tag)] + tag + role


def _market_cap(venue: Any, symbol: str) -> float:
    try:
        cap = float(venue.market_max_qty(symbol))
    except VenueError as exc:
        log.warning("%s: market max qty unknown (%s); closing in one order", symbol, exc)
        return math.inf
    return cap if cap > 0 else math.inf


def close_at_market(
    venue: Any,
    symbol: str,
    client_order_id: str,
    *,
    fallback: dict[str, Any] | None = None,
    attempts: int = FLATTEN_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    fresh_id: bool = False,
) -> tuple[float, list[dict[str, Any]]]:
    """reduceOnly market close of what the venue holds for `symbol`: (qty, the orders sent,
    one per chunk), or (0.0, []) when it holds nothing. Retried (within well under a second)
    with the same client ids: an unknown outcome is looked up first, and a chunk id the
    venue already knows is never sent again. The position is read again before each try;
    `fallback` stands in when it cannot be read. Raises FlattenFailed when every try failed.

    Binance executes a finished order's id again, and an "unknown" close can land after a
    query missed it: so every id is looked up before it is sent (but the first try of a
    `fresh_id`, one never sent before); an id the venue knows is spent, its fill is in the
    position read, and the next chunk id is used instead."""
    with request_priority(Priority.PROTECTION):
        return _close(venue, symbol, client_order_id, fallback, attempts, sleep, fresh_id)


def _close(
    venue: Any,
    symbol: str,
    client_order_id: str,
    fallback: dict[str, Any] | None,
    attempts: int,
    sleep: Callable[[float], None],
    fresh_id: bool = False,
) -> tuple[float, list[dict[str, Any]]]:
    last: Exception | None = None
    cap = _market_cap(venue, symbol)
    closed = 0.0
    orders: list[dict[str, Any]] = []
    k = 0  # the next chunk's index: never reused within a close
    for attempt in range(attempts):
        if attempt:
            sleep(min(0.05 * 2 ** (attempt - 1), 0.4))
        try:
            pos = venue.get_positions().get(symbol) or {}
        except VenueError as exc:
            last = exc
            if fallback is None:
                continue
            # what was closed since the fallback was taken is not there any more
            left = abs(float(fallback.get("qty") or 0.0)) - closed
            pos = {"side": fallback.get("side", "NONE"), "qty": max(0.0, left)}
        side = str(pos.get("side", "NONE"))
        qty = abs(float(pos.get("qty") or 0.0))
        if side == "NONE" or qty <= 0:
            return closed, orders
        chunked = qty > cap or k > 0
        try:
            while qty > 0:
                cid = chunk_client_id(client_order_id, k)
                must_look = chunked or attempt > 0 or not fresh_id
                found = venue.get_order(symbol=symbol, client_order_id=cid) if must_look else None
                if found and not chunked:
                    # An earlier try of this very close landed (late): it is the answer, and
                    # whatever the venue holds now is not what this close was for.
                    done = float(found.get("executed_qty") or 0.0) or qty
                    return _minus(closed, -done), [*orders, dict(found)]
                if found:
                    # A chunk sent by an earlier try: its fill is in the position read above;
                    # the id is spent, never sent again.
                    k += 1
                    continue
                chunk = min(qty, cap)
                res = _place(venue, symbol, closing_side(side), chunk, cid)
                orders.append(res)
                closed = _minus(closed, -chunk)
                qty = _minus(qty, chunk)
                k += 1
            return closed, orders
        except VenueError as exc:
            last = exc
        log.warning("%s: emergency close attempt %d failed: %s", symbol, attempt + 1, last)
    raise FlattenFailed(f"{symbol}: emergency close failed {attempts} times: {last}")


def _minus(a: float, b: float) -> float:
    """a - b without float noise (quantities are decimal grid values)."""
    return float(Decimal(repr(a)) - Decimal(repr(b)))


def _place(venue: Any, symbol: str, side: str, qty: float, cid: str) -> dict[str, Any]:
    """One reduce-only chunk; an unknown outcome resolved by its client id (raised again
    when the venue does not know it: the next attempt re-reads the position)."""
    try:
        res: dict[str, Any] = venue.place_market(
            symbol=symbol, side=side, qty=qty, reduce_only=True, client_order_id=cid
        )
        return res
    except UnknownOutcome:
        try:
            found = venue.get_order(symbol=symbol, client_order_id=cid)
        except VenueError:
            found = None
        if found:
            return dict(found)
        raise
