"""The SimVenue's state and plumbing: construction, clock, listeners and streams, request
accounting with fault injection, client-id validation, symbols and their filters."""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import NoReturn

from atlas_actors.domain.events import StreamStatus
from atlas_actors.venues.base import EventHandler, OrderRejected, VenueEvent
from atlas_actors.venues.binance.codes import BINANCE_MESSAGES
from atlas_actors.venues.faults import WRITE_METHODS, FaultPlan, Faults
from atlas_actors.venues.filters import SymbolFilters, default_filters_for
from atlas_actors.venues.sim.book import Algo, IdBook, Order, SymBook

log = logging.getLogger("atlas_actors.venues.sim")  # the name it had as one module

_CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")


def reject(code: int, detail: str = "") -> OrderRejected:
    msg = BINANCE_MESSAGES.get(code, "rejected")
    return OrderRejected(code, f"{msg} {detail}".strip())


class SimCore:
    """The venue's state (one RLock guards the book) and the plumbing every request uses."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        fee_bps: float = 4.0,
        slippage_bps: float = 1.0,
        seed: int = 0,
        starting_balance: float = 10_000.0,
        maker_fee_bps: float = 2.0,
        asset: str = "USDT",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self.fee_bps = float(fee_bps)
        self.maker_fee_bps = float(maker_fee_bps)
        self.slippage_bps = float(slippage_bps)
        self.seed = seed
        self.asset = asset
        self._lock = threading.RLock()
        self._listeners: tuple[EventHandler, ...] = ()
        self._ws_on = True
        self.faults = Faults(seed=seed, sleep=sleep, lag_clock=clock or time.monotonic)
        self.faults._stream_hook = self._on_stream_change
        self.write_count = 0  # write requests received (recover_protection CONFIRMED adds none)
        self.request_count = 0
        self._wallet = float(starting_balance)
        self._status: dict[str, str] = {}  # exchangeInfo status when not TRADING
        self._other_wallets: dict[str, float] = {}  # the wallet's other rows (USDC, BNB, ...)
        self.multi_assets_margin = False
        self.asset_usd_prices: dict[str, float] = {"USDT": 1.0, "USDC": 1.0, "BNB": 600.0}
        self._fees_paid = 0.0
        self._funding_paid = 0.0  # positive = paid by us
        self._sim_ms = 0
        self._next_order_id = 1_000_001
        self._next_algo_id = 5_000_001
        self._syms: dict[str, SymBook] = {}
        self._orders: IdBook[Order] = IdBook()
        self._algos: IdBook[Algo] = IdBook()
        # Finished orders/algos are kept for idempotency and queries, oldest pruned beyond this.
        self.max_closed = 50_000
        # False: feed_bar emits no BarClosed events (the backtest hands each bar to its engine
        # itself and would only discard them); fills, algo and account events are unaffected.
        self.bar_events = True

    # ================================================================== clock, listeners, streams

    def now(self) -> float:
        """Venue time in epoch seconds."""
        if self._clock is not None:
            return float(self._clock())
        return self._sim_ms / 1000.0

    def _now_ms(self) -> int:
        if self._clock is not None:
            return int(self._clock() * 1000)
        return self._sim_ms

    def add_listener(self, handler: EventHandler) -> None:
        with self._lock:
            self._listeners = (*self._listeners, handler)

    def remove_listener(self, handler: EventHandler) -> None:
        with self._lock:
            self._listeners = tuple(h for h in self._listeners if h is not handler)

    def ws_start(self) -> None:
        with self._lock:
            was_on, self._ws_on = self._ws_on, True
        if not was_on:
            self._dispatch(
                [
                    StreamStatus(s, "CONNECTED", "ws_start", self._now_ms())
                    for s in ("market", "user")
                ]
            )

    def ws_stop(self) -> None:
        with self._lock:
            self._ws_on = False

    def _on_stream_change(self, stream: str, status: str) -> None:
        self._dispatch([StreamStatus(stream, status, "injected", self._now_ms())])

    def _user_on(self) -> bool:
        return bool(self._listeners) and self._ws_on and self.faults.stream_up("user")

    def _market_on(self) -> bool:
        return bool(self._listeners) and self._ws_on and self.faults.stream_up("market")

    def _dispatch(self, events: Iterable[VenueEvent]) -> None:
        listeners = self._listeners
        for ev in events:
            for h in listeners:
                try:
                    h(ev)
                except Exception:
                    log.exception("venue listener %r failed on %s", h, type(ev).__name__)

    # ================================================================== request plumbing

    def _begin(self, method: str) -> FaultPlan | None:
        """Count the request and apply the faults that act before it reaches the book."""
        with self._lock:
            self.request_count += 1
            if method in WRITE_METHODS:
                self.write_count += 1
        if self.faults.venue_close_armed() and self._holds_position():
            kind = self.faults.take_venue_close(method)
            if kind is not None:
                self._venue_close_any(kind)
        plan = self.faults.draw(method)
        if plan is None:
            return None
        if plan.latency_ms > 0:
            self.faults.sleep(plan.latency_ms / 1000.0)
        if plan.raises_before:
            raise plan.error()
        return plan

    def _land_later(self, plan: FaultPlan, apply: Callable[[], object]) -> NoReturn:
        """late_landing: the venue answers "unknown" now and executes the request
        `plan.land_after_ms` later, on its own thread (what a 503 / -1007 can hide)."""

        def land() -> None:
            try:
                apply()
            except Exception as exc:  # noqa: BLE001 - a refused late order simply never lands
                log.info("late-landing %s refused when it landed: %s", plan.method, exc)

        timer = threading.Timer(plan.land_after_ms / 1000.0, land)
        timer.daemon = True
        timer.start()
        raise plan.error()

    def _holds_position(self) -> bool:
        with self._lock:
            return any(st.pos for st in self._syms.values())

    def _venue_close_any(self, kind: str) -> bool:
        """The exchange closes a position by itself (`SimVenueCloses`); none here."""
        return False

    def _end(self, plan: FaultPlan | None) -> None:
        if plan is None:
            return
        if plan.reply_delay_ms > 0:  # slow_reply: applied, the answer takes its time
            self.faults.sleep(plan.reply_delay_ms / 1000.0)
        if plan.kind == "timeout_after_apply":
            raise plan.error()

    def _validate_common(self, side: str, client_id: str) -> None:
        if side not in ("BUY", "SELL"):
            raise reject(-1117, f"side must be BUY or SELL, got {side!r}")
        if not isinstance(client_id, str) or not _CLIENT_ID_RE.match(client_id):
            raise reject(-4015, f"client id {client_id!r} must match ^[.A-Z:/a-z0-9_-]{{1,36}}$")

    # ================================================================== symbols and filters

    def add_symbol(
        self,
        symbol: str,
        *,
        tick_size: float,
        step_size: float,
        min_qty: float,
        min_notional: float,
        max_qty: float = math.inf,
        market_max_qty: float = math.inf,
    ) -> SymbolFilters:
        f = SymbolFilters(
            symbol, tick_size, step_size, min_qty, min_notional, max_qty, market_max_qty
        )
        with self._lock:
            st = self._sym(symbol)
            st.set_filters(f)
            st.filters_explicit = True
        return f

    def get_filters(self, symbol: str) -> SymbolFilters:
        """The symbol's filters (defaults from `default_filters_for` on first use)."""
        with self._lock:
            st = self._sym(symbol)
            return self._filters(st, st.last if st.last is not None else st.mark)

    def get_symbol_filters(self, symbol: str) -> dict[str, float]:
        """tick_size, step_size, min_qty, min_notional (BinanceAdapter.get_symbol_filters shape;
        usable as `add_symbol(symbol, **filters)`)."""
        f = self.get_filters(symbol)
        return {
            "tick_size": f.tick_size,
            "step_size": f.step_size,
            "min_qty": f.min_qty,
            "min_notional": f.min_notional,
        }

    def set_symbol_status(self, symbol: str, status: str) -> None:
        """exchangeInfo `status` of `symbol` (TRADING, SETTLING, PENDING_TRADING, CLOSE,
        ...): anything but TRADING is a delisted / not yet listed symbol."""
        with self._lock:
            self._sym(symbol)
            self._status[symbol] = str(status).upper()

    def symbol_status(self, symbol: str) -> str:
        return self._status.get(symbol, "TRADING")

    def set_market_max_qty(self, symbol: str, qty: float) -> SymbolFilters:
        """MARKET_LOT_SIZE.maxQty of `symbol` (inf: none): MARKET orders above it get -4005."""
        if not qty > 0:
            raise ValueError(f"{symbol}: market max qty must be > 0, got {qty!r}")
        with self._lock:
            st = self._sym(symbol)
            f = replace(
                self._filters(st, st.last if st.last is not None else st.mark),
                market_max_qty=float(qty),
            )
            st.set_filters(f)
            st.filters_explicit = True
        return f

    def market_max_qty(self, symbol: str) -> float:
        """The largest MARKET order quantity of `symbol` (MARKET_LOT_SIZE.maxQty; inf: none)."""
        return self.get_filters(symbol).market_max_qty

    def symbols(self) -> list[str]:
        """Every symbol the venue has seen (fed, priced, traded or configured)."""
        with self._lock:
            return list(self._syms)

    def _sym(self, symbol: str) -> SymBook:
        st = self._syms.get(symbol)
        if st is None:
            if not symbol or not isinstance(symbol, str):
                raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
            st = self._syms[symbol] = SymBook(symbol)
        return st

    @staticmethod
    def _filters(st: SymBook, price_hint: float | None) -> SymbolFilters:
        if st.filters is None:
            f = default_filters_for(st.symbol, price_hint)
            if price_hint is None:
                return f  # not kept: the first real price gives better defaults
            st.set_filters(f)
        assert st.filters is not None
        return st.filters
