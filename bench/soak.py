"""Soak: the paper service on 200 symbols at max speed for 10 minutes with random faults on.

`make soak` (not in CI) or `python -m bench.soak [--symbols 200] [--minutes 10] [--seed 7]`.
The same pieces `atlas run` builds in paper mode (SimVenue book, bundled data replayed
through the full actor tree, LMDB store in a temporary state dir), with, all along:

* venue faults drawn at random on every call (latency, timeouts before and after apply,
  rejects, rate limits, 503s, algo stops that are acknowledged and lost) and a 150 ms
  visibility lag on every new algo stop;
* the user stream dropped for half a second every 30 s;
* a random SymbolActor crashed every 5 s;
* a protection watch sampling the book once a second.

Prints memory (RSS) and progress over time, then the orders sent, the faults injected,
the invariant violations found by `atlas_actors.audit` (goal: 0) and every emergency flat
with its reason. Exit status 1 when any invariant was violated.
"""

from __future__ import annotations

import argparse
import logging
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from atlas_actors.audit import ProtectionWatch, VenueView, audit
from atlas_actors.venues.faults import ALL_METHODS, WRITE_METHODS

PLACEMENTS = ["place_limit_postonly", "place_market", "place_algo_stop"]
# The default paper setup, except that the account keeps trading all along: no daily-loss
# halt (the random faults cost money) and room for many positions at once.
SOAK_CONFIG = """
[run]
mode = "paper"

[risk]
daily_loss_halt_pct = 0.0
max_concurrent_positions = 60
"""
MAX_UNPROTECTED_S = 2.5  # the 1 s deadline plus margin for a loaded machine


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def arm_random_faults(venue: Any, seed: int) -> None:
    f = venue.faults
    f._rng = random.Random(seed)  # reproducible draws (the venue's own seed is 0)
    f.set_probability("latency", 0.02, methods=ALL_METHODS, latency_ms=20.0)
    f.set_probability("timeout_before_apply", 0.005, methods=PLACEMENTS + ["cancel_order"])
    f.set_probability("timeout_after_apply", 0.005, methods=PLACEMENTS + ["cancel_algo"])
    f.set_probability("reject", 0.003, methods=list(WRITE_METHODS), code=-2010)
    f.set_probability("rate_limit", 0.003, methods=ALL_METHODS, retry_after=0.05)
    f.set_probability("unavailable", 0.003, methods=ALL_METHODS)
    f.set_probability("invisible_algo", 0.01, methods=["place_algo_stop"])
    f.visibility_lag_ms = 150.0


def _reason_key(reason: str) -> str:
    reason = re.sub(r"\b[a-z]+-[A-Z0-9]+-\d+-[a-z0-9]+(?:-fx)?\b", "<id>", reason)
    return re.sub(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", "N", reason)[:110]


class FlatCounter:
    """Record sink in front of the real one: counts emergency flats as they happen."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.flats = 0

    def emit(self, record: dict[str, Any]) -> None:
        if record.get("event_type") == "EMERGENCY_FLAT":
            self.flats += 1
        self.sink.emit(record)


def build(state_dir: Path, log_dir: Path, symbols: list[str]) -> tuple[Any, ...]:
    from atlas_actors.events import JsonlRecordWriter
    from atlas_actors.store import StateStore
    from supervisor.alerts import Alerts
    from supervisor.run import _clock_for, build_parser, build_venue, load_run_config
    from supervisor.secrets import load_secrets
    from supervisor.tree import AtlasTree

    config = state_dir.parent / "soak.toml"
    config.write_text(SOAK_CONFIG, encoding="utf-8")
    argv = ["--config", str(config), "--symbols", ",".join(symbols), "--speed", "max"]
    argv += ["--state-dir", str(state_dir), "--log-dir", str(log_dir)]
    cfg = load_run_config(build_parser().parse_args(argv))
    store = StateStore(state_dir)
    venue, replay, before_flush = build_venue(cfg, load_secrets(), store)
    sink = FlatCounter(JsonlRecordWriter(log_dir / "records.jsonl", store=store))
    alerts = Alerts(None, environment="soak", release="soak", instance="soak")
    sup = cfg.supervisor
    tree = AtlasTree(
        venue=venue,
        store=store,
        sink=sink,
        params=cfg.params,
        symbols=list(symbols),
        clock=_clock_for(venue, replay),
        prefix=cfg.run.client_id_prefix,
        replay=replay,
        speed=None,
        alerts=alerts,
        restart_intensity=sup.restart_intensity,
        restart_window_s=sup.restart_window_s,
        ping_interval_s=sup.ping_interval_s,
        ping_timeout_s=sup.ping_timeout_s,
        audit_interval_s=sup.audit_interval_s,
        deadline_ms=sup.sentinel_deadline_ms,
        before_flush=before_flush,
        leverage=getattr(cfg.params.tier("A"), "leverage", None),
        rate_per_s=10_000.0,
    )
    return cfg, store, venue, sink, alerts, tree


def soak(n_symbols: int, minutes: float, seed: int, report_every_s: float) -> int:
    rng = random.Random(seed)
    symbols = [f"SYM{i:04d}" for i in range(1, n_symbols + 1)]
    work = Path(tempfile.mkdtemp(prefix="atlas-soak-"))
    (work / "logs").mkdir(parents=True)
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.FileHandler(work / "logs" / "soak.log")],
    )
    t_build = time.monotonic()
    cfg, store, venue, sink, alerts, tree = build(work / "state", work / "logs", symbols)
    print(
        f"soak: {n_symbols} symbols, max speed, {minutes:g} min, seed {seed}, "
        f"state {work} (built in {time.monotonic() - t_build:.1f} s)",
        flush=True,
    )
    tree.start()
    tree.wait_ready(120.0)
    arm_random_faults(venue, seed)
    watch = ProtectionWatch(lambda: VenueView.from_snapshot(venue.snapshot()), interval_s=1.0)
    watch.start()
    tree.start_market()
    stop = threading.Event()
    crashes = Counter()

    def chaos() -> None:
        last_stream = time.monotonic()
        while not stop.wait(5.0):
            sym = rng.choice(symbols)
            ref = tree.symbol_ref(sym)
            if ref is not None:
                ref.tell({"msg": "inject_crash"})
                crashes["SymbolActor"] += 1
            if time.monotonic() - last_stream >= 30.0:
                last_stream = time.monotonic()
                venue.faults.disconnect_stream("user")
                stop.wait(0.5)
                venue.faults.reconnect_stream("user")

    chaos_thread = threading.Thread(target=chaos, name="soak-chaos", daemon=True)
    chaos_thread.start()
    print(
        f"{'t(s)':>6} {'rss(MB)':>8} {'bars':>9} {'venue writes':>12} {'faults':>7} "
        f"{'restarts':>8} {'flats':>6} {'unprot max(s)':>13}",
        flush=True,
    )
    t0 = time.monotonic()
    deadline = t0 + minutes * 60.0
    next_report = t0
    finished = False
    while time.monotonic() < deadline:
        if tree.replay_done.wait(min(1.0, max(0.0, deadline - time.monotonic()))):
            finished = True
        now = time.monotonic()
        if now >= next_report or finished:
            next_report = now + report_every_s
            try:
                bars = int(tree.feed.proxy().bars_sent.get(timeout=5.0)) if tree.feed else 0
            except Exception:  # noqa: BLE001 - a restarting feed: show the last figure
                bars = -1
            print(
                f"{now - t0:6.0f} {rss_mb():8.1f} {bars:9d} {venue.write_count:12d} "
                f"{venue.faults.injected_total:7d} {tree.restarts_total:8d} "
                f"{sink.flats:6d} {watch.longest():13.2f}",
                flush=True,
            )
        if finished:
            print("the replay ran out of data before the time was up", flush=True)
            break
    stop.set()
    chaos_thread.join(10.0)
    venue.faults.clear()
    time.sleep(3.0)  # the last faults' consequences settle (deadlines, recoveries)
    watch.stop()
    tree.stop()
    sink.sink.close()
    records = [e for e in store.iter_events() if e.get("kind") in ("risk", "order", "candidate")]
    report = audit(store=store, venue=venue, gaps=watch.gaps, max_unprotected_s=MAX_UNPROTECTED_S)
    store.close()
    flats = Counter(
        _reason_key(str(r.get("reason")))
        for r in records
        if r.get("kind") == "risk" and r.get("event_type") == "EMERGENCY_FLAT"
    )
    orders = Counter(str(r.get("role")) for r in records if r.get("kind") == "order")
    opens = sum(1 for r in records if r.get("kind") == "candidate" and r.get("action") == "OPEN")
    print("\n=== soak summary ===")
    print(f"duration            {time.monotonic() - t0:.0f} s, peak RSS {rss_mb():.1f} MB")
    print(f"venue requests      {venue.request_count} ({venue.write_count} writes)")
    print(f"opens               {opens}")
    print(f"orders by role      {dict(sorted(orders.items()))}")
    print(f"faults injected     {dict(sorted(venue.faults.injected.items()))}")
    print(f"crashes injected    {dict(crashes)}; supervisor restarts {tree.restarts_total}")
    crashed = Counter(_reason_key(str(c["error"]).split("(")[0]) for c in tree.crash_log)
    print(f"restart causes      {dict(crashed.most_common())}")
    halted = sorted(s for s, c in tree.children.items() if c.halted)
    print(f"halted symbols      {len(halted)} {halted[:10]}")
    print(f"longest unprotected {watch.longest():.2f} s ({len(watch.gaps)} gaps sampled)")
    print(f"emergency flats     {sum(flats.values())}")
    for reason, n in flats.most_common():
        print(f"  {n:5d}  {reason}")
    print(f"invariant violations {len(report.violations)} {dict(report.by_check())}")
    for v in report.violations[:20]:
        print(v.format())
    print(f"audit checked       {dict(report.checked)}")
    print(f"logs                {work / 'logs'}")
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--symbols", type=int, default=200, help="SYM0001..SYMnnnn (default 200)")
    p.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    p.add_argument("--seed", type=int, default=7, help="fault and crash draws")
    p.add_argument("--report-every", type=float, default=30.0, help="seconds between lines")
    a = p.parse_args(argv)
    return soak(a.symbols, a.minutes, a.seed, a.report_every)


if __name__ == "__main__":
    sys.exit(main())
