"""A tiny deterministic fill model for pure-domain replays (test code, not product code).

`FillModel` plays the venue for the domain's commands, bar by bar:
- market orders fill at the next bar's open;
- a protective stop triggers when the bar's range reaches it and fills at the stop price (or at
  the open when the bar gaps through it); the ALGO_UPDATE naming the child order comes first
  (or after the fill, with ``fill_before_trigger=True``, to exercise the parking path);
- a post-only limit fills at its price only when the bar trades THROUGH it (strictly), and is
  rejected at placement (-5022) when it would take;
- a stop that would trigger at once is rejected (-2021);
- reduce-only orders never exceed the position (and expire when there is none).
Within a bar: market orders, then stops, then limits; orders placed while the bar is being
processed only work from the next bar. `replay()` drives the domain over a list of bars.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlas_actors.domain import core
from atlas_actors.domain.commands import (
    CancelAlgo,
    CancelOrder,
    Command,
    EmergencyFlatten,
    PlaceAlgoStop,
    PlaceLimit,
    PlaceMarket,
)
from atlas_actors.domain.core import MarketCtx, SymbolFilters
from atlas_actors.domain.events import AlgoUpdate, OrderUpdate
from atlas_actors.domain.params import Params, default_params
from atlas_actors.domain.records import SymbolState

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "atlas_actors" / "data" / "BTCPERP-1m-2022-01.csv.gz"
SHARED = Path("/work/shared/data/BTCPERP-1m-2022-01.csv")
BTC_FILTERS = SymbolFilters(tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=5.0)


def load_btc_bars(limit: int | None = None) -> list[dict[str, Any]]:
    """The bundled BTC 1m month (replay loader when available, else the csv directly)."""
    try:
        from atlas_actors.venues.replay import load_klines

        if BUNDLED.exists():
            bars = list(load_klines(BUNDLED))
            return bars[:limit] if limit else bars
    except ImportError:
        pass
    path = BUNDLED if BUNDLED.exists() else SHARED
    opener = gzip.open if path.suffix == ".gz" else open
    out: list[dict[str, Any]] = []
    with opener(path, "rt") as fh:  # type: ignore[operator]
        for row in csv.DictReader(fh):
            out.append(
                {
                    "open_time": int(row["open_time"]),
                    "open": float(row["open"]),
                    "high": float(row["high"]),
                    "low": float(row["low"]),
                    "close": float(row["close"]),
                    "volume": float(row["volume"] or 0.0),
                    "close_time": int(row["close_time"]),
                }
            )
            if limit and len(out) >= limit:
                break
    return out


@dataclass
class FillModel:
    symbol: str
    equity: float = 10_000.0
    leverage: float = 10.0
    fill_before_trigger: bool = False
    partial_fills: bool = False
    pos_qty: float = 0.0  # signed
    pos_entry: float = 0.0
    last_price: float = 0.0
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    markets: list[dict[str, Any]] = field(default_factory=list)
    stops: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_id: int = 1
    now: int = 0
    fills: int = 0

    # ---------------------------------------------------------------- helpers
    def _oid(self) -> str:
        self.next_id += 1
        return str(self.next_id)

    def _execute(self, side: str, qty: float, price: float, reduce_only: bool) -> float:
        sign = 1.0 if side == "BUY" else -1.0
        if reduce_only:
            if self.pos_qty == 0 or (self.pos_qty > 0) == (sign > 0):
                return 0.0
            qty = min(qty, abs(self.pos_qty))
        if qty <= 0:
            return 0.0
        new = self.pos_qty + sign * qty
        if self.pos_qty == 0 or (self.pos_qty > 0) == (sign > 0):
            self.pos_entry = (abs(self.pos_qty) * self.pos_entry + qty * price) / abs(new)
        else:
            closed = min(qty, abs(self.pos_qty))
            self.equity += (price - self.pos_entry) * closed * (1 if self.pos_qty > 0 else -1)
            if abs(new) > 1e-12 and (new > 0) != (self.pos_qty > 0):
                self.pos_entry = price
        self.last_price = price  # the market traded here
        self.pos_qty = round(new, 9)
        if abs(self.pos_qty) < 1e-12:
            self.pos_qty = 0.0
        self.fills += 1
        return qty

    def _order_update(
        self, o: dict[str, Any], status: str, qty: float, price: float
    ) -> OrderUpdate:
        return OrderUpdate(
            symbol=self.symbol,
            order_id=o["oid"],
            client_order_id=o["cid"],
            side=o["side"],
            order_type=o["type"],
            status=status,
            execution_type="TRADE" if qty > 0 else status,
            price=o.get("price", 0.0),
            qty=o["qty"],
            executed_qty=qty,
            avg_price=price,
            last_fill_qty=qty,
            last_fill_price=price,
            commission=0.0,
            realized_pnl=0.0,
            reduce_only=o["reduce_only"],
            event_time=self.now * 1000,
        )

    def _algo_update(self, a: dict[str, Any], status: str, child: str | None) -> AlgoUpdate:
        return AlgoUpdate(
            symbol=self.symbol,
            algo_id=a["algo_id"],
            client_algo_id=a["cid"],
            side=a["side"],
            status=status,
            stop_price=a["stop_price"],
            qty=a["qty"],
            working_type="MARK_PRICE",
            order_id=child,
            event_time=self.now * 1000,
        )

    # ---------------------------------------------------------------- commands
    def apply(self, commands: Iterable[Command]) -> list[tuple[str, Any]]:
        """Accept the domain's commands; returns events to feed back at once."""
        events: list[tuple[str, Any]] = []
        for cmd in commands:
            if isinstance(cmd, PlaceLimit):
                takes = (cmd.side == "BUY" and cmd.price > self.last_price) or (
                    cmd.side == "SELL" and cmd.price < self.last_price
                )
                if takes:
                    events.append(("rejected", (cmd.role, cmd.client_order_id, -5022, "post only")))
                    continue
                self.orders[cmd.client_order_id] = {
                    "oid": self._oid(),
                    "cid": cmd.client_order_id,
                    "side": cmd.side,
                    "type": "LIMIT",
                    "qty": cmd.qty,
                    "price": cmd.price,
                    "reduce_only": cmd.reduce_only,
                }
            elif isinstance(cmd, PlaceMarket):
                self.markets.append(
                    {
                        "oid": self._oid(),
                        "cid": cmd.client_order_id,
                        "side": cmd.side,
                        "type": "MARKET",
                        "qty": cmd.qty,
                        "reduce_only": cmd.reduce_only,
                        "role": cmd.role,
                    }
                )
            elif isinstance(cmd, PlaceAlgoStop):
                fires = (cmd.side == "SELL" and cmd.stop_price >= self.last_price) or (
                    cmd.side == "BUY" and cmd.stop_price <= self.last_price
                )
                if fires:
                    events.append(("rejected", ("sl", cmd.client_algo_id, -2021, "would trigger")))
                    continue
                a = {
                    "algo_id": "a" + self._oid(),
                    "cid": cmd.client_algo_id,
                    "side": cmd.side,
                    "qty": cmd.qty,
                    "stop_price": cmd.stop_price,
                }
                self.stops[cmd.client_algo_id] = a
                events.append(("algo", self._algo_update(a, "NEW", None)))
                if cmd.replaces and cmd.replaces in self.stops:
                    old = self.stops.pop(cmd.replaces)
                    events.append(("algo", self._algo_update(old, "CANCELED", None)))
            elif isinstance(cmd, CancelOrder):
                o = self.orders.pop(cmd.client_order_id or "", None)
                if o is not None:
                    events.append(("order", self._order_update(o, "CANCELED", 0.0, 0.0)))
            elif isinstance(cmd, CancelAlgo):
                a = self.stops.pop(cmd.client_algo_id or "", None)
                if a is not None:
                    events.append(("algo", self._algo_update(a, "CANCELED", None)))
            elif isinstance(cmd, EmergencyFlatten):
                qty = abs(self.pos_qty)
                side = "SELL" if self.pos_qty > 0 else "BUY"
                if qty > 0:
                    self._execute(side, qty, self.last_price, True)
                for cid in list(self.orders):
                    if self.orders[cid]["reduce_only"]:
                        del self.orders[cid]
                self.stops.clear()
                events.append(
                    ("emergency", (cmd.reason, qty, self.last_price, [], [cmd.client_order_id]))
                )
        return events

    # ---------------------------------------------------------------- a bar
    def process_bar(
        self, bar: dict[str, Any], sink: Callable[[tuple[str, Any]], None] | None = None
    ) -> list[tuple[str, Any]]:
        """Match the bar against working orders. Each event goes to `sink` as it happens
        (so the domain reacts mid-bar, e.g. places the stop right after an entry fill);
        without a sink the events are returned."""
        o, h, lo = float(bar["open"]), float(bar["high"]), float(bar["low"])
        self.now = int(bar["open_time"]) // 1000 + 30
        out: list[tuple[str, Any]] = []
        emit = sink or out.append
        self.last_price = o
        markets, self.markets = self.markets, []
        for m in markets:
            q = self._execute(m["side"], m["qty"], o, m["reduce_only"])
            if q > 0:
                emit(("order", self._order_update(m, "FILLED", q, o)))
            else:
                emit(("order", self._order_update(m, "EXPIRED", 0.0, 0.0)))
        for cid in list(self.stops):
            a = self.stops.get(cid)
            if a is None:
                continue
            sp = a["stop_price"]
            hit = (a["side"] == "SELL" and lo <= sp) or (a["side"] == "BUY" and h >= sp)
            if not hit:
                continue
            del self.stops[cid]
            px = min(o, sp) if a["side"] == "SELL" else max(o, sp)
            child = {
                "oid": "c" + self._oid(),
                "cid": "autoclose-" + cid,
                "side": a["side"],
                "type": "MARKET",
                "qty": a["qty"],
                "reduce_only": True,
            }
            q = self._execute(a["side"], a["qty"], px, True)
            trig = ("algo", self._algo_update(a, "TRIGGERED", child["oid"]))
            fill = ("order", self._order_update(child, "FILLED" if q > 0 else "EXPIRED", q, px))
            for ev in [fill, trig] if self.fill_before_trigger else [trig, fill]:
                emit(ev)
        for cid in list(self.orders):
            od = self.orders.get(cid)
            if od is None:
                continue
            p = od["price"]
            through = (od["side"] == "BUY" and lo < p) or (od["side"] == "SELL" and h > p)
            if not through:
                continue
            left = od["qty"] - od.get("done", 0.0)
            part = round(left / 2, 3) if self.partial_fills and not od.get("done") else 0.0
            if 0 < part < left:  # first touch fills half, the rest on a later bar
                q = self._execute(od["side"], part, p, od["reduce_only"])
                if q > 0:
                    od["done"] = q
                    emit(("order", self._order_update(od, "PARTIALLY_FILLED", q, p)))
                    continue
            del self.orders[cid]
            q = self._execute(od["side"], left, p, od["reduce_only"])
            if q > 0:
                emit(("order", self._order_update(od, "FILLED", q, p)))
            else:
                emit(("order", self._order_update(od, "EXPIRED", 0.0, 0.0)))
        self.last_price = float(bar["close"])
        return out

    def margin_used(self) -> float:
        return abs(self.pos_qty) * self.last_price / self.leverage


@dataclass
class Replay:
    state: SymbolState
    records: list[dict[str, Any]]
    commands: list[Command]
    fm: FillModel
    states: list[SymbolState]


def feed(
    state: SymbolState,
    ev: tuple[str, Any],
    ctx: MarketCtx,
    params: Params,
    now: int,
) -> core.Step:
    kind, obj = ev
    if kind == "order":
        return core.on_order_update(state, obj, ctx, params, now)
    if kind == "algo":
        return core.on_algo_update(state, obj, ctx, params, now)
    if kind == "rejected":
        role, cid, code, reason = obj
        return core.on_order_rejected(state, role, cid, code, reason, ctx, params, now)
    reason, qty, price, oids, cids = obj
    return core.on_emergency_flat(
        state, reason, ctx, params, now, qty=qty, price=price, order_ids=oids, client_ids=cids
    )


Observer = Callable[[str, SymbolState, Any, MarketCtx, core.Step, int], None]


def replay(
    bars: list[dict[str, Any]],
    params: Params | None = None,
    *,
    symbol: str = "BTCUSDC",
    filters: SymbolFilters = BTC_FILTERS,
    keep_states: bool = False,
    fill_before_trigger: bool = False,
    partial_fills: bool = False,
    check_pure: bool = False,
    ctx_overrides: dict[str, Any] | None = None,
    before_bar: Callable[[int, SymbolState, int], SymbolState] | None = None,
    ctx_for_bar: Callable[[int, MarketCtx], MarketCtx] | None = None,
    observer: Observer | None = None,
) -> Replay:
    """Drive the domain over `bars` with the fill model. Hooks (for property tests):
    `check_pure` asserts no call mutates its input state;
    `before_bar(i, state, now)` may return an altered state (e.g. a lock set from outside),
    `ctx_for_bar(i, ctx)` may alter the bar's MarketCtx, and `observer(kind, state_before,
    event, ctx, step, now)` sees every domain call ("bar" or the event kind)."""
    params = params or default_params()
    state = SymbolState.fresh(symbol)
    fm = FillModel(symbol, fill_before_trigger=fill_before_trigger, partial_fills=partial_fills)
    records: list[dict[str, Any]] = []
    commands: list[Command] = []
    states: list[SymbolState] = []
    over = ctx_overrides or {}

    ctx = MarketCtx(filters=filters, **over)

    def take(kind: str, before: SymbolState, ev: Any, step: core.Step, now: int) -> None:
        nonlocal state
        if observer is not None:
            observer(kind, before, ev, ctx, step, now)
        state = step.state
        records.extend(step.records)
        commands.extend(step.commands)
        if keep_states:
            states.append(state)

    def run_all(queue: list[tuple[str, Any]], now: int) -> None:
        while queue:
            ev = queue.pop(0)
            before = state
            snap = before.to_dict() if check_pure else None
            step = feed(before, ev, ctx, params, now)
            if snap is not None:
                assert before.to_dict() == snap, f"{ev[0]} mutated its input state"
            take(ev[0], before, ev, step, now)
            queue.extend(fm.apply(step.commands))

    def sink(ev: tuple[str, Any]) -> None:
        run_all([ev], fm.now)

    for i, bar in enumerate(bars):
        fm.process_bar(bar, sink)
        ctx = MarketCtx(
            mark_price=float(bar["close"]),
            equity=fm.equity,
            available_balance=fm.equity - fm.margin_used(),
            margin_used=fm.margin_used(),
            filters=filters,
            **over,
        )
        if ctx_for_bar is not None:
            ctx = ctx_for_bar(i, ctx)
        now = int(bar["close_time"]) // 1000 + 1
        if before_bar is not None:
            state = before_bar(i, state, now)
        before = state
        snap = before.to_dict() if check_pure else None
        step = core.on_bar(before, bar, ctx, params, now)
        if snap is not None:
            assert before.to_dict() == snap, "on_bar mutated its input state"
        take("bar", before, bar, step, now)
        run_all(fm.apply(step.commands), now)
    return Replay(state, records, commands, fm, states)


# ---------------------------------------------------------------- tests of the model itself


def _bar(t: int, o: float, h: float, lo: float, c: float) -> dict[str, Any]:
    return {
        "open_time": t * 60_000,
        "open": o,
        "high": h,
        "low": lo,
        "close": c,
        "volume": 1.0,
        "close_time": t * 60_000 + 59_999,
    }


def test_limit_fills_only_when_traded_through() -> None:
    fm = FillModel("X")
    fm.last_price = 100.0
    fm.apply([PlaceLimit("X", "BUY", 1.0, 99.0, False, "c1", "entry")])
    assert fm.process_bar(_bar(1, 100, 101, 99.0, 100)) == []  # touched, not through
    ev = fm.process_bar(_bar(2, 100, 101, 98.9, 100))
    assert [e[1].status for e in ev] == ["FILLED"] and fm.pos_qty == 1.0


def test_post_only_that_would_take_is_rejected() -> None:
    fm = FillModel("X")
    fm.last_price = 100.0
    ev = fm.apply([PlaceLimit("X", "BUY", 1.0, 100.5, False, "c1", "entry")])
    assert ev == [("rejected", ("entry", "c1", -5022, "post only"))]


def test_stop_triggers_with_child_order_then_fill() -> None:
    fm = FillModel("X")
    fm.last_price = 100.0
    fm.apply([PlaceMarket("X", "BUY", 2.0, False, "m1", "entry")])
    fm.process_bar(_bar(1, 100, 100, 100, 100))
    fm.apply([PlaceAlgoStop("X", "SELL", 2.0, 95.0, "MARK_PRICE", "s1")])
    ev = fm.process_bar(_bar(2, 94, 96, 93, 95))  # gaps through the stop: fills at the open
    assert ev[0][0] == "algo" and ev[0][1].status == "TRIGGERED"
    assert ev[1][1].order_id == ev[0][1].order_id and ev[1][1].last_fill_price == 94
    assert fm.pos_qty == 0.0 and fm.equity == 10_000.0 - 12.0


def test_reduce_only_never_flips() -> None:
    fm = FillModel("X")
    fm.last_price = 100.0
    fm.apply([PlaceMarket("X", "SELL", 1.0, True, "m1", "exit")])
    ev = fm.process_bar(_bar(1, 100, 100, 100, 100))
    assert ev[0][1].status == "EXPIRED" and fm.pos_qty == 0.0
