"""What the domain asks the shell (SymbolEngine) to do. Plain, frozen, serialisable data.

The domain never performs I/O: it returns these and the engine applies them in order
through an `ExchangeAdapter`. Every order-bearing command carries its deterministic
client id, already recorded in the returned state (write-ahead intent).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class PlaceLimit:
    """Post-only (GTX) limit order."""

    symbol: str
    side: str  # BUY / SELL
    qty: float
    price: float
    reduce_only: bool
    client_order_id: str
    role: str  # entry / tp1 / tp2 / runner_exit


@dataclass(frozen=True)
class PlaceMarket:
    symbol: str
    side: str
    qty: float
    reduce_only: bool
    client_order_id: str
    role: str  # entry / runner_exit / derisk / exit


@dataclass(frozen=True)
class PlaceAlgoStop:
    """Algo CONDITIONAL STOP_MARKET, always reduce-only (or close_position)."""

    symbol: str
    side: str
    qty: float
    stop_price: float
    working_type: str
    client_algo_id: str
    close_position: bool = False
    replaces: str | None = None  # client_algo_id of the stop to cancel once this one is visible


@dataclass(frozen=True)
class CancelAlgo:
    symbol: str
    algo_id: str | None
    client_algo_id: str | None


@dataclass(frozen=True)
class CancelOrder:
    symbol: str
    order_id: str | None
    client_order_id: str | None


@dataclass(frozen=True)
class EmergencyFlatten:
    """reduceOnly market close of the whole position, jumping every queue."""

    symbol: str
    reason: str
    client_order_id: str


@dataclass(frozen=True)
class SetCooldown:
    symbol: str
    which: str  # loss / template / freeze / shock
    until: int  # epoch seconds


@dataclass(frozen=True)
class LogRecord:
    """A §8 record (kind "candidate" or "risk") for records.jsonl and the event log."""

    record: dict[str, Any]


Command = (
    PlaceLimit
    | PlaceMarket
    | PlaceAlgoStop
    | CancelAlgo
    | CancelOrder
    | EmergencyFlatten
    | SetCooldown
    | LogRecord
)


def command_to_dict(cmd: Command) -> dict[str, Any]:
    d = asdict(cmd)
    d["command"] = type(cmd).__name__
    return d


RISK_EVENT_TYPES = ("LOSS_COOLDOWN", "REGIME_SHIFT", "RUNNER_EXIT", "SL_RECOVER", "EMERGENCY_FLAT")


def risk_record(
    *,
    event_type: str,
    symbol: str,
    side: str,
    qty: float,
    price: float,
    order_ids: list[str],
    client_ids: list[str],
    reason: str,
    ts: int,
) -> dict[str, Any]:
    """A §8 risk-action record with the contract's exact field names."""
    if event_type not in RISK_EVENT_TYPES:
        raise ValueError(f"unknown risk event_type {event_type!r}")
    return {
        "kind": "risk",
        "ts": ts,
        "event_type": event_type,
        "symbol": symbol,
        "side": side,
        "qty": qty,
        "price": price,
        "order_ids": list(order_ids),
        "client_ids": list(client_ids),
        "reason": reason,
    }
