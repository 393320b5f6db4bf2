"""`atlas sim-exchange` as its own process, with the real adapter end to end.

Three symbols replayed from the bundled data: every position gets its stop as an algo order
on the sim exchange, confirmed visible; a restarted trading process confirms the same stops
(no write); the exchange saves its book on SIGTERM and comes back with it."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from atlas_actors.domain.events import BarClosed, VenueEvent
from atlas_actors.domain.stops import StopSpec
from atlas_actors.sim_exchange import SimExchangeServer
from atlas_actors.venues.binance import BinanceAdapter
from atlas_actors.venues.sim import SimVenue
from supervisor.sim_exchange_cmd import main_sim_exchange

SYMBOLS = ["BTCUSDT", "XRPUSDT", "ADABTC"]  # one margin asset per instance
ROOT = Path(__file__).resolve().parents[2]


class SimExchangeProcess:
    def __init__(self, state: Path, speed: str = "600") -> None:
        cmd = [
            sys.executable,
            "-m",
            "supervisor.sim_exchange_cmd",
            "--port",
            "0",
            "--symbols",
            ",".join(SYMBOLS),
            "--speed",
            speed,
            "--state",
            str(state),
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self.rest_url = self.ws_url = ""
        deadline = time.monotonic() + 30
        while not (self.rest_url and self.ws_url):
            assert time.monotonic() < deadline, f"sim-exchange did not start: {self.lines}"
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            assert line, f"sim-exchange exited early: {self.lines}"
            self.lines.append(line.rstrip())
            if line.startswith("sim-exchange REST"):
                self.rest_url = line.split()[-1]
            elif line.startswith("sim-exchange WS"):
                self.ws_url = line.split()[-1]

    def terminate(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=20)
        return self.proc.returncode, out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def exchange(tmp_path: Path) -> Iterator[SimExchangeProcess]:
    p = SimExchangeProcess(tmp_path / "simx.json")
    try:
        yield p
    finally:
        p.kill()


def _adapter(url: str) -> BinanceAdapter:
    return BinanceAdapter(
        "paper",
        "paper",
        rest_url=url,
        symbols=SYMBOLS,
        request_timeout_s=5.0,
        stream_backoff_s=0.05,
    )


def _qty(a: BinanceAdapter, symbol: str, price: float) -> float:
    f = a.get_symbol_filters(symbol)
    need = max(f["min_qty"], 3 * f["min_notional"] / price)
    return round(math.ceil(need / f["step_size"]) * f["step_size"], 10)


def test_paper_run_through_the_sim_exchange_process(exchange: SimExchangeProcess) -> None:
    assert exchange.rest_url.startswith("http://127.0.0.1:")
    assert exchange.ws_url == "ws" + exchange.rest_url[len("http") :]
    bot = _adapter(exchange.rest_url)
    seen: dict[str, int] = {}

    def on_event(ev: VenueEvent) -> None:
        if isinstance(ev, BarClosed):
            seen[ev.symbol] = seen.get(ev.symbol, 0) + 1

    bot.add_listener(on_event)
    bot.ws_start()
    specs: dict[str, StopSpec] = {}
    for sym in SYMBOLS:
        price = bot.get_last_price(sym)
        qty = _qty(bot, sym, price)
        bot.place_market(
            symbol=sym, side="BUY", qty=qty, reduce_only=False, client_order_id=f"p-{sym}-1-e"
        )
        specs[sym] = StopSpec("SELL", qty, price * 0.7, "MARK_PRICE", f"p-{sym}-1-sl")
        assert bot.recover_protection(sym, specs[sym])["action"] == "CREATED"
    positions = bot.get_positions()
    for sym in SYMBOLS:
        assert positions[sym]["side"] == "LONG"
        visible = bot.get_open_algo_orders(sym)
        assert [a["client_algo_id"] for a in visible] == [specs[sym].client_algo_id]
        assert visible[0]["working_type"] == "MARK_PRICE" and visible[0]["reduce_only"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(seen.get(s) for s in SYMBOLS):
        time.sleep(0.05)
    assert all(seen.get(s) for s in SYMBOLS), seen  # market data comes from its streams
    bot.close()

    # The trading process restarts: the exchange kept everything; recovery writes nothing.
    restarted = _adapter(exchange.rest_url)
    for sym in SYMBOLS:
        assert restarted.recover_protection(sym, specs[sym])["action"] == "CONFIRMED"
    restarted.close()

    code, out = exchange.terminate()
    assert code == 0, out
    assert "state saved" in out


def test_the_exchange_outlives_its_own_restart(tmp_path: Path) -> None:
    state = tmp_path / "simx.json"
    first = SimExchangeProcess(state)
    try:
        a = _adapter(first.rest_url)
        price = a.get_last_price("BTCUSDT")
        qty = _qty(a, "BTCUSDT", price)
        a.place_market(
            symbol="BTCUSDT", side="SELL", qty=qty, reduce_only=False, client_order_id="o-1-e"
        )
        a.place_algo_stop(
            symbol="BTCUSDT",
            side="BUY",
            qty=qty,
            stop_price=price * 1.3,
            reduce_only=True,
            client_algo_id="o-1-sl",
            working_type="MARK_PRICE",
        )
        a.close()
        code, _ = first.terminate()
        assert code == 0 and state.exists()
    finally:
        first.kill()
    second = SimExchangeProcess(state)
    try:
        b = _adapter(second.rest_url)
        pos = b.get_positions()["BTCUSDT"]
        assert pos["side"] == "SHORT" and pos["qty"] == pytest.approx(qty)
        assert [x["client_algo_id"] for x in b.get_open_algo_orders("BTCUSDT")] == ["o-1-sl"]
        got = b.get_algo_order(symbol="BTCUSDT", client_algo_id="o-1-sl")
        assert got is not None and got["status"] == "NEW"
        b.close()
    finally:
        second.kill()


def test_only_loopback_is_served(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="loopback"):
        SimExchangeServer(SimVenue(), host="0.0.0.0")
    assert main_sim_exchange(["--host", "0.0.0.0"]) == 2
    assert "loopback" in capsys.readouterr().out


def test_bad_arguments_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_sim_exchange(["--symbols", "BTCUSDC,XRPUSDT", "--data", "a.csv"]) == 2
    assert "--data has 1 files but --symbols has 2" in capsys.readouterr().out
    assert main_sim_exchange(["--symbols", "NOSUCHSYM"]) == 2
    assert "NOSUCHSYM" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main_sim_exchange(["--speed", "fast"])


def test_admin_endpoints_move_the_market_and_switch_faults() -> None:
    sim = SimVenue(seed=4)
    with SimExchangeServer(sim) as server:
        url = server.rest_url
        admin = f"{url}/admin"
        body = {"symbol": "ETHUSDT", "tick_size": 0.01, "step_size": 0.001}
        body |= {"min_qty": 0.001, "min_notional": 20}
        assert requests.post(f"{admin}/symbol", json=body, timeout=5).status_code == 200
        bar = {"open_time": 0, "open": 3000, "high": 3010, "low": 2990, "close": 3005}
        bar |= {"volume": 1.0, "close_time": 59_999}
        r = requests.post(f"{admin}/feed_bar", json={"symbol": "ETHUSDT", "bar": bar}, timeout=5)
        assert r.status_code == 200
        a = BinanceAdapter("paper", "paper", rest_url=url, symbols=["ETHUSDT"])
        assert a.get_symbol_filters("ETHUSDT")["min_notional"] == 20.0
        assert a.get_kline("ETHUSDT", "1m", 5)[0]["close"] == 3005.0
        requests.post(f"{admin}/price", json={"symbol": "ETHUSDT", "price": 3100}, timeout=5)
        requests.post(f"{admin}/price", json={"symbol": "ETHUSDT", "mark_price": 3099.5}, timeout=5)
        assert a.get_last_price("ETHUSDT") == 3100.0 and a.get_mark_price("ETHUSDT") == 3099.5
        a.place_market(
            symbol="ETHUSDT", side="BUY", qty=0.01, reduce_only=False, client_order_id="adm-1"
        )
        # An acknowledged stop the exchange then loses: the Sentinel's case.
        arm = {"arm": {"method": "place_algo_stop", "kind": "invisible_algo"}}
        requests.post(f"{admin}/faults", json=arm, timeout=5)
        lost = a.place_algo_stop(
            symbol="ETHUSDT",
            side="SELL",
            qty=0.01,
            stop_price=2900,
            reduce_only=True,
            client_algo_id="adm-sl-1",
            working_type="MARK_PRICE",
        )
        assert lost["status"] == "NEW" and a.get_open_algo_orders("ETHUSDT") == []
        # Visibility lag: the next stop shows up only after the lag.
        requests.post(f"{admin}/faults", json={"visibility_lag_ms": 300}, timeout=5)
        a.place_algo_stop(
            symbol="ETHUSDT",
            side="SELL",
            qty=0.01,
            stop_price=2900,
            reduce_only=True,
            client_algo_id="adm-sl-2",
            working_type="MARK_PRICE",
        )
        assert a.get_open_algo_orders("ETHUSDT") == []
        time.sleep(0.4)
        assert [x["client_algo_id"] for x in a.get_open_algo_orders("ETHUSDT")] == ["adm-sl-2"]
        # The exchange removes an open stop by itself (triggered, child unfilled: aq = 0).
        gone = {"symbol": "ETHUSDT", "client_algo_id": "adm-sl-2", "status": "FINISHED"}
        r = requests.post(f"{admin}/faults", json={"exchange_cancels_algo": gone}, timeout=5)
        assert r.status_code == 200
        assert a.get_open_algo_orders("ETHUSDT") == []
        assert a.get_algo_order(symbol="ETHUSDT", client_algo_id="adm-sl-2")["status"] == "FINISHED"
        assert a.get_positions()["ETHUSDT"]["side"] == "LONG"
        r = requests.post(f"{admin}/faults", json={"exchange_cancels_algo": gone}, timeout=5)
        assert r.status_code == 400 and "adm-sl-2" in r.json()["error"]
        snap = requests.get(f"{admin}/snapshot", timeout=5).json()
        assert snap["symbols"]["ETHUSDT"]["pos"] == 0.01
        seen = requests.get(f"{admin}/requests", timeout=5).json()
        assert any(r["path"] == "/fapi/v1/algoOrder" for r in seen)
        bad = requests.post(f"{admin}/price", data="not json", timeout=5)
        assert bad.status_code == 400 and "JSON" in bad.json()["error"]
        unknown = requests.post(f"{admin}/nope", json={}, timeout=5)
        assert unknown.status_code == 400
        a.close()
