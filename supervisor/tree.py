"""The supervisor: starts, watches and restarts the actor tree.

Start order: store (already open) -> OrderGateway -> Sentinel -> MarketFeed -> one
SymbolActor per symbol. Before any open: one-way position mode and each symbol's leverage.
Each SymbolActor starts in RECOVERING (reconcile with the venue by client id,
recover_protection, Sentinel confirmation) and only then becomes READY.

Failure detection: an actor that crashes reports itself (pykka `on_failure` and the
actor's own guard), and a monitor thread pings every actor; no answer -> treated as dead.
A crashed SymbolActor is restarted into RECOVERING; more than `restart_intensity`
restarts within `restart_window_s` -> HALTED (no opens, protection kept, alert). A crashed
shared actor is restarted; in-flight orders are resolved by client id by their engines.

Also here: account-level limits every open passes (`AccountGuard`), the admin controller,
periodic flushing and graceful stop (stop opening, flush, stop actors, stops stay on the
exchange).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pykka

from atlas_actors.account import AccountView
from atlas_actors.account_guard import AccountGuard
from atlas_actors.actors import symbol as sa
from atlas_actors.actors.market_feed import EventRouter, MarketFeed, PaperReplay
from atlas_actors.actors.order_gateway import GatewayPort, InFlight, Lanes, OrderGateway
from atlas_actors.actors.sentinel import Sentinel
from atlas_actors.engine import SymbolEngine
from atlas_actors.venues.ban_gate import BanGate
from atlas_actors.venues.base import VenueError
from supervisor.bans import BanAlerts
from supervisor.children import CRASH_ALERT_EVERY_S, CRASH_LOG_MAX, Child, restart_delay
from supervisor.shutdown import cancel_resting_entries

WATCH_HANDOVER_S = 0.5  # the Sentinel must take a visibility check this fast, else inline

log = logging.getLogger("atlas.supervisor")


class AtlasTree:
    def __init__(
        self,
        *,
        venue: Any,
        store: Any,
        sink: Any,
        params: Any,
        symbols: list[str],
        clock: Callable[[], float] = time.time,
        prefix: str = "atl",
        replay: PaperReplay | None = None,
        speed: float | None = None,
        alerts: Any = None,
        restart_intensity: int = 5,
        restart_window_s: float = 60.0,
        ping_interval_s: float = 1.0,
        ping_timeout_s: float = 5.0,
        audit_interval_s: float = 5.0,
        flush_interval_s: float = 0.5,
        deadline_ms: int = 1000,
        sentinel_poll_s: float = 0.05,
        rate_per_s: float = 20.0,
        before_flush: Callable[[], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        leverage: int | None = None,
        manage_stream: bool = False,
        shared_restart_intensity: int = 3,
        account_max_age_s: float = 0.0,
        restart_backoff_s: float = 0.5,
        restart_backoff_max_s: float = 60.0,
    ) -> None:
        self.venue = venue
        # One for the whole process: during a venue ban no port sends anything.
        self.ban_alerts = BanAlerts(lambda: self.alerts)
        self.ban_gate = BanGate(on_ban=self.ban_alerts.on_gate_ban)
        self.in_flight = InFlight()  # actors waiting on a (slow) venue reply
        self.store = store
        self.sink = sink
        self.params = params
        self.symbols = list(symbols)
        self.clock = clock
        self.prefix = prefix
        self.replay = replay
        self.speed = speed
        self.alerts = alerts
        self.restart_intensity = restart_intensity
        self.restart_window_s = restart_window_s
        self.restart_backoff_s = restart_backoff_s
        self.restart_backoff_max_s = restart_backoff_max_s
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        # a venue call may take the gateway's timeout (10 s) a few times over (lookups)
        self.slow_call_grace_s = 60.0
        self.audit_interval_s = audit_interval_s
        self.flush_interval_s = flush_interval_s
        self.deadline_ms = deadline_ms
        self.sentinel_poll_s = sentinel_poll_s
        self.rate_per_s = rate_per_s
        self.before_flush = before_flush
        self.on_progress = on_progress
        self.leverage = leverage
        self.manage_stream = manage_stream
        self.children: dict[str, Child] = {s: Child(s) for s in self.symbols}
        self.gateway: pykka.ActorRef[Any] | None = None
        self.sentinel: pykka.ActorRef[Any] | None = None
        self.feed: pykka.ActorRef[Any] | None = None
        self._lanes: Lanes | None = None
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.replay_done = threading.Event()
        self.bars_fed = 0
        risk = getattr(params, "risk", None)
        self.accounts = AccountView(venue, max_age_s=account_max_age_s)
        self.account = AccountGuard(
            self.accounts,
            max_concurrent_positions=int(getattr(risk, "max_concurrent_positions", 10)),
            max_margin_share=float(getattr(risk, "max_margin_share", 0.5)),
            daily_loss_halt_pct=float(getattr(risk, "daily_loss_halt_pct", 5.0)),
            sink=sink,
        )
        self.restarts_total = 0
        self.shared_restarts = 0
        self.shared_restart_intensity = shared_restart_intensity
        self._shared_restart_times: dict[str, deque[float]] = {}
        self.given_up: set[str] = set()
        self.crash_log: deque[dict[str, Any]] = deque(maxlen=CRASH_LOG_MAX)

    # ------------------------------------------------------------------ lookups

    def lanes(self) -> Lanes | None:
        return self._lanes

    def symbol_ref(self, symbol: str) -> Any:
        child = self.children.get(symbol)
        if child is None or child.ref is None or not child.ref.is_alive():
            return None
        return child.ref

    def sentinel_proxy(self) -> Any:
        ref = self.sentinel
        if ref is None or not ref.is_alive():
            return None
        return ref.proxy()

    def _lifecycle(self, symbol: str, status: str, why: str) -> None:
        child = self.children.get(symbol)
        if child is not None:
            child.status = status
        self.sink.emit(
            {
                "kind": "lifecycle",
                "ts": int(self.clock()),
                "symbol": symbol,
                "state": status,
                "why": why,
            }
        )

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        self._start_gateway()
        self._start_sentinel()
        self._prepare_account()
        self.router = EventRouter(
            self.symbol_ref,
            self.sentinel_proxy,
            bars_from_stream=self.replay is None,
            on_resync=self._on_resync,
            on_ban=self.ban_alerts.on_venue_ban,
        )
        self.venue.add_listener(self.accounts.on_event)
        self.venue.add_listener(self.router.dispatch)
        self._start_feed()
        for sym in self.symbols:
            self._start_symbol(sym, why="start")
        self._spawn(self._monitor_loop, "supervisor-monitor")
        self._spawn(self._flush_loop, "store-flusher")
        if self.manage_stream:
            self.venue.ws_start()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _start_gateway(self) -> None:
        self.gateway = OrderGateway.start(
            self.venue, rate_per_s=self.rate_per_s, burst=self.rate_per_s * 2
        )
        self._lanes = self.gateway.proxy().lanes_ref().get()

    def _start_sentinel(self) -> None:
        port = GatewayPort(
            self.venue, "__sentinel__", self.lanes, gate=self.ban_gate, in_flight=self.in_flight
        )
        self.sentinel = Sentinel.start(
            port,
            port.emergency,
            self.symbol_ref,
            poll_interval_s=self.sentinel_poll_s,
            on_emergency=self._on_emergency,
            on_alert=self._on_protection_alert,
        )

    def _start_feed(self) -> None:
        self.feed = MarketFeed.start(
            self.venue,
            self.symbol_ref,
            replay=self.replay,
            speed=self.speed,
            on_progress=self.on_progress,
            on_done=self.replay_done.set,
        )

    def _prepare_account(self) -> None:
        try:
            self.venue.set_position_mode_one_way()
        except VenueError as exc:
            log.error("cannot set one-way position mode: %s", exc)
            raise
        if self.leverage:
            for sym in self.symbols:
                try:
                    self.venue.set_leverage(sym, int(self.leverage))
                except VenueError as exc:
                    log.warning("%s: set_leverage failed: %s", sym, exc)

    def _engine_factory(self, symbol: str, fence: threading.Event) -> Callable[[], SymbolEngine]:
        def make() -> SymbolEngine:
            port = GatewayPort(
                self.venue, symbol, self.lanes, gate=self.ban_gate, in_flight=self.in_flight
            )
            engine = SymbolEngine(
                symbol,
                venue=port,
                emergency_venue=port.emergency,
                account=self.accounts,
                fence=fence,
                params=self.params,
                store=self.store,
                sink=self.sink,
                clock=self.clock,
                prefix=self.prefix,
                deadline_ms=self.deadline_ms,
            )
            engine.on_venue_close = lambda kind, rec: self._on_venue_close(symbol, kind, rec)
            return engine

        return make

    def _watch_stop(
        self,
        symbol: str,
        cid: str,
        deadline_ms: int,
        acked_at: float | None = None,
        replaces: str | None = None,
    ) -> bool | None:
        """Hand a stop's visibility check to the Sentinel (None), or - while the Sentinel is
        down or restarting - check it inline, the same rule, and return the verdict for the
        engine to act on (a check is never dropped)."""
        s = self.sentinel_proxy()
        if s is not None:
            try:
                s.watch(symbol, cid, deadline_ms, acked_at=acked_at, replaces=replaces).get(
                    timeout=WATCH_HANDOVER_S
                )
                return None
            except Exception as exc:  # noqa: BLE001 - dead, stopping or stuck: check inline
                log.warning("%s: Sentinel did not take the check of %s: %r", symbol, cid, exc)
        return self._ensure_visible(symbol, cid, deadline_ms, acked_at=acked_at)

    def _ensure_visible(
        self, symbol: str, cid: str, deadline_ms: int, *, acked_at: float | None = None
    ) -> bool:
        from atlas_actors.actors.sentinel import VisibilityGuard

        s = self.sentinel
        if s is not None and s.is_alive():
            try:
                guard = s.proxy().guard.get(timeout=WATCH_HANDOVER_S)
                return bool(guard.ensure_algo_visible(symbol, cid, deadline_ms, acked_at=acked_at))
            except (pykka.ActorDeadError, pykka.Timeout):
                pass
        guard = VisibilityGuard(self.venue, poll_interval_s=self.sentinel_poll_s)
        try:
            return guard.ensure_algo_visible(symbol, cid, deadline_ms, acked_at=acked_at)
        finally:
            guard.close()

    def _start_symbol(self, symbol: str, *, why: str) -> None:
        child = self.children[symbol]
        child.fence = threading.Event()
        child.ref = sa.SymbolActor.start(
            symbol,
            self._engine_factory(symbol, child.fence),
            on_crash=self._child_failed,
            on_lifecycle=self._lifecycle,
            watch_stop=self._watch_stop,
            ensure_visible=self._ensure_visible,
            account_block=self.account.block_reason,
            halted=child.halted,
            deadline_ms=self.deadline_ms,
        )
        self._lifecycle(symbol, sa.STARTING, why)
        child.ref.tell({"msg": "recover", "why": why})

    # ------------------------------------------------------------------ failures

    def _child_failed(self, symbol: str, exc: BaseException) -> None:
        if self._stopping.is_set():
            return
        threading.Thread(target=self._restart_symbol, args=(symbol, exc), daemon=True).start()

    def _restart_symbol(self, symbol: str, exc: BaseException) -> None:
        """A crash: count it, alert (rate-limited), HALT past the intensity, then restart into
        RECOVERING after the back-off."""
        with self._lock:
            child = self.children[symbol]
            self._retire(child)
            now = time.monotonic()
            child.restarts.append(now)
            while child.restarts and now - child.restarts[0] > self.restart_window_s:
                child.restarts.popleft()
            child.restart_count += 1
            self.restarts_total += 1
            self.crash_log.append({"symbol": symbol, "error": repr(exc), "at": time.time()})
            self.sink.emit(
                {
                    "kind": "lifecycle",
                    "ts": int(self.clock()),
                    "symbol": symbol,
                    "state": "CRASHED",
                    "why": repr(exc),
                }
            )
            self._alert_crash(child, exc, now)
            was_halted = child.halted
            if len(child.restarts) > self.restart_intensity and not child.halted:
                child.halted = True
                reason = f"{len(child.restarts)} restarts within {self.restart_window_s:.0f}s"
                if self.alerts is not None:
                    self.alerts.halted(symbol, reason)
            delay = restart_delay(
                len(child.restarts),
                halted=was_halted,
                base_s=self.restart_backoff_s,
                max_s=self.restart_backoff_max_s,
            )
            child.generation += 1
            turn = child.generation
        why = f"restart after {type(exc).__name__}"
        if delay > 0:
            log.warning("%s: restarting in %.1f s (%s)", symbol, delay, why)
            if self._stopping.wait(delay):
                return
        with self._lock:
            if self._stopping.is_set() or child.generation != turn:
                return  # stopping, or an operator restart already started a newer instance
            self._start_symbol(symbol, why=why)

    def _retire(self, child: Child) -> None:
        """Fence the current instance first: if it is stuck in a venue call it must never act
        again once it wakes up (its successor owns the symbol from now on)."""
        old = child.ref
        child.fence.set()
        if old is not None and old.is_alive():
            try:
                old.stop(block=True, timeout=2.0)
            except pykka.Timeout:
                pass

    def _alert_crash(self, child: Child, exc: BaseException, now: float) -> None:
        if self.alerts is None:
            return
        if now - child.last_alert_at < CRASH_ALERT_EVERY_S:
            child.alerts_suppressed += 1
            return
        if child.alerts_suppressed:
            exc = RuntimeError(
                f"{exc!r} (+{child.alerts_suppressed} more crashes of {child.symbol} "
                f"since the last alert)"
            )
        child.last_alert_at = now
        child.alerts_suppressed = 0
        self.alerts.actor_crashed("SymbolActor", child.symbol, exc)

    def _on_emergency(self, symbol: str, reason: str, result: dict[str, Any]) -> None:
        if self.alerts is not None:
            self.alerts.emergency_flat(symbol, reason, result)

    def _on_protection_alert(self, symbol: str, reason: str) -> None:
        """A stop's visibility stayed unknown past its deadline (the venue does not answer)."""
        self.sink.emit(
            {"kind": "alert", "ts": int(self.clock()), "symbol": symbol, "reason": reason}
        )
        notify = getattr(self.alerts, "stop_unconfirmed", None)
        if notify is not None:
            notify(symbol, reason)

    def _on_venue_close(self, symbol: str, kind: str, record: dict[str, Any]) -> None:
        if self.alerts is not None:
            self.alerts.venue_closed(symbol, kind, record)

    def _on_resync(self) -> None:
        for sym in self.symbols:
            ref = self.symbol_ref(sym)
            if ref is not None:
                ref.tell({"msg": "recover", "why": "stream resync"})

    def _restart_shared(self, name: str) -> None:
        self.shared_restarts += 1
        if self.alerts is not None:
            self.alerts.actor_crashed(name, None, RuntimeError(f"{name} not answering"))
        now = time.monotonic()
        times = self._shared_restart_times.setdefault(name, deque())
        while times and now - times[0] > self.restart_window_s:
            times.popleft()
        if len(times) >= self.shared_restart_intensity:
            # Give up: the process is not healthy any more. The watchdog pings stop and
            # systemd restarts the whole service (every stop stays on the exchange).
            if name not in self.given_up:
                self.given_up.add(name)
                self.sink.emit(
                    {
                        "kind": "lifecycle",
                        "ts": int(self.clock()),
                        "symbol": "*",
                        "state": "GAVE_UP",
                        "why": f"{name}: {len(times)} restarts within {self.restart_window_s:.0f}s",
                    }
                )
                if self.alerts is not None:
                    self.alerts.halted("*", f"{name} keeps failing; giving up")
            return
        times.append(now)
        self.sink.emit(
            {
                "kind": "lifecycle",
                "ts": int(self.clock()),
                "symbol": "*",
                "state": "RESTART",
                "why": name,
            }
        )
        if name == "OrderGateway":
            if self.gateway is not None and self.gateway.is_alive():
                self.gateway.stop(block=False)
            self._start_gateway()
        elif name == "Sentinel":
            if self.sentinel is not None and self.sentinel.is_alive():
                self.sentinel.stop(block=False)
            self._start_sentinel()
            # stops placed while the Sentinel was down are re-checked by every actor's recovery
            self._on_resync()
        elif name == "MarketFeed":
            if self.feed is not None and self.feed.is_alive():
                self.feed.stop(block=False)
            if self.replay is not None:
                # resume each symbol after the last bar its shard recorded
                self.replay.resume_after = {
                    s: int(self.store.get_symbol_state(s).get("last_bar_close_time", 0))
                    for s in self.symbols
                }
            self._start_feed()
            self.start_market()

    def _alive(self, ref: pykka.ActorRef[Any] | None) -> bool:
        if ref is None or not ref.is_alive():
            return False
        try:
            return ref.proxy().ping().get(timeout=self.ping_timeout_s) == "pong"
        except Exception:  # noqa: BLE001
            return False

    def critical_healthy(self) -> bool:
        return self._alive(self.gateway) and self._alive(self.sentinel) and self._alive(self.feed)

    def _monitor_loop(self) -> None:
        last_audit = time.monotonic()
        while not self._stopping.wait(self.ping_interval_s):
            try:
                for name, ref in (
                    ("OrderGateway", self.gateway),
                    ("Sentinel", self.sentinel),
                    ("MarketFeed", self.feed),
                ):
                    if name in self.given_up:
                        continue
                    if not self._stopping.is_set() and not self._alive(ref):
                        with self._lock:
                            self._restart_shared(name)
                self._ping_children()
                if time.monotonic() - last_audit >= self.audit_interval_s:
                    last_audit = time.monotonic()
                    self._audit()
            except Exception:  # noqa: BLE001 - the monitor must outlive anything
                log.exception("monitor loop error")

    def _ping_children(self) -> None:
        """Ping every SymbolActor at once and wait for all within one timeout (a slow one
        cannot starve the others' pings). No answer is a failure, unless the actor is inside
        a venue call that has not outlasted the slow-reply grace (it answers after it)."""
        pending: dict[str, Any] = {}
        for sym, child in self.children.items():
            ref = child.ref
            if ref is None or self._stopping.is_set() or not ref.is_alive():
                continue  # (a dead one's crash report is already restarting it)
            try:
                pending[sym] = ref.ask({"msg": "ping"}, block=False)
            except pykka.ActorDeadError:
                pass
        deadline = time.monotonic() + self.ping_timeout_s
        for sym, fut in pending.items():
            try:
                fut.get(timeout=max(0.0, deadline - time.monotonic()))
            except pykka.Timeout:
                busy = self.in_flight.busy_for(sym)
                if busy is not None and busy < self.slow_call_grace_s:
                    log.warning("%s: no ping answer, waiting %.1f s on the venue", sym, busy)
                    continue
                self._child_failed(sym, TimeoutError(f"{sym} did not answer a ping"))
            except pykka.ActorDeadError:
                pass

    def _audit(self) -> None:
        """Periodic protection audit: a position without a covering stop (domain.covering)
        is re-protected by its actor's recovery - recover_protection, then the 1 s visibility
        rule, and the P0 flatten when the stop is not visible - not just recreated."""
        s = self.sentinel_proxy()
        if s is None:
            return
        try:
            findings = s.audit(self.symbols).get(timeout=10)
        except Exception:  # noqa: BLE001
            return
        for f in findings:
            sym = f.get("symbol")
            ref = self.symbol_ref(sym) if sym else None
            if ref is not None:
                ref.tell({"msg": "recover", "why": f"audit: {f['problem']}"})

    def flush(self) -> None:
        if self.before_flush is not None:
            self.before_flush()
        self.store.flush()

    def _flush_loop(self) -> None:
        while not self._stopping.wait(self.flush_interval_s):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001
                log.exception("periodic flush failed")
                self._storage_failed(exc)
            else:
                self._storage_ok()

    def _storage_failed(self, exc: BaseException) -> None:
        """The state cannot be made durable (disk full, I/O error): no new opens anywhere
        until it can (nothing unflushed may be sent), protection goes on, alert once."""
        if self.account.storage_block is not None:
            return
        reason = f"storage: state store flush failed ({exc}); no new opens until it writes"
        self.account.storage_block = reason
        self.sink.emit(
            {
                "kind": "lifecycle",
                "ts": int(self.clock()),
                "symbol": "*",
                "state": "STORAGE_FAILED",
                "why": reason,
            }
        )
        if self.alerts is not None:
            self.alerts.storage_failed(reason)

    def _storage_ok(self) -> None:
        if self.account.storage_block is None:
            return
        self.account.storage_block = None
        self.sink.emit(
            {
                "kind": "lifecycle",
                "ts": int(self.clock()),
                "symbol": "*",
                "state": "STORAGE_OK",
                "why": "state store writes again; opens allowed",
            }
        )

    # ------------------------------------------------------------------ running

    def start_market(self) -> None:
        if self.feed is not None:
            self.feed.proxy().start_replay()

    def all_ready(self) -> bool:
        return all(
            c.status in (sa.READY, sa.PAUSED, sa.FROZEN, sa.HALTED) for c in self.children.values()
        )

    def wait_ready(self, timeout_s: float = 30.0, *, abort: threading.Event | None = None) -> bool:
        """Wait until every symbol is past recovery; `abort` (a stop signal) ends the wait."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.all_ready():
                return True
            if abort is not None and abort.is_set():
                break
            time.sleep(0.005)
        return self.all_ready()

    def stop(self, timeout_s: float = 8.0) -> None:
        """Graceful and bounded, in every state (recovering, crash-looping, waiting on the
        venue): stop opening and the market, cancel resting *entry* orders (stops and
        take-profits stay: they protect), flush, stop the actors. Each step gets what is left
        of `timeout_s`; a step that cannot finish in time is abandoned, never waited on."""
        deadline = time.monotonic() + timeout_s
        self._stopping.set()

        def left(floor: float = 0.05) -> float:
            return max(floor, deadline - time.monotonic())

        pauses = []
        for child in self.children.values():
            if child.ref is not None and child.ref.is_alive():
                try:
                    pauses.append(child.ref.ask({"msg": "pause", "why": "shutdown"}, block=False))
                except Exception:  # noqa: BLE001
                    pass
        for fut in pauses:
            try:
                fut.get(timeout=min(2.0, left()))
            except Exception:  # noqa: BLE001 - a busy or dead actor: it is stopped below
                pass
        if self.feed is not None and self.feed.is_alive():
            try:
                self.feed.proxy().stop_replay().get(timeout=min(2.0, left()))
                self.bars_fed = int(self.feed.proxy().bars_sent.get(timeout=min(2.0, left())))
            except Exception:  # noqa: BLE001
                pass
        self._await_verdicts(min(2.0, left()))
        self._bounded(
            lambda: cancel_resting_entries(
                self.venue, self.symbols, self.prefix, self.sink, self.clock
            ),
            min(3.0, left()),
            "cancel resting entries",
        )
        if self.manage_stream:
            self._bounded(self.venue.ws_stop, min(2.0, left()), "stop the streams")
        self._bounded(self.flush, min(2.0, left()), "flush")
        refs = [c.ref for c in self.children.values()] + [self.feed, self.sentinel, self.gateway]
        for ref in refs:
            if ref is not None and ref.is_alive():
                try:
                    ref.stop(block=False)
                except Exception:  # noqa: BLE001
                    pass
        for ref in refs:
            if ref is not None and ref.is_alive():
                try:
                    ref.stop(block=True, timeout=left())
                except Exception:  # noqa: BLE001 - stuck in a venue call: abandoned
                    pass
        self._bounded(self.flush, left(0.5), "final flush")

    def _await_verdicts(self, timeout_s: float) -> None:
        """Stops placed just before the stop still get their Sentinel verdict recorded."""
        deadline = time.monotonic() + timeout_s
        s = self.sentinel_proxy()
        while s is not None and time.monotonic() < deadline:
            try:
                if s.idle().get(timeout=max(0.05, deadline - time.monotonic())):
                    return
            except Exception:  # noqa: BLE001 - dead or busy: nothing more to wait for
                return
            time.sleep(0.02)

    def _bounded(self, fn: Callable[[], None], timeout_s: float, what: str) -> bool:
        """Run `fn` on a helper thread and wait at most `timeout_s` for it."""
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            except Exception:  # noqa: BLE001
                log.exception("shutdown: %s failed", what)
            finally:
                done.set()

        threading.Thread(target=run, name=f"shutdown-{what}", daemon=True).start()
        if not done.wait(timeout_s):
            log.error("shutdown: %s did not finish within %.1f s; going on", what, timeout_s)
            return False
        return True

    # ------------------------------------------------------------------ admin controller

    def _ask(self, symbol: str, message: dict[str, Any], timeout: float = 10.0) -> Any:
        ref = self.symbol_ref(symbol)
        if ref is None:
            raise KeyError(f"unknown or stopped symbol {symbol!r}")
        return ref.ask(message, timeout=timeout)

    def _targets(self, symbol: str | None) -> list[str]:
        if symbol in (None, "", "all", "ALL"):
            return list(self.symbols)
        if symbol not in self.children:
            raise KeyError(f"unknown symbol {symbol!r}")
        return [symbol]

    def status(self) -> dict[str, Any]:
        out = []
        for sym in self.symbols:
            try:
                out.append(self._ask(sym, {"msg": "status"}, timeout=5.0))
            except Exception as exc:  # noqa: BLE001
                out.append({"symbol": sym, "state": self.children[sym].status, "error": str(exc)})
        return {
            "symbols": out,
            "restarts": self.restarts_total,
            "healthy": self.critical_healthy(),
            "account_halt": self.account.halt_reason,
        }

    def pause(self, symbol: str | None) -> dict[str, Any]:
        return {"symbols": [self._ask(s, {"msg": "pause"}) for s in self._targets(symbol)]}

    def resume(self, symbol: str | None) -> dict[str, Any]:
        targets = self._targets(symbol)
        with self._lock:
            for s in targets:  # the operator's resume is a fresh start for the restart policy
                child = self.children[s]
                child.halted = False
                child.restarts.clear()
        return {"symbols": [self._ask(s, {"msg": "resume", "clear_halt": True}) for s in targets]}

    def freeze(self, symbol: str, minutes: float) -> dict[str, Any]:
        return {
            "symbols": [
                self._ask(s, {"msg": "freeze", "minutes": minutes}) for s in self._targets(symbol)
            ]
        }

    def flatten(self, symbol: str, operator: str) -> dict[str, Any]:
        return {
            "symbols": [
                self._ask(s, {"msg": "flatten", "operator": operator}, timeout=30.0)
                for s in self._targets(symbol)
            ]
        }

    def state(self, symbol: str) -> dict[str, Any]:
        return self._ask(symbol, {"msg": "state"})  # type: ignore[no-any-return]

    def events(self, since: int, limit: int) -> list[dict[str, Any]]:
        return self.store.iter_events(since=since, limit=limit)  # type: ignore[no-any-return]

    def restart(self, symbol: str) -> dict[str, Any]:
        """An operator restart is not a crash: no crash count, no alert, no back-off."""
        self._targets(symbol)
        with self._lock:
            child = self.children[symbol]
            self._retire(child)
            child.generation += 1
            if not self._stopping.is_set():
                self._start_symbol(symbol, why="operator restart")
        return {"symbol": symbol, "restarted": True}
