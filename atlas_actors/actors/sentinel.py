"""Sentinel: the 1-second visibility guard (contract §7) and the protection audit.

`VisibilityGuard.ensure_algo_visible(symbol, client_algo_id, deadline_ms=1000) -> bool`
polls `get_open_algo_orders` from the moment it is called until the deadline; an
ALGO_UPDATE for that id is a fast path (it wakes the poller early) but never the only
path (peer lesson: nautilus_trader PR #4411). If the stop is not visible in time the
Sentinel flattens the position itself through the emergency lane (reduceOnly market)
and tells the symbol's actor, which records EMERGENCY_FLAT and sets the 30-minute
loss/freeze cooldowns. Checks run on the Sentinel's worker threads, never in its inbox.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pykka

from atlas_actors.domain.events import AlgoUpdate
from atlas_actors.domain.stops import closing_side
from atlas_actors.engine import FlattenFailed, close_at_market
from atlas_actors.venues.base import VenueError
from atlas_actors.venues.priority import Priority, request_priority

log = logging.getLogger("atlas.sentinel")


# Final algo statuses that prove the stop was live at the venue before it left the book.
# REJECTED is here because a placement that is refused raises at once; a stop that the venue
# reports REJECTED later was accepted and refused at trigger time (its reduce-only order found
# the position already closed, e.g. by the stop it was replacing).
SEEN_FINAL = frozenset({"TRIGGERING", "TRIGGERED", "FINISHED", "CANCELED", "EXPIRED", "REJECTED"})


class VisibilityGuard:
    def __init__(
        self,
        venue: Any,
        *,
        poll_interval_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.venue = venue
        self.poll_interval_s = poll_interval_s
        self.clock = clock
        self._sleep = sleep
        self._seen: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self.checks = 0

    def _event(self, client_algo_id: str) -> threading.Event:
        with self._lock:
            ev = self._seen.get(client_algo_id)
            if ev is None:
                ev = self._seen[client_algo_id] = threading.Event()
            return ev

    def on_algo_update(self, upd: AlgoUpdate) -> None:
        if upd.status == "NEW":
            self._event(upd.client_algo_id).set()

    def _visible_now(self, symbol: str, client_algo_id: str) -> bool:
        with request_priority(Priority.PROTECTION):  # never behind the weight governor
            return self._query_visible(symbol, client_algo_id)

    def _query_visible(self, symbol: str, client_algo_id: str) -> bool:
        self.checks += 1
        try:
            algos = self.venue.get_open_algo_orders(symbol)
        except VenueError as exc:
            log.warning("%s: open algo query failed: %s", symbol, exc)
            return False
        if any(str(a.get("client_algo_id")) == client_algo_id for a in algos):
            return True
        # Not open any more: it may already have triggered (a fast market) or been replaced.
        # The venue knowing it in a final state proves it was live; an order the venue never
        # heard of (lost, invisible) is not.
        try:
            found = self.venue.get_algo_order(symbol=symbol, client_algo_id=client_algo_id)
        except VenueError:
            return False
        return bool(found) and str(found.get("status")) in SEEN_FINAL

    def ensure_algo_visible(
        self, symbol: str, client_algo_id: str, deadline_ms: int = 1000
    ) -> bool:
        """True when the algo order is in open algo orders before the deadline."""
        deadline = self.clock() + deadline_ms / 1000.0
        ev = self._event(client_algo_id)
        try:
            while True:
                if self._visible_now(symbol, client_algo_id):
                    return True
                remaining = deadline - self.clock()
                if remaining <= 0:
                    return False
                wait = min(self.poll_interval_s, remaining)
                if self._sleep is not None:
                    self._sleep(wait)
                elif ev.wait(wait):
                    ev.clear()  # fast path: an ALGO_UPDATE arrived; confirm with a query
        finally:
            with self._lock:
                self._seen.pop(client_algo_id, None)


def flatten_position(
    venue: Any, symbol: str, client_order_id: str, *, fallback: dict[str, Any] | None = None
) -> dict[str, Any]:
    """reduceOnly market close of the venue position (in MARKET_LOT_SIZE chunks when it is
    bigger), retried; idempotent by client id. Raises FlattenFailed when it could not be
    placed."""
    qty, orders = close_at_market(venue, symbol, client_order_id, fallback=fallback)
    if qty <= 0:
        return {"qty": 0.0, "price": 0.0, "order_ids": [], "client_ids": []}
    first = orders[0] if orders else {}
    return {
        "qty": qty,
        "price": float(first.get("avg_price") or 0.0),
        "order_ids": [str(o["order_id"]) for o in orders if o.get("order_id") is not None],
        "client_ids": [str(o.get("client_order_id") or client_order_id) for o in orders],
        "executed_qty": sum(float(o.get("executed_qty") or 0.0) for o in orders),
    }


def emergency_client_id(stop_client_id: str) -> str:
    """Deterministic flatten id derived from the stop that failed (resend-safe)."""
    base = stop_client_id[:33]
    return f"{base}-fx"[:36]


class Sentinel(pykka.ThreadingActor):
    """Actor shell. `symbol_ref(symbol)` resolves the current SymbolActor (restarts change it)."""

    # A stuck venue call must never keep the process alive after shutdown: the supervisor
    # stops actors with a deadline and the store is flushed by the main thread.
    use_daemon_thread = True

    def __init__(
        self,
        venue: Any,
        emergency_venue: Any,
        symbol_ref: Callable[[str], Any],
        *,
        poll_interval_s: float = 0.05,
        workers: int = 8,
        on_emergency: Callable[[str, str, dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__()
        self.guard = VisibilityGuard(venue, poll_interval_s=poll_interval_s)
        self.venue = venue
        self.emergency_venue = emergency_venue
        self.symbol_ref = symbol_ref
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sentinel")
        self.on_emergency = on_emergency
        self.flats = 0
        self.confirmed = 0

    def ping(self) -> str:
        return "pong"

    def crash(self, reason: str) -> None:
        raise RuntimeError(f"injected Sentinel crash: {reason}")

    def on_algo_update(self, upd: AlgoUpdate) -> None:
        self.guard.on_algo_update(upd)

    def watch(self, symbol: str, client_algo_id: str, deadline_ms: int = 1000) -> None:
        """Check a freshly placed stop in the background and act on the verdict."""
        self.pool.submit(self._watch, symbol, client_algo_id, deadline_ms)

    def ensure_algo_visible(
        self, symbol: str, client_algo_id: str, deadline_ms: int = 1000
    ) -> bool:
        return self.guard.ensure_algo_visible(symbol, client_algo_id, deadline_ms)

    def _watch(self, symbol: str, client_algo_id: str, deadline_ms: int) -> None:
        try:
            visible = self.guard.ensure_algo_visible(symbol, client_algo_id, deadline_ms)
            actor = self.symbol_ref(symbol)
            if visible:
                self.confirmed += 1
                if actor is not None:
                    actor.tell({"msg": "stop_visibility", "cid": client_algo_id, "visible": True})
                return
            reason = f"protective stop {client_algo_id} not visible within {deadline_ms} ms"
            cid = emergency_client_id(client_algo_id)
            try:
                result = flatten_position(self.emergency_venue, symbol, cid)
            except FlattenFailed as exc:
                # Still open and unprotected: the symbol's actor re-places its protection now
                # (recover_protection) rather than at the next periodic audit.
                log.error("%s: %s; %s", symbol, reason, exc)
                if self.on_emergency is not None:
                    self.on_emergency(symbol, f"{reason}; {exc}", {"client_ids": [cid]})
                if actor is not None:
                    actor.tell({"msg": "recover", "why": f"emergency close failed: {exc}"})
                return
            if not result["order_ids"] and result["qty"] == 0:
                # nothing to protect any more (the position closed meanwhile): no flatten
                if actor is not None:
                    actor.tell(
                        {
                            "msg": "stop_visibility",
                            "cid": client_algo_id,
                            "visible": False,
                            "flat": True,
                        }
                    )
                return
            try:  # it may still appear later: it is reduce-only, but leave nothing behind
                self.emergency_venue.cancel_algo(
                    symbol=symbol, algo_id=None, client_algo_id=client_algo_id
                )
            except VenueError:
                pass
            self.flats += 1
            if self.on_emergency is not None:
                self.on_emergency(symbol, reason, result)
            self._deliver(
                symbol, {"msg": "emergency_flattened", "reason": reason, "result": result}
            )
        except Exception:  # noqa: BLE001 - a worker must never die silently
            log.exception("%s: sentinel watch failed", symbol)

    def _deliver(self, symbol: str, message: dict[str, Any], wait_s: float = 15.0) -> None:
        """Tell the symbol's actor, and tell its successor again if it died on the message:
        an emergency flatten's record and its 30-minute freeze must survive a crash."""
        deadline = time.monotonic() + wait_s
        failed: set[str] = set()  # instances that died on it (a dying one answers nothing)
        while True:
            actor = self.symbol_ref(symbol)
            if actor is not None and actor.actor_urn not in failed:
                try:
                    reply = actor.ask(message, timeout=5.0)
                    if not (isinstance(reply, dict) and "crashed" in reply):
                        return
                except (pykka.ActorDeadError, pykka.Timeout):
                    pass
                failed.add(actor.actor_urn)
            if time.monotonic() >= deadline:
                log.error("%s: could not deliver %s to its actor", symbol, message["msg"])
                return
            time.sleep(0.05)

    def audit(self, symbols: list[str]) -> list[dict[str, Any]]:
        """Every venue position must have a reduce-only Algo stop on its closing side.
        Returns the findings; the supervisor asks the symbol actors to recover them."""
        with request_priority(Priority.BACKGROUND):  # periodic: yields to everything else
            return self._audit(symbols)

    def _audit(self, symbols: list[str]) -> list[dict[str, Any]]:
        findings: list[dict[str, Any]] = []
        try:
            positions = self.venue.get_positions()
        except VenueError as exc:
            return [{"symbol": None, "problem": f"cannot read positions: {exc}"}]
        for symbol in symbols:
            pos = positions.get(symbol) or {}
            if str(pos.get("side", "NONE")) == "NONE" or float(pos.get("qty") or 0) == 0:
                continue
            try:
                algos = self.venue.get_open_algo_orders(symbol)
            except VenueError as exc:
                findings.append({"symbol": symbol, "problem": f"cannot read algos: {exc}"})
                continue
            side = closing_side(str(pos["side"]))
            if not any(str(a.get("side")) == side for a in algos):
                findings.append(
                    {"symbol": symbol, "problem": "position without a visible Algo stop"}
                )
        return findings

    def on_stop(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
