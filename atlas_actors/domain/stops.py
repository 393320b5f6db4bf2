"""The protective stop as a value: `StopSpec`, the shared "deviates" rule, closing sides.

The domain says which stop a position should have (`core.desired_stop` -> `StopSpec`); the
venues make it real (`recover_protection`) and use `stop_deviates` to decide whether an
existing stop already matches. Written once, here, so the domain imports nothing outside
itself and every venue applies the same rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StopSpec:
    """The protective stop a position should have. A dict with these keys is accepted too."""

    side: str  # BUY closes a SHORT, SELL closes a LONG
    qty: float
    stop_price: float
    working_type: str = "MARK_PRICE"
    client_algo_id: str = ""

    @classmethod
    def coerce(cls, spec: StopSpec | Mapping[str, Any]) -> StopSpec:
        if isinstance(spec, StopSpec):
            return spec
        missing = [k for k in ("side", "qty", "stop_price", "client_algo_id") if k not in spec]
        if missing:
            raise ValueError(f"desired_sl is missing {', '.join(missing)}")
        return cls(
            side=str(spec["side"]),
            qty=float(spec["qty"]),
            stop_price=float(spec["stop_price"]),
            working_type=str(spec.get("working_type") or "MARK_PRICE"),
            client_algo_id=str(spec["client_algo_id"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "qty": self.qty,
            "stop_price": self.stop_price,
            "working_type": self.working_type,
            "client_algo_id": self.client_algo_id,
        }


def stop_deviates(
    existing: Mapping[str, Any], desired: StopSpec, *, step_size: float, tick_size: float
) -> bool:
    """The shared "deviates" rule of recover_protection (SimVenue and BinanceAdapter)."""
    if str(existing.get("side")) != desired.side:
        return True
    if str(existing.get("working_type") or "MARK_PRICE") != desired.working_type:
        return True
    if bool(existing.get("close_position")):
        qty_off = False
    else:
        qty_off = abs(float(existing.get("qty") or 0.0) - desired.qty) >= step_size * (1 - 1e-9)
    price_off = abs(float(existing.get("stop_price") or 0.0) - desired.stop_price) >= tick_size * (
        1 - 1e-9
    )
    return qty_off or price_off


def closing_side(position_side: str) -> str:
    """The order side that reduces a position of `position_side` (LONG -> SELL)."""
    if position_side == "LONG":
        return "SELL"
    if position_side == "SHORT":
        return "BUY"
    raise ValueError(f"no closing side for position side {position_side!r}")
