"""Every failure exits, every stop is graceful (issue: Binance is not polite, B11 and B14).

`atlas run` as a real process: a failure after the actor tree is up exits non-zero with one
line saying why (it used to hang in interpreter shutdown on the actor threads, deaf to
SIGTERM); an unknown symbol is refused before any actor starts; SIGTERM stops gracefully in
every state and a second SIGTERM exits at once. Each run has a generous subprocess timeout:
a hang fails the test, nothing here measures speed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.chaos.procs import SimExchange

ROOT = Path(__file__).resolve().parents[2]
HANG = 40  # seconds: far above the 10 s the service promises, far below "for ever"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "SENTRY_DSN")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _atlas(*args: str) -> list[str]:
    return [sys.executable, "-m", "supervisor.cli", "run", *args]


def _dirs(tmp_path: Path) -> list[str]:
    return ["--state-dir", str(tmp_path / "state"), "--log-dir", str(tmp_path / "logs")]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_line_error(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.startswith("atlas run:")]
    assert lines, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    return lines[-1]


def test_unreachable_venue_exits_non_zero_with_one_line(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}"
    proc = subprocess.run(
        _atlas("--venue", "sim-exchange", "--venue-url", url, "--symbols", "BTCUSDC")
        + _dirs(tmp_path)
        + ["--no-admin", "--quiet"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert proc.returncode not in (0, None)
    line = _one_line_error(proc.stderr)
    assert "failed" in line or "unavailable" in line.lower(), line


def test_unusable_admin_socket_path_exits_2_naming_it(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the socket's directory should be\n")
    sock = blocker / "admin.sock"
    proc = subprocess.run(
        _atlas("--symbols", "BTCUSDC", "--speed", "max", "--admin-socket", str(sock))
        + _dirs(tmp_path)
        + ["--quiet"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = _one_line_error(proc.stderr)
    assert "admin socket" in line and str(blocker) in line, line


def test_a_symbol_the_venue_does_not_trade_is_refused_before_any_actor(tmp_path):
    exchange = SimExchange(tmp_path / "simx.log", symbols=("BTCUSDT", "XRPUSDT"))
    try:
        proc = subprocess.run(
            _atlas(
                "--venue",
                "sim-exchange",
                "--venue-url",
                exchange.url,
                "--symbols",
                "BTCUSDT,LTCBTC,XRPUSDT,NOPEUSDT",
            )
            + _dirs(tmp_path)
            + ["--no-admin", "--quiet", "--run-seconds", "30"],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=HANG,
        )
    finally:
        exchange.stop()
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = _one_line_error(proc.stderr)
    assert "LTCBTC, NOPEUSDT" in line and "BTCUSDT" not in line, line
    records = tmp_path / "logs" / "records.jsonl"
    assert not records.exists() or not records.read_text().strip()  # no actor ever ran


def test_a_symbol_listed_but_not_trading_is_refused_before_any_actor(tmp_path):
    """Issue 13 A10: a delisted symbol stays in exchangeInfo with a status other than
    TRADING. Failed before: only unknown symbols (-1121) were refused."""
    exchange = SimExchange(tmp_path / "simx.log", symbols=("BTCUSDT", "XRPUSDT"))
    try:
        exchange.admin("faults", {"symbol_status": {"XRPUSDT": "SETTLING"}})
        proc = subprocess.run(
            _atlas("--venue", "sim-exchange", "--venue-url", exchange.url)
            + ["--symbols", "BTCUSDT,XRPUSDT"]
            + _dirs(tmp_path)
            + ["--no-admin", "--quiet", "--run-seconds", "30"],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=HANG,
        )
    finally:
        exchange.stop()
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = _one_line_error(proc.stderr)
    assert "XRPUSDT (SETTLING)" in line and "BTCUSDT" not in line, line
    records = tmp_path / "logs" / "records.jsonl"
    assert not records.exists() or not records.read_text().strip()  # no actor ever ran


def test_usdc_and_usdt_symbols_in_one_instance_are_refused_at_start(tmp_path):
    """Each margin asset is its own pool: one instance sizes from one (issue 13 B8)."""
    url = f"http://127.0.0.1:{_closed_port()}"
    proc = subprocess.run(
        _atlas("--venue", "sim-exchange", "--venue-url", url, "--symbols", "BTCUSDC,XRPUSDT")
        + _dirs(tmp_path)
        + ["--no-admin", "--quiet"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = _one_line_error(proc.stderr)
    assert "USDC: BTCUSDC; USDT: XRPUSDT" in line and "margin asset" in line, line


def test_orders_of_another_instance_with_our_prefix_refuse_the_start_unless_adopted(tmp_path):
    """Issue 13 B16: a stop with this instance's prefix that its (empty) shard never issued.
    Failed before: the service started and took the other instance's stop for its own."""
    from atlas_actors.domain.txn import make_client_id
    from atlas_actors.store import StateStore
    from atlas_actors.venues.binance import BinanceAdapter

    exchange = SimExchange(tmp_path / "simx.log", symbols=("BTCUSDT",))
    foreign = make_client_id("atl", "BTCUSDT", 50_000, "sl")  # far above any id reservation
    try:
        other = BinanceAdapter("paper", "paper", rest_url=exchange.url, symbols=["BTCUSDT"])
        price = other.get_last_price("BTCUSDT")
        other.place_algo_stop(
            symbol="BTCUSDT",
            side="SELL",
            qty=0.01,
            stop_price=round(price * 0.5, 1),
            reduce_only=True,
            client_algo_id=foreign,
            working_type="MARK_PRICE",
        )
        other.close()
        run = _atlas("--venue", "sim-exchange", "--venue-url", exchange.url, "--symbols", "BTCUSDT")
        run += _dirs(tmp_path) + ["--no-admin", "--quiet", "--run-seconds", "1"]
        refused = subprocess.run(
            run, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=HANG
        )
        adopted = subprocess.run(
            [*run, "--adopt"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=HANG
        )
    finally:
        exchange.stop()
    assert refused.returncode == 2, refused.stderr[-2000:]
    line = _one_line_error(refused.stderr)
    assert foreign in line and "client_id_prefix" in line and "--adopt" in line, line
    assert adopted.returncode == 0, adopted.stderr[-2000:]
    with StateStore(tmp_path / "state") as store:
        assert store.get_symbol_state("BTCUSDT")["seq"] >= 50_000  # never issued again


def _start_slow_paper_run(tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _atlas("--symbols", "BTCUSDC,XRPUSDT", "--speed", "600")
        + _dirs(tmp_path)
        + ["--no-admin", "--quiet"],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_record(path: Path, pred, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    if pred(json.loads(line)):
                        return
                except json.JSONDecodeError:
                    continue
        time.sleep(0.1)
    raise AssertionError(f"no matching record in {path}")


def test_sigterm_stops_gracefully_and_records_a_shutdown_not_an_operator_pause(tmp_path):
    proc = _start_slow_paper_run(tmp_path)
    try:
        records = tmp_path / "logs" / "records.jsonl"
        _wait_for_record(records, lambda r: r.get("kind") == "candidate", timeout_s=20.0)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=HANG)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "bars" in out  # the summary
    lines = [json.loads(x) for x in records.read_text().splitlines() if x]
    paused = [r for r in lines if r.get("kind") == "lifecycle" and r.get("state") == "PAUSED"]
    assert paused and all(r["why"] == "shutdown" for r in paused)


def test_a_second_sigterm_exits_at_once(tmp_path):
    proc = _start_slow_paper_run(tmp_path)
    try:
        _wait_for_record(
            tmp_path / "logs" / "records.jsonl", lambda r: r.get("kind") == "lifecycle"
        )
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=HANG)
    finally:
        if proc.poll() is None:
            proc.kill()
    # either the second signal cut the shutdown short (128 + SIGTERM), or the graceful stop
    # had already finished when it came
    assert proc.returncode in (0, 128 + signal.SIGTERM), err[-2000:]
    if proc.returncode:
        assert "exiting now" in err and "stops stay on the exchange" in err


def test_records_reach_the_file_as_written_and_survive_sigkill(tmp_path):
    """records.jsonl is written through: a candidate evaluation is on disk seconds after the
    run starts (a 64 KB buffer held a short run's every record), and SIGKILL loses none."""
    proc = _start_slow_paper_run(tmp_path)
    records = tmp_path / "logs" / "records.jsonl"
    try:
        _wait_for_record(records, lambda r: r.get("kind") == "candidate", timeout_s=20.0)
        proc.kill()
        proc.communicate(timeout=HANG)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = records.read_text().splitlines()
    parsed = [json.loads(x) for x in lines]  # every line whole: nothing torn, nothing lost
    kinds = {r["kind"] for r in parsed}
    assert {"lifecycle", "candidate"} <= kinds
