"""Latency of the pure trading domain over the bundled BTC 1m month (45,031 real bars).

The month is replayed through the full decision path: `core.on_bar` for every closed bar,
plus `on_order_update` / `on_algo_update` / `on_order_rejected` / `on_emergency_flat` for every
fill and order event that the test suite's tiny deterministic fill model
(``tests/unit/test_domain_fillmodel.py``: limits fill when traded through, stops on the bar's
range, market orders at the next open) produces from the domain's own commands.

Reported, in microseconds per bar (best of the repeats; only domain calls are timed, the
fill model's own work is excluded except in ``replay_us_per_bar``):

* ``on_bar_us_per_bar``   - `on_bar` alone (regime, ShockGuard, playbook, runner, candidate);
* ``domain_us_per_bar``   - `on_bar` + the event handlers: the full decision path;
* ``replay_us_per_bar``   - wall time of the whole replay including the fill model.

Goal: ``domain_us_per_bar <= 20`` on one core.
Run: ``python -m bench.domain_bench [--quick]``; `main(quick)` returns the figures as a dict.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from atlas_actors.domain import core
from atlas_actors.domain.params import default_params
from tests.unit import test_domain_fillmodel as fillmodel

GOAL_US_PER_BAR = 20.0


def _run(bars: list[dict[str, Any]]) -> dict[str, float]:
    spent = {"bar": 0.0, "events": 0.0}
    real_on_bar = core.on_bar
    real_feed = fillmodel.feed
    clock = time.perf_counter

    def timed_on_bar(*a: Any, **k: Any) -> core.Step:
        t = clock()
        step = real_on_bar(*a, **k)
        spent["bar"] += clock() - t
        return step

    def timed_feed(*a: Any, **k: Any) -> core.Step:
        t = clock()
        step = real_feed(*a, **k)
        spent["events"] += clock() - t
        return step

    core.on_bar = timed_on_bar  # type: ignore[assignment]
    fillmodel.feed = timed_feed  # type: ignore[assignment]
    try:
        t0 = clock()
        result = fillmodel.replay(bars, default_params())
        wall = clock() - t0
    finally:
        core.on_bar = real_on_bar  # type: ignore[assignment]
        fillmodel.feed = real_feed  # type: ignore[assignment]
    n = len(bars)
    trades = sum(1 for r in result.records if r.get("action") == "OPEN")
    return {
        "on_bar": spent["bar"] / n * 1e6,
        "domain": (spent["bar"] + spent["events"]) / n * 1e6,
        "replay": wall / n * 1e6,
        "opens": float(trades),
        "records": float(len(result.records)),
    }


def main(quick: bool = False) -> dict[str, Any]:
    bars = fillmodel.load_btc_bars(10_000 if quick else None)
    repeats = 1 if quick else 3
    runs = [_run(bars) for _ in range(repeats)]
    best = {k: min(r[k] for r in runs) for k in ("on_bar", "domain", "replay")}
    out: dict[str, Any] = {
        "bars": len(bars),
        "repeats": repeats,
        "on_bar_us_per_bar": round(best["on_bar"], 2),
        "domain_us_per_bar": round(best["domain"], 2),
        "replay_us_per_bar": round(best["replay"], 2),
        "opens": int(runs[0]["opens"]),
        "records": int(runs[0]["records"]),
        "goal_us_per_bar": GOAL_US_PER_BAR,
        "meets_goal": best["domain"] <= GOAL_US_PER_BAR,
    }
    print(
        f"domain bench: {out['bars']} BTC 1m bars, best of {repeats}: "
        f"on_bar {out['on_bar_us_per_bar']} us/bar, full decision path (on_bar + fills) "
        f"{out['domain_us_per_bar']} us/bar, replay incl. fill model "
        f"{out['replay_us_per_bar']} us/bar; goal <= {GOAL_US_PER_BAR} us/bar: "
        f"{'met' if out['meets_goal'] else 'NOT met'} ({out['opens']} opens, "
        f"{out['records']} records)"
    )
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="first 10,000 bars, one run")
    main(quick=ap.parse_args().quick)
