"""Kline replay: bundled files, validation errors naming file:line, gap policy, paper symbols."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from atlas_actors.venues.replay import (
    PAPER_DATA,
    ReplayError,
    bundled_files,
    bundled_path,
    load_funding,
    load_klines,
    load_mark,
    paper_funding_for,
    paper_mark_for,
    paper_series_for,
    synthetic_scale,
)
from atlas_actors.venues.sim import SimVenue

HEADER = "open_time,open,high,low,close,volume,close_time\n"
ROWS = [
    "0,10,11,9,10.5,100,59999",
    "60000,10.5,12,10,11,120,119999",
    "120000,11,11.5,10.5,11.2,90,179999",
]


def write(tmp_path: Path, rows: list[str], *, name: str = "k.csv", header: str = HEADER) -> Path:
    p = tmp_path / name
    text = header + "\n".join(rows) + "\n"
    if name.endswith(".gz"):
        p.write_bytes(gzip.compress(text.encode()))
    else:
        p.write_text(text)
    return p


def test_every_bundled_file_loads() -> None:
    files = bundled_files()
    assert len(files) == 13
    for name, path in files.items():
        assert path.name.endswith(".csv.gz")
        if "funding" in name:
            f = load_funding(path)
            assert len(f) == 91 and all(t2 > t1 for (t1, _), (t2, _) in zip(f, f[1:], strict=False))
        else:
            s = load_klines(path)
            assert len(s) > 90
            assert all(lo <= hi for lo, hi in zip(s.low, s.high, strict=True))
    btc = load_klines(bundled_path("BTCPERP-1m-2022-01"))
    assert len(btc) == 45_031 and btc.interval == "1m" and btc.gaps == []
    mark = load_mark(bundled_path("XRPUSDT-1h-mark-2021-11.csv"))
    assert mark.interval == "1h" and not mark.has_volume and mark.volume[0] == 0.0


def test_bundled_names_and_subfolder() -> None:
    assert bundled_path("spot-5m-2018-01/ADABTC-5m-2018-01") == bundled_path("ADABTC-5m-2018-01")
    assert bundled_path("ADABTC-5m-2018-01.csv.gz").parent.name == "spot-5m-2018-01"
    with pytest.raises(ReplayError, match="available"):
        bundled_path("DOGE-1m")


def test_real_gaps_are_kept_reported_and_flagged() -> None:
    ada = paper_series_for("ADABTC")
    assert len(ada.gaps) == 5 and ada.missing_bars == 40
    g = ada.gaps[0]
    assert g.line == g.index + 2
    assert ada.open_time[g.index] - ada.open_time[g.index - 1] == (g.missing + 1) * 300_000
    bars = list(ada)
    assert len(bars) == len(ada)  # nothing synthesized
    flagged = {i: b["gap_before"] for i, b in enumerate(bars) if b["gap_before"]}
    assert flagged == {x.index: x.missing for x in ada.gaps}
    assert "5 gaps, 40 bars missing" in ada.gap_summary()
    assert ada.bar(g.index)["gap_before"] == g.missing


def test_gz_and_plain_give_the_same_series(tmp_path: Path) -> None:
    a = load_klines(write(tmp_path, ROWS))
    b = load_klines(write(tmp_path, ROWS, name="k.csv.gz"))
    assert list(a) == list(b)
    assert a.name == "k" and b.name == "k"
    assert list(a.iter_bars(1, 2)) == [list(a)[1]]
    assert a.bar(-1)["close"] == 11.2


def test_columns_in_any_order_and_crlf(tmp_path: Path) -> None:
    header = "close_time,open,high,low,close,volume,open_time,trades\r\n"
    rows = ["59999,10,11,9,10.5,100,0,7\r", "119999,10.5,12,10,11,,60000,3\r"]
    s = load_klines(write(tmp_path, rows, header=header))
    assert s.open_time.tolist() == [0, 60_000] and s.close.tolist() == [10.5, 11.0]


@pytest.mark.parametrize(
    ("rows", "line", "fragment"),
    [
        (["0,10,11,9,10.5,100,59999", "0,10,11,9,10.5,100,59999"], 3, "duplicate open_time"),
        (["60000,10,11,9,10.5,100,119999", "0,10,11,9,10.5,100,59999"], 3, "non-monotonic"),
        (["0,10,11,9,10.5,100,59999", "60000,10,9,11,10,1,119999"], 3, "high 9.0 < low 11.0"),
        (["0,10,11,9,10.5,100,59999", "60000,0,11,9,10,1,119999"], 3, "not a positive price"),
        (["0,10,11,9,10.5,100,59999", "60000,10,11,9,abc,1,119999"], 3, "close 'abc'"),
        (["0,10,11,9,10.5,100,59999", "60000,10,11,9,10,1"], 3, "expected 7 fields"),
        (["0,10,11,9,10.5,100,59999", "6e4,10,11,9,10,1,119999"], 3, "open_time '6e4'"),
        (["0,10,11,9,12,100,59999"], 2, "close 12.0 outside"),
        (["0,10,11,9,10,100,0"], 2, "close_time 0 <= open_time 0"),
        (["0,10,11,9,nan,100,59999"], 2, "not a finite number"),
    ],
)
def test_corrupt_rows_name_file_and_line(
    tmp_path: Path, rows: list[str], line: int, fragment: str
) -> None:
    p = write(tmp_path, rows)
    with pytest.raises(ReplayError) as ei:
        load_klines(p)
    msg = str(ei.value)
    assert f"{p}:{line}:" in msg
    assert fragment in msg


def test_corrupt_copy_of_a_bundled_file_fails_with_file_and_line(tmp_path: Path) -> None:
    lines = gzip.decompress(bundled_path("XRPUSDT-5m-2021-11").read_bytes()).decode().splitlines()
    fields = lines[500].split(",")
    fields[3] = str(float(fields[2]) + 0.01)  # low above high
    lines[500] = ",".join(fields)
    p = tmp_path / "XRPUSDT-5m-2021-11.csv.gz"
    p.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(ReplayError, match=rf"{p.name}:501: high"):
        load_klines(p)


def test_missing_columns_and_empty_files(tmp_path: Path) -> None:
    p = write(tmp_path, ["0,1,1,1,59999"], header="open_time,open,high,low,close_time\n")
    with pytest.raises(ReplayError, match=r":1: missing column\(s\) close, volume"):
        load_klines(p)
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(ReplayError, match=r"e.csv:1: empty file"):
        load_klines(empty)
    only_header = tmp_path / "h.csv"
    only_header.write_text(HEADER)
    with pytest.raises(ReplayError, match=r"h.csv:2: no bars"):
        load_klines(only_header)
    with pytest.raises(ReplayError, match="cannot read"):
        load_klines(tmp_path / "absent.csv")
    bad_gz = tmp_path / "b.csv.gz"
    bad_gz.write_bytes(b"\x1f\x8b" + b"garbage")
    with pytest.raises(ReplayError, match="corrupt gzip"):
        load_klines(bad_gz)


def test_gap_in_a_small_file(tmp_path: Path) -> None:
    rows = [ROWS[0], "240000,11,11.5,10.5,11.2,90,299999"]
    s = load_klines(write(tmp_path, rows))
    assert [(g.index, g.line, g.missing) for g in s.gaps] == [(1, 3, 3)]
    assert [b["gap_before"] for b in s] == [0, 3]


def test_funding_validation(tmp_path: Path) -> None:
    p = tmp_path / "f.csv"
    p.write_text("funding_time,funding_rate\n100,0.0001\n100,0.0002\n")
    with pytest.raises(ReplayError, match=r"f.csv:3: duplicate funding_time"):
        load_funding(p)
    p.write_text("funding_time,funding_rate\n100,0.5\n")
    with pytest.raises(ReplayError, match=r"f.csv:2: funding_rate 0.5"):
        load_funding(p)
    p.write_text("funding_time,funding_rate\n")
    assert load_funding(p) == []


def test_paper_symbols_map_to_bundled_files() -> None:
    assert paper_series_for("BTCUSDC") is paper_series_for("BTCUSDT")  # loaded once
    assert len(paper_series_for("BTCUSDC")) == 45_031
    assert paper_series_for("XRPUSDT").interval == "5m"
    for s in ("ADABTC", "DASHBTC", "ETCBTC", "LTCBTC", "NXTBTC", "TRXBTC", "XLMBTC", "XMRBTC"):
        assert s in PAPER_DATA and paper_series_for(s).interval == "5m"
    assert paper_series_for("ZECBTC").close[0] < 1.0  # BTC-quoted
    mark = paper_mark_for("XRPUSDT")
    assert mark is not None and mark.interval == "1h"
    assert paper_mark_for("BTCUSDC") is None
    assert len(paper_funding_for("XRPUSDT")) == 91 and paper_funding_for("ADABTC") == []
    with pytest.raises(ReplayError, match="no paper data for symbol 'DOGEUSDT'"):
        paper_series_for("DOGEUSDT")


def test_synthetic_aliases_are_deterministic_and_differ() -> None:
    first_cycle = [paper_series_for(f"SYM{n:04d}") for n in range(1, 12)]
    assert [s.name for s in first_cycle[:2]] == ["SYM0001", "SYM0002"]
    assert first_cycle[0].close.tolist() == paper_series_for("BTCUSDT").close.tolist()
    s12 = paper_series_for("SYM0012")  # second cycle over BTCPERP, scaled
    k = synthetic_scale(12)
    assert k != 1.0 and 0.5 <= k <= 2.0
    assert s12.close[100] == pytest.approx(first_cycle[0].close[100] * k)
    assert synthetic_scale(12) == synthetic_scale(12)
    scales = {synthetic_scale(n) for n in range(12, 201, 11)}
    assert len(scales) == len(range(12, 201, 11))  # every cycle has its own scale
    assert len(paper_series_for("SYM0200")) > 0
    with pytest.raises(ReplayError):
        paper_series_for("SYM0000")


def test_replayed_bars_drive_the_sim_venue() -> None:
    v = SimVenue()
    series = paper_series_for("XRPUSDT")
    for b in series.iter_bars(0, 50):
        v.feed_bar("XRPUSDT", b)
    assert v.get_last_price("XRPUSDT") == series.close[49]
    assert v.now() == series.close_time[49] / 1000.0


def test_series_is_list_like_and_paths_override(tmp_path: Path) -> None:
    s = load_klines(write(tmp_path, ROWS))
    assert s[0] == list(s)[0] and s[-1]["close"] == 11.2
    assert s[1:] == list(s)[1:] and s[::2] == [list(s)[0], list(s)[2]]
    with pytest.raises(IndexError, match="out of range"):
        s[3]
    own = paper_series_for("MYSYM", write(tmp_path, ROWS, name="own.csv"))
    assert own.name == "MYSYM" and len(own) == 3
    named = paper_series_for("ADA2", "ADABTC-5m-2018-01")
    assert named.name == "ADA2" and len(named) == len(paper_series_for("ADABTC"))
