"""What every event handler of the core shares: the shell's market context (`MarketCtx`,
`SymbolFilters`), the `Step` result, order/stop status groups and small helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from atlas_actors.domain.commands import Command
from atlas_actors.domain.lifecycle import NONE, QTY_EPS
from atlas_actors.domain.records import PositionState, SymbolState

TERMINAL = ("CANCELED", "EXPIRED", "REJECTED", "EXPIRED_IN_MATCH")
STOP_FIRED = ("TRIGGERING", "TRIGGERED", "FINISHED")
STOP_LOST = ("CANCELED", "EXPIRED", "REJECTED")
POST_ONLY_REJECT_CODE = -5022


@dataclass(frozen=True)
class SymbolFilters:
    """The symbol's trading filters (0 = no constraint)."""

    tick_size: float = 0.0
    step_size: float = 0.0
    min_qty: float = 0.0
    min_notional: float = 0.0


NO_FILTERS = SymbolFilters()


@dataclass(frozen=True)
class Step:
    state: SymbolState
    commands: list[Command] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class MarketCtx:
    """What the shell knows besides the event."""

    mark_price: float | None = None
    spread_bps: float = 0.0
    funding_rate: float = 0.0
    equity: float = 10_000.0
    available_balance: float = 10_000.0
    margin_used: float = 0.0
    open_block_reason: str | None = None  # set when the shell refuses opens (actor state, account)
    client_id_prefix: str = "atl"
    filters: SymbolFilters | None = None


def filters_of(ctx: MarketCtx) -> SymbolFilters:
    return ctx.filters if ctx.filters is not None else NO_FILTERS


def has_position(pos: PositionState) -> bool:
    return pos.side != NONE and pos.qty_total > QTY_EPS


def fill_args(ctx: MarketCtx) -> tuple[str, float, float, float, float]:
    f = filters_of(ctx)
    return ctx.client_id_prefix, f.tick_size, f.step_size, f.min_qty, f.min_notional
