"""The backtest report: metrics.json, trades.csv, decisions.jsonl, equity.png and a summary.

Everything is computed from what the run recorded (the engine's §8 / order / trade records,
the venue's fills and balances), never re-simulated, so the numbers agree with the records.
Deterministic output: sorted keys, floats as Python's shortest round-trip repr (metrics rounded
to fixed decimals first), no wall-clock times; records of several symbols are merged by time
with the symbol order breaking ties.

Conventions (also in the README):
- money is in the symbol's quote asset; a multi-symbol run adds the symbols' accounts up;
- `net_pnl` = final equity - starting balance (the venue's own books) and equals
  `gross_pnl - fees + funding` (`unexplained_pnl` shows any difference);
- `funding` > 0 means funding received, < 0 paid;
- `max_drawdown` is a positive fraction of the running equity peak (0.05 = 5 %);
- `sharpe` is annualised (sqrt 365) from daily (UTC) equity returns; null with < 2 days;
- `win_rate`, `profit_factor`, `avg_r` are over closed trades, by net PnL; null when undefined;
- `exposure` is the share of bars that ended with a position open.
"""

from __future__ import annotations

import csv
import datetime as _dt
import heapq
import io
import json
import math
import multiprocessing
import os
import statistics
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from atlas_actors.summary import summarize

DAY_MS = 86_400_000
TRADE_COLUMNS = (
    "symbol",
    "side",
    "template",
    "tier",
    "opened",
    "closed",
    "opened_ts",
    "closed_ts",
    "entry_price",
    "exit_price",
    "qty",
    "pnl",
    "fees",
    "net_pnl",
    "r_multiple",
    "exit_reason",
    "exits",
    "entry_client_id",
)
# trades.csv spells out the engine's exit role codes (the client-id role suffixes).
EXIT_NAMES = {
    "sl": "stop_loss",
    "t1": "take_profit_1",
    "t2": "take_profit_2",
    "rx": "runner_exit",
    "rm": "runner_exit_market",
    "x": "exit_signal",
    "dr": "derisk",
    "fx": "emergency_flat",
    "end_of_data": "end_of_data",
}
# What decisions.jsonl keeps: the §8 records plus what traces each trade (orders, fills, stops).
DECISION_KINDS = frozenset(
    {"candidate", "risk", "order", "fill", "stop_visible", "stop_invisible", "trade"}
)


@dataclass
class Report:
    metrics: dict[str, Any]
    trades: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    times: list[int]  # portfolio equity curve: close times (ms)
    equity: list[float]
    prices: list[float] | None  # the traded symbol's closes (single-symbol runs)
    title: str


# ------------------------------------------------------------------ building


def build_report(results: list[Any], settings: dict[str, Any]) -> Report:
    """Merge the symbols' results (in the given order, which is symbol order) into a report."""
    order = {r.symbol: i for i, r in enumerate(results)}
    per_symbol_records: list[list[tuple[int, int, int, dict[str, Any]]]] = []
    emergency_flats = 0
    for r in results:
        tagged = []
        for i, rec in enumerate(r.records):
            at_end = i >= r.end_record_index
            if rec.get("kind") == "trade" and at_end:
                rec = {**rec, "exit_reason": "end_of_data"}
            elif rec.get("kind") == "risk" and rec.get("event_type") == "EMERGENCY_FLAT":
                if not at_end:
                    emergency_flats += 1
            tagged.append((int(rec.get("ts") or 0), order[r.symbol], i, rec))
        per_symbol_records.append(tagged)
    merged = [t[3] for t in heapq.merge(*per_symbol_records, key=lambda t: t[:3])]
    decisions = [rec for rec in merged if rec.get("kind") in DECISION_KINDS]
    trades = [rec for rec in merged if rec.get("kind") == "trade"]

    times, equity = _portfolio_curve(results)
    start_balance = sum(r.starting_balance for r in results)
    final_equity = sum(r.final_equity for r in results)
    bars = sum(r.bars for r in results)
    fees = sum(r.fees_paid for r in results)
    funding = -sum(r.funding_paid for r in results)
    gross = sum(float(t.get("pnl") or 0.0) for t in trades)
    net = final_equity - start_balance
    dd, dd_abs = _max_drawdown(equity, start_balance)
    base = summarize(merged, bars=bars)

    metrics: dict[str, Any] = {
        "bars": bars,
        "symbols": [r.symbol for r in results],
        "period": {
            "from": _iso(min(r.first_open_ms for r in results)),
            "to": _iso(max(r.last_close_ms for r in results) + 1),
        },
        "settings": settings,
        "candidates": base["candidates"],
        "opens": base["opens"],
        "rejects_by_reason": base["rejects_by_reason"],
        **_trade_stats(trades),
        "max_drawdown": _r(dd, 6),
        "max_drawdown_abs": _r(dd_abs),
        "net_pnl": _r(net),
        "gross_pnl": _r(gross),
        "fees": _r(fees),
        "funding": _r(funding),
        "unexplained_pnl": _r(net - (gross - fees + funding)),
        "return_pct": _r(100.0 * net / start_balance if start_balance else 0.0, 4),
        "starting_balance": _r(start_balance),
        "final_equity": _r(final_equity),
        "sharpe": _opt(_sharpe(times, equity, start_balance), 4),
        "exposure": _r(sum(r.bars_in_position for r in results) / bars if bars else 0.0, 6),
        "emergency_flats": emergency_flats,
        "closed_at_end": sum(r.closed_at_end for r in results),
        "stops_placed": base["stops_placed"],
        "stops_confirmed": base["stops_confirmed"],
        "risk_actions": base["risk_actions"],
        "per_template": {
            name: _trade_stats(group)
            for name, group in _group(trades, lambda t: str(t.get("template") or "?"))
        },
        "per_symbol": {r.symbol: _symbol_metrics(r, trades) for r in results},
        "data": {
            r.symbol: {
                "file": os.path.basename(r.source),
                "interval": r.interval,
                "bars": r.bars,
                "gaps": r.gaps,
                "missing_bars": r.missing_bars,
                "first_gaps": r.first_gaps,
            }
            for r in results
        },
    }
    single = results[0] if len(results) == 1 else None
    title = "Atlas backtest — " + (
        f"{single.symbol} {single.interval}" if single else f"{len(results)} symbols"
    )
    templates = sorted(metrics["per_template"])
    if templates:
        title += " · " + ", ".join(templates)
    return Report(
        metrics=metrics,
        trades=trades,
        decisions=decisions,
        times=times,
        equity=equity,
        prices=list(single.closes) if single is not None else None,
        title=title,
    )


def _portfolio_curve(results: list[Any]) -> tuple[list[int], list[float]]:
    """Sum of the accounts' equity on the union of their bar times (each held between bars)."""
    if len(results) == 1:
        return list(results[0].times), list(results[0].equity)
    base = sum(r.starting_balance for r in results)
    pnl = [0.0] * len(results)
    streams = [_pnl_stream(i, r) for i, r in enumerate(results)]
    times: list[int] = []
    equity: list[float] = []
    for t, i, p in heapq.merge(*streams):
        pnl[i] = p
        total = base + math.fsum(pnl)
        if times and times[-1] == t:
            equity[-1] = total
        else:
            times.append(t)
            equity.append(total)
    return times, equity


def _pnl_stream(i: int, r: Any) -> Iterator[tuple[int, int, float]]:
    start = r.starting_balance
    for t, e in zip(r.times, r.equity, strict=True):
        yield t, i, e - start


def _max_drawdown(equity: Iterable[float], start: float) -> tuple[float, float]:
    peak = start
    worst = 0.0
    worst_abs = 0.0
    for e in equity:
        if e > peak:
            peak = e
        drop = peak - e
        if drop > worst_abs:
            worst_abs = drop
        if peak > 0 and drop / peak > worst:
            worst = drop / peak
    return worst, worst_abs


def drawdown_series(equity: list[float], start: float) -> list[float]:
    """Drawdown after each point as a negative fraction of the running peak."""
    out = []
    peak = start
    for e in equity:
        if e > peak:
            peak = e
        out.append((e - peak) / peak if peak > 0 else 0.0)
    return out


def _sharpe(times: list[int], equity: list[float], start: float) -> float | None:
    closes: list[float] = []
    day = None
    for t, e in zip(times, equity, strict=True):
        d = (t - 1) // DAY_MS  # a bar closing exactly at midnight belongs to the day before
        if d != day:
            closes.append(e)
            day = d
        else:
            closes[-1] = e
    rets = []
    prev = start
    for c in closes:
        if prev > 0:
            rets.append(c / prev - 1.0)
        prev = c
    if len(rets) < 2:
        return None
    sd = statistics.stdev(rets)
    if sd <= 0:
        return None
    return statistics.fmean(rets) / sd * math.sqrt(365.0)


def _trade_stats(trades: list[dict[str, Any]]) -> dict[str, Any]:
    nets = [float(t.get("net_pnl") or 0.0) for t in trades]
    wins = [x for x in nets if x > 0]
    losses = [x for x in nets if x <= 0]
    gross_loss = -math.fsum(losses)
    rs = [float(t.get("r_multiple") or 0.0) for t in trades]
    return {
        "trades": len(trades),
        "wins": len(wins),
        "losses": len(losses),
        "win_rate": _opt(len(wins) / len(trades) if trades else None, 6),
        "profit_factor": _opt(math.fsum(wins) / gross_loss if gross_loss > 0 else None, 4),
        "avg_r": _opt(statistics.fmean(rs) if rs else None, 4),
        "trade_net_pnl": _r(math.fsum(nets)),
    }


def _symbol_metrics(r: Any, trades: list[dict[str, Any]]) -> dict[str, Any]:
    mine = [t for t in trades if t.get("symbol") == r.symbol]
    dd, _ = _max_drawdown(r.equity, r.starting_balance)
    net = r.final_equity - r.starting_balance
    return {
        "bars": r.bars,
        "trades": len(mine),
        "net_pnl": _r(net),
        "fees": _r(r.fees_paid),
        "funding": _r(-r.funding_paid),
        "return_pct": _r(100.0 * net / r.starting_balance if r.starting_balance else 0.0, 4),
        "max_drawdown": _r(dd, 6),
        "exposure": _r(r.bars_in_position / r.bars if r.bars else 0.0, 6),
        "final_equity": _r(r.final_equity),
    }


def _group(items: list[dict[str, Any]], key: Any) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for it in items:
        groups.setdefault(key(it), []).append(it)
    for k in sorted(groups):
        yield k, groups[k]


def _r(x: float, digits: int = 8) -> float:
    v = round(float(x), digits)
    return 0.0 if v == 0 else v  # no "-0.0"


def _opt(x: float | None, digits: int) -> float | None:
    return None if x is None or not math.isfinite(x) else _r(x, digits)


def _iso(ms: int) -> str:
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------ writing


def _json_default(o: Any) -> Any:
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if isinstance(o, set | frozenset):
        return sorted(o)
    if isinstance(o, tuple):
        return list(o)
    return str(o)


def _num(x: Any) -> str:
    if isinstance(x, float):
        return repr(x)
    return "" if x is None else str(x)


def trades_csv(trades: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(TRADE_COLUMNS)
    for t in trades:
        row = []
        for col in TRADE_COLUMNS:
            if col == "opened":
                row.append(_iso(int(t.get("opened_ts") or 0) * 1000))
            elif col == "closed":
                row.append(_iso(int(t.get("closed_ts") or 0) * 1000))
            elif col == "exit_reason":
                code = str(t.get("exit_reason") or "")
                row.append(EXIT_NAMES.get(code, code))
            elif col == "exits":
                row.append("+".join(str(x) for x in t.get("exits") or []))
            else:
                row.append(_num(t.get(col)))
        w.writerow(row)
    return buf.getvalue()


def write_report(
    rep: Report, out_dir: str, *, plot: bool = True, plotter: PlotWorker | None = None
) -> dict[str, str]:
    """Write the report files; returns {kind: path} of what was written (and notes)."""
    os.makedirs(out_dir, exist_ok=True)
    written: dict[str, str] = {}
    path = os.path.join(out_dir, "metrics.json")
    _write_atomic(path, json.dumps(rep.metrics, indent=2, sort_keys=True, allow_nan=False) + "\n")
    written["metrics"] = path
    path = os.path.join(out_dir, "trades.csv")
    _write_atomic(path, trades_csv(rep.trades))
    written["trades"] = path
    path = os.path.join(out_dir, "decisions.jsonl")
    enc = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_json_default)
    _write_atomic(path, "".join(enc.encode(r) + "\n" for r in rep.decisions))
    written["decisions"] = path
    if plot:
        path = os.path.join(out_dir, "equity.png")
        note = plotter.plot(rep, path) if plotter is not None else plot_equity(rep, path)
        if note is None:
            written["equity"] = path
        else:
            written["equity_note"] = note
    return written


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------ the picture


def plot_equity(rep: Report, path: str) -> str | None:
    """Draw equity (top), drawdown (bottom) and the trades; None on success, else why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, PercentFormatter
    except ImportError:
        return (
            "equity.png skipped: matplotlib is not installed (pip install 'atlas-actors[report]')"
        )
    if not rep.times:
        return "equity.png skipped: no bars"
    m = rep.metrics
    start = float(m["starting_balance"])
    days = [t / DAY_MS for t in rep.times]  # matplotlib date numbers: days since 1970-01-01
    dd = [100.0 * x for x in drawdown_series(rep.equity, start)]
    eq_x, eq_y = _break_gaps(*envelope(days, rep.equity))
    dd_x, dd_y = _break_gaps(*envelope(days, dd))

    fig, (ax, axd) = plt.subplots(
        2,
        1,
        figsize=(12, 7),
        sharex=True,
        gridspec_kw={"height_ratios": [3, 1], "hspace": 0.06},
    )
    # A fixed layout: bbox_inches="tight" would draw the whole figure twice.
    fig.subplots_adjust(left=0.075, right=0.925, top=0.885, bottom=0.135)
    fig.patch.set_facecolor("white")
    handles = []
    if rep.prices is not None:
        axp = ax.twinx()
        px, py = _break_gaps(*envelope(days, rep.prices))
        (h,) = axp.plot(
            px, py, color="#c4c4c4", lw=0.7, zorder=1, label=f"{m['symbols'][0]} price (right axis)"
        )
        handles.append(h)
        axp.set_ylabel(f"{m['symbols'][0]} close", color="#8a8a8a")
        axp.tick_params(axis="y", colors="#8a8a8a")
        axp.yaxis.set_major_formatter(FuncFormatter(_money_tick))
        for s in ("top", "left", "bottom"):
            axp.spines[s].set_visible(False)
        ax.set_zorder(axp.get_zorder() + 1)
        ax.patch.set_visible(False)
    (h,) = ax.plot(eq_x, eq_y, color="#1f5fbf", lw=1.4, label="equity", zorder=3)
    handles.insert(0, h)
    h = ax.axhline(start, color="#555555", lw=0.8, ls="--", zorder=2, label="starting balance")
    handles.append(h)
    wins_x, wins_y, loss_x, loss_y = [], [], [], []
    for t in rep.trades:
        x = int(t.get("closed_ts") or 0) * 1000
        y = _equity_at(rep.times, rep.equity, x)
        if float(t.get("net_pnl") or 0.0) > 0:
            wins_x.append(x / DAY_MS)
            wins_y.append(y)
        else:
            loss_x.append(x / DAY_MS)
            loss_y.append(y)
    many = len(rep.trades) > 150
    size, alpha = (14, 0.7) if many else (30, 0.9)
    handles.append(
        ax.scatter(
            wins_x,
            wins_y,
            marker="^",
            s=size,
            color="#1a9850",
            alpha=alpha,
            lw=0,
            zorder=4,
            label=f"trade closed in profit ({len(wins_x)})",
        )
    )
    handles.append(
        ax.scatter(
            loss_x,
            loss_y,
            marker="v",
            s=size,
            color="#d73027",
            alpha=alpha,
            lw=0,
            zorder=4,
            label=f"trade closed at a loss ({len(loss_x)})",
        )
    )
    ax.set_ylabel("equity")
    ax.yaxis.set_major_formatter(FuncFormatter(_money_tick))
    ax.grid(True, color="#e9e9e9", lw=0.7)
    for s in ("top", "right"):
        ax.spines[s].set_visible(False)
    sign = "+" if m["net_pnl"] >= 0 else ""
    pf = m["profit_factor"]
    sharpe = m["sharpe"]
    subtitle = (
        f"{m['period']['from'][:10]} → {m['period']['to'][:10]} · {m['bars']:,} bars · "
        f"net {sign}{m['net_pnl']:,.2f} ({sign}{m['return_pct']:.2f} %) · {m['trades']} trades · "
        f"win {_pct(m['win_rate'])} · PF {'–' if pf is None else f'{pf:.2f}'} · "
        f"max DD {100 * m['max_drawdown']:.2f} % · Sharpe {'–' if sharpe is None else f'{sharpe:.2f}'}"
    )
    ax.set_title(rep.title, fontsize=14, loc="left", pad=22, fontweight="bold")
    ax.text(0.0, 1.02, subtitle, transform=ax.transAxes, fontsize=9.5, color="#444444")

    axd.fill_between(dd_x, dd_y, 0.0, color="#d73027", alpha=0.3, lw=0)
    axd.plot(dd_x, dd_y, color="#b2182b", lw=0.8)
    axd.set_ylabel("drawdown")
    axd.yaxis.set_major_formatter(PercentFormatter(decimals=1))
    axd.set_ylim(min(min(dd) * 1.15, -0.1), 0.0)
    axd.grid(True, color="#e9e9e9", lw=0.7)
    for s in ("top", "right"):
        axd.spines[s].set_visible(False)
    locator = mdates.AutoDateLocator(minticks=5, maxticks=10)
    axd.xaxis.set_major_locator(locator)
    axd.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axd.set_xlabel("time (UTC)")
    axd.set_xlim(days[0], days[-1])
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=len(handles),
        frameon=False,
        fontsize=9,
        bbox_to_anchor=(0.5, 0.0),
        markerscale=1.6,
    )
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return None


def envelope(
    xs: list[float], ys: list[float], buckets: int = 1500
) -> tuple[list[float], list[float]]:
    """At most ~2 points per bucket (its min and max, in time order): the drawn line looks the
    same as with every point, at a fraction of the drawing time."""
    n = len(xs)
    if n <= 2 * buckets:
        return xs, ys
    out_x: list[float] = []
    out_y: list[float] = []
    step = n / buckets
    for b in range(buckets):
        lo = int(b * step)
        hi = min(n, int((b + 1) * step))
        if hi <= lo:
            continue
        seg = ys[lo:hi]
        i_min = lo + seg.index(min(seg))
        i_max = lo + seg.index(max(seg))
        for i in sorted({i_min, i_max}):
            out_x.append(xs[i])
            out_y.append(ys[i])
    if out_x[-1] != xs[-1]:
        out_x.append(xs[-1])
        out_y.append(ys[-1])
    return out_x, out_y


def _break_gaps(
    xs: list[float], ys: list[float], max_gap_days: float = 1.0
) -> tuple[list[float], list[float]]:
    """No line across a stretch without data (symbols of different periods, long gaps)."""
    out_x: list[float] = []
    out_y: list[float] = []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if i and x - xs[i - 1] > max_gap_days:
            out_x.append(math.nan)
            out_y.append(math.nan)
        out_x.append(x)
        out_y.append(y)
    return out_x, out_y


def _money_tick(v: float, _pos: int) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.4g}"


class PlotWorker:
    """Draws equity.png in a helper process started before the backtest, so importing
    matplotlib (~0.4 s) overlaps the simulation on another core. Falls back to drawing in
    this process when a helper cannot be forked or dies."""

    def __init__(self) -> None:
        self._proc: Any = None
        self._conn: Any = None
        if "fork" not in multiprocessing.get_all_start_methods():
            return
        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe()
        try:
            proc = ctx.Process(target=_plot_worker_main, args=(child,), daemon=True)
            proc.start()
        except OSError:
            return
        finally:
            child.close()
        self._proc, self._conn = proc, parent

    def plot(self, rep: Report, path: str) -> str | None:
        if self._proc is None:
            return plot_equity(rep, path)
        slim = Report(rep.metrics, rep.trades, [], rep.times, rep.equity, rep.prices, rep.title)
        try:
            self._conn.send((slim, path))
            if not self._conn.poll(600):
                raise EOFError("plot helper did not answer")
            status, note = self._conn.recv()
        except (EOFError, OSError):
            self.close()
            return plot_equity(rep, path)
        self.close()
        return note if status == "ok" else f"equity.png failed: {note}"

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            self._conn.send(None)
        except (OSError, ValueError):
            pass
        self._conn.close()
        proc.join(5.0)
        if proc.is_alive():
            proc.terminate()
            proc.join(1.0)


def _plot_worker_main(conn: Any) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates  # noqa: F401
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        pass  # plot_equity reports it
    try:
        msg = conn.recv()
    except (EOFError, OSError):
        return
    if msg is None:
        return
    rep, path = msg
    try:
        conn.send(("ok", plot_equity(rep, path)))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a note
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _equity_at(times: list[int], equity: list[float], t: int) -> float:
    import bisect

    i = bisect.bisect_right(times, t) - 1
    return equity[max(i, 0)]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


# ------------------------------------------------------------------ the summary


def format_summary(rep: Report, written: dict[str, str] | None = None) -> str:
    m = rep.metrics
    st = m.get("settings", {})
    sign = "+" if m["net_pnl"] >= 0 else ""
    pf = "–" if m["profit_factor"] is None else f"{m['profit_factor']:.2f}"
    avg_r = "–" if m["avg_r"] is None else f"{m['avg_r']:+.2f}"
    sharpe = "–" if m["sharpe"] is None else f"{m['sharpe']:.2f}"
    lines = [
        "",
        rep.title,
        f"{m['period']['from']} → {m['period']['to']}   {m['bars']:,} bars   "
        f"fee {st.get('fee_bps', 0):g} bps · slippage {st.get('slippage_bps', 0):g} bps · "
        f"config {st.get('config', '')}",
        "-" * 78,
        f"  net PnL     {sign}{m['net_pnl']:>14,.2f}  ({sign}{m['return_pct']:.2f} %)"
        f"    trades          {m['trades']:>8}",
        f"  gross PnL   {m['gross_pnl']:>15,.2f}               win rate        {_pct(m['win_rate']):>8}",
        f"  fees        {-m['fees']:>15,.2f}               profit factor   {pf:>8}",
        f"  funding     {m['funding']:>15,.2f}               avg R           {avg_r:>8}",
        f"  max DD      {-m['max_drawdown_abs']:>15,.2f}  ({100 * m['max_drawdown']:.2f} %)"
        f"       sharpe          {sharpe:>8}",
        f"  exposure    {100 * m['exposure']:>13.1f} %               emergency flats {m['emergency_flats']:>8}",
        f"  candidates  {m['candidates']:>15,}               opens           {m['opens']:>8}",
    ]
    rejects = list(m["rejects_by_reason"].items())
    if rejects:
        lines.append("  top reject reasons:")
        for reason, n in rejects[:4]:
            lines.append(f"    {n:>8,}  {reason[:62]}")
        if len(rejects) > 4:
            lines.append(
                f"    {sum(n for _, n in rejects[4:]):>8,}  ({len(rejects) - 4} more reasons)"
            )
    if m["per_template"]:
        lines.append("  per template:        trades   win rate    net PnL     avg R")
        for name, s in m["per_template"].items():
            avg = "–" if s["avg_r"] is None else f"{s['avg_r']:+.2f}"
            lines.append(
                f"    {name[:18]:<18} {s['trades']:>7}   {_pct(s['win_rate']):>8}  "
                f"{s['trade_net_pnl']:>+10,.2f}  {avg:>7}"
            )
    for sym, d in m["data"].items():
        if d["gaps"]:
            where = ", ".join(f"line {g['line']} (+{g['missing']})" for g in d["first_gaps"][:3])
            more = " ..." if d["gaps"] > 3 else ""
            lines.append(
                f"  data {sym}: {d['gaps']} gaps, {d['missing_bars']} bars missing "
                f"(kept, not synthesized): {where}{more}"
            )
    if m["closed_at_end"]:
        lines.append(f"  {m['closed_at_end']} position(s) closed at the end of the data")
    if written:
        shown = [p for k, p in written.items() if not k.endswith("_note")]
        lines.append("  wrote " + ", ".join(shown))
        for k, note in written.items():
            if k.endswith("_note"):
                lines.append("  note: " + note)
    return "\n".join(lines)
