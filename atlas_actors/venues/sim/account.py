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
        assets = {
            self.asset: {
                "wallet_balance": self._wallet,
                "unrealized_pnl": upnl,
                "margin_balance": equity,
                "available_balance": equity - margin,
                "initial_margin": margin,
            }
        }
        for other, amount in sorted(self._other_wallets.items()):
            assets[other] = {
                "wallet_balance": amount,
                "unrealized_pnl": 0.0,
                "margin_balance": amount,
                "available_balance": amount,
                "initial_margin": 0.0,
            }
        out = {
            "asset": self.asset,
            "multi_assets_margin": self.multi_assets_margin,
            "total_equity": equity,
            "available_balance": equity - margin,
            "margin_used": margin,
            "wallet_balance": self._wallet,
            "unrealized_pnl": upnl,
            "fees_paid": self._fees_paid,
            "funding_paid": self._funding_paid,
            "assets": assets,
        }
        if self.multi_assets_margin:
            # one pool of all collateral, valued in USD (Binance's Multi-Assets mode)
            usd = self._usd_price
            rate = usd(self.asset)
            collateral = sum(a["wallet_balance"] * usd(n) for n, a in assets.items())
            out["asset"] = "USD"
            out["wallet_balance"] = collateral
            out["unrealized_pnl"] = upnl * rate
            out["total_equity"] = collateral + upnl * rate
            out["margin_used"] = margin * rate
            out["available_balance"] = out["total_equity"] - margin * rate
        return out

    def _usd_price(self, asset: str) -> float:
        return float(self.asset_usd_prices.get(asset, 1.0))

    def set_wallet(self, asset: str, amount: float) -> None:
        """Hold `amount` of `asset` in the futures wallet (another row of a multi-asset
        wallet: USDC next to USDT, BNB); the margin asset's row is the trading wallet."""
        if not asset or not isinstance(asset, str):
            raise ValueError(f"asset must be a non-empty string, got {asset!r}")
        with self._lock:
            if asset == self.asset:
                self._wallet = float(amount)
            elif amount:
                self._other_wallets[asset] = float(amount)
            else:
                self._other_wallets.pop(asset, None)

    def set_multi_assets_margin(self, on: bool) -> None:
        """Multi-Assets mode: every wallet row is collateral and the totals are USD values
        (`asset_usd_prices`: asset -> USD, 1.0 when not given)."""
        with self._lock:
            self.multi_assets_margin = bool(on)

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
