"""`atlas run`: build the venue, the store and the actor tree from the config and run it.

Paper mode (default): SimVenue in-process on the bundled real klines; the SimVenue book
(balance, positions, open orders and algos) is saved in the state dir with every flush, and
a restarted run resumes the replay after the last bar each symbol processed.
`--venue sim-exchange`: the real BinanceAdapter against `atlas sim-exchange` on loopback.
testnet/live: BinanceAdapter on Binance; live refuses SimVenue and replayed data (§0.4) and
refuses to start unless `atlas selfcheck` passes.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("atlas.run")

PAPER_VENUE_META = "paper_venue"


class LiveModeRefused(Exception):
    """live mode was asked to use a simulator or replayed data (§0.4)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="atlas run",
        description="Run the Atlas actor tree. Default: paper mode on the bundled real klines, no keys needed.",
    )
    p.add_argument(
        "--config", default=None, help="TOML config (default: config/atlas.toml, paper mode)"
    )
    p.add_argument("--mode", choices=("paper", "testnet", "live"), help="override [run] mode")
    p.add_argument("--symbols", help="comma-separated symbols, e.g. BTCUSDC,XRPUSDT")
    p.add_argument("--speed", help="paper replay speed: N (x real time) or max")
    p.add_argument("--max-bars", type=int, help="stop after N bars per symbol (paper)")
    p.add_argument("--state-dir", help="LMDB state directory")
    p.add_argument("--log-dir", help="directory for records.jsonl and the log")
    p.add_argument(
        "--venue", choices=("sim", "sim-exchange", "binance"), help="override [venue] kind"
    )
    p.add_argument("--venue-url", help="REST base URL for sim-exchange (http://127.0.0.1:PORT)")
    p.add_argument("--venue-ws-url", help="WebSocket base URL when the sim exchange splits ports")
    p.add_argument(
        "--admin-socket",
        help="admin unix socket path (default $RUNTIME_DIRECTORY/admin.sock or <state-dir>/admin.sock)",
    )
    p.add_argument("--no-admin", action="store_true", help="do not open the admin socket")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument(
        "--adopt",
        action="store_true",
        help="take over open orders with this instance's client-id prefix that its state "
        "never issued (else the start is refused: another instance may be trading)",
    )
    p.add_argument(
        "--run-seconds", type=float, help="stop after this many seconds (live/testnet/sim-exchange)"
    )
    return p


def _default_config_path() -> str:
    here = Path(__file__).resolve().parent.parent / "config" / "atlas.toml"
    if here.exists():
        return str(here)
    return "config/atlas.toml"


def load_run_config(a: argparse.Namespace) -> Any:
    from supervisor.config import apply_overrides, load_config

    cfg = load_config(a.config or _default_config_path())
    speed: Any = None
    if a.speed is not None:
        speed = a.speed if a.speed == "max" else float(a.speed)
    return apply_overrides(
        cfg,
        run_mode=a.mode,
        run_symbols=[s.strip().upper() for s in a.symbols.split(",") if s.strip()]
        if a.symbols
        else None,
        run_state_dir=a.state_dir,
        run_log_dir=a.log_dir,
        paper_speed=speed,
        paper_max_bars=a.max_bars,
        venue_kind=a.venue,
        venue_url=a.venue_url,
        venue_ws_url=a.venue_ws_url,
        admin_socket=a.admin_socket,
    )


def build_venue(cfg: Any, secrets: Any, store: Any) -> tuple[Any, Any, Any]:
    """Returns (venue, replay or None, before_flush hook or None)."""
    mode = cfg.run.mode
    kind = cfg.venue.kind
    if mode == "live" and kind != "binance":
        raise LiveModeRefused(f"live mode refuses the simulated venue {kind!r} (contract §0.4)")
    if kind == "sim":
        if mode != "paper":
            raise LiveModeRefused(f"{mode} mode cannot use the in-process simulator")
        return _paper_sim(cfg, store)
    from atlas_actors.venues.binance import BinanceAdapter
    from atlas_actors.venues.hosts import HostRefused, check_binance_urls

    if kind == "sim-exchange":
        key = secrets.binance_api_key or "paper"
        secret = secrets.binance_api_secret or "paper"
        venue = BinanceAdapter(
            key,
            secret,
            rest_url=cfg.venue.url,
            ws_url=cfg.venue.ws_url,
            recv_window_ms=cfg.venue.recv_window_ms,
            interval=cfg.run.interval,
            symbols=list(cfg.run.symbols),
        )
        return venue, None, None
    try:  # the config loader checked this too: a built venue must never slip past it
        check_binance_urls(mode, cfg.venue.url, cfg.venue.ws_url)
    except HostRefused as exc:
        raise LiveModeRefused(f"venue.{exc.key}: {exc}") from None
    if not (secrets.binance_api_key and secrets.binance_api_secret):
        raise LiveModeRefused(
            "BINANCE_API_KEY / BINANCE_API_SECRET (or systemd credentials) are not set"
        )
    venue = BinanceAdapter(
        secrets.binance_api_key,
        secrets.binance_api_secret,
        rest_url=cfg.venue.url,
        ws_url=cfg.venue.ws_url,
        testnet=(mode == "testnet") or cfg.venue.testnet,
        recv_window_ms=cfg.venue.recv_window_ms,
        interval=cfg.run.interval,
        symbols=list(cfg.run.symbols),
    )
    return venue, None, None


def _paper_sim(cfg: Any, store: Any) -> tuple[Any, Any, Any]:
    from atlas_actors.actors.market_feed import PaperReplay
    from atlas_actors.venues import replay as rp
    from atlas_actors.venues.filters import default_filters_for
    from atlas_actors.venues.sim import SimVenue

    series: dict[str, list[dict[str, Any]]] = {}
    for sym in cfg.run.symbols:
        src = cfg.paper.data.get(sym)
        series[sym] = rp.paper_series_for(sym, src)
    snap = store.get_meta(PAPER_VENUE_META)
    kwargs = {"fee_bps": cfg.venue.fee_bps, "slippage_bps": cfg.venue.slippage_bps}
    if snap:
        venue = SimVenue.from_snapshot(snap, **kwargs)
    else:
        venue = SimVenue(starting_balance=cfg.venue.starting_balance, **kwargs)
    # Finished orders are kept for idempotent lookups; the book is saved at every flush, so
    # keep that history short (the shard's client-id sequence never reuses an id anyway).
    venue.max_closed = 2_000
    known = set(venue.symbols())
    for sym, bars in series.items():
        if sym not in known and len(bars):  # filters fixed up front from the data's first price
            f = default_filters_for(sym, bars[0]["close"])
            venue.add_symbol(
                sym,
                tick_size=f.tick_size,
                step_size=f.step_size,
                min_qty=f.min_qty,
                min_notional=f.min_notional,
            )
    resume = {s: int(store.get_symbol_state(s).get("last_bar_close_time", 0)) for s in series}
    replay = PaperReplay(series, resume_after=resume, max_bars=cfg.paper.max_bars)

    def before_flush() -> None:
        store.put_meta(PAPER_VENUE_META, venue.snapshot())

    return venue, replay, before_flush


class Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.2 and done < total:
            return
        self.last = now
        pct = 100.0 * done / total if total else 100.0
        sys.stderr.write(f"\rreplay {done}/{total} bars ({pct:5.1f}%)")
        sys.stderr.flush()
        if done >= total:
            sys.stderr.write("\n")


def main_run(argv: list[str]) -> int:
    from supervisor.config import ConfigError, config_error_exit

    a = build_parser().parse_args(argv)
    try:
        cfg = load_run_config(a)
    except (ConfigError, ValueError) as exc:
        return config_error_exit(exc)
    rc = run_service(
        cfg, quiet=a.quiet, no_admin=a.no_admin, run_seconds=a.run_seconds, adopt=a.adopt
    )
    _exit_if_threads_linger(rc)
    return rc


def _exit_if_threads_linger(rc: int, grace_s: float = 1.0) -> None:
    """The state is flushed and closed: a thread still stuck in a venue call (a stream client,
    an executor worker) must not hold the process in interpreter shutdown for ever."""
    deadline = time.monotonic() + grace_s
    while True:
        lingering = [
            t
            for t in threading.enumerate()
            if t is not threading.main_thread() and not t.daemon and t.is_alive()
        ]
        if not lingering or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if lingering:
        log.warning("exiting past lingering threads: %s", ", ".join(t.name for t in lingering))
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(rc)


SHUTDOWN_DEADLINE_S = 10.0  # systemd's TimeoutStopSec is 60 s; we promise far less
TREE_STOP_S = 8.0  # what the tree's graceful stop may take of that


class StartupFailed(Exception):
    """The service cannot run as configured (exit 2 with one line naming the problem)."""


class _Shutdown:
    """Signals and the shutdown deadline. First SIGTERM/SIGINT: stop gracefully (the caller
    notices `stop`), and whatever happens the process is gone `SHUTDOWN_DEADLINE_S` later.
    Second signal: exit at once; the stops stay on the exchange."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._armed = False
        self._lock = threading.Lock()

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # embedded (tests): the caller owns the signals
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stop.is_set():
            _hard_exit(128 + signum, f"second {signal.Signals(signum).name}: exiting now")
        self.stop.set()
        self.arm(1)

    def arm(self, rc: int) -> None:
        """From now on the process exits within the deadline, whatever is stuck."""
        with self._lock:
            if self._armed:
                return
            self._armed = True

        def guard() -> None:
            time.sleep(SHUTDOWN_DEADLINE_S)
            _hard_exit(rc, f"shutdown took longer than {SHUTDOWN_DEADLINE_S:g} s")

        threading.Thread(target=guard, name="shutdown-deadline", daemon=True).start()


def _hard_exit(rc: int, why: str) -> None:
    try:
        sys.stderr.write(f"atlas run: {why}; protective stops stay on the exchange\n")
        sys.stderr.flush()
        sys.stdout.flush()
        logging.shutdown()
    finally:
        os._exit(rc)


def check_symbols_listed(venue: Any, symbols: list[str]) -> None:
    """Every configured symbol must be one the venue trades, before any actor starts: an
    unknown or delisted symbol is a configuration fact, not a transient error to crash-loop
    on. Raises StartupFailed naming them all."""
    from atlas_actors.venues.base import VenueError

    missing = []
    status_of = getattr(venue, "symbol_status", None)
    for sym in symbols:
        try:
            if hasattr(venue, "get_symbol_filters"):
                venue.get_symbol_filters(sym)
            else:
                venue.get_filters(sym)
            status = status_of(sym) if callable(status_of) else "TRADING"
        except KeyError:
            missing.append(sym)
        except VenueError as exc:
            if exc.code != -1121:
                raise
            missing.append(sym)
        else:
            if status != "TRADING":
                missing.append(f"{sym} ({status})")
    if missing:
        raise StartupFailed(
            f"the venue does not trade {', '.join(missing)} (not listed, or not TRADING); "
            "remove it from [run] symbols / --symbols"
        )


def check_one_instance(
    venue: Any, store: Any, symbols: list[str], prefix: str, adopt: bool
) -> None:
    """Open orders of this prefix the shard never issued: another instance (see
    supervisor/instances.py). Refused (StartupFailed) unless `adopt`."""
    from supervisor import instances

    found = instances.foreign_client_ids(venue, store, symbols, prefix)
    if not found:
        return
    if not adopt:
        raise StartupFailed(instances.describe(found, prefix))
    log.warning("--adopt: taking over %s", found)
    instances.adopt(store, found, prefix)


def run_service(
    cfg: Any,
    *,
    quiet: bool = False,
    no_admin: bool = False,
    run_seconds: float | None = None,
    adopt: bool = False,
) -> int:
    from atlas_actors.events import JsonlRecordWriter, read_records
    from atlas_actors.store import StateStore, StoreError
    from atlas_actors.summary import format_summary, summarize
    from supervisor.admin import AdminSocketError
    from supervisor.alerts import init_alerts
    from supervisor.notify import Notifier, WatchdogLoop
    from supervisor.secrets import install_log_scrubbing, load_secrets, redact
    from supervisor.tree import AtlasTree

    secrets = load_secrets()
    install_log_scrubbing(secrets)
    os.makedirs(cfg.run.log_dir, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.FileHandler(os.path.join(cfg.run.log_dir, "atlas.log"))],
    )
    shutdown = _Shutdown()
    shutdown.install()
    stop = shutdown.stop
    notifier = Notifier()
    alerts = init_alerts(cfg, secrets)
    try:
        store = StateStore(cfg.run.state_dir)
        store.load()
    except StoreError as exc:
        print(f"atlas run: {exc}", file=sys.stderr)
        return 2
    tree = None
    admin = None
    watchdog = None
    sink = None
    rc = 0
    try:
        from atlas_actors.venues.binance.account import MarginAssetMix

        try:
            venue, replay, before_flush = build_venue(cfg, secrets, store)
        except LiveModeRefused as exc:
            print(f"atlas run: refused: {exc}", file=sys.stderr)
            return 2
        except MarginAssetMix as exc:
            raise StartupFailed(str(exc)) from None
        check_symbols_listed(venue, list(cfg.run.symbols))
        check_one_instance(venue, store, list(cfg.run.symbols), cfg.run.client_id_prefix, adopt)
        if cfg.run.mode == "live":
            from atlas_actors.selfcheck import run_selfcheck

            report = run_selfcheck(venue, cfg, list(cfg.run.symbols))
            print(report.format_table())
            if not report.ok:
                alerts.selfcheck_failed(report)
                print("atlas run: selfcheck failed; refusing to trade live", file=sys.stderr)
                return 1
        records_path = os.path.join(cfg.run.log_dir, "records.jsonl")
        start_offset = os.path.getsize(records_path) if os.path.exists(records_path) else 0
        sink = JsonlRecordWriter(records_path, store=store, scrub=lambda s: redact(s))
        speed = None if cfg.paper.speed == "max" else float(cfg.paper.speed)
        sup = cfg.supervisor
        params = cfg.params
        tier_a = params.tier("A")
        tree = AtlasTree(
            venue=venue,
            store=store,
            sink=sink,
            params=params,
            symbols=list(cfg.run.symbols),
            clock=_clock_for(venue, replay),
            prefix=cfg.run.client_id_prefix,
            replay=replay,
            speed=speed,
            alerts=alerts,
            restart_intensity=sup.restart_intensity,
            restart_window_s=sup.restart_window_s,
            restart_backoff_s=sup.restart_backoff_s,
            restart_backoff_max_s=sup.restart_backoff_max_s,
            ping_interval_s=sup.ping_interval_s,
            ping_timeout_s=sup.ping_timeout_s,
            audit_interval_s=sup.audit_interval_s,
            deadline_ms=sup.sentinel_deadline_ms,
            before_flush=before_flush,
            on_progress=Progress(not quiet),
            leverage=getattr(tier_a, "leverage", None),
            manage_stream=replay is None,
            # SimVenue has no request budget; a real venue gets Binance-safe defaults
            rate_per_s=10_000.0 if replay is not None else 20.0,
            # a real venue's balances/positions: cached 2 s, dropped on every fill
            account_max_age_s=0.0 if replay is not None else 2.0,
        )
        tree.start()
        if not no_admin:
            from supervisor.admin import AdminServer, default_admin_socket

            path = cfg.admin.socket or default_admin_socket(cfg.run.state_dir)
            admin = AdminServer(path, tree)
            try:
                admin.start()
            except (AdminSocketError, OSError) as exc:
                admin = None
                raise StartupFailed(f"admin socket: {exc}") from None
        ready = tree.wait_ready(timeout_s=60.0, abort=stop)
        if ready:
            notifier.ready(f"{len(cfg.run.symbols)} symbols READY")
        elif not stop.is_set():
            log.error("not every symbol became READY within 60 s")
        wd_interval = notifier.watchdog_interval_s()
        if wd_interval:
            watchdog = WatchdogLoop(
                notifier, tree.critical_healthy, wd_interval, status_text=lambda: _status_line(tree)
            )
            watchdog.start()
        if not stop.is_set():
            tree.start_market()
        started = time.monotonic()
        while not stop.is_set():
            if replay is not None and tree.replay_done.is_set():
                break
            if run_seconds is not None and time.monotonic() - started >= run_seconds:
                break
            stop.wait(0.1)
    except StartupFailed as exc:
        rc = 2
        print(f"atlas run: {exc}", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - one line for the operator, the trace in the log
        rc = 1
        log.exception("atlas run failed")
        print(f"atlas run: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        if rc:
            shutdown.arm(rc)  # whatever is stuck, the process exits within the deadline
        try:
            _stop_all(notifier, watchdog, admin, tree)
            if sink is not None:
                sink.close()
        finally:
            if rc or tree is None:
                store.close()
    if rc or tree is None:
        alerts.flush(1.0)
        return rc
    try:
        records = _records_since(records_path, start_offset, read_records)
        # live: one closed bar per candidate evaluation is not exact; count what the feed sent
        bars = tree.bars_fed if replay is not None else len(tree.symbols) and tree.bars_fed
        summary = summarize(records, bars=bars)
        summary["restarts"] = tree.restarts_total
        print(format_summary(summary))
        print(f"records: {records_path}\nstate:   {cfg.run.state_dir}")
        alerts.flush(2.0)
        return 0
    finally:
        store.close()


def _stop_all(notifier: Any, watchdog: Any, admin: Any, tree: Any) -> None:
    notifier.stopping("shutting down: stops stay on the exchange")
    if watchdog is not None:
        watchdog.stop()
    if admin is not None:
        admin.stop()
    if tree is not None:
        tree.stop(timeout_s=TREE_STOP_S)


def _records_since(path: str, offset: int, reader: Any) -> list[dict[str, Any]]:
    import json

    out: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as fh:
        fh.seek(offset)
        for line in fh:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _status_line(tree: Any) -> str:
    counts: dict[str, int] = {}
    for c in tree.children.values():
        counts[c.status] = counts.get(c.status, 0) + 1
    return (
        " ".join(f"{k}={v}" for k, v in sorted(counts.items())) + f" restarts={tree.restarts_total}"
    )


def _clock_for(venue: Any, replay: Any) -> Any:
    """Paper: the replay's simulated time (the venue's clock; before its first bar, the
    replay's start); otherwise wall time."""
    if replay is not None and hasattr(venue, "now"):
        start = replay.start_time_s()
        return lambda: venue.now() or start
    return time.time
