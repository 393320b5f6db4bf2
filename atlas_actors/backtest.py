"""`atlas backtest`: the live decision path, replayed deterministically against SimVenue.

Per symbol: one `SimVenue` (fee/slippage from the flags or the config) and one `SymbolEngine`
(the very class the live `SymbolActor` drives) on a simulated clock — the close time of the bar
being decided. For each bar the venue sees it first (resting orders and Algo stops fill along the
bar's path), then the engine decides on it; fills and Algo updates the venue reports go straight
back into the engine, exactly as the actor tree routes them. Optional mark-price klines drive the
venue's explicit mark (MARK_PRICE stops follow it) and optional funding files its funding
schedule.

Accounts: each symbol trades its own simulated account that starts with the configured
`starting_balance`, so a symbol's result does not depend on which other symbols are in the run
(nor on `--jobs`). Portfolio figures add the symbols up. Account-level limits of the service
(`supervisor.tree.AccountGuard`: daily-loss halt, margin share, max positions) are applied per
symbol account, where every open passes, as in the service.

End of data: a position still open after the last bar is closed at market (reduceOnly, through
the engine's emergency path) so every trade is complete; such trades have exit reason
`end_of_data` and are not counted as emergency flats.

Determinism: no wall-clock reads in anything written; the same inputs give byte-identical
`metrics.json`, `trades.csv` and `decisions.jsonl`, whatever `--jobs` is (symbols are merged in
symbol order).
"""

from __future__ import annotations

import argparse
import bisect
import calendar
import datetime as _dt
import multiprocessing
import os
import re
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlas_actors.domain.events import AccountUpdate, AlgoUpdate, MarkPrice, OrderUpdate

# File-name symbols that are not Binance USD-M symbols: the bundled BTC perpetual sample
# (venue not recorded by its source) is traded as Binance's USDC-margined BTC perpetual.
SYMBOL_ALIASES = {"BTCPERP": "BTCUSDC"}
END_OF_DATA_REASON = "end of backtest data: position closed at the last close"
DEFAULT_OUT = "var/backtest"
CLIENT_ID_PREFIX = "bt"
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")


class BacktestError(Exception):
    """A problem with the backtest's inputs; the message names the file, flag or symbol."""


# ------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class SymbolJob:
    """Everything one worker needs to backtest one symbol (picklable)."""

    symbol: str
    klines: str
    params: Any
    mark: str | None = None
    funding: str | None = None
    start_ms: int | None = None  # first bar: open_time >= start_ms
    end_ms: int | None = None  # last bar: open_time < end_ms
    max_bars: int | None = None
    fee_bps: float = 4.0
    slippage_bps: float = 1.0
    starting_balance: float = 10_000.0
    leverage: int | None = None
    account_guard: bool = True


@dataclass
class SymbolResult:
    symbol: str
    source: str
    interval: str
    bars: int
    first_open_ms: int
    last_close_ms: int
    records: list[dict[str, Any]]
    times: array[int]  # bar close times (ms)
    closes: array[float]  # bar closes
    equity: array[float]  # account equity after each bar's decisions
    bars_in_position: int
    starting_balance: float
    final_equity: float
    fees_paid: float
    funding_paid: float  # positive = paid by the account
    gaps: int
    missing_bars: int
    first_gaps: list[dict[str, int]]  # file line and bars missing of the first few gaps
    closed_at_end: int
    end_record_index: int  # records from here on were produced by the end-of-data close
    engine_stats: dict[str, int] = field(default_factory=dict)
    load_seconds: float = 0.0  # wall time of reading the files (benchmarks; never reported)
    loop_seconds: float = 0.0  # wall time of the simulation itself


class RecordList(list):  # type: ignore[type-arg]
    """The engine's record sink: records kept in emission order."""

    emit = list.append


def resolve_data(spec: str) -> Path:
    """A kline file path, or the name of a bundled data set (e.g. BTCPERP-1m-2022-01)."""
    from atlas_actors.venues import replay as rp

    p = Path(spec)
    if p.is_file():
        return p
    if p.exists():
        raise BacktestError(f"--data {spec}: not a file")
    try:
        return rp.bundled_path(spec)
    except rp.ReplayError:
        names = ", ".join(sorted(rp.bundled_files()))
        raise BacktestError(
            f"--data {spec}: no such file, and not a bundled data set (bundled: {names})"
        ) from None


def symbol_from_path(path: str | os.PathLike[str]) -> str:
    """`XRPUSDT-5m-2021-11.csv.gz` -> XRPUSDT; `BTCPERP-...` -> BTCUSDC (see SYMBOL_ALIASES)."""
    name = Path(path).name
    for suffix in (".csv.gz", ".csv", ".gz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    head = name.split("-")[0].upper()
    return SYMBOL_ALIASES.get(head, head)


def parse_time(value: str, flag: str) -> int:
    """`YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]` (UTC) or epoch milliseconds -> epoch ms."""
    v = value.strip()
    if v.isdigit():
        return int(v)
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            t = _dt.datetime.strptime(v.rstrip("Z"), fmt)
        except ValueError:
            continue
        return calendar.timegm(t.timetuple()) * 1000
    raise BacktestError(
        f"{flag} {value!r}: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (UTC) or epoch ms"
    )


def _companions(values: str | None, flag: str, symbols: list[str]) -> dict[str, str]:
    """`--mark`/`--funding`: comma-separated `PATH` or `SYMBOL=PATH` items, matched to symbols."""
    out: dict[str, str] = {}
    if not values:
        return out
    for item in (x.strip() for x in values.split(",")):
        if not item:
            continue
        if "=" in item:
            sym, _, path = item.partition("=")
            sym = sym.strip().upper()
        else:
            path = item
            sym = symbol_from_path(path) if len(symbols) > 1 else symbols[0]
        if sym not in symbols:
            raise BacktestError(
                f"{flag} {item}: symbol {sym} is not backtested (symbols: {', '.join(symbols)});"
                f" write {flag} SYMBOL=PATH"
            )
        if sym in out:
            raise BacktestError(f"{flag}: two files for {sym}")
        out[sym] = str(resolve_data(path.strip()))
    return out


# ------------------------------------------------------------------ one symbol


class _AccountView:
    """The venue's account for the engine (its AccountPort) and for the AccountGuard (the
    `balances()` / `positions()` of `atlas_actors.account.AccountView`), re-read only when it
    can have changed - exact, where the service's view is time-based.

    Balances change with a fill, a cancel, a new resting order or funding — every one reported
    as a venue event, which invalidates the cache — and, while anything is open or resting, with
    every price (`new_bar` invalidates then). Flat with nothing resting, the cached figures are
    exactly what the venue would answer. Positions come from the venue's account updates."""

    __slots__ = ("venue", "symbol", "_bal", "_snap", "_price_sensitive", "_positions", "qty")

    def __init__(self, venue: Any, symbol: str) -> None:
        self.venue = venue
        self.symbol = symbol
        self._bal: dict[str, Any] | None = None
        self._snap: dict[str, float] = {}
        self._price_sensitive = True
        self._positions: dict[str, dict[str, Any]] = {}
        self.qty = 0.0

    def invalidate(self) -> None:
        self._bal = None

    def new_bar(self) -> None:
        if self._price_sensitive:
            self._bal = None

    def on_account_update(self, ev: AccountUpdate) -> None:
        self._bal = None
        pos = ev.positions.get(self.symbol)
        if pos is not None:
            self.qty = float(pos.get("qty") or 0.0)
            self._positions = {self.symbol: pos} if self.qty else {}

    def balances(self) -> dict[str, Any]:
        bal = self._bal
        if bal is None:
            bal = self._bal = self.venue.get_balances()
            self._snap = {
                "equity": float(bal["total_equity"]),
                "available_balance": float(bal["available_balance"]),
                "margin_used": float(bal["margin_used"]),
            }
            self._price_sensitive = bool(bal["margin_used"]) or bool(bal["unrealized_pnl"])
        return bal

    def positions(self) -> dict[str, dict[str, Any]]:
        return self._positions

    def snapshot(self) -> dict[str, float]:
        if self._bal is None:
            self.balances()
        return self._snap


def run_symbol(job: SymbolJob, progress: Callable[[int, int], None] | None = None) -> SymbolResult:
    """Backtest one symbol; everything it returns is a pure function of `job`."""
    from atlas_actors.engine import SymbolEngine
    from atlas_actors.venues import replay as rp
    from atlas_actors.venues.filters import default_filters_for
    from atlas_actors.venues.sim import SimVenue

    t_load = time.perf_counter()
    series = rp.load_klines(job.klines)
    start = 0 if job.start_ms is None else bisect.bisect_left(series.open_time, job.start_ms)
    stop = len(series) if job.end_ms is None else bisect.bisect_left(series.open_time, job.end_ms)
    if job.max_bars is not None:
        stop = min(stop, start + job.max_bars)
    if stop <= start:
        raise BacktestError(
            f"{job.symbol}: no bars of {series.source} in the requested time range"
            f" ({len(series)} bars from {_iso(series.open_time[0])} to"
            f" {_iso(series.close_time[-1])})"
        )
    gaps = [g for g in series.gaps if start < g.index < stop]

    venue = SimVenue(
        fee_bps=job.fee_bps,
        slippage_bps=job.slippage_bps,
        starting_balance=job.starting_balance,
    )
    sym = job.symbol
    f = default_filters_for(sym, series.close[start])
    venue.add_symbol(
        sym,
        tick_size=f.tick_size,
        step_size=f.step_size,
        min_qty=f.min_qty,
        min_notional=f.min_notional,
    )
    if job.leverage:
        venue.set_leverage(sym, int(job.leverage))
    funding = rp.load_funding(job.funding) if job.funding else []
    if funding:
        venue.set_funding_schedule(sym, funding)

    records = RecordList()
    account = _AccountView(venue, sym)
    engine = SymbolEngine(
        sym,
        venue=venue,
        params=job.params,
        store=None,
        sink=records,
        clock=venue.now,
        prefix=CLIENT_ID_PREFIX,
        account=account,
    )
    guard = _account_guard(account, job.params, records) if job.account_guard else None

    def on_event(ev: Any) -> None:
        if isinstance(ev, OrderUpdate):
            account.invalidate()
            if ev.execution_type == "TRADE" and ev.last_fill_qty > 0:
                records.append(_fill_record(ev))
            engine.on_order_update(ev)
        elif isinstance(ev, AlgoUpdate):
            account.invalidate()
            engine.on_algo_update(ev)
        elif isinstance(ev, AccountUpdate):
            account.on_account_update(ev)
        elif isinstance(ev, MarkPrice):
            engine.on_mark_price(ev.mark_price, ev.funding_rate)

    venue.bar_events = False  # the loop below hands each bar to the engine itself
    venue.add_listener(on_event)

    marks = (
        _MarkFeed(venue, sym, rp.load_mark(job.mark), series.interval_ms, series.open_time[start])
        if job.mark
        else None
    )
    n = stop - start
    t_loop = time.perf_counter()
    load_seconds = t_loop - t_load
    times = array("q", series.close_time[start:stop])
    equity = array("d", bytes(8 * n))
    in_position = 0
    on_bar = engine.on_bar
    feed_bar = venue.feed_bar
    new_bar = account.new_bar
    snapshot = account.snapshot
    every = 4096
    for k, bar in enumerate(series.iter_bars(start, stop)):
        if marks is not None:
            marks.before_bar(bar)
        new_bar()
        feed_bar(sym, bar)
        if funding:
            # what the live mark-price stream carries: the rate of the next funding
            engine.funding_rate = venue.get_funding_rate(sym)
        if guard is not None:
            engine.open_block_reason = guard.block_reason(sym, engine)
        on_bar(bar)
        if marks is not None:
            marks.after_bar(bar)
        equity[k] = snapshot()["equity"]
        if account.qty:
            in_position += 1
        if progress is not None and (k % every == every - 1 or k == n - 1):
            progress(k + 1, n)

    loop_seconds = time.perf_counter() - t_loop
    end_index = len(records)
    closed_at_end = 0
    pos = venue.get_positions().get(sym) or {}
    if str(pos.get("side", "NONE")) != "NONE" and float(pos.get("qty") or 0.0) > 0:
        engine.emergency_flatten(END_OF_DATA_REASON)
        closed_at_end = 1
        account.invalidate()
        equity[n - 1] = snapshot()["equity"]
    bal = venue.get_balances()
    return SymbolResult(
        symbol=sym,
        source=str(job.klines),
        interval=series.interval,
        bars=n,
        first_open_ms=int(series.open_time[start]),
        last_close_ms=int(series.close_time[stop - 1]),
        records=list(records),
        times=times,
        closes=array("d", series.close[start:stop]),
        equity=equity,
        bars_in_position=in_position,
        starting_balance=job.starting_balance,
        final_equity=float(bal["total_equity"]),
        fees_paid=float(bal["fees_paid"]),
        funding_paid=float(bal["funding_paid"]),
        gaps=len(gaps),
        missing_bars=sum(g.missing for g in gaps),
        first_gaps=[{"line": g.line, "missing": g.missing} for g in gaps[:5]],
        closed_at_end=closed_at_end,
        end_record_index=end_index,
        engine_stats=dict(engine.stats),
        load_seconds=load_seconds,
        loop_seconds=loop_seconds,
    )


class _MarkFeed:
    """Drives the venue's explicit mark price (MARK_PRICE stops follow it) from mark klines.

    Mark klines as fine as the trading klines (or finer) are fed as they are, each before the
    trading bar closing with or after it. Coarser ones (the bundled XRP mark is hourly under
    5-minute klines) would leave the mark stale for up to an interval, so each trading bar's
    mark path is the bar's own path shifted by the premium (mark - last price) seen at the
    latest mark close: known at that time, no look-ahead. When the mark data ends, the mark
    follows the contract price again."""

    def __init__(
        self, venue: Any, symbol: str, mark: Any, kline_interval_ms: int, first_open_ms: int
    ) -> None:
        self.venue = venue
        self.symbol = symbol
        self.mark = mark
        self.fine = mark.interval_ms <= kline_interval_ms
        self.i = bisect.bisect_left(mark.close_time, first_open_ms)
        self.end_ms = mark.close_time[-1] + mark.interval_ms if len(mark) else 0
        self.premium: float | None = None
        self.live = len(mark) > 0

    def before_bar(self, bar: dict[str, Any]) -> None:
        if not self.live:
            return
        m = self.mark
        if self.fine:
            ct = bar["close_time"]
            while self.i < len(m) and m.close_time[self.i] <= ct:
                self.venue.feed_mark_bar(self.symbol, m.bar(self.i))
                self.i += 1
        elif self.premium is not None:
            p = self.premium
            if bar["low"] + p > 0:
                self.venue.feed_mark_bar(
                    self.symbol,
                    {
                        "open_time": bar["open_time"],
                        "open": bar["open"] + p,
                        "high": bar["high"] + p,
                        "low": bar["low"] + p,
                        "close": bar["close"] + p,
                        "close_time": bar["close_time"],
                    },
                )

    def after_bar(self, bar: dict[str, Any]) -> None:
        if not self.live:
            return
        m = self.mark
        ct = bar["close_time"]
        if not self.fine:
            while self.i < len(m) and m.close_time[self.i] <= ct:
                self.premium = m.close[self.i] - bar["close"]
                self.i += 1
        if self.i >= len(m) and ct >= self.end_ms:
            self.venue.clear_mark_price(self.symbol)
            self.live = False


def _account_guard(venue: Any, params: Any, sink: Any) -> Any:
    from atlas_actors.account_guard import AccountGuard

    risk = getattr(params, "risk", None)
    return AccountGuard(
        venue,
        max_concurrent_positions=int(getattr(risk, "max_concurrent_positions", 10)),
        max_margin_share=float(getattr(risk, "max_margin_share", 0.5)),
        daily_loss_halt_pct=float(getattr(risk, "daily_loss_halt_pct", 5.0)),
        sink=sink,
    )


def _fill_record(ev: OrderUpdate) -> dict[str, Any]:
    """A venue-reported execution, so every trade's entry and exit can be traced."""
    return {
        "kind": "fill",
        "ts": ev.event_time // 1000,
        "symbol": ev.symbol,
        "client_id": ev.client_order_id,
        "order_id": ev.order_id,
        "side": ev.side,
        "qty": ev.last_fill_qty,
        "price": ev.last_fill_price,
        "fee": ev.commission,
        "realized_pnl": ev.realized_pnl,
        "reduce_only": ev.reduce_only,
        "status": ev.status,
    }


def _iso(ms: int) -> str:
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.UTC).strftime("%Y-%m-%d %H:%M")


# ------------------------------------------------------------------ many symbols


def _pool_context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def run_jobs(
    jobs: Sequence[SymbolJob],
    *,
    workers: int = 1,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[SymbolResult]:
    """Run the symbols (in worker processes when workers > 1); results in symbol order."""
    ordered = sorted(jobs, key=lambda j: j.symbol)
    workers = max(1, min(workers, len(ordered)))
    if workers == 1:
        out = []
        for job in ordered:
            cb = None
            if progress is not None:
                cb = _bind_progress(progress, job.symbol)
            out.append(run_symbol(job, cb))
        return out
    results: dict[str, SymbolResult] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        futures = {pool.submit(run_symbol, job): job for job in ordered}
        for fut in as_completed(futures):
            job = futures[fut]
            res = fut.result()
            results[job.symbol] = res
            if progress is not None:
                progress(job.symbol, res.bars, res.bars)
    return [results[j.symbol] for j in ordered]


def _bind_progress(
    progress: Callable[[str, int, int], None], symbol: str
) -> Callable[[int, int], None]:
    def cb(done: int, total: int) -> None:
        progress(symbol, done, total)

    return cb


class ProgressBar:
    """One status line on stderr, only when stderr is a terminal."""

    def __init__(self, symbols: list[str], *, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.symbols = symbols
        self.done: dict[str, tuple[int, int]] = {}
        self.last = 0.0

    def __call__(self, symbol: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        self.done[symbol] = (done, total)
        now = time.monotonic()
        finished = sum(1 for d, t in self.done.values() if d >= t)
        if now - self.last < 0.1 and finished < len(self.symbols):
            return
        self.last = now
        bars = sum(d for d, _ in self.done.values())
        width = 30
        frac = sum(d / t for d, t in self.done.values() if t) / max(1, len(self.symbols))
        fill = int(frac * width)
        sys.stderr.write(
            f"\rbacktest [{'#' * fill}{'.' * (width - fill)}] {frac * 100:5.1f}%  "
            f"{finished}/{len(self.symbols)} symbols  {bars:,} bars"
        )
        if finished >= len(self.symbols):
            sys.stderr.write("\n")
        sys.stderr.flush()


# ------------------------------------------------------------------ command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="atlas backtest",
        description=(
            "Deterministic backtest of the Atlas strategy (the live SymbolEngine and domain) "
            "against SimVenue. Writes metrics.json, trades.csv, decisions.jsonl and equity.png."
        ),
    )
    p.add_argument(
        "--data",
        required=True,
        help="kline CSV/CSV.gz file(s), comma-separated, or bundled data set names "
        "(e.g. BTCPERP-1m-2022-01, XRPUSDT-5m-2021-11, ADABTC-5m-2018-01)",
    )
    p.add_argument(
        "--symbol",
        help="symbol(s) for the data files, comma-separated in the same order "
        "(default: from each file name; BTCPERP -> BTCUSDC)",
    )
    p.add_argument("--config", help="TOML config (default: config/atlas.toml)")
    p.add_argument(
        "--from", dest="date_from", help="first bar: opening at/after (UTC date/time or epoch ms)"
    )
    p.add_argument(
        "--to",
        dest="date_to",
        help="last bar: opening before (exclusive; UTC date/time or epoch ms)",
    )
    p.add_argument("--max-bars", type=int, help="at most N bars per symbol")
    p.add_argument(
        "--fee-bps", type=float, help="taker fee in basis points (default: [venue] fee_bps)"
    )
    p.add_argument(
        "--slippage-bps",
        type=float,
        help="market-order slippage in bps (default: [venue] slippage_bps)",
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"report directory (default {DEFAULT_OUT})")
    p.add_argument("--jobs", type=int, help="worker processes (default: number of cores)")
    p.add_argument("--mark", help="mark-price kline file(s): PATH or SYMBOL=PATH, comma-separated")
    p.add_argument("--funding", help="funding-rate file(s): PATH or SYMBOL=PATH, comma-separated")
    p.add_argument("--no-plot", action="store_true", help="do not draw equity.png")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return p


def _default_config_path() -> str:
    here = Path(__file__).resolve().parent.parent / "config" / "atlas.toml"
    return str(here) if here.exists() else "config/atlas.toml"


def build_jobs(a: argparse.Namespace, cfg: Any) -> list[SymbolJob]:
    specs = [s.strip() for s in a.data.split(",") if s.strip()]
    if not specs:
        raise BacktestError("--data: no file given")
    paths = [resolve_data(s) for s in specs]
    if a.symbol:
        symbols = [s.strip().upper() for s in a.symbol.split(",") if s.strip()]
        if len(symbols) != len(paths):
            raise BacktestError(
                f"--symbol names {len(symbols)} symbol(s) for {len(paths)} data file(s)"
            )
    else:
        symbols = [symbol_from_path(p) for p in paths]
    for sym, path in zip(symbols, paths, strict=True):
        if not _SYMBOL_RE.match(sym):
            raise BacktestError(
                f"{path}: symbol {sym!r} is not a valid symbol (A-Z, 0-9); name it with --symbol"
            )
    dupes = sorted({s for s in symbols if symbols.count(s) > 1})
    if dupes:
        raise BacktestError(f"symbol(s) {', '.join(dupes)} given twice; name them with --symbol")
    marks = _companions(a.mark, "--mark", symbols)
    fundings = _companions(a.funding, "--funding", symbols)
    start = parse_time(a.date_from, "--from") if a.date_from else None
    end = parse_time(a.date_to, "--to") if a.date_to else None
    if start is not None and end is not None and end <= start:
        raise BacktestError(f"--to {a.date_to} is not after --from {a.date_from}")
    if a.max_bars is not None and a.max_bars < 1:
        raise BacktestError("--max-bars must be at least 1")
    fee = cfg.venue.fee_bps if a.fee_bps is None else a.fee_bps
    slip = cfg.venue.slippage_bps if a.slippage_bps is None else a.slippage_bps
    for flag, v in (("--fee-bps", fee), ("--slippage-bps", slip)):
        if not 0 <= v <= 1000:
            raise BacktestError(f"{flag} {v:g} out of range [0, 1000]")
    leverage = getattr(getattr(cfg.params, "tier_a", None), "leverage", None)
    return [
        SymbolJob(
            symbol=sym,
            klines=str(path),
            params=cfg.params,
            mark=marks.get(sym),
            funding=fundings.get(sym),
            start_ms=start,
            end_ms=end,
            max_bars=a.max_bars,
            fee_bps=float(fee),
            slippage_bps=float(slip),
            starting_balance=float(cfg.venue.starting_balance),
            leverage=int(leverage) if leverage else None,
        )
        for sym, path in zip(symbols, paths, strict=True)
    ]


def _shown_path(path: str) -> str:
    """A path as the report shows it: relative to the working directory when inside it."""
    rel = os.path.relpath(os.path.abspath(path))
    return path if rel.startswith("..") else rel


def main_backtest(argv: list[str]) -> int:
    from atlas_actors import report
    from atlas_actors.venues.replay import ReplayError
    from supervisor.config import ConfigError, config_error_exit, load_config

    a = build_parser().parse_args(argv)
    config_path = a.config or _default_config_path()
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        return config_error_exit(exc)
    plotter = report.PlotWorker() if not a.no_plot else None
    try:
        try:
            jobs = build_jobs(a, cfg)
            workers = a.jobs if a.jobs is not None else (os.cpu_count() or 1)
            if workers < 1:
                raise BacktestError("--jobs must be at least 1")
            bar = ProgressBar([j.symbol for j in jobs], enabled=not a.quiet)
            results = run_jobs(jobs, workers=workers, progress=bar)
        except (BacktestError, ReplayError) as exc:
            print(f"atlas backtest: {exc}", file=sys.stderr)
            return 2
        settings = {
            "config": _shown_path(config_path),
            "fee_bps": jobs[0].fee_bps,
            "slippage_bps": jobs[0].slippage_bps,
            "starting_balance": jobs[0].starting_balance,
            "from": a.date_from,
            "to": a.date_to,
            "max_bars": a.max_bars,
        }
        rep = report.build_report(results, settings)
        try:
            written = report.write_report(rep, a.out, plot=not a.no_plot, plotter=plotter)
        except OSError as exc:
            print(f"atlas backtest: cannot write the report to {a.out}: {exc}", file=sys.stderr)
            return 2
    finally:
        if plotter is not None:
            plotter.close()
    if not a.quiet:
        print(report.format_summary(rep, written))
    return 0
