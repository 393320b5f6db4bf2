"""Applying the domain's commands to the venue: SymbolEngine's order, stop and cancel calls.

`VenueCommands` is mixed into `SymbolEngine` and uses its attributes (symbol, venue, state,
stats, visibility, deadline_ms, _replacing) and methods (fenced, now, _emit, _submit,
_persist, _flatten, _rejected, _do_order_update). Unknown outcomes are resolved by querying the
venue by client id; nothing is ever resent blindly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

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
)
from atlas_actors.domain.events import OrderUpdate
from atlas_actors.venues.base import (
    OrderRejected,
    RateLimited,
    UnknownOutcome,
    VenueError,
    VenueUnavailable,
)
from atlas_actors.venues.priority import Priority, request_priority

log = logging.getLogger("atlas.engine")


class VenueCommands:
    """Order placement, stops, cancels and the REST-reply fills of one symbol's engine."""

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
            if found is None and not cmd.reduce_only:
                # Not found once is no proof: it may land later, and resending executes twice.
                self._keep_unresolved(cmd.role, cid)
                return
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

    def _place_stop(self, cmd: PlaceAlgoStop) -> None:
        cid = cmd.client_algo_id
        res: dict[str, Any] | None

        def place() -> dict[str, Any]:
            return self._send(  # type: ignore[no-any-return]
                lambda: self._protection(
                    self.venue.place_algo_stop,
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
            # (every path below that goes on has the venue's acknowledgement, or its record, now)
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
        acked_at = time.monotonic()  # the 1 s clock starts at the venue's acknowledgement
        if cmd.replaces:
            self._replacing[cid] = cmd.replaces
        self.visibility.request(
            self.symbol, cid, self.deadline_ms, acked_at=acked_at, replaces=cmd.replaces
        )

    @staticmethod
    def _protection(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A stop placement/replacement request: it goes before everything else."""
        with request_priority(Priority.PROTECTION):
            return fn(*args, **kwargs)

    def _lookup_algo(self, cid: str) -> dict[str, Any] | None:
        try:
            return self._protection(  # type: ignore[no-any-return]
                self.venue.get_algo_order, symbol=self.symbol, client_algo_id=cid
            )
        except VenueError:
            return None
