"""`make bench`: run every benchmark module, print one table, write bench/results.json.

Modules (each optional; a missing or failing one is reported in the table, never fatal):
store_bench, domain_bench, venue_bench, binance_bench, backtest_bench, tree_bench,
protection_bench. Each
exposes `main(quick: bool) -> dict`. A module may return a ``table`` list of rows
(``figure, value, unit, baseline, baseline_label, goal, met, value_text``); otherwise its
figures are flattened into rows, and a ``baseline_*`` / ``raw_*`` / ``*_baseline`` figure is
shown next to the figure it is the baseline of (matching by name).

Run: ``python -m bench.run [--quick] [--only NAME,...] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

MODULES = (
    "store_bench",
    "domain_bench",
    "venue_bench",
    "binance_bench",
    "backtest_bench",
    "tree_bench",
    "protection_bench",
)
RESULTS = Path(__file__).resolve().parent / "results.json"
_BASELINE_MARKS = ("csv_baseline_", "baseline_loop_", "baseline_", "raw_")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def _flatten(prefix: str, d: Any, out: dict[str, Any]) -> None:
    if isinstance(d, dict):
        for k, v in d.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(d, list):
        return  # lists (raw samples) are kept in results.json, not in the table
    else:
        out[prefix] = d


def _stem(leaf: str) -> tuple[str, str] | None:
    """`raw_p50_ms` -> ("baseline", "p50_ms"); `goal_bars_per_s` -> ("goal", "bars_per_s")."""
    for mark in _BASELINE_MARKS:
        if leaf.startswith(mark):
            return "baseline", leaf[len(mark) :]
    if leaf.endswith("_baseline"):
        return "baseline", leaf[: -len("_baseline")]
    if leaf.startswith("goal_"):
        return "goal", leaf[len("goal_") :]
    return None


def rows_from(result: Any) -> list[dict[str, Any]]:
    """Table rows of one module's result (its own ``table`` when it has one)."""
    if isinstance(result, dict) and isinstance(result.get("table"), list):
        return [dict(r) for r in result["table"]]
    flat: dict[str, Any] = {}
    _flatten("", result, flat)
    groups: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        group, _, leaf = key.rpartition(".")
        groups.setdefault(group, {})[leaf] = value
    rows: list[dict[str, Any]] = []
    for group, leaves in groups.items():
        attached: dict[str, dict[str, Any]] = {}
        extras: dict[str, tuple[str, Any]] = {}
        for leaf in leaves:
            st = _stem(leaf)
            if st is not None:
                extras[leaf] = (st[0], st[1])
        for leaf, (kind, stem) in extras.items():
            exact = [x for x in leaves if x == stem and x not in extras]
            suffix = [x for x in leaves if x.endswith("_" + stem) and x not in extras]
            target = (exact or suffix or [None])[0]
            if target is not None and kind not in attached.get(target, {}):
                attached.setdefault(target, {})[kind] = leaves[leaf]
            else:
                extras[leaf] = ("", "")  # shown as its own row
        for leaf, value in leaves.items():
            if leaf in extras and extras[leaf][0]:
                continue
            row: dict[str, Any] = {
                "figure": f"{group}.{leaf}" if group else leaf,
                "value": value,
            }
            row.update(attached.get(leaf, {}))
            rows.append(row)
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != 0 and abs(v) < 0.01:
            return f"{v:.3g}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:,.2f}"
    return str(v)


def format_table(modules: dict[str, Any]) -> str:
    lines = []
    header = f"{'bench':<15} {'figure':<58} {'value':>22} {'baseline':>14} {'goal':>14} {'met':>4}"
    lines += [header, "-" * len(header)]
    for name, entry in modules.items():
        if not entry["ok"]:
            lines.append(f"{name:<15} {entry['error'][:100]}")
            continue
        for r in entry["rows"]:
            value = r.get("value_text") or _fmt(r.get("value"))
            if r.get("unit") and not r.get("value_text"):
                value = f"{value} {r['unit']}"
            met = r.get("met")
            lines.append(
                f"{name:<15} {str(r['figure'])[:58]:<58} {value[:22]:>22} "
                f"{_fmt(r.get('baseline'))[:14]:>14} {str(r.get('goal') or '')[:14]:>14} "
                f"{'' if met is None else ('ok' if met else 'MISS'):>4}"
            )
    return "\n".join(lines)


def run(quick: bool, only: list[str] | None = None) -> dict[str, Any]:
    modules: dict[str, Any] = {}
    for name in MODULES:
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"ok": False, "seconds": 0.0, "result": None, "rows": []}
        try:
            mod = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"bench.{name}":
                entry["error"] = f"import failed: {exc}"
            else:
                entry["error"] = "missing (no such module)"
            modules[name] = entry
            continue
        except Exception as exc:  # noqa: BLE001 - reported in the table
            entry["error"] = f"import failed: {type(exc).__name__}: {exc}"
            modules[name] = entry
            continue
        print(f"== {name}", flush=True)
        try:
            result = mod.main(quick=quick)
            entry.update(ok=True, result=result, rows=rows_from(result))
        except Exception as exc:  # noqa: BLE001 - one failing bench must not stop the rest
            buf = io.StringIO()
            traceback.print_exc(file=buf)
            print(buf.getvalue(), file=sys.stderr)
            entry["error"] = f"failed: {type(exc).__name__}: {exc}"
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        modules[name] = entry
    return modules


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Run every Atlas benchmark and write bench/results.json."
    )
    ap.add_argument(
        "--quick", action="store_true", help="smaller runs (minutes, not tens of minutes)"
    )
    ap.add_argument("--only", help="comma-separated module names, e.g. backtest_bench,tree_bench")
    ap.add_argument("--out", default=str(RESULTS), help=f"results file (default {RESULTS})")
    a = ap.parse_args(argv)
    only = [x.strip() for x in a.only.split(",")] if a.only else None
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    modules = run(a.quick, only)
    table = format_table(modules)
    print()
    print(table)
    doc = {
        "started": started,
        "quick": a.quick,
        "machine": machine(),
        "modules": {
            k: {kk: vv for kk, vv in v.items() if kk != "rows"} | {"table": v["rows"]}
            for k, v in modules.items()
        },
    }
    tmp = a.out + ".tmp"
    with contextlib.suppress(FileNotFoundError):
        os.remove(tmp)
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    os.replace(tmp, a.out)
    print(f"\nwrote {a.out}")
    return 0  # a failing module is in the table and in results.json, not a failed run


if __name__ == "__main__":
    raise SystemExit(main())
