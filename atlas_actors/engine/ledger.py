"""Trade accounting of one symbol: the open trade's PnL, fees and exits from the venue's own
fill reports (the venue is the truth), and the `trade` record when it closes.

`SymbolEngine` owns one `TradeLedger`; it feeds every new fill (after de-duplication) with the
position the fill left, and asks it to close the trade after an emergency flatten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from atlas_actors.domain.events import OrderUpdate
from atlas_actors.domain.records import PositionState


def _exit_side(side: str) -> str:
    return "SELL" if side == "LONG" else "BUY"


def _exited(trade: dict[str, Any]) -> bool:
    """The trade's exit fills add up to its entry quantity (float noise aside)."""
    return bool(trade["exit_qty"] >= trade["qty"] * (1.0 - 1e-9))


class TradeLedger:
    """The open trade (None when there is none) and the order ids of triggered stops."""

    def __init__(
        self,
        symbol: str,
        prefix: str,
        *,
        now: Callable[[], int],
        emit: Callable[[dict[str, Any]], None],
    ) -> None:
        self.symbol = symbol
        self.prefix = prefix
        self.now = now
        self.emit = emit
        self.trade: dict[str, Any] | None = None  # the open trade's venue-reported PnL and fees
        self.stop_child_ids: set[str] = set()  # orders a triggered stop placed (role "sl")

    def role_of(self, upd: OrderUpdate) -> str:
        if upd.order_id in self.stop_child_ids:
            return "sl"
        cid = upd.client_order_id or ""
        if cid.startswith(self.prefix + "-"):
            return cid.rsplit("-", 1)[-1]
        return "venue"

    def on_fill(self, upd: OrderUpdate, qty: float, ps: PositionState) -> None:
        """Book a new fill of `qty` against `ps`, the position this fill left."""
        share = qty / upd.last_fill_qty if upd.last_fill_qty > 0 else 1.0
        old = self.trade
        if old is not None and old.get("awaiting_exit") and upd.side != _exit_side(old["side"]):
            # a new entry while the last trade still waited for its closing fill: that fill
            # is not coming (closed outside our view); the last trade ends here
            old["exits"].append("fx")
            self.close()
        if self.trade is None and ps.side != "NONE":
            self.trade = {
                "symbol": self.symbol,
                "side": ps.side,
                "template": ps.template,
                "tier": ps.tier,
                "entry_price": ps.entry_price,
                "qty": ps.initial_qty or ps.qty_total,
                "risk_per_unit": ps.risk_per_unit,
                "opened_ts": self.now(),
                "entry_client_id": ps.last_orders.entry.client_order_id,
                "pnl": 0.0,
                "fees": 0.0,
                "exit_value": 0.0,
                "exit_qty": 0.0,
                "exits": [],
            }
        t = self.trade
        if t is None:
            return
        t["fees"] += abs(upd.commission) * share
        t["pnl"] += upd.realized_pnl * share
        role = self.role_of(upd)
        if upd.side == _exit_side(t["side"]):
            t["exit_value"] += qty * (upd.last_fill_price or upd.avg_price)
            t["exit_qty"] += qty
            t["exits"].append(role)
        elif ps.side != "NONE":
            t["entry_price"] = ps.entry_price
            t["qty"] = max(t["qty"], ps.qty_total)
        if ps.side == "NONE" and (not t.get("awaiting_exit") or _exited(t)):
            self.close()

    def close_if_flat(self, position_side: str) -> None:
        """After an emergency flatten found the venue already flat."""
        t = self.trade
        if t is None or position_side != "NONE":
            return
        if _exited(t):
            t["exits"].append("fx")
            self.close()
        else:
            # Whatever flattened the venue (a stop that fired in the same instant) has not been
            # reported yet: its fill closes the trade, with its PnL and fee.
            t["awaiting_exit"] = True

    def close(self) -> None:
        t, self.trade = self.trade, None
        if t is None:
            return
        risk = t["risk_per_unit"] * t["qty"]
        exit_price = t["exit_value"] / t["exit_qty"] if t["exit_qty"] > 0 else 0.0
        self.emit(
            {
                "kind": "trade",
                "ts": self.now(),
                "symbol": t["symbol"],
                "side": t["side"],
                "template": t["template"],
                "tier": t["tier"],
                "entry_price": t["entry_price"],
                "exit_price": exit_price,
                "qty": t["qty"],
                "pnl": t["pnl"],
                "fees": t["fees"],
                "net_pnl": t["pnl"] - t["fees"],
                "r_multiple": (t["pnl"] / risk) if risk > 0 else 0.0,
                "opened_ts": t["opened_ts"],
                "closed_ts": self.now(),
                "entry_client_id": t["entry_client_id"],
                "exit_reason": t["exits"][-1] if t["exits"] else "unknown",
                "exits": t["exits"],
            }
        )
