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
from typing import Any

from atlas_actors.domain import core
from atlas_actors.domain.commands import LogRecord, PlaceLimit, PlaceMarket, SetCooldown
from atlas_actors.domain.events import AlgoUpdate, OrderUpdate
from atlas_actors.domain.records import SymbolState, state_to_dict_reusing
from atlas_actors.domain.txn import venue_close_kind
from atlas_actors.engine.commands import VenueCommands
from atlas_actors.engine.emergency import FlattenFailed, close_at_market
from atlas_actors.engine.id_reserve import extend_reserve, resume_above_reserve
from atlas_actors.engine.ledger import TradeLedger
from atlas_actors.engine.ports import (
    AccountPort,
    SyncVisibility,
    VenueAccount,
    VisibilityPort,
    symbol_filters,
)
from atlas_actors.engine.recovery import Recovery
from atlas_actors.engine.unresolved import UnknownOutcomes
from atlas_actors.store import StoreError
from atlas_actors.venues.base import VenueError
from atlas_actors.venues.priority import Priority, request_priority

log = logging.getLogger("atlas.engine")


class _CtxCache:
    __slots__ = ("acct", "ctx")

    def __init__(self, acct: dict[str, float], ctx: core.MarketCtx) -> None:
        self.acct = acct
        self.ctx = ctx


NO_ACCOUNT = {"equity": 0.0, "available_balance": 0.0, "margin_used": 0.0}


class SymbolEngine(VenueCommands, Recovery, UnknownOutcomes):
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
        self._id_reserve: int | None = None  # the client-id mark buffered/flushed (id_reserve)
        if store is not None:
            self.state = resume_above_reserve(store, self.state)
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
        self._replacing: dict[str, str] = {}  # new stop client id -> the old one it replaces
        self._plain_src: SymbolState | None = None  # last persisted state and its dict form
        self._plain: dict[str, Any] | None = None
        self.ledger = TradeLedger(symbol, prefix, now=self.now, emit=self._emit)
        self.on_state_change: Callable[[SymbolState], None] | None = None
        self.on_emergency: Callable[[str], None] | None = None  # the actor freezes itself
        # the exchange closed (part of) the position itself: (kind, risk record) -> an alert
        self.on_venue_close: Callable[[str, dict[str, Any]], None] | None = None
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
        except VenueError as exc:
            # A transient read failure (503, rate limit): the last known balances serve for
            # this event rather than crashing the actor over figures seconds old. With none
            # known yet (a fresh actor), the bar is still judged (exits, regime, runner) but
            # nothing can be sized: no equity, and opens are blocked naming why.
            if self._ctx_cache is None:
                acct = dict(NO_ACCOUNT)
                self.open_block_reason = self.open_block_reason or f"account unavailable: {exc}"
            else:
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
            self.filters = symbol_filters(self.venue, self.symbol) or self.filters
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
        self,
        client_algo_id: str,
        visible: bool,
        *,
        venue_flat: bool = False,
        late_ms: int = 0,
    ) -> None:
        self._submit(self._do_stop_visibility, client_algo_id, visible, venue_flat, late_ms)

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
        if self.unresolved and self.schedule_resolve is None:
            self.resolve_unknown()  # no timer to drive it (backtest): one query per bar
        step = core.on_bar(self.state, bar, self.ctx(), self.params, self._bar_now(bar))
        self._commit(step)

    def _bar_now(self, bar: dict[str, Any]) -> int:
        return self.now()

    def _do_order_update(self, upd: OrderUpdate) -> None:
        closed_by = venue_close_kind(upd.client_order_id, upd.execution_type)
        # The venue's own closes may reuse one client id ("adl_autoclose") for orders with
        # different ids: de-duplicate those by the venue's order id.
        key = (upd.order_id or upd.client_order_id) if closed_by else upd.client_order_id
        key = key or upd.order_id
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
        if new_fill > 1e-12:
            # A fill may place a stop: it must sit beyond the current mark (MARK_PRICE stops
            # trigger on it, and a stop already through the mark is refused with -2021).
            try:
                with request_priority(Priority.PROTECTION):  # the stop waits for it
                    self.mark_price = float(self.venue.get_mark_price(self.symbol))
            except (VenueError, ValueError, TypeError):
                pass
        if key in self._flatten_ids:
            # The domain booked this close in on_emergency_flat; the open trade still needs
            # the venue's fill (its PnL and fee) to be closed with the right numbers.
            if new_fill > 1e-12:
                self.ledger.on_fill(upd, new_fill, self.state.position_state)
            return
        self._note_resolved(upd.client_order_id)
        adopt = new_fill > 1e-12 and self._unknown_fill(upd)
        step = core.on_order_update(self.state, upd, self.ctx(), self.params, self.now())
        if adopt:
            self._commit(step)
            self._reconcile_and_protect(f"fill of unknown order {key} ({upd.status})")
            return
        if new_fill > 1e-12:
            # Book the fill on the trade against the position this fill left, before the
            # step's commands run: they may close the rest (an emergency flatten) right away.
            self.state = step.state
            self.ledger.on_fill(upd, new_fill, self.state.position_state)
        self._commit(step)
        if closed_by is not None and self.on_venue_close is not None:
            for rec in step.records:
                if rec.get("kind") == "risk" and str(rec.get("reason")).startswith(closed_by):
                    self.on_venue_close(closed_by, rec)

    def _do_algo_update(self, upd: AlgoUpdate) -> None:
        if upd.order_id:
            self.ledger.stop_child_ids.add(upd.order_id)
        step = core.on_algo_update(self.state, upd, self.ctx(), self.params, self.now())
        self._commit(step)

    def _do_stop_visibility(
        self, client_algo_id: str, visible: bool, venue_flat: bool = False, late_ms: int = 0
    ) -> None:
        rec: dict[str, Any] = {
            "kind": "stop_visible" if visible else "stop_invisible",
            "ts": self.now(),
            "symbol": self.symbol,
            "client_algo_id": client_algo_id,
        }
        if venue_flat:
            rec["venue_flat"] = True
        if late_ms:
            rec["late_ms"] = int(late_ms)  # confirmed after the deadline (the venue was silent)
        cur = self.state.position_state.sl_algo.client_algo_id
        current = cur == client_algo_id and self.state.position_state.side != "NONE"
        if not visible and not venue_flat and not current:
            rec["superseded"] = True  # replaced (or flat) meanwhile: its verdict flattens nothing
        self._emit(rec)
        if venue_flat:
            return  # the Sentinel found nothing left to protect
        if visible:
            self.stats["stops_confirmed"] += 1
            for old in self._superseded_by(client_algo_id):
                self._cancel_superseded(old)
            return
        if current:
            self._flatten(
                f"protective stop {client_algo_id} not visible within {self.deadline_ms} ms"
            )

    def _cancel_superseded(self, client_algo_id: str) -> None:
        try:
            self._send(
                lambda: self.venue.cancel_algo(
                    symbol=self.symbol, algo_id=None, client_algo_id=client_algo_id
                )
            )
        except VenueError as exc:  # reduce-only: harmless; the next audit/recovery cleans up
            log.warning(
                "%s: cancel of superseded stop %s failed: %s", self.symbol, client_algo_id, exc
            )

    def _superseded_by(self, client_algo_id: str) -> list[str]:
        """Every stop `client_algo_id` replaced, directly or through stops it replaced in turn
        (A -> B -> C: C visible cancels B and A), oldest last; forgotten once returned."""
        chain: list[str] = []
        cur = client_algo_id
        while cur in self._replacing:
            cur = self._replacing.pop(cur)
            if cur in chain or cur == client_algo_id:
                break
            chain.append(cur)
        return chain

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
        if self.ledger.trade is not None and not result.get("order_ids"):
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

    def _close_trade_if_flat(self) -> None:
        """After an emergency flatten found the venue already flat (see TradeLedger)."""
        self.ledger.close_if_flat(self.state.position_state.side)

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
        self._id_reserve = extend_reserve(self.store, self.state, self._id_reserve)
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

    def fenced(self) -> bool:
        return self.fence is not None and self.fence.is_set()

    def _rejected(self, role: str, cid: str, code: int | None, reason: str) -> None:
        step = core.on_order_rejected(
            self.state, role, cid, code, reason, self.ctx(), self.params, self.now()
        )
        self._commit(step)

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
        closed, orders = 0.0, []
        if side != "NONE" and qty > 0:
            fresh = client_order_id is None
            if client_order_id is None:
                self.state, client_order_id = core.next_client_id(self.state, "fx", self.prefix)
                self._persist(flush=True)
            ps = self.state.position_state
            try:
                closed, orders = close_at_market(
                    venue,
                    self.symbol,
                    client_order_id,
                    fallback={"side": ps.side, "qty": ps.qty_total},
                    fresh_id=fresh,
                )
            except FlattenFailed:
                # Never book a close that did not happen: the actor crashes on this and its
                # restart reconciles with the venue and puts a protective stop back.
                self._order_record("fx", client_order_id, None, reason=reason, outcome="failed")
                raise
        if closed > 0 and client_order_id is not None:  # (0: flat by the time it was sent)
            for res in orders:  # one per MARKET_LOT_SIZE chunk
                self._order_record(
                    "fx", str(res.get("client_order_id") or client_order_id), res, reason=reason
                )
            first = orders[0] if orders else {}
            result = {
                "qty": closed,
                "price": float(first.get("avg_price") or 0.0),
                "order_ids": [str(o["order_id"]) for o in orders if o.get("order_id") is not None],
                "client_ids": [str(o.get("client_order_id") or client_order_id) for o in orders],
            }
            self._flatten_ids.update(result["client_ids"])
            for res in orders:
                self._apply_rest_fill(res)  # queued: runs after the bookkeeping below
        self._do_emergency_done(reason, result)
        return result
