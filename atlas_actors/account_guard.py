"""Account-level limits every open passes (the supervisor's tree and the backtest share it):
max concurrent positions, max share of equity used as margin, and a daily-loss halt."""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from typing import TYPE_CHECKING, Any

from atlas_actors.domain.commands import risk_record
from atlas_actors.venues.base import VenueError

if TYPE_CHECKING:
    from atlas_actors.engine import SymbolEngine

log = logging.getLogger("atlas.account")


class AccountGuard:
    """Account-level limits, checked where every open passes (before each candidate
    evaluation of a flat symbol): max concurrent positions, max share of equity used as
    margin, and a daily-loss halt that stops new opens until the next UTC day."""

    def __init__(
        self,
        venue: Any,
        *,
        max_concurrent_positions: int,
        max_margin_share: float,
        daily_loss_halt_pct: float,
        sink: Any = None,
    ) -> None:
        self.venue = venue
        self.max_positions = max_concurrent_positions
        self.max_margin_share = max_margin_share
        self.daily_loss_halt_pct = daily_loss_halt_pct
        self.sink = sink
        self._lock = threading.Lock()
        self._day: str | None = None
        self._day_num: int | None = None
        self._day_str = ""
        self._day_start_equity = 0.0
        self.halted_day: str | None = None
        self.halt_reason: str | None = None
        self.storage_block: str | None = None  # set while the state store cannot write

    def _day_name(self, now: float) -> str:
        """UTC date of `now`, formatted once per day (this runs before every flat bar)."""
        n = int(now // 86400)
        if n != self._day_num:
            self._day_num = n
            self._day_str = _dt.datetime.fromtimestamp(now, _dt.UTC).strftime("%Y-%m-%d")
        return self._day_str

    def block_reason(self, symbol: str, engine: SymbolEngine) -> str | None:
        ps = engine.state.position_state
        if self.storage_block is not None:
            return self.storage_block  # (only ever consulted for opens)
        pending = engine.state.pending
        if ps.side != "NONE" or pending.get("entry") or pending.get("exit"):
            # not a fresh open; position management is never blocked here (other pending
            # bookkeeping, e.g. a triggered stop's child ids, stays after a trade: still flat)
            return None
        now = engine.now()
        with self._lock:
            try:
                bal = self.venue.balances()
            except VenueError as exc:
                return f"account: cannot read balances ({type(exc).__name__})"
            equity = float(bal["total_equity"])
            day = self._day_name(now)
            if day != self._day:
                self._day = day
                self._day_start_equity = equity
            if self.halted_day == day:
                return self.halt_reason
            loss_pct = (
                (self._day_start_equity - equity) / self._day_start_equity * 100.0
                if self._day_start_equity > 0
                else 0.0
            )
            if self.daily_loss_halt_pct > 0 and loss_pct >= self.daily_loss_halt_pct:
                self.halted_day = day
                self.halt_reason = (
                    f"account: daily loss halt ({loss_pct:.2f}% >= {self.daily_loss_halt_pct}% "
                    f"on {day})"
                )
                if self.sink is not None:
                    self.sink.emit(
                        risk_record(
                            event_type="LOSS_COOLDOWN",
                            symbol="*",
                            side="NONE",
                            qty=0.0,
                            price=0.0,
                            order_ids=[],
                            client_ids=[],
                            reason=self.halt_reason,
                            ts=now,
                        )
                    )
                return self.halt_reason
            margin = float(bal["margin_used"])
            if margin > 0:  # no margin in use = no open position: skip reading them
                try:
                    positions = self.venue.positions()
                except VenueError as exc:
                    return f"account: cannot read positions ({type(exc).__name__})"
                open_n = sum(
                    1
                    for p in positions.values()
                    if str(p.get("side")) != "NONE" and float(p.get("qty") or 0)
                )
                if open_n >= self.max_positions:
                    return f"account: max concurrent positions {self.max_positions} reached"
            if equity > 0 and margin / equity >= self.max_margin_share:
                return (
                    f"account: margin use {margin / equity:.0%} >= max {self.max_margin_share:.0%}"
                )
        return None
