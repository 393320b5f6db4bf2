"""SymbolEngine: one symbol's imperative shell around the pure domain.

It feeds events into `atlas_actors.domain.core`, persists the returned state
(write-ahead: the shard holds every client id before the order is sent), applies the
returned commands through an `ExchangeAdapter`-shaped port, and writes §8 records.
The same class runs inside `SymbolActor` (port = the OrderGateway's lanes, visibility =
the Sentinel) and, without actors, in the backtest (port = SimVenue, visibility checked
synchronously).

Unknown outcomes are resolved by querying the venue by client id; nothing is ever
resent blindly. Fills are de-duplicated by cumulative executed quantity per order, so a
fill seen both on the stream and in a REST reply counts once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from atlas_actors.domain import core
from atlas_actors.domain.commands import (
    CancelAlgo,
    CancelOrder,
    Command,
    EmergencyFlatten,
    LogRecord,
    PlaceAlgoStop,
    PlaceLimit,
    PlaceMarket,
    SetCooldown,
    risk_record,
)
from atlas_actors.domain.events import AlgoUpdate, OrderUpdate
from atlas_actors.domain.records import SymbolState, state_to_dict_reusing
from atlas_actors.domain.stops import StopSpec, closing_side
from atlas_actors.store import StoreError
from atlas_actors.venues.base import (
    OrderRejected,
    RateLimited,
    UnknownOutcome,
    VenueError,
    VenueUnavailable,
)

log = logging.getLogger("atlas.engine")


class VisibilityPort(Protocol):
    """Asks for a stop's visibility; the verdict comes back via engine.on_stop_visibility."""

    def request(self, symbol: str, client_algo_id: str, deadline_ms: int) -> None: ...


class AccountPort(Protocol):
    """equity / available_balance / margin_used. Return a new dict whenever a figure changes:
    while the same dict object comes back, the engine reuses its last MarketCtx."""

    def snapshot(self) -> dict[str, float]: ...


class SyncVisibility:
    """Backtest/paper-without-actors: check `get_open_algo_orders` right away (and poll
    within the deadline on a real clock when `poll` is True)."""

    def __init__(self, venue: Any, *, poll: bool = False, interval_s: float = 0.02) -> None:
        self.venue = venue
        self.poll = poll
        self.interval_s = interval_s
        self.engine: SymbolEngine | None = None

    def request(self, symbol: str, client_algo_id: str, deadline_ms: int) -> None:
        deadline = time.monotonic() + deadline_ms / 1000.0
        visible = False
        while True:
            try:
                algos = self.venue.get_open_algo_orders(symbol)
                visible = any(a.get("client_algo_id") == client_algo_id for a in algos)
            except VenueError:
                visible = False
            if visible or not self.poll or time.monotonic() >= deadline:
                break
            time.sleep(self.interval_s)
        if self.engine is not None:
            self.engine.on_stop_visibility(client_algo_id, visible)


class VenueAccount:
    """Balances read straight from the venue (SimVenue: cheap)."""

    def __init__(self, venue: Any) -> None:
        self.venue = venue

    def snapshot(self) -> dict[str, float]:
        b = self.venue.get_balances()
        return {
            "equity": float(b["total_equity"]),
            "available_balance": float(b["available_balance"]),
            "margin_used": float(b["margin_used"]),
        }


def _symbol_filters(venue: Any, symbol: str) -> core.SymbolFilters | None:
    """The symbol's exchange filters (BinanceAdapter: get_symbol_filters dict; SimVenue:
    get_filters object); None when the venue cannot tell yet."""
    getter = getattr(venue, "get_symbol_filters", None)
    try:
        if getter is not None:
            f = getter(symbol)
        elif hasattr(venue, "get_filters"):
            obj = venue.get_filters(symbol)
            f = {k: getattr(obj, k) for k in ("tick_size", "step_size", "min_qty", "min_notional")}
        else:
            return None
    except (VenueError, KeyError, ValueError):
        return None
    return core.SymbolFilters(
        tick_size=float(f["tick_size"]),
        step_size=float(f["step_size"]),
        min_qty=float(f["min_qty"]),
        min_notional=float(f["min_notional"]),
    )


FLATTEN_ATTEMPTS = 5


class FlattenFailed(RuntimeError):
    """An emergency close could not be placed after every retry: the position is still open."""


def close_at_market(
    venue: Any,
    symbol: str,
    client_order_id: str,
    *,
    fallback: dict[str, Any] | None = None,
    attempts: int = FLATTEN_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[float, dict[str, Any]]:
    """reduceOnly market close of what the venue holds for `symbol`: (qty, the order), or
    (0.0, {}) when it holds nothing. Retried (within well under a second) with the same
    client id: an unknown outcome is looked up first, and the same id cannot fill twice. The
    position is read again before each try; `fallback` stands in when it cannot be read.
    Raises FlattenFailed when every try failed."""
    last: Exception | None = None
    for attempt in range(attempts):
        if attempt:
            sleep(min(0.05 * 2 ** (attempt - 1), 0.4))
        try:
            pos = venue.get_positions().get(symbol) or {}
        except VenueError as exc:
            last = exc
            if fallback is None:
                continue
            pos = fallback
        side = str(pos.get("side", "NONE"))
        qty = abs(float(pos.get("qty") or 0.0))
        if side == "NONE" or qty <= 0:
            return 0.0, {}
        try:
            res = venue.place_market(
                symbol=symbol,
                side=closing_side(side),
                qty=qty,
                reduce_only=True,
                client_order_id=client_order_id,
            )
            return qty, res
        except UnknownOutcome as exc:
            last = exc
            try:
                found = venue.get_order(symbol=symbol, client_order_id=client_order_id)
            except VenueError:
                found = None
            if found:
                return qty, found
        except VenueError as exc:
            last = exc
        log.warning("%s: emergency close attempt %d failed: %s", symbol, attempt + 1, last)
    raise FlattenFailed(f"{symbol}: emergency close failed {attempts} times: {last}")


def _same_position(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return str(a.get("side")) == str(b.get("side")) and float(a.get("qty") or 0.0) == float(
        b.get("qty") or 0.0
    )


def _exit_side(side: str) -> str:
    return "SELL" if side == "LONG" else "BUY"


def _exited(trade: dict[str, Any]) -> bool:
    """The trade's exit fills add up to its entry quantity (float noise aside)."""
    return bool(trade["exit_qty"] >= trade["qty"] * (1.0 - 1e-9))


class _CtxCache:
    __slots__ = ("acct", "ctx")

    def __init__(self, acct: dict[str, float], ctx: core.MarketCtx) -> None:
        self.acct = acct
        self.ctx = ctx


class SymbolEngine:
    """One symbol's shell. Not thread-safe: exactly one thread (its actor) drives it."""

    def __init__(
        self,
        symbol: str,
        *,
        venue: Any,
        params: Any,
        store: Any = None,
        sink: Any = None,
        clock: Callable[[], float] = time.time,
        prefix: str = "atl",
        visibility: VisibilityPort | None = None,
        account: AccountPort | None = None,
        emergency_venue: Any = None,
        deadline_ms: int = 1000,
        flush_before_send: bool = True,
        fence: threading.Event | None = None,
    ) -> None:
        self.symbol = symbol
        self.fence = fence  # set when a restarted successor owns the symbol: never act again
        self.venue = venue
        self.emergency_venue = emergency_venue or venue
        self.params = params
        self.store = store
        self.sink = sink
        self.clock = clock
        self.prefix = prefix
        self.deadline_ms = deadline_ms
        self.flush_before_send = flush_before_send and store is not None
        self.account = account or VenueAccount(venue)
        if visibility is None:
            sv = SyncVisibility(venue)
            sv.engine = self
            visibility = sv
        self.visibility = visibility
        if store is not None:
            self.state = SymbolState.from_dict(store.get_symbol_state(symbol))
        else:
            self.state = SymbolState.fresh(symbol)
        if not self.state.symbol:
            self.state = replace(self.state, symbol=symbol)
        self.filters: core.SymbolFilters | None = None  # fetched on first use (needs a price)
        self.open_block_reason: str | None = None
        self.store_error: str | None = None  # the last write-ahead flush failure, until one works
        self.mark_price: float | None = None
        self.funding_rate: float = 0.0
        self.spread_bps: float = 0.0
        self._queue: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._ctx_cache: _CtxCache | None = None
        self._raw_filters: Any = None
        self._busy = False
        self._seen_exec: dict[str, float] = {}  # client/venue order id -> cumulative executed qty
        self._flatten_ids: set[str] = set()  # emergency closes: booked via on_emergency_flat
        self._stop_child_ids: set[str] = set()
        self._replacing: dict[str, str] = {}  # new stop client id -> the old one it replaces
        self._plain_src: SymbolState | None = None  # last persisted state and its dict form
        self._plain: dict[str, Any] | None = None
        self._trade: dict[str, Any] | None = None  # the open trade's venue-reported PnL and fees
        self.on_state_change: Callable[[SymbolState], None] | None = None
        self.on_emergency: Callable[[str], None] | None = None  # the actor freezes itself
        self.stats = {"bars": 0, "orders": 0, "stops_placed": 0, "stops_confirmed": 0}

    # ------------------------------------------------------------------ inputs

    def now(self) -> int:
        return int(self.clock())

    def ctx(self) -> core.MarketCtx:
        # Re-read every time: the venue may refine a symbol's filters (first price, an
        # exchangeInfo refresh after a filter error); both venues answer from memory.
        self._refresh_filters()
        try:
            acct = self.account.snapshot()
        except VenueError:
            if self._ctx_cache is None:
                raise
            # A transient read failure (503, rate limit): the last known balances serve for
            # this event rather than crashing the actor over figures seconds old.
            acct = self._ctx_cache.acct
        # An account port that returns the same snapshot object while nothing changed (the
        # backtest's) lets an unchanged context be reused instead of rebuilt every bar.
        c = self._ctx_cache
        if (
            c is not None
            and c.acct is acct
            and c.ctx.mark_price == self.mark_price
            and c.ctx.spread_bps == self.spread_bps
            and c.ctx.funding_rate == self.funding_rate
            and c.ctx.open_block_reason == self.open_block_reason
            and c.ctx.filters is self.filters
            and c.ctx.client_id_prefix == self.prefix
        ):
            return c.ctx
        ctx = core.MarketCtx(
            mark_price=self.mark_price,
            spread_bps=self.spread_bps,
            funding_rate=self.funding_rate,
            equity=acct["equity"],
            available_balance=acct["available_balance"],
            margin_used=acct["margin_used"],
            open_block_reason=self.open_block_reason,
            client_id_prefix=self.prefix,
            filters=self.filters,
        )
        self._ctx_cache = _CtxCache(acct, ctx)
        return ctx

    def _refresh_filters(self) -> None:
        """A venue that hands out its filter object (SimVenue.get_filters: the same object until
        the filters change) costs one call; the converted filters - and with them the cached
        context - are rebuilt only when that object changed."""
        get_obj = getattr(self.venue, "get_filters", None)
        if get_obj is None:
            self.filters = _symbol_filters(self.venue, self.symbol) or self.filters
            return
        try:
            raw = get_obj(self.symbol)
        except (VenueError, KeyError, ValueError):
            return
        if raw is self._raw_filters and self.filters is not None:
            return
        self._raw_filters = raw
        self.filters = core.SymbolFilters(
            tick_size=float(raw.tick_size),
            step_size=float(raw.step_size),
            min_qty=float(raw.min_qty),
            min_notional=float(raw.min_notional),
        )

    def on_bar(self, bar: dict[str, Any]) -> None:
        self.stats["bars"] += 1
        self._submit(self._do_bar, bar)

    def on_mark_price(self, price: float, funding_rate: float | None = None) -> None:
        self.mark_price = float(price)
        if funding_rate is not None:
            self.funding_rate = float(funding_rate)

    def on_order_update(self, upd: OrderUpdate) -> None:
        self._submit(self._do_order_update, upd)

    def on_algo_update(self, upd: AlgoUpdate) -> None:
        self._submit(self._do_algo_update, upd)

    def on_stop_visibility(
        self, client_algo_id: str, visible: bool, *, venue_flat: bool = False
    ) -> None:
        self._submit(self._do_stop_visibility, client_algo_id, visible, venue_flat)

    def on_emergency_flattened(self, reason: str, result: dict[str, Any]) -> None:
        """Someone else (the Sentinel, an operator) has flattened the position."""
        self._submit(self._do_emergency_done, reason, result)

    def emergency_flatten(self, reason: str) -> dict[str, Any]:
        """Flatten now (reduceOnly market) and record EMERGENCY_FLAT with cooldowns."""
        result: dict[str, Any] = {}

        def run() -> None:
            nonlocal result
            result = self._flatten(reason)

        self._submit(run)
        return result

    # ------------------------------------------------------------------ re-entrancy

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        # A venue may deliver events synchronously while a command is being applied
        # (SimVenue fills a market order inside place_market): queue them and run them
        # after the current step so the domain always sees one event at a time.
        if self._busy:
            self._queue.append((fn, args))
            return
        # Idle means the queue is empty: run this event now, then whatever it queued (FIFO).
        self._busy = True
        try:
            fn(*args)
            queue = self._queue
            while queue:
                f, a = queue.popleft()
                f(*a)
        finally:
            self._busy = False

    # ------------------------------------------------------------------ handlers

    def _do_bar(self, bar: dict[str, Any]) -> None:
        step = core.on_bar(self.state, bar, self.ctx(), self.params, self._bar_now(bar))
        self._commit(step)

    def _bar_now(self, bar: dict[str, Any]) -> int:
        return self.now()

    def _do_order_update(self, upd: OrderUpdate) -> None:
        key = upd.client_order_id or upd.order_id
        seen = self._seen_exec.get(key, 0.0)
        if upd.executed_qty < seen - 1e-12:
            return
        new_fill = upd.executed_qty - seen
        if new_fill <= 1e-12 and upd.status in ("PARTIALLY_FILLED", "FILLED"):
            return  # duplicate of a fill already applied
        if new_fill > 1e-12:
            self._seen_exec[key] = upd.executed_qty
            if abs(new_fill - upd.last_fill_qty) > 1e-12:
                upd = replace(upd, last_fill_qty=new_fill)
        was_open = self.state.position_state.side != "NONE"
        before = self.state.position_state
        if new_fill > 1e-12:
            # A fill may place a stop: it must sit beyond the current mark (MARK_PRICE stops
            # trigger on it, and a stop already through the mark is refused with -2021).
            try:
                self.mark_price = float(self.venue.get_mark_price(self.symbol))
            except (VenueError, ValueError, TypeError):
                pass
        if key in self._flatten_ids:
            # The domain booked this close in on_emergency_flat; the open trade still needs
            # the venue's fill (its PnL and fee) to be closed with the right numbers.
            if new_fill > 1e-12:
                self._account_fill(upd, new_fill, was_open, before)
            return
        step = core.on_order_update(self.state, upd, self.ctx(), self.params, self.now())
        if new_fill > 1e-12:
            # Book the fill on the trade against the position this fill left, before the
            # step's commands run: they may close the rest (an emergency flatten) right away.
            self.state = step.state
            self._account_fill(upd, new_fill, was_open, before)
        self._commit(step)

    def _do_algo_update(self, upd: AlgoUpdate) -> None:
        if upd.order_id:
            self._stop_child_ids.add(upd.order_id)
        step = core.on_algo_update(self.state, upd, self.ctx(), self.params, self.now())
        self._commit(step)

    def _do_stop_visibility(
        self, client_algo_id: str, visible: bool, venue_flat: bool = False
    ) -> None:
        rec = {
            "kind": "stop_visible" if visible else "stop_invisible",
            "ts": self.now(),
            "symbol": self.symbol,
            "client_algo_id": client_algo_id,
        }
        if venue_flat:
            rec["venue_flat"] = True
        self._emit(rec)
        if venue_flat:
            return  # the Sentinel found nothing left to protect
        if visible:
            self.stats["stops_confirmed"] += 1
            old = self._replacing.pop(client_algo_id, None)
            if old:
                self._send(
                    lambda: self.venue.cancel_algo(
                        symbol=self.symbol, algo_id=None, client_algo_id=old
                    )
                )
            return
        cur = self.state.position_state.sl_algo.client_algo_id
        if cur == client_algo_id and self.state.position_state.side != "NONE":
            self._flatten(
                f"protective stop {client_algo_id} not visible within {self.deadline_ms} ms"
            )

    def _do_emergency_done(self, reason: str, result: dict[str, Any]) -> None:
        step = core.on_emergency_flat(
            self.state,
            reason,
            self.ctx(),
            self.params,
            self.now(),
            qty=float(result.get("qty", 0.0)),
            price=float(result.get("price", 0.0)),
            order_ids=[str(x) for x in result.get("order_ids", [])],
            client_ids=[str(x) for x in result.get("client_ids", [])],
        )
        self._commit(step)
        if self._trade is not None and not result.get("order_ids"):
            # The venue was already flat: the fill that flattened it may still be queued (a
            # stop that fired in the same instant); close the trade after it.
            self._submit(self._close_trade_if_flat)
        if self.on_emergency is not None:
            self.on_emergency(reason)
        self._recheck_flat()

    def _recheck_flat(self) -> None:
        """After booking an emergency close: the venue must be flat too. A verdict that comes
        late (the Sentinel tells a restarted actor again) may find a newer position there,
        which the booking just forgot: the venue is the truth, reconcile with it at once."""
        if self.fenced() or self.state.position_state.side != "NONE":
            return
        try:
            held = self._venue_position()
        except VenueError:
            return  # the next recovery or audit reconciles
        if str(held.get("side", "NONE")) != "NONE" and float(held.get("qty") or 0.0) > 0:
            log.warning("%s: venue still holds %s after an emergency close", self.symbol, held)
            self.recover()

    # ------------------------------------------------------------------ trade accounting

    def _role_of(self, upd: OrderUpdate) -> str:
        if upd.order_id in self._stop_child_ids:
            return "sl"
        cid = upd.client_order_id or ""
        if cid.startswith(self.prefix + "-"):
            return cid.rsplit("-", 1)[-1]
        return "venue"

    def _account_fill(self, upd: OrderUpdate, qty: float, was_open: bool, before: Any) -> None:
        """Per-trade PnL and fees from the venue's own fill reports (the venue is the truth)."""
        share = qty / upd.last_fill_qty if upd.last_fill_qty > 0 else 1.0
        ps = self.state.position_state
        old = self._trade
        if old is not None and old.get("awaiting_exit") and upd.side != _exit_side(old["side"]):
            # a new entry while the last trade still waited for its closing fill: that fill
            # is not coming (closed outside our view); the last trade ends here
            old["exits"].append("fx")
            self._close_trade()
        if self._trade is None and ps.side != "NONE":
            self._trade = {
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
        t = self._trade
        if t is None:
            return
        t["fees"] += abs(upd.commission) * share
        t["pnl"] += upd.realized_pnl * share
        role = self._role_of(upd)
        if upd.side == _exit_side(t["side"]):
            t["exit_value"] += qty * (upd.last_fill_price or upd.avg_price)
            t["exit_qty"] += qty
            t["exits"].append(role)
        elif ps.side != "NONE":
            t["entry_price"] = ps.entry_price
            t["qty"] = max(t["qty"], ps.qty_total)
        if ps.side == "NONE" and (not t.get("awaiting_exit") or _exited(t)):
            self._close_trade()

    def _close_trade_if_flat(self) -> None:
        """After an emergency flatten found the venue already flat."""
        t = self._trade
        if t is None or self.state.position_state.side != "NONE":
            return
        if _exited(t):
            t["exits"].append("fx")
            self._close_trade()
        else:
            # Whatever flattened the venue (a stop that fired in the same instant) has not been
            # reported yet: its fill closes the trade, with its PnL and fee.
            t["awaiting_exit"] = True

    def _close_trade(self) -> None:
        t, self._trade = self._trade, None
        if t is None:
            return
        risk = t["risk_per_unit"] * t["qty"]
        exit_price = t["exit_value"] / t["exit_qty"] if t["exit_qty"] > 0 else 0.0
        self._emit(
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

    # ------------------------------------------------------------------ applying steps

    def _commit(self, step: core.Step) -> None:
        self.state = step.state
        # Records first: the decision behind an order is durable with it (write-ahead below).
        for rec in step.records:
            self._emit(rec)
        durable = True
        if self.store is not None:
            order_cmds = [c for c in step.commands if not isinstance(c, LogRecord | SetCooldown)]
            durable = self._persist(flush=bool(order_cmds))
        for cmd in step.commands:
            if not durable and isinstance(cmd, PlaceLimit | PlaceMarket) and not cmd.reduce_only:
                self._refuse_unflushed(cmd)
            else:
                self._execute(cmd)  # protection and exits go out even when the disk refuses
        if self.on_state_change is not None:
            self.on_state_change(self.state)

    def _persist(self, *, flush: bool) -> bool:
        """Buffer the state; with `flush`, make it durable first (write-ahead). False when
        that flush failed (the disk refuses writes): nothing that opens may be sent then."""
        if self.store is None or self.fenced():
            return True
        plain = state_to_dict_reusing(self.state, self._plain_src, self._plain)
        self._plain_src, self._plain = self.state, plain
        self.store.set_symbol_state(self.symbol, plain)
        if flush and self.flush_before_send:
            try:
                self.store.flush()  # write-ahead: client ids are durable before anything is sent
            except StoreError as exc:
                self.store_error = str(exc)
                log.error("%s: write-ahead flush failed: %s", self.symbol, exc)
                return False
            self.store_error = None
        return True

    def _refuse_unflushed(self, cmd: PlaceLimit | PlaceMarket) -> None:
        reason = f"storage: write-ahead flush failed ({self.store_error}); opening order not sent"
        self._order_record(cmd.role, cmd.client_order_id, None, outcome="not_sent")
        self._rejected(cmd.role, cmd.client_order_id, None, reason)

    def _emit(self, record: dict[str, Any]) -> None:
        if self.sink is not None:
            self.sink.emit(record)

    def _order_record(
        self, role: str, client_id: str, result: dict[str, Any] | None, **extra: Any
    ) -> None:
        self.stats["orders"] += 1
        rec = {
            "kind": "order",
            "ts": self.now(),
            "symbol": self.symbol,
            "role": role,
            "client_id": client_id,
            "venue_id": None if result is None else result.get("order_id") or result.get("algo_id"),
            "status": None if result is None else result.get("status"),
        }
        rec.update(extra)
        self._emit(rec)

    def _send(self, call: Callable[[], dict[str, Any]], *, retries: int = 3) -> dict[str, Any]:
        """Run a venue call, honouring rate limits with a bounded wait and retrying a request
        that was certainly not applied (VenueUnavailable: refused, or never sent because the
        gateway was restarting) a few times with the same client id."""
        for attempt in range(retries + 1):
            try:
                return call()
            except RateLimited as exc:
                if attempt >= retries:
                    raise
                time.sleep(min(max(exc.retry_after, 0.0), 1.0))
            except VenueUnavailable:
                if attempt >= retries:
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def fenced(self) -> bool:
        return self.fence is not None and self.fence.is_set()

    def _execute(self, cmd: Command) -> None:
        if self.fenced():
            log.warning("%s: fenced engine drops %s", self.symbol, type(cmd).__name__)
            return
        try:
            if isinstance(cmd, PlaceLimit):
                self._place_order(cmd)
            elif isinstance(cmd, PlaceMarket):
                self._place_order(cmd)
            elif isinstance(cmd, PlaceAlgoStop):
                self._place_stop(cmd)
            elif isinstance(cmd, CancelOrder):
                self._send(
                    lambda: self.venue.cancel_order(
                        symbol=cmd.symbol,
                        order_id=cmd.order_id,
                        client_order_id=cmd.client_order_id,
                    )
                )
            elif isinstance(cmd, CancelAlgo):
                self._send(
                    lambda: self.venue.cancel_algo(
                        symbol=cmd.symbol, algo_id=cmd.algo_id, client_algo_id=cmd.client_algo_id
                    )
                )
            elif isinstance(cmd, EmergencyFlatten):
                self._flatten(cmd.reason, client_order_id=cmd.client_order_id)
            elif isinstance(cmd, LogRecord):
                self._emit(cmd.record)
            elif isinstance(cmd, SetCooldown):
                pass  # already in the state the domain returned
        except VenueError as exc:
            # A cancel that failed for a transport reason is retried by the next audit;
            # order placements report their failure to the domain in _place_*.
            log.warning("%s: %s failed: %s", self.symbol, type(cmd).__name__, exc)

    def _place_order(self, cmd: PlaceLimit | PlaceMarket) -> None:
        cid = cmd.client_order_id
        try:
            if isinstance(cmd, PlaceLimit):
                res = self._send(
                    lambda: self.venue.place_limit_postonly(
                        symbol=cmd.symbol,
                        side=cmd.side,
                        qty=cmd.qty,
                        price=cmd.price,
                        tif="GTX",
                        reduce_only=cmd.reduce_only,
                        client_order_id=cid,
                    )
                )
            else:
                res = self._send(
                    lambda: self.venue.place_market(
                        symbol=cmd.symbol,
                        side=cmd.side,
                        qty=cmd.qty,
                        reduce_only=cmd.reduce_only,
                        client_order_id=cid,
                    )
                )
        except UnknownOutcome:
            found = self._lookup_order(cid)
            if found is None:
                self._order_record(cmd.role, cid, None, outcome="unknown_not_found")
                self._rejected(
                    cmd.role, cid, None, "unknown outcome; not found at venue by client id"
                )
                return
            res = found
        except OrderRejected as exc:
            self._order_record(cmd.role, cid, None, outcome="rejected", code=exc.code)
            self._rejected(cmd.role, cid, exc.code, f"{type(exc).__name__}: {exc.msg}")
            return
        except VenueError as exc:
            self._order_record(cmd.role, cid, None, outcome="failed")
            self._rejected(cmd.role, cid, exc.code, f"{type(exc).__name__}: {exc}")
            return
        self._order_record(cmd.role, cid, res)
        self._apply_rest_fill(res)

    def _lookup_order(self, cid: str) -> dict[str, Any] | None:
        try:
            return self.venue.get_order(symbol=self.symbol, client_order_id=cid)  # type: ignore[no-any-return]
        except VenueError:
            return None

    def _apply_rest_fill(self, res: dict[str, Any]) -> None:
        """A REST reply that already shows a fill: apply it (the stream copy is de-duplicated)."""
        executed = float(res.get("executed_qty") or 0.0)
        if executed <= 0:
            return
        upd = OrderUpdate(
            symbol=self.symbol,
            order_id=str(res.get("order_id")),
            client_order_id=str(res.get("client_order_id")),
            side=str(res.get("side")),
            order_type=str(res.get("type", "MARKET")),
            status=str(res.get("status")),
            execution_type="TRADE",
            price=float(res.get("price") or 0.0),
            qty=float(res.get("qty") or executed),
            executed_qty=executed,
            avg_price=float(res.get("avg_price") or 0.0),
            last_fill_qty=executed,
            last_fill_price=float(res.get("avg_price") or 0.0),
            commission=float(res.get("commission") or 0.0),
            realized_pnl=float(res.get("realized_pnl") or 0.0),
            reduce_only=bool(res.get("reduce_only")),
            event_time=int(self.now() * 1000),
        )
        self._submit(self._do_order_update, upd)

    def _rejected(self, role: str, cid: str, code: int | None, reason: str) -> None:
        step = core.on_order_rejected(
            self.state, role, cid, code, reason, self.ctx(), self.params, self.now()
        )
        self._commit(step)

    def _place_stop(self, cmd: PlaceAlgoStop) -> None:
        cid = cmd.client_algo_id
        res: dict[str, Any] | None

        def place() -> dict[str, Any]:
            return self._send(  # type: ignore[no-any-return]
                lambda: self.venue.place_algo_stop(
                    symbol=cmd.symbol,
                    side=cmd.side,
                    qty=cmd.qty,
                    stop_price=cmd.stop_price,
                    reduce_only=not cmd.close_position,
                    client_algo_id=cid,
                    working_type=cmd.working_type,
                    close_position=cmd.close_position,
                )
            )

        try:
            res = place()
        except UnknownOutcome:
            res = self._lookup_algo(cid)
            if res is None:
                # Proven absent: the same client id again is safe (idempotent at the venue).
                try:
                    res = place()
                except VenueError:
                    res = self._lookup_algo(cid)
        except OrderRejected as exc:
            self._order_record("sl", cid, None, outcome="rejected", code=exc.code)
            self._rejected("sl", cid, exc.code, f"{type(exc).__name__}: {exc.msg}")
            return
        except VenueError as exc:
            res = self._lookup_algo(cid)
            if res is None:
                self._order_record("sl", cid, None, outcome="failed")
                self._rejected("sl", cid, exc.code, f"{type(exc).__name__}: {exc}")
                return
        if res is None:
            self._order_record("sl", cid, None, outcome="unknown_not_found")
            self._rejected("sl", cid, None, "stop placement outcome unknown and not found at venue")
            return
        self.stats["stops_placed"] += 1
        self._order_record("sl", cid, res, stop_price=cmd.stop_price, qty=cmd.qty)
        if (
            res.get("algo_id") is not None
            and self.state.position_state.sl_algo.client_algo_id == cid
        ):
            ps = self.state.position_state
            algo_id = str(res["algo_id"])
            ps = replace(
                ps,
                sl_algo=replace(ps.sl_algo, algo_id=algo_id),
                last_orders=replace(ps.last_orders, sl=replace(ps.last_orders.sl, algo_id=algo_id)),
            )
            self.state = replace(self.state, position_state=ps)
            self._persist(flush=False)
        if cmd.replaces:
            self._replacing[cid] = cmd.replaces
        self.visibility.request(self.symbol, cid, self.deadline_ms)

    def _lookup_algo(self, cid: str) -> dict[str, Any] | None:
        try:
            return self.venue.get_algo_order(symbol=self.symbol, client_algo_id=cid)  # type: ignore[no-any-return]
        except VenueError:
            return None

    def _flatten(self, reason: str, *, client_order_id: str | None = None) -> dict[str, Any]:
        """Emergency reduceOnly market close of whatever the venue holds, then domain bookkeeping."""
        venue = self.emergency_venue
        result: dict[str, Any] = {"qty": 0.0, "price": 0.0, "order_ids": [], "client_ids": []}
        if self.fenced():
            return result
        try:
            pos = venue.get_positions().get(self.symbol) or {}
        except VenueError as exc:
            log.error("%s: emergency flatten cannot read positions: %s", self.symbol, exc)
            pos = {
                "side": self.state.position_state.side,
                "qty": self.state.position_state.qty_total,
            }
        side = str(pos.get("side", "NONE"))
        qty = abs(float(pos.get("qty") or 0.0))
        closed, res = 0.0, {}
        if side != "NONE" and qty > 0:
            if client_order_id is None:
                self.state, client_order_id = core.next_client_id(self.state, "fx", self.prefix)
                self._persist(flush=True)
            ps = self.state.position_state
            try:
                closed, res = close_at_market(
                    venue,
                    self.symbol,
                    client_order_id,
                    fallback={"side": ps.side, "qty": ps.qty_total},
                )
            except FlattenFailed:
                # Never book a close that did not happen: the actor crashes on this and its
                # restart reconciles with the venue and puts a protective stop back.
                self._order_record("fx", client_order_id, None, reason=reason, outcome="failed")
                raise
        if closed > 0 and client_order_id is not None:  # (0: flat by the time it was sent)
            self._order_record("fx", client_order_id, res or None, reason=reason)
            result = {
                "qty": closed,
                "price": float(res.get("avg_price") or 0.0),
                "order_ids": [str(res["order_id"])] if res.get("order_id") is not None else [],
                "client_ids": [client_order_id],
            }
            self._flatten_ids.add(client_order_id)
            if res:
                self._apply_rest_fill(res)  # queued: runs after the bookkeeping below
        self._do_emergency_done(reason, result)
        return result

    # ------------------------------------------------------------------ recovery

    def recover(self) -> dict[str, Any]:
        """Reconcile the shard with the venue (the venue is the truth), then make the
        desired protective stop real with recover_protection. Returns a summary."""
        venue_pos = self._venue_position()
        for _ in range(3):
            open_orders = self.venue.get_open_orders(self.symbol)
            open_algos = self.venue.get_open_algo_orders(self.symbol)
            # An order that fills between these reads is gone from the open orders while the
            # position read before does not show its fill yet (and its fill event is then no
            # longer ours to apply): read until the position held still across the reads.
            again = self._venue_position()
            if _same_position(venue_pos, again):
                break
            venue_pos = again
        step = core.reconcile(
            self.state, venue_pos, open_orders, open_algos, self.ctx(), self.params, self.now()
        )
        self._commit(step)
        desired = core.desired_stop(self.state)
        out: dict[str, Any] = {"action": None, "algo": None, "desired": None}
        if desired is None:
            return out
        out["desired"] = desired.to_dict()
        try:
            res = self.venue.recover_protection(self.symbol, desired)
        except OrderRejected as exc:
            # The stop cannot exist (its level is already crossed: -2021 "would immediately
            # trigger"): the position it should protect is closed now instead of crash-looping
            # on a recovery that can never succeed.
            out["action"] = "FLATTENED"
            out["flattened"] = self._flatten(
                f"recover_protection refused the stop at {desired.stop_price:g}: "
                f"{exc.msg} (code {exc.code})"
            )
            return out
        out.update(res)
        algo = res.get("algo") or {}
        cid = str(algo.get("client_algo_id") or desired.client_algo_id)
        ps = self.state.position_state
        ps = replace(
            ps,
            sl_algo=replace(
                ps.sl_algo,
                algo_id=None if algo.get("algo_id") is None else str(algo["algo_id"]),
                client_algo_id=cid,
            ),
            last_orders=replace(
                ps.last_orders,
                sl=replace(
                    ps.last_orders.sl,
                    algo_id=None if algo.get("algo_id") is None else str(algo["algo_id"]),
                    client_algo_id=cid,
                ),
            ),
        )
        self.state = replace(self.state, position_state=ps)
        self._persist(flush=True)
        self._emit(
            risk_record(
                event_type="SL_RECOVER",
                symbol=self.symbol,
                side=ps.side,
                qty=ps.qty_total,
                price=float(algo.get("stop_price") or desired.stop_price),
                order_ids=[] if algo.get("algo_id") is None else [str(algo["algo_id"])],
                client_ids=[cid],
                reason=f"recover_protection {res.get('action')}",
                ts=self.now(),
            )
        )
        return out

    def _venue_position(self) -> dict[str, Any]:
        pos = self.venue.get_positions().get(self.symbol)
        return pos or {"side": "NONE", "qty": 0.0, "entry_price": 0.0}

    def desired_stop(self) -> StopSpec | None:
        return core.desired_stop(self.state)
