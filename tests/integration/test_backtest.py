"""`atlas backtest` end to end on the bundled real data: determinism, the report's books,
traceability of every trade, and clear errors for bad inputs."""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from atlas_actors.backtest import SymbolJob, main_backtest, run_jobs, run_symbol
from atlas_actors.report import build_report
from atlas_actors.venues import replay as rp
from supervisor.config import load_config

ROOT = Path(__file__).resolve().parents[2]
ATLAS = str(ROOT / "config" / "atlas.toml")
BENCH = str(ROOT / "config" / "bench.toml")
REPORT_FILES = ("metrics.json", "trades.csv", "decisions.jsonl")


def backtest(out: Path, *args: str, plot: bool = False) -> Path:
    argv = [*args, "--out", str(out), "--quiet"]
    if not plot:
        argv.append("--no-plot")
    assert main_backtest(argv) == 0
    return out


def metrics(out: Path) -> dict[str, Any]:
    return json.loads((out / "metrics.json").read_text())


def trades(out: Path) -> list[dict[str, str]]:
    with open(out / "trades.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def decisions(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]


def closing_side(side: str) -> str:
    return "SELL" if side == "LONG" else "BUY"


@pytest.fixture(scope="module")
def btc_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default strategy on the first ten days of the bundled BTC month."""
    out = tmp_path_factory.mktemp("btc-slice")
    return backtest(out, "--data", "BTCPERP-1m-2022-01", "--config", ATLAS, "--max-bars", "14400")


@pytest.fixture(scope="module")
def xrp_funded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """XRPUSDT 5m with its real mark-price klines and a funding every 5 minutes (so open
    positions do pay or receive funding)."""
    tmp = tmp_path_factory.mktemp("xrp")
    series = rp.load_klines(rp.bundled_path("XRPUSDT-5m-2021-11"))
    funding = tmp / "funding.csv"
    rows = ["funding_time,funding_rate"]
    rows += [f"{t},{0.0003 if i % 2 else -0.0001}" for i, t in enumerate(series.open_time)]
    funding.write_text("\n".join(rows) + "\n")
    return backtest(
        tmp / "out",
        "--data",
        "XRPUSDT-5m-2021-11",
        "--mark",
        "XRPUSDT-1h-mark-2021-11",
        "--funding",
        str(funding),
        "--config",
        ATLAS,
    )


# ------------------------------------------------------------------ determinism


def test_two_runs_of_the_same_backtest_are_byte_identical(tmp_path: Path, btc_slice: Path) -> None:
    again = backtest(
        tmp_path / "again", "--data", "BTCPERP-1m-2022-01", "--config", ATLAS, "--max-bars", "14400"
    )
    for name in REPORT_FILES:
        assert (again / name).read_bytes() == (btc_slice / name).read_bytes(), name
    m = metrics(btc_slice)
    assert m["bars"] == 14400
    assert m["trades"] > 5 and m["candidates"] > m["opens"] > 0


def test_worker_count_does_not_change_the_report(tmp_path: Path) -> None:
    data = "ADABTC-5m-2018-01,XRPUSDT-5m-2021-11,LTCBTC-5m-2018-01"
    common = ("--data", data, "--config", ATLAS, "--max-bars", "1500")
    one = backtest(tmp_path / "one", *common, "--jobs", "1")
    two = backtest(tmp_path / "two", *common, "--jobs", "2")
    for name in REPORT_FILES:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    m = metrics(one)
    assert m["symbols"] == ["ADABTC", "LTCBTC", "XRPUSDT"]
    assert m["bars"] == 3 * 1500
    assert sum(s["trades"] for s in m["per_symbol"].values()) == m["trades"] > 0
    # records of several symbols are merged by time
    ts = [r["ts"] for r in decisions(one)]
    assert ts == sorted(ts)


# ------------------------------------------------------------------ the books


@pytest.mark.parametrize("run", ["btc_slice", "xrp_funded"])
def test_net_pnl_is_trade_pnl_minus_fees_plus_funding(
    run: str, request: pytest.FixtureRequest
) -> None:
    out: Path = request.getfixturevalue(run)
    m = metrics(out)
    rows = trades(out)
    assert len(rows) == m["trades"] > 0
    pnl = math.fsum(float(r["pnl"]) for r in rows)
    fees = math.fsum(float(r["fees"]) for r in rows)
    tol = 1e-6 * m["starting_balance"]
    assert m["net_pnl"] == pytest.approx(pnl - fees + m["funding"], abs=tol)
    assert m["fees"] == pytest.approx(fees, abs=tol)
    assert m["final_equity"] - m["starting_balance"] == pytest.approx(m["net_pnl"], abs=tol)
    assert abs(m["unexplained_pnl"]) <= tol
    # the fills the venue reported tell the same story
    fills = [r for r in decisions(out) if r["kind"] == "fill"]
    realized = math.fsum(f["realized_pnl"] for f in fills)
    paid = math.fsum(f["fee"] for f in fills)
    assert realized - paid + m["funding"] == pytest.approx(m["net_pnl"], abs=tol)
    # every trade's net is its pnl minus its fees, and R is signed like the pnl
    for r in rows:
        assert float(r["net_pnl"]) == pytest.approx(float(r["pnl"]) - float(r["fees"]), abs=1e-9)
        assert float(r["r_multiple"]) * float(r["pnl"]) >= 0


def test_funding_is_booked_when_positions_cross_funding_times(xrp_funded: Path) -> None:
    m = metrics(xrp_funded)
    assert m["funding"] != 0.0
    assert m["exposure"] > 0
    assert m["data"]["XRPUSDT"]["bars"] == 1999


def test_net_pnl_matches_the_simulated_venue(btc_slice: Path) -> None:
    cfg = load_config(ATLAS)
    job = SymbolJob(
        symbol="BTCUSDC",
        klines=str(rp.bundled_path("BTCPERP-1m-2022-01")),
        params=cfg.params,
        max_bars=14400,
        fee_bps=cfg.venue.fee_bps,
        slippage_bps=cfg.venue.slippage_bps,
        starting_balance=cfg.venue.starting_balance,
        leverage=cfg.params.tier_a.leverage,
    )
    res = run_symbol(job)
    m = metrics(btc_slice)
    assert res.final_equity - res.starting_balance == pytest.approx(m["net_pnl"], abs=1e-6)
    assert res.fees_paid == pytest.approx(m["fees"], abs=1e-6)
    assert res.equity[-1] == pytest.approx(res.final_equity)
    assert res.bars == m["bars"]


def test_portfolio_curve_adds_the_accounts_up(tmp_path: Path) -> None:
    params = load_config(ATLAS).params
    jobs = [
        SymbolJob(symbol=sym, klines=str(rp.bundled_path(name)), params=params, max_bars=1500)
        for sym, name in (("ADABTC", "ADABTC-5m-2018-01"), ("XRPUSDT", "XRPUSDT-5m-2021-11"))
    ]
    ada, xrp = run_jobs(jobs, workers=1)
    rep = build_report([ada, xrp], {})
    assert rep.equity[-1] == pytest.approx(ada.final_equity + xrp.final_equity)
    # ADABTC's period (2018) ends before XRPUSDT's (2021) starts: its result is carried over
    i = rep.times.index(ada.times[-1])
    assert rep.equity[i] == pytest.approx(ada.equity[-1] + xrp.starting_balance)
    assert rep.equity[i + 1] == pytest.approx(ada.equity[-1] + xrp.equity[0])
    assert rep.metrics["max_drawdown"] > 0
    peak_to_trough = max(
        max(rep.equity[: j + 1]) - rep.equity[j] for j in range(0, len(rep.equity), 50)
    )
    assert rep.metrics["max_drawdown_abs"] >= peak_to_trough - 1e-9


# ------------------------------------------------------------------ traceability


@pytest.mark.parametrize("run", ["btc_slice", "xrp_funded"])
def test_every_trade_has_its_entry_and_exit_in_the_decisions(
    run: str, request: pytest.FixtureRequest
) -> None:
    out: Path = request.getfixturevalue(run)
    recs = decisions(out)
    entry_orders = {
        r["client_id"]: r for r in recs if r["kind"] == "order" and r["role"] == "entry"
    }
    fills_by_cid: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        if r["kind"] == "fill":
            fills_by_cid.setdefault(r["client_id"], []).append(r)
    trade_recs = {(r["entry_client_id"], r["closed_ts"]) for r in recs if r["kind"] == "trade"}
    rows = trades(out)
    assert rows
    for t in rows:
        cid = t["entry_client_id"]
        opened, closed = int(t["opened_ts"]), int(t["closed_ts"])
        assert cid in entry_orders, f"no entry order record for {cid}"
        entry_fills = fills_by_cid.get(cid, [])
        assert entry_fills and entry_fills[0]["ts"] == opened
        assert entry_fills[0]["side"] != closing_side(t["side"])
        assert (cid, closed) in trade_recs
        exits = [
            f
            for fs in fills_by_cid.values()
            for f in fs
            if f["symbol"] == t["symbol"]
            and f["ts"] == closed
            and f["side"] == closing_side(t["side"])
        ]
        assert exits, f"no exit fill for the trade entered by {cid}"
        assert t["exit_reason"]


@pytest.mark.parametrize("run", ["btc_slice", "xrp_funded"])
def test_every_open_is_followed_by_an_algo_stop(run: str, request: pytest.FixtureRequest) -> None:
    out: Path = request.getfixturevalue(run)
    recs = decisions(out)
    opens = protected = 0
    for i, r in enumerate(recs):
        if r["kind"] != "candidate" or r["action"] != "OPEN":
            continue
        opens += 1
        same_bar = [x for x in recs[i + 1 :] if x["ts"] == r["ts"] and x["symbol"] == r["symbol"]]
        entry = next(x for x in same_bar if x["kind"] == "order" and x["role"] == "entry")
        if entry["status"] is None or not any(
            f["kind"] == "fill" and f["client_id"] == entry["client_id"] for f in recs
        ):
            continue  # refused or never filled: nothing to protect
        # the stop follows the entry fill (a market entry's fill is reported while it is placed)
        after = recs[i:]
        fill_at = next(
            j
            for j, x in enumerate(after)
            if x["kind"] == "fill" and x["client_id"] == entry["client_id"]
        )
        fill_ts = after[fill_at]["ts"]
        stop = next(
            x
            for x in after[fill_at:]
            if x["kind"] == "order" and x["role"] == "sl" and x["symbol"] == r["symbol"]
        )
        assert stop["venue_id"] is not None and stop["status"] == "NEW"
        assert stop["ts"] == fill_ts
        protected += 1
    assert opens >= protected > 0


def test_end_of_data_closes_the_open_position(tmp_path: Path) -> None:
    common = ("--data", "BTCPERP-1m-2022-01", "--config", BENCH)
    full = trades(backtest(tmp_path / "full", *common, "--max-bars", "3000"))
    first_open = rp.load_klines(rp.bundled_path("BTCPERP-1m-2022-01")).open_time[0]
    held = next(t for t in full if int(t["closed_ts"]) - int(t["opened_ts"]) >= 180)
    # cut the data two bars after that trade's entry: the same decisions up to there
    entry_bar = (int(held["opened_ts"]) * 1000 + 1 - first_open) // 60_000 - 1
    out = backtest(tmp_path / "cut", *common, "--max-bars", str(entry_bar + 3))
    m = metrics(out)
    last = trades(out)[-1]
    assert m["closed_at_end"] == 1
    assert last["entry_client_id"] == held["entry_client_id"]
    assert last["exit_reason"] == "end_of_data"
    assert int(last["closed_ts"]) < int(held["closed_ts"])
    # the closing flat is recorded as what it was, not counted as an emergency
    assert m["risk_actions"]["EMERGENCY_FLAT"] == m["emergency_flats"] + 1


# ------------------------------------------------------------------ the benchmark strategy


def test_ema_cross_full_month_with_picture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ema"
    assert (
        main_backtest(["--data", "BTCPERP-1m-2022-01", "--config", BENCH, "--out", str(out)]) == 0
    )
    m = metrics(out)
    rows = trades(out)
    assert m["bars"] == 45_031
    assert m["per_template"].keys() == {"ema_cross"}
    assert len(rows) == m["trades"] > 50
    assert {r["side"] for r in rows} == {"LONG"}
    assert {r["exit_reason"] for r in rows} <= {"exit_signal", "stop_loss", "end_of_data"}
    png = (out / "equity.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    shown = capsys.readouterr().out
    assert "net PnL" in shown and "ema_cross" in shown and str(out / "equity.png") in shown


def test_picture_is_skipped_with_a_note_without_matplotlib(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from supervisor.cli import main\n"
        f"sys.exit(main(['backtest', '--data', 'XRPUSDT-5m-2021-11', '--max-bars', '600', "
        f"'--config', {ATLAS!r}, '--out', {str(tmp_path)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "matplotlib is not installed" in done.stdout
    assert not (tmp_path / "equity.png").exists()
    assert all((tmp_path / f).is_file() for f in REPORT_FILES)


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    argv = ["backtest", "--data", "XRPUSDT-5m-2021-11", "--config", ATLAS, "--no-plot"]
    code = "import sys; from supervisor.cli import main; sys.exit(main(sys.argv[1:]))"
    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, *argv, "--out", str(tmp_path / "tty")],
            stdout=subprocess.DEVNULL,
            stderr=slave,
            timeout=120,
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    assert done.returncode == 0
    shown = b"".join(chunks).decode()
    assert "backtest [" in shown and "1/1 symbols" in shown and "1,999 bars" in shown
    piped = subprocess.run(
        [sys.executable, "-c", code, *argv, "--out", str(tmp_path / "pipe")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode == 0 and piped.stderr == ""
    assert "net PnL" in piped.stdout


# ------------------------------------------------------------------ data problems


def _sample(tmp_path: Path, drop: range) -> Path:
    src = rp.bundled_path("XRPUSDT-5m-2021-11")
    lines = gzip.decompress(src.read_bytes()).decode().splitlines()
    keep = [line for i, line in enumerate(lines) if i not in drop]
    path = tmp_path / "XRPUSDT-5m-sample.csv"
    path.write_text("\n".join(keep[:900]) + "\n")
    return path


def test_gaps_are_counted_and_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _sample(tmp_path, range(300, 307))  # 7 bars missing after line 300
    out = tmp_path / "out"
    assert (
        main_backtest(["--data", str(path), "--config", ATLAS, "--out", str(out), "--no-plot"]) == 0
    )
    m = metrics(out)
    assert m["data"]["XRPUSDT"] == {
        "bars": 899,
        "file": path.name,
        "first_gaps": [{"line": 301, "missing": 7}],
        "gaps": 1,
        "interval": "5m",
        "missing_bars": 7,
    }
    assert (
        "1 gaps, 7 bars missing (kept, not synthesized): line 301 (+7)" in capsys.readouterr().out
    )


def test_a_bad_row_is_a_clear_error_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _sample(tmp_path, range(0))
    lines = path.read_text().splitlines()
    fields = lines[41].split(",")
    fields[2] = "not-a-price"
    lines[41] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    rc = main_backtest(["--data", str(path), "--out", str(tmp_path / "o"), "--no-plot"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{path}:42" in err and "high" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "NOSUCH-1m-2020-01"], "not a bundled data set"),
        (
            ["--data", "XRPUSDT-5m-2021-11", "--from", "2021-11-20", "--to", "2021-11-19"],
            "not after",
        ),
        (["--data", "XRPUSDT-5m-2021-11", "--from", "2030-01-01"], "no bars"),
        (["--data", "XRPUSDT-5m-2021-11", "--from", "yesterday"], "--from 'yesterday'"),
        (["--data", "XRPUSDT-5m-2021-11", "--mark", "ADABTC=XRPUSDT-1h-mark-2021-11"], "ADABTC"),
        (["--data", "XRPUSDT-5m-2021-11,XRPUSDT-5m-2021-11"], "given twice"),
        (["--data", "XRPUSDT-5m-2021-11", "--symbol", "A,B"], "2 symbol(s) for 1 data file"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main_backtest([*args, "--out", str(tmp_path), "--no-plot", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_time_range_selects_the_bars(tmp_path: Path) -> None:
    out = backtest(
        tmp_path,
        "--data",
        "XRPUSDT-5m-2021-11",
        "--config",
        ATLAS,
        "--from",
        "2021-11-16",
        "--to",
        "2021-11-17T12:00",
    )
    m = metrics(out)
    assert m["bars"] == 36 * 12
    assert m["period"] == {"from": "2021-11-16T00:00:00Z", "to": "2021-11-17T12:00:00Z"}
