"""Sentinel: the 1-second visibility guard (contract §7) and the protection audit.

A visibility check asks the venue about one freshly placed stop and ends in a verdict:

- VISIBLE: the stop is listed in open algo orders (or it already fired and its child order
  filled: it did its job). Only this counts as "visible".
- ABSENT: a query answered and the stop is neither open nor fired with a fill (never listed,
  lost, or CANCELED / EXPIRED / REJECTED / FINISHED-unfilled by the venue).
- UNKNOWN: no query answered (a failed or too slow query is "not yet known", not "invisible").

The 1 s clock starts at the venue's acknowledgement of the placement (`acked_at`, passed with
the watch request), not when a worker picks the check up; the deadline is enforced inside each
poll too (a poll still running at the deadline ends the wait: that poll is UNKNOWN). An
ALGO_UPDATE for the id is a fast path (it wakes the poller early) but never the only path
(peer lesson: nautilus_trader PR #4411).

At the deadline: VISIBLE -> confirmed. ABSENT -> the P0 flatten (reduce-only market close
through the emergency lane; the symbol's actor records EMERGENCY_FLAT and sets the 30-minute
loss/freeze cooldowns). UNKNOWN -> an alert, and the Sentinel keeps checking with a bounded
back-off: the first ABSENT answer flattens, a late VISIBLE one confirms (recorded with how
late). During a ban or an outage the exchange-side stops protect, and a flatten through an
unreachable venue would fail anyway.

A verdict about a stop that has since been replaced (the watch request of its successor named
it in `replaces`) never flattens: the successor's own check decides. Checks run on the
Sentinel's worker threads, never in its inbox.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import pykka

from atlas_actors.domain.covering import covering_stop, stop_removed
from atlas_actors.domain.events import AlgoUpdate
from atlas_actors.engine import FlattenFailed, close_at_market
from atlas_actors.venues.base import VenueError
from atlas_actors.venues.priority import Priority, request_priority

log = logging.getLogger("atlas.sentinel")

VISIBLE = "VISIBLE"
ABSENT = "ABSENT"
UNKNOWN = "UNKNOWN"

UNKNOWN_BACKOFF_MAX_S = 2.0  # between re-checks of a stop whose visibility is not known yet
UNKNOWN_GIVE_UP_S = 120.0  # then the periodic audit and recovery take over (alerted)
LATE_POLL_S = 0.25  # how long the one poll of a check that starts after its deadline may take


@dataclass(frozen=True)
class Verdict:
    state: str  # VISIBLE / ABSENT / UNKNOWN
    late_ms: int = 0  # answered this long after the deadline (0: in time)
    detail: str = ""


class VisibilityGuard:
    def __init__(
        self,
        venue: Any,
        *,
        poll_interval_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        backoff_max_s: float = UNKNOWN_BACKOFF_MAX_S,
        give_up_s: float = UNKNOWN_GIVE_UP_S,
    ) -> None:
        self.venue = venue
        self.poll_interval_s = poll_interval_s
        self.clock = clock
        self._sleep = sleep
        self.backoff_max_s = backoff_max_s
        self.give_up_s = give_up_s
        self._seen: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        # polls run here so that a check can stop waiting for a slow one at its deadline
        self._polls = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sentinel-poll")
        self.checks = 0

    def _event(self, client_algo_id: str) -> threading.Event:
        with self._lock:
            ev = self._seen.get(client_algo_id)
            if ev is None:
                ev = self._seen[client_algo_id] = threading.Event()
            return ev

    def on_algo_update(self, upd: AlgoUpdate) -> None:
        if upd.status == "NEW" or stop_removed(upd.status, upd.executed_qty):
            self._event(upd.client_algo_id).set()

    # ------------------------------------------------------------------ one question

    def probe(self, symbol: str, client_algo_id: str) -> str:
        """One look at the venue: VISIBLE, ABSENT or UNKNOWN (see the module docstring)."""
        with request_priority(Priority.PROTECTION):  # never behind the weight governor
            return self._probe(symbol, client_algo_id)

    def _probe(self, symbol: str, client_algo_id: str) -> str:
        self.checks += 1
        try:
            algos = self.venue.get_open_algo_orders(symbol)
        except VenueError as exc:
            log.warning("%s: open algo query failed: %s", symbol, exc)
            return UNKNOWN
        if any(str(a.get("client_algo_id")) == client_algo_id for a in algos):
            return VISIBLE
        # Not open: it may have fired already (a fast market). Only a fired stop whose child
        # order filled did its job; one the venue removed, or never heard of, did not.
        try:
            found = self.venue.get_algo_order(symbol=symbol, client_algo_id=client_algo_id)
        except VenueError:
            return UNKNOWN
        if not found:
            return ABSENT
        return self._fired_state(symbol, found)

    def _fired_state(self, symbol: str, algo: Mapping[str, Any]) -> str:
        status = str(algo.get("status"))
        if status not in ("TRIGGERING", "TRIGGERED", "FINISHED"):
            return ABSENT  # NEW but not listed, or CANCELED / EXPIRED / REJECTED
        if algo.get("executed_qty") is not None and status == "FINISHED":
            return VISIBLE if float(algo["executed_qty"]) > 0 else ABSENT
        child = algo.get("order_id") or algo.get("actual_order_id")
        if not child:
            return UNKNOWN  # triggering: the child order does not exist yet
        try:
            order = self.venue.get_order(symbol=symbol, order_id=str(child))
        except VenueError:
            return UNKNOWN
        if order and float(order.get("executed_qty") or 0.0) > 0:
            return VISIBLE
        if status == "FINISHED" or (order and str(order.get("status")) in ("EXPIRED", "CANCELED")):
            return ABSENT  # triggered, and its child order filled nothing
        return UNKNOWN  # the child is still working

    def _bounded_probe(self, symbol: str, client_algo_id: str, timeout_s: float) -> str:
        """`probe`, but a poll that has not answered after `timeout_s` is UNKNOWN."""
        fut = self._polls.submit(self.probe, symbol, client_algo_id)
        try:
            return fut.result(timeout=max(timeout_s, 0.001))
        except FutureTimeout:
            log.warning(
                "%s: visibility poll of %s still running at its deadline", symbol, client_algo_id
            )
            return UNKNOWN

    # ------------------------------------------------------------------ a check

    def check(
        self,
        symbol: str,
        client_algo_id: str,
        deadline_ms: int = 1000,
        *,
        acked_at: float | None = None,
    ) -> Verdict:
        """Poll until VISIBLE or the deadline (`acked_at` + deadline_ms, on `clock`; the call
        time without an ack time). At the deadline: ABSENT when a query answered, else UNKNOWN.
        At least one poll runs even when the deadline has already passed."""
        start = self.clock() if acked_at is None else acked_at
        deadline = start + deadline_ms / 1000.0
        ev = self._event(client_algo_id)
        answered = False
        polls = 0
        try:
            while True:
                bound = deadline - self.clock()
                if polls == 0 and bound <= 0:
                    bound = LATE_POLL_S  # acknowledged long ago: still ask once
                polls += 1
                state = self._bounded_probe(symbol, client_algo_id, bound)
                now = self.clock()
                if state == VISIBLE:
                    return Verdict(VISIBLE, late_ms=max(0, int((now - deadline) * 1000)))
                answered = answered or state == ABSENT
                remaining = deadline - now
                if remaining <= 0:
                    return Verdict(ABSENT if answered else UNKNOWN)
                self._wait(ev, min(self.poll_interval_s, remaining))
        finally:
            with self._lock:
                self._seen.pop(client_algo_id, None)

    def follow_up(
        self,
        symbol: str,
        client_algo_id: str,
        deadline: float,
        *,
        stop: Callable[[], bool] = lambda: False,
    ) -> Verdict:
        """After an UNKNOWN verdict: keep asking with a bounded back-off until the venue
        answers (VISIBLE late, or ABSENT), `stop()` says the question is moot, or `give_up_s`
        passed (still UNKNOWN)."""
        delay = self.poll_interval_s
        give_up = self.clock() + self.give_up_s
        while not stop():
            state = self._bounded_probe(symbol, client_algo_id, max(delay, 1.0))
            now = self.clock()
            if state != UNKNOWN:
                return Verdict(state, late_ms=max(0, int((now - deadline) * 1000)))
            if now >= give_up:
                break
            self._wait(None, min(delay, give_up - now))
            delay = min(delay * 2, self.backoff_max_s)
        return Verdict(UNKNOWN, late_ms=max(0, int((self.clock() - deadline) * 1000)))

    def verify(
        self,
        symbol: str,
        client_algo_id: str,
        deadline_ms: int = 1000,
        *,
        acked_at: float | None = None,
        on_unknown: Callable[[], None] | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> Verdict:
        """`check`, then `follow_up` while UNKNOWN (`on_unknown` is told once, at the deadline)."""
        verdict = self.check(symbol, client_algo_id, deadline_ms, acked_at=acked_at)
        if verdict.state != UNKNOWN:
            return verdict
        if on_unknown is not None:
            on_unknown()
        start = self.clock() if acked_at is None else acked_at
        return self.follow_up(symbol, client_algo_id, start + deadline_ms / 1000.0, stop=stop)

    def ensure_algo_visible(
        self,
        symbol: str,
        client_algo_id: str,
        deadline_ms: int = 1000,
        *,
        acked_at: float | None = None,
    ) -> bool:
        """True when the stop is VISIBLE (in time or late); False when ABSENT, or when the
        venue stayed unanswering for `give_up_s`."""
        return self.verify(symbol, client_algo_id, deadline_ms, acked_at=acked_at).state == VISIBLE

    def _wait(self, ev: threading.Event | None, seconds: float) -> None:
        if seconds <= 0:
            return
        if self._sleep is not None:
            self._sleep(seconds)
        elif ev is None:
            time.sleep(seconds)
        elif ev.wait(seconds):
            ev.clear()  # fast path: an ALGO_UPDATE arrived; confirm with a query

    def close(self) -> None:
        self._polls.shutdown(wait=False, cancel_futures=True)


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
    SUPERSEDED_KEPT = 64  # per symbol: replaced stops whose verdicts never flatten

    def __init__(
        self,
        venue: Any,
        emergency_venue: Any,
        symbol_ref: Callable[[str], Any],
        *,
        poll_interval_s: float = 0.05,
        workers: int = 8,
        on_emergency: Callable[[str, str, dict[str, Any]], None] | None = None,
        on_alert: Callable[[str, str], None] | None = None,
        step_size: Callable[[str], float] | None = None,
    ) -> None:
        super().__init__()
        self.guard = VisibilityGuard(venue, poll_interval_s=poll_interval_s)
        self.venue = venue
        self.emergency_venue = emergency_venue
        self.symbol_ref = symbol_ref
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sentinel")
        self._checks: set[Future[None]] = set()
        self.on_emergency = on_emergency
        self.on_alert = on_alert
        self.step_size = step_size or (lambda symbol: _venue_step(venue, symbol))
        self.flats = 0
        self.confirmed = 0
        self.late = 0
        self.unknown = 0
        self._superseded: dict[str, deque[str]] = {}
        self._superseded_lock = threading.Lock()

    def ping(self) -> str:
        return "pong"

    def crash(self, reason: str) -> None:
        raise RuntimeError(f"injected Sentinel crash: {reason}")

    def on_algo_update(self, upd: AlgoUpdate) -> None:
        self.guard.on_algo_update(upd)

    def watch(
        self,
        symbol: str,
        client_algo_id: str,
        deadline_ms: int = 1000,
        *,
        acked_at: float | None = None,
        replaces: str | None = None,
    ) -> None:
        """Check a freshly placed stop in the background and act on the verdict. `acked_at`:
        when the venue acknowledged it (time.monotonic), where the deadline starts; `replaces`:
        the stop it supersedes (whose verdicts then never flatten)."""
        if replaces:
            self._supersede(symbol, replaces)
        self._checks.add(
            self.pool.submit(self._watch, symbol, client_algo_id, deadline_ms, acked_at)
        )

    def idle(self) -> bool:
        """No visibility check in flight (a graceful stop lets running checks deliver their
        verdicts before the actors go)."""
        self._checks = {f for f in self._checks if not f.done()}
        return not self._checks

    def ensure_algo_visible(
        self,
        symbol: str,
        client_algo_id: str,
        deadline_ms: int = 1000,
        *,
        acked_at: float | None = None,
    ) -> bool:
        return self.guard.ensure_algo_visible(
            symbol, client_algo_id, deadline_ms, acked_at=acked_at
        )

    def _supersede(self, symbol: str, client_algo_id: str) -> None:
        with self._superseded_lock:
            q = self._superseded.setdefault(symbol, deque(maxlen=self.SUPERSEDED_KEPT))
            if client_algo_id not in q:
                q.append(client_algo_id)

    def superseded(self, symbol: str, client_algo_id: str) -> bool:
        with self._superseded_lock:
            return client_algo_id in self._superseded.get(symbol, ())

    def _alert(self, symbol: str, reason: str) -> None:
        log.error("%s: %s", symbol, reason)
        if self.on_alert is not None:
            try:
                self.on_alert(symbol, reason)
            except Exception:  # noqa: BLE001 - an alert must never stop a check
                log.exception("%s: alert failed", symbol)

    def _watch(
        self, symbol: str, client_algo_id: str, deadline_ms: int, acked_at: float | None = None
    ) -> None:
        try:
            self._judge(symbol, client_algo_id, deadline_ms, acked_at)
        except Exception:  # noqa: BLE001 - a worker must never die silently
            log.exception("%s: sentinel watch failed", symbol)

    def _judge(
        self, symbol: str, client_algo_id: str, deadline_ms: int, acked_at: float | None
    ) -> None:
        def unknown() -> None:
            self.unknown += 1
            self._alert(
                symbol,
                f"protective stop {client_algo_id}: visibility unknown at the {deadline_ms} ms "
                "deadline (the venue does not answer); still checking",
            )

        verdict = self.guard.verify(
            symbol,
            client_algo_id,
            deadline_ms,
            acked_at=acked_at,
            on_unknown=unknown,
            stop=lambda: self.superseded(symbol, client_algo_id),
        )
        actor = self.symbol_ref(symbol)
        if verdict.state == VISIBLE:
            self.confirmed += 1
            msg: dict[str, Any] = {"msg": "stop_visibility", "cid": client_algo_id, "visible": True}
            if verdict.late_ms:
                self.late += 1
                msg["late_ms"] = verdict.late_ms
            if actor is not None:
                actor.tell(msg)
            return
        if self.superseded(symbol, client_algo_id):
            # replaced meanwhile: its successor's own check decides; the actor records it
            if actor is not None:
                actor.tell({"msg": "stop_visibility", "cid": client_algo_id, "visible": False})
            return
        if verdict.state == UNKNOWN:
            self._alert(
                symbol,
                f"protective stop {client_algo_id}: visibility still unknown after "
                f"{self.guard.give_up_s:.0f} s; recovery takes over",
            )
            if actor is not None:
                actor.tell({"msg": "recover", "why": f"stop {client_algo_id} visibility unknown"})
            return
        self._flatten_absent(symbol, client_algo_id, deadline_ms, verdict, actor)

    def _flatten_absent(
        self, symbol: str, client_algo_id: str, deadline_ms: int, verdict: Verdict, actor: Any
    ) -> None:
        reason = f"protective stop {client_algo_id} not visible within {deadline_ms} ms"
        if verdict.late_ms:
            reason += f" (known absent {verdict.late_ms} ms after the deadline)"
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
        self._deliver(symbol, {"msg": "emergency_flattened", "reason": reason, "result": result})

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
        """Every venue position must have a COVERING Algo stop (domain.covering: closing side,
        reduce-only or closePosition, qty >= the position within half a step). Returns the
        findings; the supervisor has each symbol's actor re-place within the 1 s rule (and
        flatten when that fails)."""
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
            side = str(pos.get("side", "NONE"))
            qty = abs(float(pos.get("qty") or 0))
            if side == "NONE" or qty == 0:
                continue
            try:
                algos = self.venue.get_open_algo_orders(symbol)
            except VenueError as exc:
                findings.append({"symbol": symbol, "problem": f"cannot read algos: {exc}"})
                continue
            if covering_stop(algos, side, qty, self.step_size(symbol)) is None:
                findings.append(
                    {
                        "symbol": symbol,
                        "problem": f"{side} {qty:g} without a covering visible Algo stop",
                        "uncovered": True,
                    }
                )
        return findings

    def on_stop(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.guard.close()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.guard.close()


def _venue_step(venue: Any, symbol: str) -> float:
    """The venue's quantity step for `symbol` (0: unknown, then the qty must cover exactly)."""
    try:
        getter = getattr(venue, "get_symbol_filters", None)
        if getter is not None:
            return float(getter(symbol)["step_size"])
        return float(venue.get_filters(symbol).step_size)
    except (VenueError, KeyError, ValueError, AttributeError, TypeError):
        return 0.0
