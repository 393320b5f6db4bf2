"""Kline replay: load real kline CSV / CSV.gz files (and their mark-price / funding companions).

File format: header `open_time,open,high,low,close,volume,close_time` (any column order, extra
columns ignored), times in epoch ms, one closed bar per row, oldest first. `volume` may be empty
(mark-price klines). Funding files: `funding_time,funding_rate`.

Validation: a missing column, an unparsable number, a non-monotonic or duplicate open_time,
high < low, open/close outside [low, high], a non-positive price or close_time <= open_time
raises `ReplayError` naming file:line (line 1 is the header).

Gap policy (one policy, everywhere): a gap is KEPT — no bar is synthesized. It is reported in
`KlineSeries.gaps` (count and positions; `gap_summary()` for a log line) and the first bar after
it carries `gap_before = <number of missing bars>` (0 on every other bar), so the strategy can
tell a real jump across missing time from an ordinary bar.

Bundled data (package data, gzipped copies of the real samples): `bundled_files()`,
`bundled_path(name)`, `paper_series_for(symbol)` (paper symbols and synthetic `SYM0001`-style
aliases), `paper_mark_for(symbol)`, `paper_funding_for(symbol)`.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.resources
import math
import operator
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, overload

KLINE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "close_time")
FUNDING_COLUMNS = ("funding_time", "funding_rate")


class ReplayError(ValueError):
    """A kline/funding file is unusable; the message names file:line and the problem."""


@dataclass(frozen=True)
class Gap:
    index: int  # index of the first bar after the gap
    line: int  # its line in the file
    after_open_time: int  # open_time of the bar before the gap
    missing: int  # number of bars missing


@dataclass
class KlineSeries:
    """Columns of one kline file as compact arrays; iterate for bar dicts."""

    name: str
    interval_ms: int
    open_time: array[int]
    open: array[float]
    high: array[float]
    low: array[float]
    close: array[float]
    volume: array[float]
    close_time: array[int]
    gaps: list[Gap] = field(default_factory=list)
    has_volume: bool = True
    source: str = ""

    def __len__(self) -> int:
        return len(self.open_time)

    @property
    def interval(self) -> str:
        return _interval_name(self.interval_ms)

    @property
    def missing_bars(self) -> int:
        return sum(g.missing for g in self.gaps)

    def gap_before(self) -> dict[int, int]:
        """Bar index -> number of bars missing just before it."""
        return {g.index: g.missing for g in self.gaps}

    def bar(self, i: int) -> dict[str, Any]:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"{self.name}: bar index {i} out of range 0..{n - 1}")
        gaps = self.gap_before()
        return {
            "open_time": self.open_time[i],
            "open": self.open[i],
            "high": self.high[i],
            "low": self.low[i],
            "close": self.close[i],
            "volume": self.volume[i],
            "close_time": self.close_time[i],
            "gap_before": gaps.get(i, 0),
        }

    def iter_bars(self, start: int = 0, stop: int | None = None) -> Iterator[dict[str, Any]]:
        """Fresh bar dicts, oldest first (each carries `gap_before`)."""
        stop = len(self) if stop is None else min(stop, len(self))
        gaps = self.gap_before()
        ot, o, h, lo, c, v, ct = (
            self.open_time,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.close_time,
        )
        for i in range(start, stop):
            yield {
                "open_time": ot[i],
                "open": o[i],
                "high": h[i],
                "low": lo[i],
                "close": c[i],
                "volume": v[i],
                "close_time": ct[i],
                "gap_before": gaps.get(i, 0) if gaps else 0,
            }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iter_bars()

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        """`series[i]` is `bar(i)`; `series[a:b]` a list of bar dicts (list-like use)."""
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                return [self.bar(k) for k in range(start, stop, step)]
            return list(self.iter_bars(start, stop))
        return self.bar(i)

    def gap_summary(self, first: int = 5) -> str:
        if not self.gaps:
            return f"{self.name}: {len(self)} bars, no gaps"
        shown = ", ".join(f"line {g.line} (+{g.missing})" for g in self.gaps[:first])
        more = f" and {len(self.gaps) - first} more" if len(self.gaps) > first else ""
        return (
            f"{self.name}: {len(self)} bars, {len(self.gaps)} gaps, {self.missing_bars} bars "
            f"missing (kept, not synthesized): {shown}{more}"
        )

    def scaled(self, factor: float, name: str) -> KlineSeries:
        """The same bars with prices multiplied by `factor` (synthetic many-symbol runs)."""
        if not (factor > 0 and math.isfinite(factor)):
            raise ValueError(f"price scale must be positive, got {factor!r}")

        def sc(a: array[float]) -> array[float]:
            return array("d", [x * factor for x in a])

        return KlineSeries(
            name=name,
            interval_ms=self.interval_ms,
            open_time=self.open_time,
            open=sc(self.open),
            high=sc(self.high),
            low=sc(self.low),
            close=sc(self.close),
            volume=self.volume,
            close_time=self.close_time,
            gaps=list(self.gaps),
            has_volume=self.has_volume,
            source=self.source,
        )


_INTERVAL_NAMES = {
    60_000: "1m",
    180_000: "3m",
    300_000: "5m",
    900_000: "15m",
    1_800_000: "30m",
    3_600_000: "1h",
    7_200_000: "2h",
    14_400_000: "4h",
    86_400_000: "1d",
}


def _interval_name(ms: int) -> str:
    return _INTERVAL_NAMES.get(ms) or f"{ms // 1000}s"


# ------------------------------------------------------------------ reading


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ReplayError(f"{path}: cannot read: {e.strerror or e}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ReplayError(f"{path}: corrupt gzip data: {e}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ReplayError(f"{path}:{line}: not UTF-8 text") from None


def _split(path: Path, required: tuple[str, ...]) -> tuple[dict[str, int], list[list[str]]]:
    """Header -> column index, and the columns (lists of strings) of the body."""
    text = _read_text(path).replace("\r", "")
    head, _, body = text.partition("\n")
    header = [h.strip() for h in head.split(",")]
    if not head.strip():
        raise ReplayError(f"{path}:1: empty file (expected header {','.join(required)})")
    cols = {h: i for i, h in enumerate(header)}
    missing = [c for c in required if c not in cols]
    if missing:
        raise ReplayError(
            f"{path}:1: missing column(s) {', '.join(missing)} (header is {','.join(header)})"
        )
    body = body.rstrip("\n")
    if not body:
        return cols, [[] for _ in header]
    width = len(header)
    # One split over the whole body, then strided slices: far faster than a split per line.
    flat = body.replace("\n", ",").split(",")
    n_lines = body.count("\n") + 1
    if len(flat) != width * n_lines:
        for i, line in enumerate(body.split("\n")):
            found = line.count(",") + 1
            if found != width:
                raise ReplayError(
                    f"{path}:{i + 2}: expected {width} fields, found {found}"
                    + (" (blank line)" if not line else "")
                )
    return cols, [flat[k::width] for k in range(width)]


def _column_int(path: Path, name: str, values: list[str]) -> array[int]:
    try:
        return array("q", map(int, values))
    except (ValueError, OverflowError):
        pass
    for i, s in enumerate(values):
        try:
            int(s)
        except (ValueError, OverflowError):
            raise ReplayError(f"{path}:{i + 2}: {name} {s!r} is not an integer (ms)") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _column_float(path: Path, name: str, values: list[str]) -> array[float]:
    try:
        a = array("d", map(float, values))
    except ValueError:
        for i, s in enumerate(values):
            try:
                float(s)
            except ValueError:
                raise ReplayError(f"{path}:{i + 2}: {name} {s!r} is not a number") from None
        raise AssertionError("unreachable") from None  # pragma: no cover
    if not math.isfinite(math.fsum(a)) and not all(map(math.isfinite, a)):
        i = next(i for i, x in enumerate(a) if not math.isfinite(x))
        raise ReplayError(f"{path}:{i + 2}: {name} {values[i]!r} is not a finite number")
    return a


def load_klines(path: str | Path, *, name: str | None = None) -> KlineSeries:
    """Load and validate a kline CSV or CSV.gz file (see the module docstring)."""
    p = Path(path)
    cols, columns = _split(p, KLINE_COLUMNS)
    label = name or _stem(p)
    if not columns[0]:
        raise ReplayError(f"{p}:2: no bars after the header")

    def col(c: str) -> list[str]:
        return columns[cols[c]]

    ot = _column_int(p, "open_time", col("open_time"))
    ct = _column_int(p, "close_time", col("close_time"))
    o = _column_float(p, "open", col("open"))
    h = _column_float(p, "high", col("high"))
    lo = _column_float(p, "low", col("low"))
    c = _column_float(p, "close", col("close"))
    vol_s = col("volume")
    if all(s == "" for s in vol_s):
        v, has_volume = array("d", bytes(8 * len(vol_s))), False
    elif "" in vol_s:  # volume is informative only: a missing value counts as 0
        v, has_volume = _column_float(p, "volume", [s or "0" for s in vol_s]), True
    else:
        v, has_volume = _column_float(p, "volume", vol_s), True

    n = len(ot)
    # Validation in C-speed passes; locate the offending line only when one fails.
    if min(lo) <= 0 or min(o) <= 0 or min(c) <= 0:
        for i in range(n):
            for nm, arr in (("open", o), ("high", h), ("low", lo), ("close", c)):
                if arr[i] <= 0:
                    raise ReplayError(f"{p}:{i + 2}: {nm} {arr[i]!r} is not a positive price")
    if not all(map(operator.le, lo, h)):
        i = next(i for i in range(n) if h[i] < lo[i])
        raise ReplayError(f"{p}:{i + 2}: high {h[i]!r} < low {lo[i]!r}")
    for nm, arr in (("open", o), ("close", c)):
        if not (all(map(operator.le, lo, arr)) and all(map(operator.le, arr, h))):
            i = next(i for i in range(n) if not lo[i] <= arr[i] <= h[i])
            raise ReplayError(
                f"{p}:{i + 2}: {nm} {arr[i]!r} outside [low {lo[i]!r}, high {h[i]!r}]"
            )
    if not all(map(operator.lt, ot, ct)):
        i = next(i for i in range(n) if ct[i] <= ot[i])
        raise ReplayError(f"{p}:{i + 2}: close_time {ct[i]} <= open_time {ot[i]}")
    nxt = ot[1:]
    if not all(map(operator.lt, ot, nxt)):
        i = next(i for i in range(1, n) if ot[i] <= ot[i - 1])
        what = "duplicate" if ot[i] == ot[i - 1] else "non-monotonic"
        raise ReplayError(
            f"{p}:{i + 2}: {what} open_time {ot[i]} (previous bar at line {i + 1}: {ot[i - 1]})"
        )
    interval = ct[0] - ot[0] + 1
    gaps: list[Gap] = []
    if n > 1 and not all(map(interval.__eq__, map(operator.sub, nxt, ot))):
        for i in range(1, n):
            d = ot[i] - ot[i - 1]
            if d != interval:
                missing = max(1, round(d / interval) - 1)
                gaps.append(Gap(index=i, line=i + 2, after_open_time=ot[i - 1], missing=missing))
    return KlineSeries(
        name=label,
        interval_ms=interval,
        open_time=ot,
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=v,
        close_time=ct,
        gaps=gaps,
        has_volume=has_volume,
        source=str(p),
    )


def load_mark(path: str | Path) -> KlineSeries:
    """Mark-price klines (same format; volume usually empty)."""
    return load_klines(path)


def load_funding(path: str | Path) -> list[tuple[int, float]]:
    """Funding history `funding_time,funding_rate` as ascending (time_ms, rate) pairs."""
    p = Path(path)
    cols, columns = _split(p, FUNDING_COLUMNS)
    if not columns[0]:
        return []
    times = _column_int(p, "funding_time", columns[cols["funding_time"]])
    rates = _column_float(p, "funding_rate", columns[cols["funding_rate"]])
    for i in range(1, len(times)):
        if times[i] <= times[i - 1]:
            what = "duplicate" if times[i] == times[i - 1] else "non-monotonic"
            raise ReplayError(f"{p}:{i + 2}: {what} funding_time {times[i]}")
    for i, r in enumerate(rates):
        if abs(r) >= 0.05:  # Binance caps funding far below 5 % per interval
            raise ReplayError(f"{p}:{i + 2}: funding_rate {r!r} is implausible (|rate| >= 5%)")
    return list(zip(times, rates, strict=True))


def _stem(p: Path) -> str:
    n = p.name
    for suf in (".csv.gz", ".csv"):
        if n.endswith(suf):
            return n[: -len(suf)]
    return n


# ------------------------------------------------------------------ bundled data


def _data_root() -> Path:
    return Path(str(importlib.resources.files("atlas_actors") / "data"))


@lru_cache(maxsize=1)
def bundled_files() -> dict[str, Path]:
    """Bundled data files: name (file name without .csv.gz) -> path."""
    root = _data_root()
    out = {_stem(f): f for f in sorted(root.rglob("*.csv.gz"))}
    if not out:
        raise ReplayError(f"{root}: no bundled data files (is the package installed with data?)")
    return out


def bundled_path(name: str) -> Path:
    """Path of a bundled file by name ("BTCPERP-1m-2022-01", with or without .csv/.csv.gz,
    or "spot-5m-2018-01/ADABTC-5m-2018-01")."""
    key = _stem(Path(name))
    files = bundled_files()
    if key not in files:
        raise ReplayError(f"no bundled data file {name!r}; available: {', '.join(sorted(files))}")
    return files[key]


@dataclass(frozen=True)
class PaperData:
    klines: str
    mark: str | None = None
    funding: str | None = None


PAPER_DATA: dict[str, PaperData] = {
    "BTCUSDC": PaperData("BTCPERP-1m-2022-01"),
    "BTCUSDT": PaperData("BTCPERP-1m-2022-01"),
    "XRPUSDT": PaperData(
        "XRPUSDT-5m-2021-11", "XRPUSDT-1h-mark-2021-11", "XRPUSDT-funding-2021-11"
    ),
    **{
        s: PaperData(f"{s}-5m-2018-01")
        for s in ("ADABTC", "DASHBTC", "ETCBTC", "LTCBTC", "NXTBTC", "TRXBTC")
        + ("XLMBTC", "XMRBTC", "ZECBTC")
    },
}
# Synthetic aliases for many-symbol runs: SYM0001, SYM0002, ... cycle over these files.
SYNTHETIC_BASES = (
    "BTCPERP-1m-2022-01",
    "XRPUSDT-5m-2021-11",
    *(f"{s}-5m-2018-01" for s in ("ADABTC", "DASHBTC", "ETCBTC", "LTCBTC", "NXTBTC")),
    *(f"{s}-5m-2018-01" for s in ("TRXBTC", "XLMBTC", "XMRBTC", "ZECBTC")),
)
_SYNTHETIC_RE = re.compile(r"^SYM(\d{1,6})$")


def paper_symbols() -> list[str]:
    return sorted(PAPER_DATA)


def synthetic_scale(n: int) -> float:
    """Deterministic price scale of SYM<n> (between 0.5 and 2; 1.0 for the first cycle)."""
    cycle = (n - 1) // len(SYNTHETIC_BASES)
    if cycle == 0:
        return 1.0
    return float(2.0 ** (((cycle * 0.6180339887) % 1.0) * 2.0 - 1.0))


@lru_cache(maxsize=64)
def _load_bundled(name: str) -> KlineSeries:
    return load_klines(bundled_path(name), name=name)


def paper_series_for(symbol: str, path: str | Path | None = None) -> KlineSeries:
    """The replay series of a paper symbol (loaded once per process, shared read-only).

    `path`: an explicit kline file (config override) or a bundled file name; else the default:
    paper symbols, see `PAPER_DATA`; `SYM0001`..: synthetic aliases cycling over the bundled
    kline files, each later cycle price-scaled by `synthetic_scale` so symbols differ."""
    if path is not None and str(path):
        p = Path(path)
        if p.exists():
            return load_klines(p, name=symbol)
        return dataclasses.replace(_load_bundled(_stem(p)), name=symbol)
    spec = PAPER_DATA.get(symbol)
    if spec is not None:
        return _load_bundled(spec.klines)
    m = _SYNTHETIC_RE.match(symbol)
    if m and int(m.group(1)) >= 1:
        n = int(m.group(1))
        return _synthetic(n, symbol)
    raise ReplayError(
        f"no paper data for symbol {symbol!r}: use one of {', '.join(paper_symbols())}"
        " or a synthetic alias SYM0001..SYM9999"
    )


@lru_cache(maxsize=1024)
def _synthetic(n: int, symbol: str) -> KlineSeries:
    base = _load_bundled(SYNTHETIC_BASES[(n - 1) % len(SYNTHETIC_BASES)])
    scale = synthetic_scale(n)
    return base.scaled(scale, symbol) if scale != 1.0 else dataclasses.replace(base, name=symbol)


def paper_mark_for(symbol: str) -> KlineSeries | None:
    spec = PAPER_DATA.get(symbol)
    if spec is None or spec.mark is None:
        return None
    return _load_bundled(spec.mark)


def paper_funding_for(symbol: str) -> list[tuple[int, float]]:
    spec = PAPER_DATA.get(symbol)
    if spec is None or spec.funding is None:
        return []
    return load_funding(bundled_path(spec.funding))
