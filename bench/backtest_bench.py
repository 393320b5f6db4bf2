"""Backtest speed on the bundled BTC 1m month (45,031 bars), one process, one core.

Figures:

* ``ema_cross`` bars/s - `atlas_actors.backtest.run_symbol` with config/bench.toml: the whole
  live decision path (SymbolEngine + domain) against SimVenue, per bar of the simulation once
  the file is loaded (``bars_per_s_incl_load`` counts the load too).
* ``default`` bars/s  - the same with config/atlas.toml (all templates, ShockGuard, runner).
* ``process``         - wall time of a whole `atlas backtest` process for the month with
  config/bench.toml (start-up, load, simulation, report files, equity.png), best of 3.
* baseline            - a plain Python loop over the same bar dicts computing EMA20/EMA50
  crosses with a long-only position and a 2 % stop (what a minimal hand-written backtest
  does, with no venue, orders or fees): the floor.
  For the process: a Python process that loads the file and runs that loop.

Goals (issue 9): ema_cross >= 60,000 bars/s, default >= 30,000 bars/s, process <= 2 s.

Run: ``python -m bench.backtest_bench [--quick]``; `main(quick)` returns the figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = "BTCPERP-1m-2022-01"
BENCH_CONFIG = ROOT / "config" / "bench.toml"
DEFAULT_CONFIG = ROOT / "config" / "atlas.toml"
GOAL_EMA_BARS_PER_S = 60_000
GOAL_DEFAULT_BARS_PER_S = 30_000
GOAL_PROCESS_S = 2.0

BASELINE_CODE = """
import sys, time
from atlas_actors.venues import replay as rp
series = rp.load_klines(rp.bundled_path(sys.argv[1]))
from bench.backtest_bench import ema_cross_loop
ema_cross_loop(series.iter_bars())
"""


def ema_cross_loop(bars: Any, fast: int = 20, slow: int = 50, stop_pct: float = 0.02) -> int:
    """EMA(fast)/EMA(slow) cross, long only, enter at the next bar's open, exit on the opposite
    cross or a stop `stop_pct` below the entry. Returns the number of trades."""
    af, aslow = 2.0 / (fast + 1), 2.0 / (slow + 1)
    ef = es = None
    prev_up = None
    pending_entry = False
    entry = stop = 0.0
    long = False
    trades = 0
    pnl = 0.0
    n = 0
    for bar in bars:
        o, lo, c = bar["open"], bar["low"], bar["close"]
        if pending_entry:
            entry, stop, long, pending_entry = o, o * (1.0 - stop_pct), True, False
        if long and lo <= stop:
            pnl += stop - entry
            long = False
            trades += 1
        n += 1
        if ef is None:
            ef = es = c
        else:
            ef += af * (c - ef)
            es += aslow * (c - es)
        up = ef > es
        if n >= slow and prev_up is not None and up != prev_up:
            if up and not long:
                pending_entry = True
            elif not up and long:
                pnl += c - entry
                long = False
                trades += 1
        prev_up = up
    return trades


def _params(path: Path) -> Any:
    from supervisor.config import load_config

    return load_config(path).params


def _in_process(config: Path, quick: bool, repeats: int) -> dict[str, Any]:
    from atlas_actors.backtest import SymbolJob, run_symbol
    from atlas_actors.report import build_report
    from atlas_actors.venues import replay as rp
    from supervisor.config import load_config

    cfg = load_config(config)
    job = SymbolJob(
        symbol="BTCUSDC",
        klines=str(rp.bundled_path(DATA)),
        params=cfg.params,
        max_bars=15_000 if quick else None,
        fee_bps=cfg.venue.fee_bps,
        slippage_bps=cfg.venue.slippage_bps,
        starting_balance=cfg.venue.starting_balance,
        leverage=cfg.params.tier_a.leverage,
    )
    best = best_total = float("inf")
    res = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = run_symbol(job)
        best_total = min(best_total, time.perf_counter() - t0)
        best = min(best, res.loop_seconds)
    assert res is not None
    m = build_report([res], {}).metrics
    return {
        "bars": res.bars,
        "seconds": best,
        "bars_per_s": res.bars / best,
        "us_per_bar": best / res.bars * 1e6,
        "bars_per_s_incl_load": res.bars / best_total,
        "trades": m["trades"],
        "net_pnl": m["net_pnl"],
        "return_pct": m["return_pct"],
        "win_rate": m["win_rate"],
        "max_drawdown": m["max_drawdown"],
    }


def _baseline_loop(quick: bool, repeats: int) -> dict[str, Any]:
    from atlas_actors.venues import replay as rp

    best = float("inf")
    trades = bars = 0
    series = rp.load_klines(rp.bundled_path(DATA))
    stop = 15_000 if quick else len(series)
    for _ in range(repeats):
        t0 = time.perf_counter()
        trades = ema_cross_loop(series.iter_bars(0, stop))
        best = min(best, time.perf_counter() - t0)
    bars = min(len(series), stop)
    return {"bars": bars, "seconds": best, "bars_per_s": bars / best, "trades": trades}


def _wall(cmd: list[str], repeats: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t0)
    return best


def _process(repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="atlas-bt-bench-") as tmp:
        base = [sys.executable, "-m", "supervisor.cli", "backtest", "--data", DATA]
        base += ["--config", str(BENCH_CONFIG), "--out", tmp, "--quiet"]
        with_png = _wall(base, repeats)
        no_png = _wall([*base, "--no-plot"], repeats)
        floor = _wall([sys.executable, "-c", BASELINE_CODE, DATA], repeats)
    return {"seconds": with_png, "seconds_no_plot": no_png, "baseline_seconds": floor}


def main(quick: bool = False) -> dict[str, Any]:
    repeats = 1 if quick else 3
    ema = _in_process(BENCH_CONFIG, quick, repeats)
    default = _in_process(DEFAULT_CONFIG, quick, repeats)
    floor = _baseline_loop(quick, repeats)
    proc = _process(1 if quick else 3)
    table = [
        {
            "figure": "backtest ema_cross bars/s (BTC 1m month, 1 core)",
            "value": ema["bars_per_s"],
            "unit": "bars/s",
            "baseline": floor["bars_per_s"],
            "baseline_label": "plain Python EMA-cross loop",
            "goal": f">= {GOAL_EMA_BARS_PER_S:,}",
            "met": ema["bars_per_s"] >= GOAL_EMA_BARS_PER_S,
        },
        {
            "figure": "backtest default strategy bars/s",
            "value": default["bars_per_s"],
            "unit": "bars/s",
            "baseline": floor["bars_per_s"],
            "baseline_label": "plain Python EMA-cross loop",
            "goal": f">= {GOAL_DEFAULT_BARS_PER_S:,}",
            "met": default["bars_per_s"] >= GOAL_DEFAULT_BARS_PER_S,
        },
        {
            "figure": "backtest ema_cross bars/s incl. loading the file",
            "value": ema["bars_per_s_incl_load"],
            "unit": "bars/s",
        },
        {
            "figure": "atlas backtest process, month, with equity.png",
            "value": proc["seconds"],
            "unit": "s",
            "baseline": proc["baseline_seconds"],
            "baseline_label": "python: load file + plain loop",
            "goal": f"<= {GOAL_PROCESS_S:g}",
            "met": proc["seconds"] <= GOAL_PROCESS_S,
        },
        {
            "figure": "atlas backtest process, month, --no-plot",
            "value": proc["seconds_no_plot"],
            "unit": "s",
            "baseline": proc["baseline_seconds"],
            "baseline_label": "python: load file + plain loop",
        },
    ]
    out = {"ema_cross": ema, "default": default, "baseline_loop": floor, "process": proc}
    out["table"] = table
    print(
        f"backtest bench ({ema['bars']:,} bars of {DATA}, best of {repeats}):\n"
        f"  ema_cross  {ema['bars_per_s']:>10,.0f} bars/s  ({ema['trades']} trades, net "
        f"{ema['net_pnl']:+,.2f}, {ema['return_pct']:+.2f} %)   goal >= {GOAL_EMA_BARS_PER_S:,}\n"
        f"  default    {default['bars_per_s']:>10,.0f} bars/s  ({default['trades']} trades, net "
        f"{default['net_pnl']:+,.2f})   goal >= {GOAL_DEFAULT_BARS_PER_S:,}\n"
        f"  floor      {floor['bars_per_s']:>10,.0f} bars/s  (plain Python EMA-cross loop, "
        f"{floor['trades']} trades)\n"
        f"  process    {proc['seconds']:>10.2f} s with equity.png, {proc['seconds_no_plot']:.2f} s "
        f"without; floor {proc['baseline_seconds']:.2f} s   goal <= {GOAL_PROCESS_S:g} s"
    )
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="15,000 bars, one repeat")
    main(quick=ap.parse_args().quick)
