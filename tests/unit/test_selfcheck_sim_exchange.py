"""`atlas selfcheck` end to end: the real BinanceAdapter against the loopback sim exchange."""

from __future__ import annotations

import json
import textwrap

import pytest

from atlas_actors.selfcheck import main_selfcheck
from atlas_actors.sim_exchange import SimExchangeServer
from atlas_actors.venues.sim import SimVenue

SYMBOLS = ["BTCUSDT", "XRPUSDT"]


@pytest.fixture
def exchange():
    venue = SimVenue()
    for sym, price in (("BTCUSDT", 40_000.0), ("XRPUSDT", 1.0)):
        t = 1_700_000_000_000
        for i in range(30):
            p = price * (1 + 0.001 * (i % 5))
            venue.feed_bar(
                sym,
                {
                    "open_time": t + i * 60_000,
                    "open": p,
                    "high": p * 1.002,
                    "low": p * 0.998,
                    "close": p * 1.001,
                    "volume": 10.0,
                    "close_time": t + i * 60_000 + 59_999,
                },
            )
    server = SimExchangeServer(venue, symbols=SYMBOLS)
    server.start()
    yield server
    server.stop()


def test_selfcheck_passes_against_the_sim_exchange(exchange, tmp_path, capsys, monkeypatch):
    for var in ("BINANCE_API_KEY", "BINANCE_API_SECRET", "SENTRY_DSN", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    cfg = tmp_path / "simx.toml"
    cfg.write_text(
        textwrap.dedent(
            f"""
            [run]
            symbols = {json.dumps(SYMBOLS)}
            [venue]
            kind = "sim-exchange"
            url = "{exchange.rest_url}"
            ws_url = "{exchange.ws_url}"
            """
        )
    )
    code = main_selfcheck(["--config", str(cfg), "--json", "--timeout", "10"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    lines = {line["name"]: line for line in report["lines"]}
    assert lines["position mode"]["reason"] == "one-way"
    assert "has the algo methods" in lines["python-binance"]["reason"]
    assert "placed, visible, cancelled" in lines["Algo conditional orders"]["reason"]
    assert "CONNECTED" in lines["stream connectivity"]["reason"]
    assert report["venue"] == exchange.rest_url
    paths = {r.path for r in exchange.requests}
    assert "/fapi/v1/openAlgoOrders" in paths and "/fapi/v1/positionSide/dual" in paths
    assert "/fapi/v1/algoOrder" in paths  # the probe stop went to the Algo endpoint
    assert not any(r.path == "/fapi/v1/order" for r in exchange.requests)  # never a plain stop
    assert exchange.venue.get_open_algo_orders("BTCUSDT") == []
