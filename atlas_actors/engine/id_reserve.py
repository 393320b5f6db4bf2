"""Durable client-id reservations: no client id is ever handed out twice, across restarts.

The shard's `seq` is durable only when a flush works. Protection (stops, emergency closes)
goes out even while the disk refuses writes, so without more a restart after a failed flush
would hand the same ids out again - and Binance executes a filled order's id again. So ids are
reserved in blocks: a high-water mark (store meta `client_id_reserve:<symbol>`) is written with
the state, always at least half a block ahead of the ids handed out, and a (re)started engine
continues above it. A failed flush then leaves up to half a block of ids covered.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from atlas_actors.domain.records import SymbolState

log = logging.getLogger("atlas.engine")

ID_BLOCK = 1000
_META = "client_id_reserve:"


def reserve_key(symbol: str) -> str:
    return _META + symbol


def reserved_seq(store: Any, symbol: str) -> int | None:
    """The durable high-water mark of `symbol`'s client-id sequence (None: never reserved)."""
    meta = store.get_meta(reserve_key(symbol))
    if meta is None:
        return None
    return int(meta.get("seq", 0))


def resume_above_reserve(store: Any, state: SymbolState) -> SymbolState:
    """A loaded shard continues above every id its predecessors may have handed out: the
    reserved mark, or - for a shard without one (a predecessor whose flushes all failed, a
    store from before reservations) - a block above its own, possibly stale, sequence."""
    mark = reserved_seq(store, state.symbol)
    if mark is None:
        mark = state.seq + ID_BLOCK
    if mark > state.seq:
        log.info(
            "%s: client ids continue above the reserved %d (shard seq %d)",
            state.symbol,
            mark,
            state.seq,
        )
        return replace(state, seq=mark)
    return state


def extend_reserve(store: Any, state: SymbolState, reserved: int | None) -> int | None:
    """Buffer a new mark (flushed with the state) when fewer than half a block of reserved ids
    is left; returns the mark now buffered (unchanged when no extension was needed)."""
    if reserved is not None and state.seq + ID_BLOCK // 2 <= reserved:
        return reserved
    mark = state.seq + ID_BLOCK
    store.put_meta(reserve_key(state.symbol), {"seq": mark})
    return mark
