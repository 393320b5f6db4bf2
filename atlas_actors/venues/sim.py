"""SimVenue: an in-process simulated Binance USD-M exchange implementing `ExchangeAdapter`.

Used by paper mode, backtests, tests and the loopback Binance-compatible server (sim_server.py).
It is driven by what it is fed:

- `feed_bar(symbol, bar)`: a closed kline. The contract price walks open -> low -> high -> close
  for a bullish bar (close >= open) and open -> high -> low -> close for a bearish one. A jump from
  the previous close to the open is a gap: nothing trades in between.
- `set_price(symbol, price)`: the contract price moves continuously from the last price to `price`.
- `set_mark_price(symbol, price)` / `feed_mark_bar(symbol, bar)`: an explicit mark price; from then
  on MARK_PRICE stops of that symbol follow it (until `clear_mark_price`). Without an explicit mark,
  the mark follows the contract price path.

Matching rules (chosen to be a little pessimistic, like a real book):
- resting limits fill completely at their own price (maker fee) when the price trades *through*
  it (strictly beyond); a GTX order that would take is refused with -5022;
- a triggered Algo stop becomes a reduce-only market order filled at the trigger point of the path
  (the stop price, or the worse gap price when the market jumped over it) with slippage and the
  taker fee; MARK_PRICE stops triggered by the mark fill at the last contract price;
- market orders fill at the last price with slippage and the taker fee;
- reduce-only orders never increase a position: rejected with -2022 when they cannot reduce,
  a market one larger than the position is clipped; resting reduce-only orders expire when the
  position is gone; close_position stops expire with the position.

Events (OrderUpdate, AlgoUpdate, AccountUpdate, BarClosed, MarkPrice, StreamStatus) are delivered
synchronously to listeners, in the order they happened, after the venue lock is released. A
listener that raises is logged and skipped. Listeners receive events from construction on;
`ws_stop()` pauses delivery and `ws_start()` resumes it.

Times: the venue clock is the injected `clock` (epoch seconds) or, by default, the close_time of
the latest bar fed (no wall-clock reads). Visibility lag of fault injection uses the injected clock
or `time.monotonic`.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from atlas_actors.domain.events import (
    AccountUpdate,
    AlgoUpdate,
    BarClosed,
    MarkPrice,
    OrderUpdate,
    StreamStatus,
    VenueEvent,
)
from atlas_actors.domain.stops import StopSpec, stop_deviates
from atlas_actors.venues.base import (
    EventHandler,
    InsufficientMargin,
    OrderRejected,
    VenueError,
    WouldTakeLiquidity,
    replacement_client_id,
)
from atlas_actors.venues.faults import BINANCE_MESSAGES, WRITE_METHODS, FaultPlan, Faults
from atlas_actors.venues.filters import SymbolFilters, decimals_of, default_filters_for

log = logging.getLogger(__name__)

_CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_TIFS = ("GTX", "GTC", "IOC", "FOK")
_OPEN = ("NEW", "PARTIALLY_FILLED")
_INF = math.inf
_INTERVALS = {
    60_000: "1m",
    180_000: "3m",
    300_000: "5m",
    900_000: "15m",
    1_800_000: "30m",
    3_600_000: "1h",
    7_200_000: "2h",
    14_400_000: "4h",
    21_600_000: "6h",
    28_800_000: "8h",
    43_200_000: "12h",
    86_400_000: "1d",
}
DEFAULT_LEVERAGE = 20
MAX_LEVERAGE = 125
KLINE_HISTORY = 1500  # Binance serves at most 1500 klines per request
SNAPSHOT_VERSION = 1


def interval_of(open_time: int, close_time: int) -> str:
    """Binance interval name of a bar from its times ("1m", "5m", "1h"...)."""
    ms = close_time - open_time + 1
    return _INTERVALS.get(ms) or f"{max(ms, 0) // 1000}s"


def _reject(code: int, detail: str = "") -> OrderRejected:
    msg = BINANCE_MESSAGES.get(code, "rejected")
    return OrderRejected(code, f"{msg} {detail}".strip())


class _Order:
    __slots__ = (
        "order_id",
        "client_order_id",
        "symbol",
        "side",
        "type",
        "price",
        "qty",
        "executed_qty",
        "avg_price",
        "status",
        "reduce_only",
        "tif",
        "create_ms",
        "update_ms",
        "commission",
        "realized_pnl",
    )

    def __init__(
        self,
        *,
        order_id: str,
        client_order_id: str,
        symbol: str,
        side: str,
        type: str,
        price: float,
        qty: float,
        status: str,
        reduce_only: bool,
        tif: str,
        create_ms: int,
        update_ms: int,
    ) -> None:
        self.order_id = order_id
        self.client_order_id = client_order_id
        self.symbol = symbol
        self.side = side
        self.type = type
        self.price = price  # 0.0 for market orders
        self.qty = qty
        self.status = status
        self.reduce_only = reduce_only
        self.tif = tif
        self.create_ms = create_ms
        self.update_ms = update_ms
        self.executed_qty = 0.0
        self.avg_price = 0.0
        self.commission = 0.0
        self.realized_pnl = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side,
            "type": self.type,
            "status": self.status,
            "price": self.price,
            "qty": self.qty,
            "executed_qty": self.executed_qty,
            "avg_price": self.avg_price,
            "reduce_only": self.reduce_only,
            "time_in_force": self.tif,
            "create_time": self.create_ms,
            "update_time": self.update_ms,
            "commission": self.commission,
            "realized_pnl": self.realized_pnl,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> _Order:
        o = cls(
            order_id=str(d["order_id"]),
            client_order_id=str(d["client_order_id"]),
            symbol=str(d["symbol"]),
            side=str(d["side"]),
            type=str(d["type"]),
            price=float(d["price"]),
            qty=float(d["qty"]),
            status=str(d["status"]),
            reduce_only=bool(d["reduce_only"]),
            tif=str(d["time_in_force"]),
            create_ms=int(d["create_time"]),
            update_ms=int(d["update_time"]),
        )
        o.executed_qty = float(d["executed_qty"])
        o.avg_price = float(d["avg_price"])
        o.commission = float(d.get("commission", 0.0))
        o.realized_pnl = float(d.get("realized_pnl", 0.0))
        return o


class _Algo:
    __slots__ = (
        "algo_id",
        "client_algo_id",
        "symbol",
        "side",
        "stop_price",
        "qty",
        "working_type",
        "reduce_only",
        "close_position",
        "status",
        "create_ms",
        "update_ms",
        "trigger_ms",
        "actual_order_id",
        "visible_at",
    )

    def __init__(
        self,
        *,
        algo_id: str,
        client_algo_id: str,
        symbol: str,
        side: str,
        stop_price: float,
        qty: float,
        working_type: str,
        reduce_only: bool,
        close_position: bool,
        status: str,
        create_ms: int,
        update_ms: int,
    ) -> None:
        self.algo_id = algo_id
        self.client_algo_id = client_algo_id
        self.symbol = symbol
        self.side = side
        self.stop_price = stop_price
        self.qty = qty  # 0.0 with close_position
        self.working_type = working_type
        self.reduce_only = reduce_only
        self.close_position = close_position
        self.status = status
        self.create_ms = create_ms
        self.update_ms = update_ms
        self.trigger_ms = 0
        self.actual_order_id: str | None = None  # the triggered child order
        self.visible_at = 0.0  # lag-clock time from which it is listed (0 = at once)

    def to_dict(self) -> dict[str, Any]:
        return {
            "algo_id": self.algo_id,
            "client_algo_id": self.client_algo_id,
            "symbol": self.symbol,
            "side": self.side,
            "type": "STOP_MARKET",
            "status": self.status,
            "stop_price": self.stop_price,
            "qty": self.qty,
            "working_type": self.working_type,
            "reduce_only": self.reduce_only,
            "close_position": self.close_position,
            "create_time": self.create_ms,
            "update_time": self.update_ms,
            "trigger_time": self.trigger_ms,
            "actual_order_id": self.actual_order_id,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> _Algo:
        a = cls(
            algo_id=str(d["algo_id"]),
            client_algo_id=str(d["client_algo_id"]),
            symbol=str(d["symbol"]),
            side=str(d["side"]),
            stop_price=float(d["stop_price"]),
            qty=float(d["qty"]),
            working_type=str(d["working_type"]),
            reduce_only=bool(d["reduce_only"]),
            close_position=bool(d["close_position"]),
            status=str(d["status"]),
            create_ms=int(d["create_time"]),
            update_ms=int(d["update_time"]),
        )
        a.trigger_ms = int(d.get("trigger_time") or 0)
        aid = d.get("actual_order_id")
        a.actual_order_id = str(aid) if aid is not None else None
        return a


class _Sym:
    """Per-symbol book: prices, position, resting orders, open algos and the watch levels."""

    __slots__ = (
        "symbol",
        "filters",
        "filters_explicit",
        "qty_decimals",
        "last",
        "mark",
        "mark_explicit",
        "pos",
        "entry",
        "leverage",
        "realized",
        "traded",
        "orders",
        "algos",
        "bars",
        "funding",
        "funding_idx",
        "funding_rate",
        "next_funding_ms",
        "open_interest",
        "down_watch",
        "up_watch",
    )

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.filters: SymbolFilters | None = None
        self.filters_explicit = False
        self.qty_decimals = 12
        self.last: float | None = None
        self.mark: float | None = None
        self.mark_explicit = False
        self.pos = 0.0  # signed: + long, - short
        self.entry = 0.0
        self.leverage = DEFAULT_LEVERAGE
        self.realized = 0.0
        self.traded = False
        self.orders: dict[str, _Order] = {}  # resting (open) limit orders
        self.algos: dict[str, _Algo] = {}  # open algo stops
        self.bars: deque[Mapping[str, Any]] = deque(maxlen=KLINE_HISTORY)
        self.funding: list[tuple[int, float]] = []  # (funding_time_ms, rate), ascending
        self.funding_idx = 0  # first funding not applied yet
        self.funding_rate = 0.0
        self.next_funding_ms: float = _INF
        self.open_interest = 0.0
        # The contract price path needs the slow walk only when it reaches one of these levels:
        # down_watch = highest buy limit / sell stop, up_watch = lowest sell limit / buy stop.
        self.down_watch = -_INF
        self.up_watch = _INF

    def set_filters(self, f: SymbolFilters) -> None:
        self.filters = f
        self.qty_decimals = decimals_of(f.step_size) + 2


class SimVenue:
    """In-process exchange (see the module docstring). Thread-safe: one RLock guards the book."""

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
        self._fees_paid = 0.0
        self._funding_paid = 0.0  # positive = paid by us
        self._sim_ms = 0
        self._next_order_id = 1_000_001
        self._next_algo_id = 5_000_001
        self._syms: dict[str, _Sym] = {}
        self._orders: dict[str, _Order] = {}
        self._order_cids: dict[str, str] = {}
        self._algos: dict[str, _Algo] = {}
        self._algo_cids: dict[str, str] = {}
        # Finished orders/algos are kept for idempotency and queries, oldest pruned beyond this.
        self.max_closed = 50_000
        # False: feed_bar emits no BarClosed events (the backtest hands each bar to its engine
        # itself and would only discard them); fills, algo and account events are unaffected.
        self.bar_events = True
        self._closed_orders: deque[str] = deque()
        self._closed_algos: deque[str] = deque()

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
        plan = self.faults.draw(method)
        if plan is None:
            return None
        if plan.latency_ms > 0:
            self.faults.sleep(plan.latency_ms / 1000.0)
        if plan.raises_before:
            raise plan.error()
        return plan

    @staticmethod
    def _end(plan: FaultPlan | None) -> None:
        if plan is not None and plan.kind == "timeout_after_apply":
            raise plan.error()

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
    ) -> SymbolFilters:
        f = SymbolFilters(symbol, tick_size, step_size, min_qty, min_notional, max_qty)
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

    def symbols(self) -> list[str]:
        """Every symbol the venue has seen (fed, priced, traded or configured)."""
        with self._lock:
            return list(self._syms)

    def _sym(self, symbol: str) -> _Sym:
        st = self._syms.get(symbol)
        if st is None:
            if not symbol or not isinstance(symbol, str):
                raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
            st = self._syms[symbol] = _Sym(symbol)
        return st

    @staticmethod
    def _filters(st: _Sym, price_hint: float | None) -> SymbolFilters:
        if st.filters is None:
            f = default_filters_for(st.symbol, price_hint)
            if price_hint is None:
                return f  # not kept: the first real price gives better defaults
            st.set_filters(f)
        assert st.filters is not None
        return st.filters

    # ================================================================== market data (§1.1)

    def get_kline(self, symbol: str, interval: str, limit: int) -> list[dict[str, Any]]:
        """The last `limit` bars fed for `symbol` (the interval is that of the fed bars)."""
        plan = self._begin("get_kline")
        with self._lock:
            st = self._syms.get(symbol)
            bars = list(st.bars)[-limit:] if st is not None and limit > 0 else []
        self._end(plan)
        return [
            {
                "open_time": int(b["open_time"]),
                "open": float(b["open"]),
                "high": float(b["high"]),
                "low": float(b["low"]),
                "close": float(b["close"]),
                "volume": float(b.get("volume") or 0.0),
                "close_time": int(b["close_time"]),
            }
            for b in bars
        ]

    def get_mark_price(self, symbol: str) -> float:
        plan = self._begin("get_mark_price")
        with self._lock:
            st = self._syms.get(symbol)
            px = None if st is None else (st.mark if st.mark is not None else st.last)
        self._end(plan)
        if px is None:
            raise VenueError(f"{symbol}: no mark price yet (feed a bar or set a price first)")
        return px

    def get_last_price(self, symbol: str) -> float:
        """The last contract price (the close of the last bar fed, or the last set_price)."""
        plan = self._begin("get_last_price")
        with self._lock:
            st = self._syms.get(symbol)
            px = None if st is None else st.last
        self._end(plan)
        if px is None:
            raise VenueError(f"{symbol}: no last price yet (feed a bar or set a price first)")
        return px

    def get_funding_rate(self, symbol: str) -> float:
        """The rate of the next scheduled funding, else the last one set or applied."""
        plan = self._begin("get_funding_rate")
        with self._lock:
            st = self._syms.get(symbol)
            rate = 0.0
            if st is not None:
                rate = (
                    st.funding[st.funding_idx][1]
                    if st.funding_idx < len(st.funding)
                    else st.funding_rate
                )
        self._end(plan)
        return rate

    def get_open_interest(self, symbol: str) -> float:
        plan = self._begin("get_open_interest")
        with self._lock:
            st = self._syms.get(symbol)
            oi = st.open_interest if st is not None else 0.0
        self._end(plan)
        return oi

    def set_open_interest(self, symbol: str, value: float) -> None:
        with self._lock:
            self._sym(symbol).open_interest = float(value)

    # ================================================================== feeding the market

    def feed_bar(self, symbol: str, bar: Mapping[str, Any]) -> None:
        """A closed kline of `symbol`: walk its path, fill/trigger, then emit BarClosed."""
        o = float(bar["open"])
        h = float(bar["high"])
        lo = float(bar["low"])
        c = float(bar["close"])
        ct = int(bar["close_time"])
        if not (lo <= o <= h and lo <= c <= h and lo > 0):
            raise ValueError(
                f"{symbol}: inconsistent bar at open_time {bar.get('open_time')}: "
                f"open={o} high={h} low={lo} close={c}"
            )
        events: list[VenueEvent] | None = None
        with self._lock:
            st = self._syms.get(symbol)
            if st is None:
                st = self._sym(symbol)
            st.bars.append(bar)
            if ct > self._sim_ms:
                self._sim_ms = ct
            if lo > st.down_watch and h < st.up_watch and ct < st.next_funding_ms:
                # Hot path: nothing resting is reached and no funding is due.
                st.last = c
                if not st.mark_explicit:
                    st.mark = c
            else:
                events = []
                self._bar_slow(st, o, h, lo, c, int(bar["open_time"]), ct, events)
            if (
                self.bar_events
                and self._listeners
                and self._ws_on
                and self.faults.stream_up("market")
            ):
                ot = int(bar["open_time"])
                ev = BarClosed(
                    symbol,
                    str(bar.get("interval") or interval_of(ot, ct)),
                    ot,
                    o,
                    h,
                    lo,
                    c,
                    float(bar.get("volume") or 0.0),
                    ct,
                )
                if events is None:
                    events = [ev]
                else:
                    events.append(ev)
        if events:
            self._dispatch(events)

    def _bar_slow(
        self,
        st: _Sym,
        o: float,
        h: float,
        lo: float,
        c: float,
        ot: int,
        ct: int,
        events: list[VenueEvent],
    ) -> None:
        if st.filters is None:
            self._filters(st, c)
        self._apply_funding_until(st, ot, events)
        prev = st.last
        if prev is not None and prev != o:
            self._walk(st, prev, o, True, events, gap=True)
        else:
            self._set_contract(st, o)
        pts = (lo, h, c) if c >= o else (h, lo, c)
        a = o
        for b in pts:
            if b != a:
                self._walk(st, a, b, True, events, gap=False)
            a = b
        self._set_contract(st, c)
        self._apply_funding_until(st, ct, events)

    def set_price(self, symbol: str, price: float) -> None:
        """Move the contract price continuously from the last price to `price`."""
        price = float(price)
        if not (price > 0 and math.isfinite(price)):
            raise ValueError(f"{symbol}: price must be positive, got {price!r}")
        events: list[VenueEvent] = []
        with self._lock:
            st = self._sym(symbol)
            self._filters(st, price)
            if st.last is None or st.last == price:
                self._set_contract(st, price)
            else:
                self._walk(st, st.last, price, True, events, gap=False)
                self._set_contract(st, price)
        self._dispatch(events)

    def set_mark_price(self, symbol: str, price: float) -> None:
        """Set an explicit mark price (a jump); MARK_PRICE stops it crosses trigger now."""
        price = float(price)
        if not (price > 0 and math.isfinite(price)):
            raise ValueError(f"{symbol}: mark price must be positive, got {price!r}")
        events: list[VenueEvent] = []
        with self._lock:
            st = self._sym(symbol)
            self._filters(st, price)
            self._make_mark_explicit(st)
            prev = st.mark
            if prev is not None and prev != price:
                self._walk(st, prev, price, False, events, gap=True)
            st.mark = price
            self._emit_mark(st, events)
        self._dispatch(events)

    def feed_mark_bar(self, symbol: str, bar: Mapping[str, Any]) -> None:
        """A mark-price kline: the explicit mark walks its path (MARK_PRICE stops only)."""
        o, h, lo, c = (float(bar[k]) for k in ("open", "high", "low", "close"))
        if not (lo <= o <= h and lo <= c <= h and lo > 0):
            raise ValueError(f"{symbol}: inconsistent mark bar at open_time {bar.get('open_time')}")
        events: list[VenueEvent] = []
        with self._lock:
            st = self._sym(symbol)
            self._filters(st, c)
            self._make_mark_explicit(st)
            if st.mark is not None and st.mark != o:
                self._walk(st, st.mark, o, False, events, gap=True)
            st.mark = o
            a = o
            for b in (lo, h, c) if c >= o else (h, lo, c):
                if b != a:
                    self._walk(st, a, b, False, events, gap=False)
                a = b
            st.mark = c
            self._emit_mark(st, events)
        self._dispatch(events)

    def clear_mark_price(self, symbol: str) -> None:
        """Forget the explicit mark: the mark follows the contract price again."""
        with self._lock:
            st = self._sym(symbol)
            st.mark_explicit = False
            st.mark = st.last
            self._rewatch(st)

    def _make_mark_explicit(self, st: _Sym) -> None:
        if not st.mark_explicit:
            st.mark_explicit = True
            self._rewatch(st)

    def _emit_mark(self, st: _Sym, events: list[VenueEvent]) -> None:
        if self._market_on() and st.mark is not None:
            nxt = st.funding[st.funding_idx] if st.funding_idx < len(st.funding) else None
            events.append(
                MarkPrice(
                    st.symbol,
                    st.mark,
                    nxt[1] if nxt else st.funding_rate,
                    nxt[0] if nxt else 0,
                    self._now_ms(),
                )
            )

    def _set_contract(self, st: _Sym, price: float) -> None:
        st.last = price
        if not st.mark_explicit:
            st.mark = price

    # ================================================================== funding

    def set_funding(self, symbol: str, rate: float, funding_time_ms: int) -> None:
        """Schedule one funding of `rate` at `funding_time_ms` (applied when bars pass it)."""
        with self._lock:
            st = self._sym(symbol)
            pending = st.funding[st.funding_idx :]
            pending.append((int(funding_time_ms), float(rate)))
            pending.sort()
            st.funding = st.funding[: st.funding_idx] + pending
            st.funding_rate = float(rate)
            self._refresh_funding(st)

    def set_funding_schedule(self, symbol: str, schedule: Iterable[Any]) -> None:
        """Replace the funding schedule: (time_ms, rate) pairs or dicts funding_time/funding_rate.

        Entries at or before the venue's last bar are treated as already applied."""
        entries: list[tuple[int, float]] = []
        for e in schedule:
            if isinstance(e, Mapping):
                entries.append((int(e["funding_time"]), float(e["funding_rate"])))
            else:
                t, r = e
                entries.append((int(t), float(r)))
        entries.sort()
        with self._lock:
            st = self._sym(symbol)
            st.funding = entries
            last_ct = int(st.bars[-1]["close_time"]) if st.bars else -1
            st.funding_idx = sum(1 for t, _ in entries if t <= last_ct)
            self._refresh_funding(st)

    @staticmethod
    def _refresh_funding(st: _Sym) -> None:
        st.next_funding_ms = (
            st.funding[st.funding_idx][0] if st.funding_idx < len(st.funding) else _INF
        )

    def _apply_funding_until(self, st: _Sym, until_ms: int, events: list[VenueEvent]) -> None:
        while st.funding_idx < len(st.funding) and st.funding[st.funding_idx][0] <= until_ms:
            t, rate = st.funding[st.funding_idx]
            st.funding_idx += 1
            st.funding_rate = rate
            if st.pos != 0.0:
                mark = st.mark if st.mark is not None else st.entry
                fee = st.pos * mark * rate  # longs pay a positive rate, shorts receive it
                self._wallet -= fee
                self._funding_paid += fee
                if self._user_on():
                    events.append(
                        AccountUpdate(
                            "FUNDING_FEE",
                            {self.asset: self._wallet},
                            {st.symbol: self._position_dict(st)},
                            t,
                        )
                    )
        self._refresh_funding(st)

    # ================================================================== the price walk

    def _rewatch(self, st: _Sym) -> None:
        down, up = -_INF, _INF
        for o in st.orders.values():
            if o.side == "BUY":
                if o.price > down:
                    down = o.price
            elif o.price < up:
                up = o.price
        for a in st.algos.values():
            if a.working_type == "MARK_PRICE" and st.mark_explicit:
                continue  # follows the explicit mark, not the contract path
            if a.side == "SELL":
                if a.stop_price > down:
                    down = a.stop_price
            elif a.stop_price < up:
                up = a.stop_price
        st.down_watch, st.up_watch = down, up

    def _walk(
        self, st: _Sym, a: float, b: float, contract: bool, events: list[VenueEvent], *, gap: bool
    ) -> None:
        """Move the contract (contract=True) or explicit mark price from a to b; fill what it reaches.

        gap=True: a jump, nothing trades in between; everything crossed acts at b."""
        down = b < a
        mark_follows = not st.mark_explicit
        while True:
            best: _Order | _Algo | None = None
            best_dist = _INF
            best_level = b
            if contract:
                for o in st.orders.values():
                    if down:
                        if o.side != "BUY" or not (b < o.price):
                            continue
                        dist = a - o.price
                    else:
                        if o.side != "SELL" or not (b > o.price):
                            continue
                        dist = o.price - a
                    if dist < best_dist:
                        best, best_dist = o, dist
                        best_level = b if gap else (min(o.price, a) if down else max(o.price, a))
            for al in st.algos.values():
                is_mark = al.working_type == "MARK_PRICE"
                on_this_path = (
                    (is_mark and not mark_follows)
                    if not contract
                    else not (is_mark and not mark_follows)
                )
                if not on_this_path:
                    continue
                if down:
                    if al.side != "SELL" or not (b <= al.stop_price):
                        continue
                    dist = a - al.stop_price
                else:
                    if al.side != "BUY" or not (b >= al.stop_price):
                        continue
                    dist = al.stop_price - a
                if dist < best_dist:
                    best, best_dist = al, dist
                    best_level = (
                        b if gap else (min(al.stop_price, a) if down else max(al.stop_price, a))
                    )
            if best is None:
                return
            if contract:
                self._set_contract(st, best_level)
            else:
                st.mark = best_level
            if isinstance(best, _Order):
                self._fill_resting(st, best, events)
            else:
                fill_px = best_level if contract else (st.last if st.last is not None else b)
                self._trigger(st, best, fill_px, events)

    # ================================================================== fills and positions

    @staticmethod
    def _closable(st: _Sym, side: str) -> float:
        """How much an order of `side` can reduce the current position."""
        if st.pos > 0 and side == "SELL":
            return st.pos
        if st.pos < 0 and side == "BUY":
            return -st.pos
        return 0.0

    def _apply_fill(
        self, st: _Sym, side: str, qty: float, price: float, fee_bps: float
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

    def _new_order_id(self) -> str:
        oid = str(self._next_order_id)
        self._next_order_id += 1
        return oid

    def _order_event(
        self, o: _Order, exec_type: str, fill_qty: float, fill_px: float, fee: float, rpnl: float
    ) -> OrderUpdate:
        return OrderUpdate(
            o.symbol,
            o.order_id,
            o.client_order_id,
            o.side,
            o.type,
            o.status,
            exec_type,
            o.price,
            o.qty,
            o.executed_qty,
            o.avg_price,
            fill_qty,
            fill_px,
            fee,
            rpnl,
            o.reduce_only,
            o.update_ms,
        )

    def _account_event(self, st: _Sym, events: list[VenueEvent]) -> None:
        if self._user_on():
            events.append(
                AccountUpdate(
                    "ORDER",
                    {self.asset: self._wallet},
                    {st.symbol: self._position_dict(st)},
                    self._now_ms(),
                )
            )

    def _execute(
        self,
        st: _Sym,
        o: _Order,
        qty: float,
        price: float,
        fee_bps: float,
        events: list[VenueEvent],
    ) -> None:
        """Fill `qty` of order `o` at `price` and record the fill on the order and position."""
        realized, fee = self._apply_fill(st, o.side, qty, price, fee_bps)
        done = o.executed_qty
        o.executed_qty = round(done + qty, st.qty_decimals)
        o.avg_price = (done * o.avg_price + qty * price) / o.executed_qty
        o.commission += fee
        o.realized_pnl += realized
        o.update_ms = self._now_ms()
        # A reduce-only order clipped to the position: the rest is knocked out (Binance er=4).
        o.status = "FILLED" if o.executed_qty >= o.qty * (1 - 1e-12) else "EXPIRED"
        self._retire_order(o)
        if self._user_on():
            events.append(self._order_event(o, "TRADE", qty, price, fee, realized))
        self._account_event(st, events)
        self._after_position_change(st, events)

    def _fill_resting(self, st: _Sym, o: _Order, events: list[VenueEvent]) -> None:
        st.orders.pop(o.order_id, None)
        qty = round(o.qty - o.executed_qty, st.qty_decimals)
        if o.reduce_only:
            qty = min(qty, self._closable(st, o.side))
            if qty <= 0.0:
                self._expire_order(st, o, events)
                self._rewatch(st)
                return
        self._execute(st, o, qty, o.price, self.maker_fee_bps, events)
        self._rewatch(st)

    def _expire_order(self, st: _Sym, o: _Order, events: list[VenueEvent]) -> None:
        st.orders.pop(o.order_id, None)
        o.status = "EXPIRED"
        o.update_ms = self._now_ms()
        self._retire_order(o)
        if self._user_on():
            events.append(self._order_event(o, "EXPIRED", 0.0, 0.0, 0.0, 0.0))

    def _after_position_change(self, st: _Sym, events: list[VenueEvent]) -> None:
        """Binance knocks out reduce-only orders that can no longer reduce and closePosition
        stops whose position is gone."""
        changed = False
        for o in list(st.orders.values()):
            if o.reduce_only and self._closable(st, o.side) <= 0.0:
                self._expire_order(st, o, events)
                changed = True
        if st.pos == 0.0:
            for al in list(st.algos.values()):
                if al.close_position:
                    self._finish_algo(st, al, "EXPIRED", events)
                    changed = True
        if changed:
            self._rewatch(st)

    def _retire_order(self, o: _Order) -> None:
        self._closed_orders.append(o.order_id)
        while len(self._closed_orders) > self.max_closed:
            old = self._orders.pop(self._closed_orders.popleft(), None)
            if old is not None and self._order_cids.get(old.client_order_id) == old.order_id:
                del self._order_cids[old.client_order_id]

    def _retire_algo(self, al: _Algo) -> None:
        self._closed_algos.append(al.algo_id)
        while len(self._closed_algos) > self.max_closed:
            old = self._algos.pop(self._closed_algos.popleft(), None)
            if old is not None and self._algo_cids.get(old.client_algo_id) == old.algo_id:
                del self._algo_cids[old.client_algo_id]

    def _algo_event(self, al: _Algo) -> AlgoUpdate:
        return AlgoUpdate(
            al.symbol,
            al.algo_id,
            al.client_algo_id,
            al.side,
            al.status,
            al.stop_price,
            al.qty,
            al.working_type,
            al.actual_order_id,
            al.update_ms,
        )

    def _finish_algo(self, st: _Sym, al: _Algo, status: str, events: list[VenueEvent]) -> None:
        st.algos.pop(al.algo_id, None)
        al.status = status
        al.update_ms = self._now_ms()
        self._retire_algo(al)
        if self._user_on():
            events.append(self._algo_event(al))

    def _trigger(self, st: _Sym, al: _Algo, price: float, events: list[VenueEvent]) -> None:
        """A stop's condition is met: it becomes a reduce-only market order."""
        st.algos.pop(al.algo_id, None)
        qty = self._closable(st, al.side)
        if not al.close_position:
            qty = min(qty, al.qty)
        now = self._now_ms()
        al.trigger_ms = now
        if qty <= 0.0:
            # Nothing to reduce: Binance rejects the reduce-only child / expires closePosition.
            self._finish_algo(st, al, "EXPIRED" if al.close_position else "REJECTED", events)
            self._rewatch(st)
            return
        slip = self.slippage_bps / 10_000.0
        fill_px = price * (1.0 + slip) if al.side == "BUY" else price * (1.0 - slip)
        child = _Order(
            order_id=self._new_order_id(),
            client_order_id=f"algo-{al.algo_id}",
            symbol=st.symbol,
            side=al.side,
            type="MARKET",
            price=0.0,
            qty=qty,
            status="NEW",
            reduce_only=True,
            tif="GTC",
            create_ms=now,
            update_ms=now,
        )
        self._orders[child.order_id] = child
        self._order_cids[child.client_order_id] = child.order_id
        al.status = "TRIGGERED"
        al.actual_order_id = child.order_id
        al.update_ms = now
        if self._user_on():
            events.append(self._algo_event(al))
            events.append(self._order_event(child, "NEW", 0.0, 0.0, 0.0, 0.0))
        self._execute(st, child, qty, fill_px, self.fee_bps, events)
        self._finish_algo(st, al, "FINISHED", events)
        self._rewatch(st)

    # ================================================================== account (§1.2)

    def _position_dict(self, st: _Sym) -> dict[str, Any]:
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
            raise _reject(-4028, f"leverage must be an int, got {leverage!r}")
        if not 1 <= leverage <= MAX_LEVERAGE:
            raise _reject(-4028, f"{symbol}: leverage {leverage} not within 1..{MAX_LEVERAGE}")
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

    # ================================================================== regular orders (§1.3)

    def _validate_common(self, side: str, client_id: str) -> None:
        if side not in ("BUY", "SELL"):
            raise _reject(-1117, f"side must be BUY or SELL, got {side!r}")
        if not isinstance(client_id, str) or not _CLIENT_ID_RE.match(client_id):
            raise _reject(-4015, f"client id {client_id!r} must match ^[.A-Z:/a-z0-9_-]{{1,36}}$")

    def _margin_check(self, st: _Sym, side: str, qty: float, price: float) -> None:
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

    def place_limit_postonly(
        self,
        *,
        symbol: str,
        side: str,
        qty: float,
        price: float,
        tif: str,
        reduce_only: bool,
        client_order_id: str,
    ) -> dict[str, Any]:
        plan = self._begin("place_limit_postonly")
        events: list[VenueEvent] = []
        with self._lock:
            oid = self._order_cids.get(client_order_id)
            if oid is not None:
                result = self._orders[oid].to_dict()
            else:
                result = self._new_limit(
                    symbol, side, qty, price, tif, reduce_only, client_order_id, events
                )
        self._dispatch(events)
        self._end(plan)
        return result

    def _new_limit(
        self,
        symbol: str,
        side: str,
        qty: float,
        price: float,
        tif: str,
        reduce_only: bool,
        cid: str,
        events: list[VenueEvent],
    ) -> dict[str, Any]:
        self._validate_common(side, cid)
        if tif not in _TIFS:
            raise _reject(-1115, f"tif must be one of {', '.join(_TIFS)}, got {tif!r}")
        st = self._sym(symbol)
        f = self._filters(st, st.last if st.last is not None else float(price))
        q, p = f.check_order(qty=float(qty), price=float(price), reduce_only=bool(reduce_only))
        assert p is not None
        if reduce_only and self._closable(st, side) <= 0.0:
            raise _reject(-2022, f"{symbol}: no {('SHORT' if side == 'BUY' else 'LONG')} to reduce")
        ref = st.last
        crosses = ref is not None and (p >= ref if side == "BUY" else p <= ref)
        if crosses and tif == "GTX":
            raise WouldTakeLiquidity(
                -5022,
                f"{BINANCE_MESSAGES[-5022]} {symbol} {side} {p} vs last {ref}",
            )
        if not reduce_only:
            self._margin_check(st, side, q, p)
        now = self._now_ms()
        o = _Order(
            order_id=self._new_order_id(),
            client_order_id=cid,
            symbol=symbol,
            side=side,
            type="LIMIT",
            price=p,
            qty=q,
            status="NEW",
            reduce_only=bool(reduce_only),
            tif=tif,
            create_ms=now,
            update_ms=now,
        )
        self._orders[o.order_id] = o
        self._order_cids[cid] = o.order_id
        if self._user_on():
            events.append(self._order_event(o, "NEW", 0.0, 0.0, 0.0, 0.0))
        if crosses:
            assert ref is not None
            fill_q = min(q, self._closable(st, side)) if reduce_only else q
            self._execute(st, o, fill_q, ref, self.fee_bps, events)
        elif tif in ("IOC", "FOK"):
            self._expire_order(st, o, events)
        else:
            st.orders[o.order_id] = o
            self._rewatch(st)
        return o.to_dict()

    def place_market(
        self, *, symbol: str, side: str, qty: float, reduce_only: bool, client_order_id: str
    ) -> dict[str, Any]:
        plan = self._begin("place_market")
        events: list[VenueEvent] = []
        with self._lock:
            oid = self._order_cids.get(client_order_id)
            if oid is not None:
                result = self._orders[oid].to_dict()
            else:
                result = self._new_market(
                    symbol, side, qty, bool(reduce_only), client_order_id, events
                )
        self._dispatch(events)
        self._end(plan)
        return result

    def _new_market(
        self, symbol: str, side: str, qty: float, reduce_only: bool, cid: str, events: list[Any]
    ) -> dict[str, Any]:
        self._validate_common(side, cid)
        st = self._sym(symbol)
        ref = st.last
        if ref is None:
            raise _reject(-2010, f"{symbol}: no market price yet (feed a bar or set a price first)")
        f = self._filters(st, ref)
        q, _ = f.check_order(qty=float(qty), price=None, reduce_only=reduce_only, ref_price=ref)
        if reduce_only:
            closable = self._closable(st, side)
            if closable <= 0.0:
                raise _reject(-2022, f"{symbol}: no position that a {side} can reduce")
            q = min(q, closable)
        else:
            self._margin_check(st, side, q, ref)
        slip = self.slippage_bps / 10_000.0
        px = ref * (1.0 + slip) if side == "BUY" else ref * (1.0 - slip)
        now = self._now_ms()
        o = _Order(
            order_id=self._new_order_id(),
            client_order_id=cid,
            symbol=symbol,
            side=side,
            type="MARKET",
            price=0.0,
            qty=q,
            status="NEW",
            reduce_only=reduce_only,
            tif="GTC",
            create_ms=now,
            update_ms=now,
        )
        self._orders[o.order_id] = o
        self._order_cids[cid] = o.order_id
        if self._user_on():
            events.append(self._order_event(o, "NEW", 0.0, 0.0, 0.0, 0.0))
        self._execute(st, o, q, px, self.fee_bps, events)
        self._rewatch(st)
        return o.to_dict()

    def _find_order(self, symbol: str, order_id: str | None, cid: str | None) -> _Order | None:
        o: _Order | None = None
        if order_id is not None:
            o = self._orders.get(str(order_id))
        if o is None and cid is not None:
            oid = self._order_cids.get(cid)
            o = self._orders.get(oid) if oid is not None else None
        if o is not None and o.symbol != symbol:
            return None
        return o

    def cancel_order(
        self, *, symbol: str, order_id: str | None, client_order_id: str | None
    ) -> dict[str, Any]:
        """Cancel; an unknown/filled/cancelled order is success: its status or NOT_FOUND."""
        plan = self._begin("cancel_order")
        if order_id is None and client_order_id is None:
            raise _reject(-1102, "send order_id or client_order_id")
        events: list[VenueEvent] = []
        with self._lock:
            o = self._find_order(symbol, order_id, client_order_id)
            if o is None:
                result: dict[str, Any] = {
                    "status": "NOT_FOUND",
                    "order_id": order_id,
                    "client_order_id": client_order_id,
                    "symbol": symbol,
                    "canceled_now": False,
                }
            elif o.status in _OPEN:
                st = self._syms[symbol]
                st.orders.pop(o.order_id, None)
                o.status = "CANCELED"
                o.update_ms = self._now_ms()
                self._retire_order(o)
                self._rewatch(st)
                if self._user_on():
                    events.append(self._order_event(o, "CANCELED", 0.0, 0.0, 0.0, 0.0))
                result = {**o.to_dict(), "canceled_now": True}
            else:
                result = {**o.to_dict(), "canceled_now": False}
        self._dispatch(events)
        self._end(plan)
        return result

    def get_open_orders(self, symbol: str) -> list[dict[str, Any]]:
        plan = self._begin("get_open_orders")
        with self._lock:
            st = self._syms.get(symbol)
            out = [o.to_dict() for o in st.orders.values()] if st is not None else []
        self._end(plan)
        return out

    def get_order(
        self, *, symbol: str, order_id: str | None = None, client_order_id: str | None = None
    ) -> dict[str, Any] | None:
        plan = self._begin("get_order")
        with self._lock:
            o = self._find_order(symbol, order_id, client_order_id)
            out = o.to_dict() if o is not None else None
        self._end(plan)
        return out

    # ================================================================== algo orders (§1.4)

    def place_algo_stop(
        self,
        *,
        symbol: str,
        side: str,
        qty: float,
        stop_price: float,
        reduce_only: bool,
        client_algo_id: str,
        working_type: str,
        close_position: bool = False,
    ) -> dict[str, Any]:
        """Algo STOP_MARKET. Atlas stops must be reduce_only or close_position (not both: -1106);
        with close_position the qty is ignored (the whole position closes)."""
        plan = self._begin("place_algo_stop")
        events: list[VenueEvent] = []
        with self._lock:
            aid = self._algo_cids.get(client_algo_id)
            if aid is not None:
                result = self._algos[aid].to_dict()
            else:
                result = self._new_algo(
                    symbol,
                    side,
                    qty,
                    stop_price,
                    bool(reduce_only),
                    client_algo_id,
                    working_type,
                    bool(close_position),
                    events,
                    invisible=plan is not None and plan.kind == "invisible_algo",
                )
        self._dispatch(events)
        self._end(plan)
        return result

    def _new_algo(
        self,
        symbol: str,
        side: str,
        qty: float,
        stop_price: float,
        reduce_only: bool,
        cid: str,
        working_type: str,
        close_position: bool,
        events: list[VenueEvent],
        *,
        invisible: bool,
    ) -> dict[str, Any]:
        self._validate_common(side, cid)
        if working_type not in ("MARK_PRICE", "CONTRACT_PRICE"):
            raise _reject(
                -1102, f"working_type must be MARK_PRICE or CONTRACT_PRICE, got {working_type!r}"
            )
        if close_position and reduce_only:
            raise _reject(-1106, "reduceOnly cannot be sent with closePosition=true")
        if not close_position and not reduce_only:
            raise _reject(
                -2010, "Atlas stops must be reduce_only=True or close_position=True (never opening)"
            )
        st = self._sym(symbol)
        f = self._filters(st, st.last if st.last is not None else float(stop_price))
        sp = f.check_price(float(stop_price), what="stop price")
        q = 0.0 if close_position else f.check_qty(float(qty))
        ref = st.mark if working_type == "MARK_PRICE" else st.last
        if ref is not None and (sp >= ref if side == "SELL" else sp <= ref):
            raise _reject(-2021, f"{symbol} {side} stop {sp} vs {working_type.lower()} {ref}")
        now = self._now_ms()
        al = _Algo(
            algo_id=str(self._next_algo_id),
            client_algo_id=cid,
            symbol=symbol,
            side=side,
            stop_price=sp,
            qty=q,
            working_type=working_type,
            reduce_only=reduce_only,
            close_position=close_position,
            status="NEW",
            create_ms=now,
            update_ms=now,
        )
        self._next_algo_id += 1
        if invisible:
            # The exchange acknowledged and then lost it: nothing is recorded.
            return al.to_dict()
        al.visible_at = self.faults.lag_visible_at()
        self._algos[al.algo_id] = al
        self._algo_cids[cid] = al.algo_id
        st.algos[al.algo_id] = al
        self._rewatch(st)
        if self._user_on():
            events.append(self._algo_event(al))
        return al.to_dict()

    def _find_algo(self, symbol: str, algo_id: str | None, cid: str | None) -> _Algo | None:
        al: _Algo | None = None
        if algo_id is not None:
            al = self._algos.get(str(algo_id))
        if al is None and cid is not None:
            aid = self._algo_cids.get(cid)
            al = self._algos.get(aid) if aid is not None else None
        if al is not None and al.symbol != symbol:
            return None
        return al

    def cancel_algo(
        self, *, symbol: str, algo_id: str | None, client_algo_id: str | None
    ) -> dict[str, Any]:
        """Cancel; an unknown/triggered/cancelled algo is success: its status or NOT_FOUND."""
        plan = self._begin("cancel_algo")
        if algo_id is None and client_algo_id is None:
            raise _reject(-1102, "send algo_id or client_algo_id")
        events: list[VenueEvent] = []
        with self._lock:
            al = self._find_algo(symbol, algo_id, client_algo_id)
            if al is None:
                result: dict[str, Any] = {
                    "status": "NOT_FOUND",
                    "algo_id": algo_id,
                    "client_algo_id": client_algo_id,
                    "symbol": symbol,
                    "canceled_now": False,
                }
            elif al.status == "NEW":
                st = self._syms[symbol]
                self._finish_algo(st, al, "CANCELED", events)
                self._rewatch(st)
                result = {**al.to_dict(), "canceled_now": True}
            else:
                result = {**al.to_dict(), "canceled_now": False}
        self._dispatch(events)
        self._end(plan)
        return result

    def get_open_algo_orders(self, symbol: str) -> list[dict[str, Any]]:
        plan = self._begin("get_open_algo_orders")
        with self._lock:
            st = self._syms.get(symbol)
            vis = self.faults.is_visible
            out = (
                [a.to_dict() for a in st.algos.values() if vis(a.visible_at)]
                if st is not None
                else []
            )
        self._end(plan)
        return out

    def get_algo_order(
        self, *, symbol: str, algo_id: str | None = None, client_algo_id: str | None = None
    ) -> dict[str, Any] | None:
        plan = self._begin("get_algo_order")
        with self._lock:
            al = self._find_algo(symbol, algo_id, client_algo_id)
            out = al.to_dict() if al is not None and self.faults.is_visible(al.visible_at) else None
        self._end(plan)
        return out

    # ================================================================== recovery (§1.5)

    def recover_protection(
        self, symbol: str, desired_sl: StopSpec | Mapping[str, Any]
    ) -> dict[str, Any]:
        """CREATED / REPLACED (new stop first, then cancel the old) / CONFIRMED (no write)."""
        spec = StopSpec.coerce(desired_sl)
        if not spec.client_algo_id:
            raise ValueError(f"{symbol}: desired_sl needs a client_algo_id")
        opens = self.get_open_algo_orders(symbol)
        existing = next((a for a in opens if a["client_algo_id"] == spec.client_algo_id), None)
        if existing is None:
            existing = next(
                (
                    a
                    for a in opens
                    if a["side"] == spec.side and (a["reduce_only"] or a["close_position"])
                ),
                None,
            )
        if existing is None:
            algo = self._place_spec(symbol, spec, self._free_algo_id(spec.client_algo_id))
            return {"action": "CREATED", "algo": algo}
        f = self.get_filters(symbol)
        if not stop_deviates(existing, spec, step_size=f.step_size, tick_size=f.tick_size):
            return {"action": "CONFIRMED", "algo": existing}
        algo = self._place_spec(symbol, spec, self._free_algo_id(spec.client_algo_id))
        self.cancel_algo(
            symbol=symbol, algo_id=existing["algo_id"], client_algo_id=existing["client_algo_id"]
        )
        return {"action": "REPLACED", "algo": algo, "replaced": existing}

    def _free_algo_id(self, wanted: str) -> str:
        with self._lock:
            if wanted not in self._algo_cids:
                return wanted
            n = 2
            while True:
                cid = replacement_client_id(wanted, n)
                if cid not in self._algo_cids:
                    return cid
                n += 1

    def _place_spec(self, symbol: str, spec: StopSpec, cid: str) -> dict[str, Any]:
        return self.place_algo_stop(
            symbol=symbol,
            side=spec.side,
            qty=spec.qty,
            stop_price=spec.stop_price,
            reduce_only=True,
            client_algo_id=cid,
            working_type=spec.working_type,
        )

    # ================================================================== persistence

    def snapshot(self) -> dict[str, Any]:
        """The whole book as a plain (msgpack/JSON-able) dict; see `from_snapshot`."""
        with self._lock:
            syms = {}
            for s, st in self._syms.items():
                syms[s] = {
                    "filters": st.filters.to_dict() if st.filters is not None else None,
                    "filters_explicit": st.filters_explicit,
                    "last": st.last,
                    "mark": st.mark,
                    "mark_explicit": st.mark_explicit,
                    "pos": st.pos,
                    "entry": st.entry,
                    "leverage": st.leverage,
                    "realized": st.realized,
                    "traded": st.traded,
                    "funding": [[t, r] for t, r in st.funding],
                    "funding_idx": st.funding_idx,
                    "funding_rate": st.funding_rate,
                    "open_interest": st.open_interest,
                    "bars": [dict(b) for b in list(st.bars)[-200:]],
                }
            return {
                "version": SNAPSHOT_VERSION,
                "asset": self.asset,
                "wallet": self._wallet,
                "fees_paid": self._fees_paid,
                "funding_paid": self._funding_paid,
                "sim_ms": self._sim_ms,
                "next_order_id": self._next_order_id,
                "next_algo_id": self._next_algo_id,
                "fee_bps": self.fee_bps,
                "maker_fee_bps": self.maker_fee_bps,
                "slippage_bps": self.slippage_bps,
                "symbols": syms,
                "orders": [o.to_dict() for o in self._orders.values()],
                "algos": [a.to_dict() for a in self._algos.values()],
            }

    @classmethod
    def from_snapshot(
        cls,
        d: Mapping[str, Any],
        *,
        clock: Callable[[], float] | None = None,
        seed: int = 0,
        sleep: Callable[[float], None] = time.sleep,
        fee_bps: float | None = None,
        slippage_bps: float | None = None,
        maker_fee_bps: float | None = None,
    ) -> SimVenue:
        """Rebuild a venue from `snapshot()`. Fees/slippage come from the snapshot unless given
        (a changed config applies from the resume on)."""
        if d.get("version") != SNAPSHOT_VERSION:
            raise ValueError(
                f"SimVenue snapshot version {d.get('version')!r} unsupported"
                f" (expected {SNAPSHOT_VERSION})"
            )
        try:
            v = cls(
                clock=clock,
                fee_bps=float(d["fee_bps"] if fee_bps is None else fee_bps),
                slippage_bps=float(d["slippage_bps"] if slippage_bps is None else slippage_bps),
                maker_fee_bps=float(d["maker_fee_bps"] if maker_fee_bps is None else maker_fee_bps),
                seed=seed,
                starting_balance=float(d["wallet"]),
                asset=str(d["asset"]),
                sleep=sleep,
            )
            v._fees_paid = float(d["fees_paid"])
            v._funding_paid = float(d["funding_paid"])
            v._sim_ms = int(d["sim_ms"])
            v._next_order_id = int(d["next_order_id"])
            v._next_algo_id = int(d["next_algo_id"])
            for s, sd in d["symbols"].items():
                st = v._sym(s)
                if sd["filters"] is not None:
                    st.set_filters(SymbolFilters.from_dict(sd["filters"]))
                st.filters_explicit = bool(sd["filters_explicit"])
                st.last = sd["last"]
                st.mark = sd["mark"]
                st.mark_explicit = bool(sd["mark_explicit"])
                st.pos = float(sd["pos"])
                st.entry = float(sd["entry"])
                st.leverage = int(sd["leverage"])
                st.realized = float(sd["realized"])
                st.traded = bool(sd["traded"])
                st.funding = [(int(t), float(r)) for t, r in sd["funding"]]
                st.funding_idx = int(sd["funding_idx"])
                st.funding_rate = float(sd["funding_rate"])
                st.open_interest = float(sd["open_interest"])
                st.bars.extend(sd.get("bars") or [])
                v._refresh_funding(st)
            for od in d["orders"]:
                o = _Order.from_dict(od)
                v._orders[o.order_id] = o
                v._order_cids[o.client_order_id] = o.order_id
                if o.status in _OPEN:
                    v._sym(o.symbol).orders[o.order_id] = o
                else:
                    v._closed_orders.append(o.order_id)
            for ad in d["algos"]:
                al = _Algo.from_dict(ad)
                v._algos[al.algo_id] = al
                v._algo_cids[al.client_algo_id] = al.algo_id
                if al.status == "NEW":
                    v._sym(al.symbol).algos[al.algo_id] = al
                else:
                    v._closed_algos.append(al.algo_id)
        except KeyError as e:
            raise ValueError(f"SimVenue snapshot is missing key {e.args[0]!r}") from None
        for st in v._syms.values():
            v._rewatch(st)
        return v
