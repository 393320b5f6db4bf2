"""SymbolActor: one symbol's actor, a thin pykka shell around its `SymbolEngine`.

Life: STARTING -> RECOVERING -> READY <-> (PAUSED | FROZEN); HALTED after too many
restarts (protection kept, never opens). Only READY opens; every other state makes the
domain reject candidates with `reject_reason` naming the state.

Messages are dicts `{"msg": KIND, ...}` sent with tell/ask. A handler that raises is a
crash: the actor reports to the supervisor (which restarts it into RECOVERING) and stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka

from atlas_actors.engine import SymbolEngine
from atlas_actors.venues.base import RateLimited, UnknownOutcome, VenueUnavailable

# A venue that is briefly unavailable during recovery (503, a timeout, a rate limit) is not a
# crash: recovery is tried again after a back-off, the actor stays RECOVERING (no opens) and
# keeps answering its inbox, and nothing counts toward the restart intensity (HALT).
TRANSIENT = (RateLimited, UnknownOutcome, VenueUnavailable)
RECOVERY_RETRY_BASE_S = 0.1
# short: a position whose stop was lost waits for this recovery (the venue's Retry-After is
# honoured on top, and a ban stops every request anyway)
RECOVERY_RETRY_MAX_S = 1.0
# An ACCOUNT_UPDATE may come before the ORDER_TRADE_UPDATE that explains it: a position that
# still disagrees with the venue's this long after the venue reported it is reconciled.
VENUE_POSITION_GRACE_S = 3.0

log = logging.getLogger("atlas.symbol")

STARTING = "STARTING"
RECOVERING = "RECOVERING"
READY = "READY"
PAUSED = "PAUSED"
FROZEN = "FROZEN"
HALTED = "HALTED"
STATES = (STARTING, RECOVERING, READY, PAUSED, FROZEN, HALTED)

MESSAGE_KINDS = (
    "bar",
    "mark",
    "order_update",
    "algo_update",
    "venue_position",
    "stop_visibility",
    "emergency_flattened",
    "recover",
    "pause",
    "resume",
    "freeze",
    "flatten",
    "status",
    "state",
    "ping",
)


class SymbolActor(pykka.ThreadingActor):
    # A stuck venue call must never keep the process alive after shutdown: the supervisor
    # stops actors with a deadline and the store is flushed by the main thread.
    use_daemon_thread = True

    def __init__(
        self,
        symbol: str,
        engine_factory: Callable[[], SymbolEngine],
        *,
        on_crash: Callable[[str, BaseException], None],
        on_lifecycle: Callable[[str, str, str], None] | None = None,
        # (symbol, cid, deadline_ms, acked_at, replaces) -> None when the Sentinel took the
        # check, else the verdict of an inline check (the Sentinel is down: same rule)
        watch_stop: Callable[[str, str, int, float | None, str | None], bool | None] | None = None,
        ensure_visible: Callable[..., bool] | None = None,  # (symbol, cid, ms, *, acked_at)
        account_block: Callable[[str, SymbolEngine], str | None] | None = None,
        halted: bool = False,
        deadline_ms: int = 1000,
    ) -> None:
        super().__init__()
        self.symbol = symbol
        self.engine_factory = engine_factory
        self.engine: SymbolEngine | None = None
        self.on_crash = on_crash
        self.on_lifecycle = on_lifecycle
        self.watch_stop = watch_stop
        self.ensure_visible = ensure_visible
        self.account_block = account_block
        self.halted = halted
        self.deadline_ms = deadline_ms
        self.status_name = STARTING
        self.paused = False
        self.crash_on: set[str] = set()  # fault injection for the chaos suite
        self.last_decision_ms: float = 0.0
        self.recovery: dict[str, Any] | None = None
        self._dead = False
        self._venue_position: tuple[str, float] | None = None  # the latest ACCOUNT_UPDATE's
        self._position_check_due = False

    # ------------------------------------------------------------------ life

    def _set_status(self, status: str, why: str = "") -> None:
        if status != self.status_name:
            self.status_name = status
            if self.on_lifecycle is not None:
                self.on_lifecycle(self.symbol, status, why)

    def on_start(self) -> None:
        self.engine = self.engine_factory()
        eng = self.engine
        eng.on_emergency = lambda reason: (
            self._set_status(FROZEN, reason) if not self.halted else None
        )
        eng.schedule_resolve = self._tell_later({"msg": "resolve_unknown"})
        if self.watch_stop is not None:
            watch = self.watch_stop

            class _Port:
                def request(
                    self,
                    symbol: str,
                    client_algo_id: str,
                    deadline_ms: int,
                    *,
                    acked_at: float | None = None,
                    replaces: str | None = None,
                ) -> None:
                    verdict = watch(symbol, client_algo_id, deadline_ms, acked_at, replaces)
                    if verdict is not None:  # checked inline: act on it like the Sentinel's
                        eng.on_stop_visibility(client_algo_id, verdict)

            eng.visibility = _Port()
        self._refresh_block()

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, dict) or "msg" not in message:
            log.warning("%s: ignoring malformed message %r", self.symbol, message)
            return None
        kind = message["msg"]
        if self.engine is not None and self.engine.fenced():
            return None  # replaced by a restarted instance: this one only drains its inbox
        try:
            if kind in self.crash_on:
                self.crash_on.discard(kind)
                raise RuntimeError(f"injected crash in {self.symbol} on message {kind!r}")
            handler = getattr(self, f"_on_{kind}", None)
            if handler is None:
                log.warning("%s: unknown message kind %r", self.symbol, kind)
                return None
            return handler(message)
        except Exception as exc:  # noqa: BLE001 - a crash: report and stop, never half-run
            self._die(exc)
            return {"crashed": repr(exc)}

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self._die(exception_value)

    def _die(self, exc: BaseException) -> None:
        if self._dead:
            return
        self._dead = True
        log.error("%s: actor crashed: %r", self.symbol, exc)
        try:
            self.on_crash(self.symbol, exc)
        finally:
            self.actor_ref.stop(block=False)

    # ------------------------------------------------------------------ gating

    def _refresh_block(self) -> None:
        eng = self.engine
        if eng is None:
            return
        if self.status_name == FROZEN:
            now = eng.now()
            if now >= eng.state.cooldown_until.freeze:
                self._set_status(READY, "freeze expired")
        if self.status_name != READY:
            eng.open_block_reason = f"actor state {self.status_name}"
        elif self.account_block is not None:
            eng.open_block_reason = self.account_block(self.symbol, eng)
        else:
            eng.open_block_reason = None

    # ------------------------------------------------------------------ handlers

    def _on_recover(self, message: dict[str, Any]) -> dict[str, Any]:
        """RECOVERING: reconcile with the venue, recover_protection, Sentinel confirmation."""
        eng = self.engine
        assert eng is not None
        self._set_status(RECOVERING, str(message.get("why", "start")))
        self._refresh_block()
        try:
            out = eng.recover()
        except TRANSIENT as exc:
            return self._retry_recovery(message, exc)
        self.recovery = out
        algo = out.get("algo") or {}
        cid = algo.get("client_algo_id") if algo else None
        if cid and self.ensure_visible is not None:
            # the deadline of a stop recover_protection just placed starts at its ack
            visible = self.ensure_visible(
                self.symbol, str(cid), self.deadline_ms, acked_at=out.get("acked_at")
            )
            out["visible"] = visible
            if not visible:
                eng.emergency_flatten(
                    f"recovered stop {cid} not visible within {self.deadline_ms} ms"
                )
                self._set_status(HALTED if self.halted else FROZEN, "recovery failed")
                self._refresh_block()
                return out
        if self.halted:
            self._set_status(HALTED, "restart intensity exceeded")
        elif eng.now() < eng.state.cooldown_until.freeze:
            self._set_status(FROZEN, "freeze cooldown active")
        elif self.paused:
            self._set_status(PAUSED, "operator pause")
        else:
            self._set_status(READY, "recovered")
        self._refresh_block()
        return out

    def _retry_recovery(self, message: dict[str, Any], exc: Exception) -> dict[str, Any]:
        attempt = int(message.get("attempt", 0)) + 1
        delay = min(RECOVERY_RETRY_MAX_S, RECOVERY_RETRY_BASE_S * 2 ** (attempt - 1))
        if isinstance(exc, RateLimited):
            delay = max(delay, exc.retry_after)
        log.warning(
            "%s: recovery attempt %d hit a transient venue error (%s); again in %.2f s",
            self.symbol,
            attempt,
            exc,
            delay,
        )
        again = {"msg": "recover", "why": message.get("why", "start"), "attempt": attempt}
        ref = self.actor_ref

        def retry() -> None:
            try:
                ref.tell(again)
            except pykka.ActorDeadError:
                pass  # replaced or stopped meanwhile: its successor recovers on its own

        timer = threading.Timer(delay, retry)
        timer.daemon = True
        timer.start()
        self.recovery = {"action": "RETRYING", "attempt": attempt, "error": str(exc)}
        return self.recovery

    def _tell_later(self, message: dict[str, Any]) -> Callable[[float], None]:
        """A function that tells this actor `message` after a delay (a daemon timer)."""
        ref = self.actor_ref

        def later(delay_s: float) -> None:
            def tell() -> None:
                try:
                    ref.tell(dict(message))
                except pykka.ActorDeadError:
                    pass  # replaced meanwhile: its successor reconciles on its own

            timer = threading.Timer(delay_s, tell)
            timer.daemon = True
            timer.start()

        return later

    def _on_resolve_unknown(self, message: dict[str, Any]) -> None:
        assert self.engine is not None
        self.engine.resolve_unknown()

    def _on_bar(self, message: dict[str, Any]) -> dict[str, Any]:
        eng = self.engine
        assert eng is not None
        t0 = time.perf_counter()
        self._refresh_block()
        eng.on_bar(message["bar"])
        self.last_decision_ms = (time.perf_counter() - t0) * 1000.0
        return {"decision_ms": self.last_decision_ms}

    def _on_mark(self, message: dict[str, Any]) -> None:
        assert self.engine is not None
        self.engine.on_mark_price(message["price"], message.get("funding_rate"))

    def _on_order_update(self, message: dict[str, Any]) -> None:
        assert self.engine is not None
        self.engine.on_order_update(message["update"])

    def _on_algo_update(self, message: dict[str, Any]) -> None:
        assert self.engine is not None
        self.engine.on_algo_update(message["update"])

    def _on_venue_position(self, message: dict[str, Any]) -> None:
        """The user stream's ACCOUNT_UPDATE said what the venue holds. A change the shard
        never hears of as a fill (the exchange closing the position by itself, an order
        someone else sent) must not leave a phantom position: when the shard still disagrees
        after `VENUE_POSITION_GRACE_S`, it is reconciled with the venue."""
        if not message.get("verify"):
            self._venue_position = (str(message["side"]), float(message["qty"]))
            if self._position_agrees() or self._position_check_due:
                return
            self._position_check_due = True
            ref = self.actor_ref

            def verify() -> None:
                try:
                    ref.tell({"msg": "venue_position", "verify": True})
                except pykka.ActorDeadError:
                    pass  # a restarted successor recovers on its own

            timer = threading.Timer(VENUE_POSITION_GRACE_S, verify)
            timer.daemon = True
            timer.start()
            return
        self._position_check_due = False
        if self._position_agrees() or self.status_name in (STARTING, RECOVERING):
            return
        eng = self.engine
        assert eng is not None and self._venue_position is not None
        ps = eng.state.position_state
        side, qty = self._venue_position
        self._on_recover(
            {
                "msg": "recover",
                "why": f"ACCOUNT_UPDATE: the venue holds {side} {qty:g}, "
                f"the shard {ps.side} {ps.qty_total:g}",
            }
        )

    def _position_agrees(self) -> bool:
        eng = self.engine
        if eng is None or self._venue_position is None:
            return True
        side, qty = self._venue_position
        ps = eng.state.position_state
        shard_qty = ps.qty_total if ps.side != "NONE" else 0.0
        venue_qty = qty if side != "NONE" else 0.0
        step = eng.filters.step_size if eng.filters is not None else 0.0
        if venue_qty <= step and shard_qty <= step:
            return True
        return side == ps.side and abs(venue_qty - shard_qty) <= max(step, 1e-9 * venue_qty)

    def _on_stop_visibility(self, message: dict[str, Any]) -> None:
        assert self.engine is not None
        self.engine.on_stop_visibility(
            message["cid"],
            bool(message["visible"]),
            venue_flat=bool(message.get("flat")),
            late_ms=int(message.get("late_ms") or 0),
        )

    def _on_emergency_flattened(self, message: dict[str, Any]) -> None:
        assert self.engine is not None
        self.engine.on_emergency_flattened(message["reason"], message["result"])
        if not self.halted:
            self._set_status(FROZEN, message["reason"])
        self._refresh_block()

    def _on_pause(self, message: dict[str, Any]) -> dict[str, Any]:
        self.paused = True
        if self.status_name == READY:
            self._set_status(PAUSED, str(message.get("why", "operator pause")))
        self._refresh_block()
        return self._status()

    def _on_resume(self, message: dict[str, Any]) -> dict[str, Any]:
        self.paused = False
        if self.status_name in (PAUSED,):
            self._set_status(READY, "operator resume")
        elif self.status_name == HALTED and message.get("clear_halt"):
            self.halted = False
            self._set_status(READY, "operator resume after halt")
        self._refresh_block()
        return self._status()

    def _on_freeze(self, message: dict[str, Any]) -> dict[str, Any]:
        from dataclasses import replace

        eng = self.engine
        assert eng is not None
        until = eng.now() + int(float(message["minutes"]) * 60)
        cd = eng.state.cooldown_until
        eng.state = replace(eng.state, cooldown_until=replace(cd, freeze=max(cd.freeze, until)))
        eng._persist(flush=True)
        if self.status_name in (READY, PAUSED):
            self._set_status(FROZEN, f"operator freeze {message['minutes']} min")
        self._refresh_block()
        return self._status()

    def _on_flatten(self, message: dict[str, Any]) -> dict[str, Any]:
        eng = self.engine
        assert eng is not None
        reason = f"operator flatten by {message.get('operator', 'unknown')}"
        result = eng.emergency_flatten(reason)
        return {"symbol": self.symbol, "flattened": result}

    def _status(self) -> dict[str, Any]:
        eng = self.engine
        assert eng is not None
        ps = eng.state.position_state
        cd = eng.state.cooldown_until
        return {
            "symbol": self.symbol,
            "state": self.status_name,
            "regime": eng.state.last_regime,
            "position": {
                "side": ps.side,
                "qty": ps.qty_total,
                "entry_price": ps.entry_price,
                "stage": ps.position_stage,
            },
            "stop": {
                "price": ps.sl_price,
                "client_algo_id": ps.sl_algo.client_algo_id,
                "algo_id": ps.sl_algo.algo_id,
            },
            "locks": {
                "loss": cd.loss,
                "template": cd.template,
                "freeze": cd.freeze,
                "shock": cd.shock,
                "b_blacklist": eng.state.b_blacklist_until,
            },
            "open_block_reason": eng.open_block_reason,
            "bars": eng.state.bar_index,
        }

    def _on_status(self, message: dict[str, Any]) -> dict[str, Any]:
        return self._status()

    def _on_state(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.engine is not None
        return self.engine.state.to_dict()

    def _on_ping(self, message: dict[str, Any]) -> str:
        return "pong"

    def _on_inject_crash(self, message: dict[str, Any]) -> None:
        """Arm a crash on the next message of a kind (chaos tests), or crash now."""
        kind = message.get("on")
        if kind:
            self.crash_on.add(str(kind))
            return None
        raise RuntimeError(f"injected crash in {self.symbol}")
