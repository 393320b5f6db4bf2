"""The paper actor tree at full speed: 1, 10, 50 and 200 symbols (200 skipped with --quick).

Each size runs in its own Python process (so its RSS is its own), built exactly as
`atlas run` builds paper mode (`supervisor.run._paper_sim` + `AtlasTree`): real pykka actors,
a real LMDB store in a temp dir, SimVenue, the bundled real klines (synthetic aliases
SYM0001.. cycle over the bundled files), replay speed "max". Measured while it runs:

The OrderGateway's request budget is lifted (see RATE_UNLIMITED): at full replay speed the
simulated clock runs thousands of times faster than the wall clock, so Binance's 20 requests/s
would pace the run and hide the tree's own costs.

* bars/s                 - bars decided per second of wall time (all symbols together);
  baseline: the same number of no-op pykka actors asked once per bar the same way (the
  messaging floor of the feed's ask-every-symbol-then-wait loop).
* decision p50/p99       - each SymbolActor's time for one bar (MarketFeed collects them).
* fill -> stop p50/p99   - from the venue reporting an entry fill to the protective Algo stop
  reaching `place_algo_stop` (wall clock, the venue instrumented in this process).
* crash -> READY p50/p99 - a SymbolActor crashed on purpose (`inject_crash`) mid-run until its
  lifecycle record READY (restart, reconcile, recover_protection, Sentinel confirmation).
* flatten p50/p99        - `AtlasTree.flatten(symbol)` (the admin path: emergency reduce-only
  close) on symbols with a position, while the replay runs at full speed.
* RSS                    - peak resident memory of the process, and per symbol actor the peak
  minus the RSS before the tree started, divided by the number of symbols.

Goal (issue 9): 200 symbols with decision p99 <= 10 ms and RSS <= 300 MB.

Run: ``python -m bench.tree_bench [--quick]``; `main(quick)` returns the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "atlas.toml"
GOAL_P99_MS = 10.0
GOAL_RSS_MB = 300.0
RATE_UNLIMITED = 1_000_000.0
# (symbols, bars per symbol): full and quick plans
PLAN = [(1, 20_000), (10, 4_000), (50, 1_500), (200, 600)]
QUICK_PLAN = [(1, 3_000), (10, 800), (50, 300)]


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


class _Timeline:
    """Record sink (fanned out next to the real one): wall time of lifecycle changes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lifecycle: list[tuple[float, str, str]] = []

    def emit(self, record: dict[str, Any]) -> None:
        if record.get("kind") == "lifecycle":
            with self.lock:
                self.lifecycle.append((time.perf_counter(), record["symbol"], record["state"]))

    def ready_after(self, symbol: str, t: float) -> float | None:
        with self.lock:
            for at, sym, state in self.lifecycle:
                if sym == symbol and state == "READY" and at > t:
                    return at
        return None


class _StopTimer:
    """Entry fill reported by the venue -> the protective stop sent to the venue, per symbol."""

    def __init__(self, venue: Any) -> None:
        from atlas_actors.domain.events import OrderUpdate

        self._order_update = OrderUpdate
        self.lock = threading.Lock()
        self.pending: dict[str, float] = {}
        self.latencies_ms: list[float] = []
        inner = venue.place_algo_stop

        def place_algo_stop(**kw: Any) -> Any:
            now = time.perf_counter()
            with self.lock:
                t = self.pending.pop(kw.get("symbol", ""), None)
                if t is not None:
                    self.latencies_ms.append((now - t) * 1000.0)
            return inner(**kw)

        # Instrument this venue instance: every stop the tree sends passes here first.
        venue.place_algo_stop = place_algo_stop
        venue.add_listener(self.on_event)

    def on_event(self, ev: Any) -> None:
        if (
            isinstance(ev, self._order_update)
            and ev.execution_type == "TRADE"
            and ev.client_order_id.endswith("-e")
        ):
            with self.lock:
                self.pending.setdefault(ev.symbol, time.perf_counter())


def _baseline_bars_per_s(n: int, steps: int) -> float:
    """n no-op actors, asked once per step each, all answers awaited before the next step."""
    import pykka

    class Noop(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            return {"decision_ms": 0.0}

    refs = [Noop.start() for _ in range(n)]
    try:
        t0 = time.perf_counter()
        for _ in range(steps):
            futures = [r.ask({"msg": "bar"}, block=False) for r in refs]
            for f in futures:
                f.get(timeout=10)
        return n * steps / (time.perf_counter() - t0)
    finally:
        for r in refs:
            r.stop()


def measure(n: int, bars: int) -> dict[str, Any]:
    """One tree of `n` symbols, `bars` bars each (runs in this process)."""
    from atlas_actors.events import FanoutSink, JsonlRecordWriter
    from atlas_actors.store import StateStore
    from supervisor.alerts import Alerts
    from supervisor.config import apply_overrides, load_config
    from supervisor.run import _clock_for, _paper_sim
    from supervisor.tree import AtlasTree

    symbols = [f"SYM{i:04d}" for i in range(1, n + 1)]
    baseline = _baseline_bars_per_s(n, max(50, min(2000, 20_000 // n)))
    with tempfile.TemporaryDirectory(prefix="atlas-tree-bench-") as tmp:
        cfg = apply_overrides(
            load_config(CONFIG),
            run_symbols=symbols,
            run_state_dir=os.path.join(tmp, "state"),
            run_log_dir=os.path.join(tmp, "logs"),
            paper_max_bars=bars,
        )
        store = StateStore(cfg.run.state_dir)
        store.load()
        venue, replay, before_flush = _paper_sim(cfg, store)
        stops = _StopTimer(venue)
        timeline = _Timeline()
        writer = JsonlRecordWriter(os.path.join(cfg.run.log_dir, "records.jsonl"), store=store)
        sink = FanoutSink([writer, timeline])
        tree = AtlasTree(
            venue=venue,
            store=store,
            sink=sink,
            params=cfg.params,
            symbols=symbols,
            clock=_clock_for(venue, replay),
            prefix=cfg.run.client_id_prefix,
            replay=replay,
            speed=None,
            alerts=Alerts(None, environment="bench", release="bench", instance="bench"),
            restart_intensity=1000,  # the bench crashes actors on purpose
            # The gateway's wall-clock request budget (Binance's limit, 20/s) would otherwise
            # pace a max-speed replay, whose simulated clock runs far ahead of the wall clock:
            # the figures would measure the rate limiter, not the tree.
            rate_per_s=RATE_UNLIMITED,
            restart_window_s=cfg.supervisor.restart_window_s,
            ping_interval_s=cfg.supervisor.ping_interval_s,
            ping_timeout_s=cfg.supervisor.ping_timeout_s,
            audit_interval_s=cfg.supervisor.audit_interval_s,
            deadline_ms=cfg.supervisor.sentinel_deadline_ms,
            before_flush=before_flush,
            leverage=cfg.params.tier_a.leverage,
            manage_stream=False,
        )
        rss_before = _rss_mb()
        peak = [rss_before]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.05):
                peak[0] = max(peak[0], _rss_mb())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        tree.start()
        if not tree.wait_ready(120.0):
            raise RuntimeError("tree not READY within 120 s")
        total = replay.total_bars()
        t0 = time.perf_counter()
        tree.start_market()

        crash_ms: list[float] = []
        flatten_ms: list[float] = []
        crashes: list[tuple[str, float]] = []

        def chaos() -> None:
            # a few crashes and operator flattens spread over the run
            time.sleep(0.3)
            k = 0
            while not tree.replay_done.is_set() and k < 12:
                sym = symbols[(k * 7) % n]
                ref = tree.symbol_ref(sym)
                if ref is not None and tree.children[sym].status == "READY":
                    crashes.append((sym, time.perf_counter()))
                    ref.tell({"msg": "inject_crash"})
                time.sleep(0.25)
                held = [
                    s
                    for s, p in venue.get_positions().items()
                    if p.get("side") != "NONE" and s in tree.children
                ]
                if held:
                    sym = held[k % len(held)]
                    t = time.perf_counter()
                    try:
                        tree.flatten(sym, "bench")
                        flatten_ms.append((time.perf_counter() - t) * 1000.0)
                    except Exception:  # noqa: BLE001 - the actor may be restarting right now
                        pass
                time.sleep(0.25)
                k += 1

        chaos_thread = threading.Thread(target=chaos, daemon=True)
        chaos_thread.start()
        tree.replay_done.wait(1800)
        elapsed = time.perf_counter() - t0
        chaos_thread.join(30)
        for sym, at in crashes:
            deadline = time.perf_counter() + 15.0
            ready = timeline.ready_after(sym, at)
            while ready is None and time.perf_counter() < deadline:
                time.sleep(0.01)
                ready = timeline.ready_after(sym, at)
            if ready is not None:
                crash_ms.append((ready - at) * 1000.0)
        decision_ms = list(tree.feed.proxy().decision_ms.get(timeout=10)) if tree.feed else []
        bars_sent = int(tree.feed.proxy().bars_sent.get(timeout=10)) if tree.feed else 0
        sampling.set()
        sampler.join(1)
        tree.stop()
        writer.close()
        store.close()
    return {
        "symbols": n,
        "bars_per_symbol": bars,
        "bars": bars_sent,
        "bars_expected": total,
        "seconds": elapsed,
        "bars_per_s": bars_sent / elapsed if elapsed > 0 else 0.0,
        "baseline_bars_per_s": baseline,
        "decision_p50_ms": _pct(decision_ms, 0.50),
        "decision_p99_ms": _pct(decision_ms, 0.99),
        "fill_to_stop_n": len(stops.latencies_ms),
        "fill_to_stop_p50_ms": _pct(stops.latencies_ms, 0.50),
        "fill_to_stop_p99_ms": _pct(stops.latencies_ms, 0.99),
        "crash_to_ready_n": len(crash_ms),
        "crash_to_ready_p50_ms": _pct(crash_ms, 0.50),
        "crash_to_ready_p99_ms": _pct(crash_ms, 0.99),
        "flatten_n": len(flatten_ms),
        "flatten_p50_ms": _pct(flatten_ms, 0.50),
        "flatten_p99_ms": _pct(flatten_ms, 0.99),
        "rss_before_mb": rss_before,
        "rss_peak_mb": peak[0],
        "rss_per_symbol_mb": (peak[0] - rss_before) / n,
    }


def _run_child(n: int, bars: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "bench.tree_bench", "--one", str(n), "--bars", str(bars)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{n} symbols: exit {done.returncode}: {done.stderr.strip()[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "–" if x is None else format(x, spec)


def main(quick: bool = False) -> dict[str, Any]:
    plan = QUICK_PLAN if quick else PLAN
    sizes: dict[str, Any] = {}
    table: list[dict[str, Any]] = []
    print(
        f"{'symbols':>7} {'bars/s':>9} {'floor':>9} {'dec p50':>8} {'dec p99':>8} "
        f"{'fill>stop p99':>13} {'crash>READY p99':>15} {'flatten p99':>11} {'RSS MB':>7} "
        f"{'MB/sym':>7}"
    )
    for n, bars in plan:
        r = _run_child(n, bars)
        sizes[str(n)] = r
        print(
            f"{n:>7} {r['bars_per_s']:>9,.0f} {r['baseline_bars_per_s']:>9,.0f} "
            f"{_fmt(r['decision_p50_ms']):>8} {_fmt(r['decision_p99_ms']):>8} "
            f"{_fmt(r['fill_to_stop_p99_ms']):>13} {_fmt(r['crash_to_ready_p99_ms'], '.0f'):>15} "
            f"{_fmt(r['flatten_p99_ms'], '.1f'):>11} {r['rss_peak_mb']:>7.0f} "
            f"{r['rss_per_symbol_mb']:>7.2f}"
        )
        big = n == 200
        table += [
            {
                "figure": f"paper tree {n} sym: bars/s",
                "value": r["bars_per_s"],
                "unit": "bars/s",
                "baseline": r["baseline_bars_per_s"],
                "baseline_label": "no-op pykka actors, same ask loop",
            },
            {
                "figure": f"paper tree {n} sym: decision p50 / p99",
                "value": r["decision_p99_ms"],
                "value_text": f"{_fmt(r['decision_p50_ms'])} / {_fmt(r['decision_p99_ms'])}",
                "unit": "ms",
                **(
                    {
                        "goal": f"p99 <= {GOAL_P99_MS:g}",
                        "met": (r["decision_p99_ms"] or 0.0) <= GOAL_P99_MS,
                    }
                    if big
                    else {}
                ),
            },
            {
                "figure": f"paper tree {n} sym: fill -> stop submitted p50 / p99",
                "value": r["fill_to_stop_p99_ms"],
                "value_text": f"{_fmt(r['fill_to_stop_p50_ms'])} / "
                f"{_fmt(r['fill_to_stop_p99_ms'])} (n={r['fill_to_stop_n']})",
                "unit": "ms",
            },
            {
                "figure": f"paper tree {n} sym: crash -> READY p50 / p99",
                "value": r["crash_to_ready_p99_ms"],
                "value_text": f"{_fmt(r['crash_to_ready_p50_ms'], '.0f')} / "
                f"{_fmt(r['crash_to_ready_p99_ms'], '.0f')} (n={r['crash_to_ready_n']})",
                "unit": "ms",
            },
            {
                "figure": f"paper tree {n} sym: emergency flatten under load p50 / p99",
                "value": r["flatten_p99_ms"],
                "value_text": f"{_fmt(r['flatten_p50_ms'], '.1f')} / "
                f"{_fmt(r['flatten_p99_ms'], '.1f')} (n={r['flatten_n']})",
                "unit": "ms",
            },
            {
                "figure": f"paper tree {n} sym: RSS peak (per symbol actor)",
                "value": r["rss_peak_mb"],
                "value_text": f"{r['rss_peak_mb']:.0f} ({r['rss_per_symbol_mb']:.2f}/sym)",
                "unit": "MB",
                **(
                    {"goal": f"<= {GOAL_RSS_MB:g}", "met": r["rss_peak_mb"] <= GOAL_RSS_MB}
                    if big
                    else {}
                ),
            },
        ]
    return {"sizes": sizes, "table": table}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1, 10 and 50 symbols, fewer bars")
    ap.add_argument("--one", type=int, help="measure one tree of N symbols; print JSON")
    ap.add_argument("--bars", type=int, default=1000, help="bars per symbol with --one")
    a = ap.parse_args()
    if a.one:
        print(json.dumps(measure(a.one, a.bars)))
    else:
        main(quick=a.quick)
