"""SimVenue throughput and kline replay load rate, each next to a baseline of the same run.

* SimVenue: `feed_bar` over the bundled BTC perpetual month (45,031 1-minute bars) while a
  long position carries one resting reduce-only take-profit limit and one Algo stop at +/-2 %;
  when either fills, the position and both orders are re-armed (so the slow path really runs).
  Measured without listeners (the book polls the position every 60 bars) and with one
  listener (every event built and delivered).
  Baseline: the bare loop over the same bar dicts (what any consumer pays). Goal: >= 150k bars/s.
* Replay: `load_klines` of the same gzipped month (validation included) vs the plain `csv`
  module reading the same gzip file and converting the same columns. Goal: < 150 ms.

Run: ``python -m bench.venue_bench [--quick]``; `main(quick)` returns the figures as a dict.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import time
from collections.abc import Callable
from typing import Any

from atlas_actors.domain.events import AccountUpdate
from atlas_actors.venues.replay import bundled_path, load_klines
from atlas_actors.venues.sim import SimVenue

SYMBOL = "BTCUSDT"
FILE = "BTCPERP-1m-2022-01"
GOAL_BARS_PER_S = 150_000
GOAL_LOAD_MS = 150.0


class _Book:
    """Keeps one TP limit and one stop around a long position; re-arms after an exit."""

    def __init__(self, venue: SimVenue) -> None:
        self.venue = venue
        self.n = 0
        self.flat = True
        self.rearms = 0

    def on_event(self, e: Any) -> None:
        if isinstance(e, AccountUpdate) and e.positions.get(SYMBOL, {}).get("qty", 1.0) == 0.0:
            self.flat = True

    def arm(self, price: float) -> None:
        v, self.n = self.venue, self.n + 1
        f = v.get_filters(SYMBOL)
        for o in v.get_open_orders(SYMBOL):
            v.cancel_order(symbol=SYMBOL, order_id=o["order_id"], client_order_id=None)
        for a in v.get_open_algo_orders(SYMBOL):
            v.cancel_algo(symbol=SYMBOL, algo_id=a["algo_id"], client_algo_id=None)
        v.place_market(
            symbol=SYMBOL, side="BUY", qty=0.01, reduce_only=False, client_order_id=f"b-{self.n}"
        )
        v.place_limit_postonly(
            symbol=SYMBOL,
            side="SELL",
            qty=0.01,
            price=f.round_price(price * 1.02, "SELL"),
            tif="GTX",
            reduce_only=True,
            client_order_id=f"tp-{self.n}",
        )
        v.place_algo_stop(
            symbol=SYMBOL,
            side="SELL",
            qty=0.01,
            stop_price=f.round_stop_price(price * 0.98, "SELL"),
            reduce_only=True,
            client_algo_id=f"sl-{self.n}",
            working_type="MARK_PRICE",
        )
        self.flat = False
        self.rearms += 1


def _run_venue(bars: list[dict[str, Any]], *, listener: bool) -> tuple[float, int]:
    """listener=False: no listener at all, the book polls the position every 60 bars.
    listener=True: the book learns of exits from AccountUpdate events."""
    venue = SimVenue(seed=1)
    book = _Book(venue)
    if listener:
        venue.add_listener(book.on_event)
    venue.feed_bar(SYMBOL, bars[0])
    book.arm(bars[0]["close"])
    feed = venue.feed_bar
    t0 = time.perf_counter()
    for i, b in enumerate(bars):
        feed(SYMBOL, b)
        if not listener and i % 60 == 0:
            book.flat = venue.get_positions()[SYMBOL]["qty"] == 0.0
        if book.flat:
            book.arm(b["close"])
    return time.perf_counter() - t0, book.rearms


def _run_baseline(bars: list[dict[str, Any]]) -> float:
    t0 = time.perf_counter()
    acc = 0.0
    for b in bars:
        acc += b["close"]
    return time.perf_counter() - t0


def _csv_baseline(raw_gz: bytes) -> int:
    rows = 0
    with gzip.open(io.BytesIO(raw_gz), "rt", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        cols: list[list[float]] = [[] for _ in range(7)]
        for r in reader:
            for i, x in enumerate(r):
                cols[i].append(float(x))
            rows += 1
    return rows


def _best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(quick: bool = False) -> dict[str, Any]:
    """Measure, print a table, return the figures."""
    path = bundled_path(FILE)
    series = load_klines(path)
    bars = list(series)
    if quick:
        bars = bars[:8000]
    repeats = 1 if quick else 3

    plain = min(_run_venue(bars, listener=False)[0] for _ in range(repeats))
    with_l, rearms = min(_run_venue(bars, listener=True) for _ in range(repeats))
    base = min(_run_baseline(bars) for _ in range(repeats))
    venue = {
        "bars": len(bars),
        "rearms": rearms,
        "bars_per_s": len(bars) / plain,
        "bars_per_s_with_listener": len(bars) / with_l,
        "baseline_loop_bars_per_s": len(bars) / base,
        "goal_bars_per_s": GOAL_BARS_PER_S,
    }

    raw = path.read_bytes()
    load_s, loaded = _best(lambda: load_klines(path), repeats + 1)
    csv_s, csv_rows = _best(lambda: _csv_baseline(raw), repeats + 1)
    replay = {
        "rows": len(loaded),
        "load_ms": load_s * 1e3,
        "rows_per_s": len(loaded) / load_s,
        "csv_baseline_ms": csv_s * 1e3,
        "csv_baseline_rows_per_s": csv_rows / csv_s,
        "ratio_vs_csv": load_s / csv_s,
        "goal_load_ms": GOAL_LOAD_MS,
    }

    print(
        f"SimVenue feed_bar, {FILE} ({len(bars)} bars, 1 TP limit + 1 Algo stop, {rearms} re-arms)"
    )
    print(
        f"  no listener (poll) {venue['bars_per_s']:>12,.0f} bars/s   (goal >= {GOAL_BARS_PER_S:,})"
    )
    print(f"  one listener       {venue['bars_per_s_with_listener']:>12,.0f} bars/s")
    print(f"  bare loop baseline {venue['baseline_loop_bars_per_s']:>12,.0f} bars/s")
    print(f"Replay load {FILE}.csv.gz ({replay['rows']} rows, validated)")
    print(
        f"  load_klines        {replay['rows_per_s']:>12,.0f} rows/s  {replay['load_ms']:7.1f} ms"
        f"   (goal < {GOAL_LOAD_MS:.0f} ms)"
    )
    print(
        f"  csv module         {replay['csv_baseline_rows_per_s']:>12,.0f} rows/s  "
        f"{replay['csv_baseline_ms']:7.1f} ms   ratio {replay['ratio_vs_csv']:.2f}"
    )
    return {"sim_venue": venue, "replay": replay}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer bars and repeats")
    main(quick=ap.parse_args().quick)
