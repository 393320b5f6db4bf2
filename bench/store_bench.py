"""StateStore write latency next to raw LMDB, measured in the same run.

Three cases, each timed as `set_symbol_state(...)` + `flush()` (one durable commit):

* ``1 sym``          - a store with one symbol, its state changed every flush
* ``200 sym, 1 chg`` - 200 shards, one state changed per flush (round robin)
* ``200 sym, all``   - 200 shards, all 200 states changed per flush

The baseline does the same work by hand on a second environment with the same flags and
layout (one named DB per symbol, same msgpack-encoded values): encode + put + commit.
Store and baseline iterations alternate so disk noise hits both alike. Goal: ratio <= 1.5.

Run: ``python -m bench.store_bench [--quick]``; `main(quick)` returns the figures as a dict.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from atlas_actors.domain.records import SymbolState
from atlas_actors.store import DEFAULT_MAP_SIZE, STATE_KEY, StateStore

MAX_DBS = 4096
MAX_READERS = 1024
GOAL_RATIO = 1.5


def sample_state(symbol: str) -> dict[str, Any]:
    """A realistically sized state: full rolling windows, an open position, regime structs."""
    st = SymbolState.fresh(symbol)
    st.position_state.side = "LONG"
    st.position_state.entry_price = 64_123.5
    st.position_state.qty_total = 0.012
    st.position_state.sl_algo.algo_id = "4000000123456789"
    st.position_state.sl_algo.client_algo_id = f"atl-{symbol}-000123-sl"
    st.regime_state = {"ema_fast": 64_100.1, "ema_slow": 63_900.7, "atr": 210.4, "adx": 27.3}
    st.shock_state = {"r1m": [0.0012 * i for i in range(60)], "r3m": [0.002 * i for i in range(20)]}
    st.exec_window = [
        {"filled": i % 3 != 0, "slip_r": 0.01 * i, "cancelled": i % 5 == 0, "spread": 0.5}
        for i in range(30)
    ]
    st.trade_window = [{"r": 1.2 - 0.1 * i, "pnl": 12.5 * i, "fallback": False} for i in range(20)]
    return st.to_dict()


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class _RawLmdb:
    """The baseline: the same layout and flags, written by hand."""

    def __init__(self, path: Path, symbols: list[str]) -> None:
        self.env = lmdb.open(
            str(path),
            map_size=DEFAULT_MAP_SIZE,
            subdir=True,
            max_dbs=MAX_DBS,
            max_readers=MAX_READERS,
            sync=True,
            metasync=True,
            lock=True,
        )
        self.packer = msgpack.Packer(use_bin_type=True, autoreset=True)
        self.dbs = {s: self.env.open_db(b"sym:" + s.encode(), create=True) for s in symbols}

    def write(self, states: dict[str, dict[str, Any]]) -> None:
        with self.env.begin(write=True) as txn:
            for symbol, state in states.items():
                txn.put(STATE_KEY, self.packer.pack(state), db=self.dbs[symbol])

    def close(self) -> None:
        self.env.close()


def _run_case(
    store: StateStore, raw: _RawLmdb, symbols: list[str], per_flush: int, iterations: int
) -> tuple[list[float], list[float]]:
    states = {s: sample_state(s) for s in symbols}

    def changed(i: int) -> dict[str, dict[str, Any]]:
        picked = symbols if per_flush >= len(symbols) else [symbols[i % len(symbols)]]
        out = {}
        for s in picked:
            states[s]["bar_index"] = i
            out[s] = states[s]
        return out

    def store_op(batch: dict[str, dict[str, Any]]) -> None:
        for s, st in batch.items():
            store.set_symbol_state(s, st)
        store.flush()

    # Populate every shard first so both sides write into existing DBs.
    store_op(states)
    raw.write(states)
    warmup = max(5, iterations // 10)
    store_t: list[float] = []
    raw_t: list[float] = []
    for i in range(warmup + iterations):
        batch = changed(i)
        order: list[tuple[Callable[[dict[str, dict[str, Any]]], None], list[float]]] = [
            (store_op, store_t),
            (raw.write, raw_t),
        ]
        if i % 2:
            order.reverse()
        for op, sink in order:
            t0 = time.perf_counter()
            op(batch)
            elapsed = time.perf_counter() - t0
            if i >= warmup:
                sink.append(elapsed)
    return store_t, raw_t


def main(quick: bool = False) -> dict[str, Any]:
    """Measure, print a table, return {case: {store_p50_ms, ..., ratio_p50, ratio_p99}}."""
    plan = [("1 sym", 1, 1), ("200 sym, 1 chg", 200, 1), ("200 sym, all", 200, 200)]
    iterations = {1: 40, 200: 20} if quick else {1: 1000, 200: 300}
    results: dict[str, Any] = {}
    for name, n_symbols, per_flush in plan:
        root = Path(tempfile.mkdtemp(prefix="atlas-store-bench-"))
        try:
            symbols = [f"SYM{i:03d}USDC" for i in range(n_symbols)]
            store = StateStore(root / "store", max_dbs=MAX_DBS, max_readers=MAX_READERS)
            raw = _RawLmdb(root / "raw", symbols)
            try:
                store_t, raw_t = _run_case(store, raw, symbols, per_flush, iterations[per_flush])
            finally:
                store.close()
                raw.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)
        row = {
            "iterations": len(store_t),
            "value_bytes": len(msgpack.packb(sample_state(symbols[0]), use_bin_type=True)),
            "store_p50_ms": _pct(store_t, 0.50) * 1e3,
            "store_p99_ms": _pct(store_t, 0.99) * 1e3,
            "raw_p50_ms": _pct(raw_t, 0.50) * 1e3,
            "raw_p99_ms": _pct(raw_t, 0.99) * 1e3,
            "store_mean_ms": statistics.fmean(store_t) * 1e3,
            "raw_mean_ms": statistics.fmean(raw_t) * 1e3,
        }
        row["ratio_p50"] = row["store_p50_ms"] / row["raw_p50_ms"]
        row["ratio_p99"] = row["store_p99_ms"] / row["raw_p99_ms"]
        results[name] = row
    _print_table(results)
    return results


def _print_table(results: dict[str, Any]) -> None:
    header = (
        f"{'case':<16} {'n':>4} {'bytes':>6} {'store p50':>10} {'raw p50':>9} {'ratio':>6}"
        f" {'store p99':>10} {'raw p99':>9} {'ratio':>6}"
    )
    print("StateStore set_symbol_state+flush vs raw lmdb put+commit (ms, sync=True)")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(
            f"{name:<16} {r['iterations']:>4} {r['value_bytes']:>6}"
            f" {r['store_p50_ms']:>10.3f} {r['raw_p50_ms']:>9.3f} {r['ratio_p50']:>6.2f}"
            f" {r['store_p99_ms']:>10.3f} {r['raw_p99_ms']:>9.3f} {r['ratio_p99']:>6.2f}"
        )
    worst = max(r["ratio_p50"] for r in results.values())
    verdict = "within" if worst <= GOAL_RATIO else "OVER"
    print(f"worst p50 ratio {worst:.2f} ({verdict} the {GOAL_RATIO}x goal)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    main(quick=parser.parse_args().quick)
