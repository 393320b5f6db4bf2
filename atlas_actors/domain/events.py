"""The normalised venue events the domain consumes (contract §1 streams), as plain values.

Every adapter (SimVenue, BinanceAdapter) turns its stream messages into these; the actors
fan them out and the domain (`atlas_actors.domain.core`) decides on them. They live in the
domain so that the domain depends on nothing outside itself; `atlas_actors.venues` imports
them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BarClosed:
    symbol: str
    interval: str
    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    close_time: int

    def as_bar(self) -> dict[str, Any]:
        return {
            "open_time": self.open_time,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
            "close_time": self.close_time,
        }


@dataclass(frozen=True)
class MarkPrice:
    symbol: str
    mark_price: float
    funding_rate: float
    next_funding_time: int
    event_time: int


@dataclass(frozen=True)
class OrderUpdate:
    """ORDER_TRADE_UPDATE: one order's new status; `last_fill_*` describe this event's fill."""

    symbol: str
    order_id: str
    client_order_id: str
    side: str
    order_type: str
    status: str
    execution_type: str  # NEW, TRADE, CANCELED, EXPIRED, CALCULATED, ...
    price: float
    qty: float
    executed_qty: float
    avg_price: float
    last_fill_qty: float
    last_fill_price: float
    commission: float
    realized_pnl: float
    reduce_only: bool
    event_time: int


@dataclass(frozen=True)
class AlgoUpdate:
    """ALGO_UPDATE: a conditional order's status. `order_id` is the triggered child (`ai`)."""

    symbol: str
    algo_id: str
    client_algo_id: str
    side: str
    status: str  # NEW, CANCELED, TRIGGERING, TRIGGERED, FINISHED, REJECTED, EXPIRED
    stop_price: float
    qty: float
    working_type: str
    order_id: str | None
    event_time: int
    # `aq`: what the triggered child executed. A FINISHED stop whose child executed nothing
    # is a stop the venue removed, not a fired one (None: the venue did not say).
    executed_qty: float | None = None


@dataclass(frozen=True)
class AccountUpdate:
    reason: str
    balances: dict[str, float] = field(default_factory=dict)  # asset -> wallet balance
    positions: dict[str, dict[str, Any]] = field(default_factory=dict)  # symbol -> position
    event_time: int = 0


@dataclass(frozen=True)
class StreamStatus:
    """Connection changes of a stream: CONNECTED, DISCONNECTED, RESYNCED, LISTEN_KEY_EXPIRED;
    and of the REST link (stream "rest"): BANNED with detail "until <server ms>: <why>"."""

    stream: str  # "market", "user" or "rest"
    status: str
    detail: str = ""
    event_time: int = 0


VenueEvent = BarClosed | MarkPrice | OrderUpdate | AlgoUpdate | AccountUpdate | StreamStatus
