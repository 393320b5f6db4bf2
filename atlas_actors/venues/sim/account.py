"""The SimVenue's account: the one-way position per symbol, the wallet, fees, margin and
leverage (§1.2)."""

from __future__ import annotations

from typing import Any

from atlas_actors.domain.events import AccountUpdate
from atlas_actors.venues.base import InsufficientMargin, VenueEvent
from atlas_actors.venues.sim.book import SymBook
from atlas_actors.venues.sim.core import SimCore, reject

MAX_LEVERAGE = 125


class SimAccount(SimCore):
    """Positions, balances and the fills' effect on them."""

    def _position_dict(self, st: SymBook) -> dict[str, Any]:
        mark = st.mark if st.mark is not None else (st.last or st.entry)
        upnl = (mark - st.entry) * st.pos if st.pos else 0.0
        return {
            "symbol": st.symbol,
            "side": "LONG" if st.pos > 0 else ("SHORT" if st.pos < 0 else "NONE"),
            "qty": abs(st.pos),
            "position_amt": st.pos,
            "entry_price": st.entry,
            "mark_price": mark,
            "unrealized_pnl": upnl,
            "realized_pnl": st.realized,
            "notional": abs(st.pos) * mark,
            "leverage": st.leverage,
        }

    def _balances(self) -> dict[str, Any]:
        upnl = 0.0
        margin = 0.0
        for st in self._syms.values():
            if st.pos:
                mark = st.mark if st.mark is not None else st.entry
                upnl += (mark - st.entry) * st.pos
                margin += abs(st.pos) * mark / st.leverage
            for o in st.orders.values():
                if not o.reduce_only:
                    margin += (o.qty - o.executed_qty) * o.price / st.leverage
        equity = self._wallet + upnl
        return {
            "asset": self.asset,
            "total_equity": equity,
            "available_balance": equity - margin,
            "margin_used": margin,
            "wallet_balance": self._wallet,
            "unrealized_pnl": upnl,
            "fees_paid": self._fees_paid,
            "funding_paid": self._funding_paid,
        }

    def get_balances(self) -> dict[str, Any]:
        plan = self._begin("get_balances")
        with self._lock:
            out = self._balances()
        self._end(plan)
        return out

    def get_positions(self) -> dict[str, dict[str, Any]]:
        """Every symbol with a position or that has traded (flat ones: side NONE, qty 0)."""
        plan = self._begin("get_positions")
        with self._lock:
            out = {
                s: self._position_dict(st) for s, st in self._syms.items() if st.pos or st.traded
            }
        self._end(plan)
        return out

    def set_leverage(self, symbol: str, leverage: int) -> None:
        plan = self._begin("set_leverage")
        if not isinstance(leverage, int) or isinstance(leverage, bool):
            raise reject(-4028, f"leverage must be an int, got {leverage!r}")
        if not 1 <= leverage <= MAX_LEVERAGE:
            raise reject(-4028, f"{symbol}: leverage {leverage} not within 1..{MAX_LEVERAGE}")
        with self._lock:
            self._sym(symbol).leverage = leverage
        self._end(plan)

    def get_position_mode(self) -> str:
        """The simulator only knows one-way mode (what Atlas requires)."""
        return "ONE_WAY"

    def set_position_mode_one_way(self) -> None:
        """The simulator is always in one-way mode: success."""
        plan = self._begin("set_position_mode_one_way")
        self._end(plan)

    @staticmethod
    def _closable(st: SymBook, side: str) -> float:
        """How much an order of `side` can reduce the current position."""
        if st.pos > 0 and side == "SELL":
            return st.pos
        if st.pos < 0 and side == "BUY":
            return -st.pos
        return 0.0

    def _apply_fill(
        self, st: SymBook, side: str, qty: float, price: float, fee_bps: float
    ) -> tuple[float, float]:
        """Update the one-way position; returns (realized_pnl, fee)."""
        signed = qty if side == "BUY" else -qty
        pos = st.pos
        realized = 0.0
        new = round(pos + signed, st.qty_decimals)
        if pos == 0.0 or (pos > 0) == (signed > 0):
            st.entry = (abs(pos) * st.entry + qty * price) / abs(new)
        else:
            closing = min(qty, abs(pos))
            realized = closing * (price - st.entry) * (1.0 if pos > 0 else -1.0)
            if new == 0.0:
                st.entry = 0.0
            elif (new > 0) != (pos > 0):
                st.entry = price  # flipped: the remainder opened at this price
        st.pos = new
        fee = qty * price * fee_bps / 10_000.0
        self._wallet += realized - fee
        self._fees_paid += fee
        st.realized += realized
        st.traded = True
        return realized, fee

    def _account_event(self, st: SymBook, events: list[VenueEvent]) -> None:
        if self._user_on():
            events.append(
                AccountUpdate(
                    "ORDER",
                    {self.asset: self._wallet},
                    {st.symbol: self._position_dict(st)},
                    self._now_ms(),
                )
            )

    def _margin_check(self, st: SymBook, side: str, qty: float, price: float) -> None:
        opening = qty - self._closable(st, side)
        if opening <= 0:
            return
        need = opening * price / st.leverage + opening * price * self.fee_bps / 10_000.0
        avail = self._balances()["available_balance"]
        if need > avail + 1e-9:
            raise InsufficientMargin(
                -2019,
                f"Margin is insufficient. {st.symbol}: needs {need:.8g}, available {avail:.8g}",
            )
