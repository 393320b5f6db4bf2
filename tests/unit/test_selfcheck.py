"""SelfCheck (contract §9) against SimVenue and real adapters that fail in specific ways."""

from __future__ import annotations

import json
import textwrap
import threading
from pathlib import Path
from typing import Any

from atlas_actors.domain.events import StreamStatus
from atlas_actors.domain.params import Params, load_params
from atlas_actors.selfcheck import (
    FAIL,
    PASS,
    SelfCheckReport,
    main_selfcheck,
    run_selfcheck,
)
from atlas_actors.venues.base import AuthError, VenueUnavailable
from atlas_actors.venues.sim import SimVenue
from supervisor.config import config_from_mapping

SYMBOLS = ["BTCUSDC", "XRPUSDT"]


class PaperSim(SimVenue):
    """SimVenue with prices, klines and a position mode, streams initially stopped."""

    position_mode = "ONE_WAY"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        for sym, price in (("BTCUSDC", 40_000.0), ("XRPUSDT", 1.0)):
            t = 1_700_000_000_000
            for i in range(30):
                p = price * (1 + 0.001 * (i % 5))
                self.feed_bar(
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
        self.ws_stop()

    def get_position_mode(self) -> str:
        return self.position_mode


class HedgeSim(PaperSim):
    position_mode = "HEDGE"


class NoPositionModeSim(PaperSim):
    get_position_mode = None  # an adapter that cannot tell


class Offline(PaperSim):
    """The exchange cannot be reached at all."""

    def get_mark_price(self, symbol: str) -> float:
        raise VenueUnavailable("ConnectionError: [Errno 111] Connection refused")

    def get_balances(self) -> dict[str, Any]:
        raise VenueUnavailable("ConnectionError: [Errno 111] Connection refused")

    def get_open_algo_orders(self, symbol: str) -> list[dict[str, Any]]:
        raise VenueUnavailable("ConnectionError: [Errno 111] Connection refused")

    def get_symbol_filters(self, symbol: str) -> dict[str, float]:
        raise VenueUnavailable("ConnectionError: [Errno 111] Connection refused")


class BadKey(PaperSim):
    def get_balances(self) -> dict[str, Any]:
        raise AuthError("-2015 Invalid API-key, IP, or permissions for action", code=-2015)


class SilentStreams(PaperSim):
    def ws_start(self) -> None:  # accepts the call, never connects
        pass


class NoAlgoEndpoint(PaperSim):
    def get_open_algo_orders(self, symbol: str) -> list[dict[str, Any]]:
        raise AttributeError("'Client' object has no attribute 'futures_get_open_algo_orders'")


class HangingPositionMode(PaperSim):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.release = threading.Event()

    def get_position_mode(self) -> str:
        self.release.wait(30)
        return "ONE_WAY"


class InvisibleStops(PaperSim):
    def get_open_algo_orders(self, symbol: str) -> list[dict[str, Any]]:
        return []  # the query works but never shows what was placed


def by_name(report: SelfCheckReport) -> dict[str, tuple[str, str]]:
    return {line.name: (line.result, line.reason) for line in report.lines}


def test_all_pass_on_a_healthy_sim():
    report = run_selfcheck(PaperSim(), Params(), SYMBOLS, timeout_s=5, algo_probe=True)
    lines = by_name(report)
    assert report.ok, report.format_table()
    assert list(lines) == [
        "REST connectivity",
        "API permissions",
        "stream connectivity",
        "Algo conditional orders",
        "position mode",
        "min qty / precision BTCUSDC",
        "min qty / precision XRPUSDT",
        "key parameters",
    ]
    assert "CONNECTED" in lines["stream connectivity"][1]
    assert "placed, visible, cancelled" in lines["Algo conditional orders"][1]
    p = Params()
    summary = lines["key parameters"][1]
    assert f"tiers A/B leverage {p.tier_a.leverage}/{p.tier_b.leverage}" in summary
    assert f"runner max {p.runner.RUNNER_MAX_BARS_AFTER_TP2} bars" in summary
    assert f"cooldown loss {p.cooldown.loss_s}s" in summary and "shockguard on" in summary
    table = report.format_table()
    assert table.splitlines()[0].split()[:3] == ["CHECK", "RESULT", "REASON"]
    assert table.endswith("all checks passed")


def test_probe_stop_is_cancelled():
    venue = PaperSim()
    run_selfcheck(venue, Params(), ["BTCUSDC"], timeout_s=5, algo_probe=True)
    assert venue.get_open_algo_orders("BTCUSDC") == []


def test_unreachable_exchange_fails_every_remote_check_without_traceback():
    report = run_selfcheck(
        Offline(), Params(), ["BTCUSDC"], timeout_s=2, venue_label="https://fapi.binance.com"
    )
    lines = by_name(report)
    assert not report.ok
    assert lines["REST connectivity"] == (
        FAIL,
        "cannot reach https://fapi.binance.com (VenueUnavailable: ConnectionError: [Errno 111] Connection refused)",
    )
    assert lines["API permissions"][0] == FAIL
    assert lines["Algo conditional orders"][0] == FAIL
    assert lines["min qty / precision BTCUSDC"][0] == FAIL
    assert lines["key parameters"][0] == PASS
    assert "Traceback" not in report.format_table()


def test_rejected_key_is_named():
    lines = by_name(run_selfcheck(BadKey(), Params(), ["BTCUSDC"], timeout_s=2))
    result, reason = lines["API permissions"]
    assert result == FAIL and "API key rejected" in reason and "-2015" in reason
    assert lines["min qty / precision BTCUSDC"] == (FAIL, "equity unknown (API permissions failed)")


def test_streams_that_never_connect():
    lines = by_name(run_selfcheck(SilentStreams(), Params(), ["BTCUSDC"], timeout_s=0.3))
    assert lines["stream connectivity"] == (FAIL, "no stream event or CONNECTED status within 0.3s")
    assert lines["REST connectivity"][0] == PASS


def test_stream_probe_callable_replaces_ws_start():
    def probe(timeout_s: float) -> str:
        return f"custom probe ok within {timeout_s:g}s"

    lines = by_name(
        run_selfcheck(SilentStreams(), Params(), ["BTCUSDC"], stream_probe=probe, timeout_s=1)
    )
    assert lines["stream connectivity"] == (PASS, "custom probe ok within 1s")


def test_stream_event_from_a_running_feed_counts():
    venue = SilentStreams()

    def probe(timeout_s: float) -> str:
        got = threading.Event()
        venue.add_listener(lambda ev: got.set() if isinstance(ev, StreamStatus) else None)
        venue.ws_start = SimVenue.ws_start.__get__(venue)  # the real start this time
        venue.ws_start()
        assert got.wait(timeout_s)
        return "market stream CONNECTED"

    assert run_selfcheck(venue, Params(), ["BTCUSDC"], stream_probe=probe, timeout_s=1).ok


def test_missing_algo_endpoint():
    result, reason = by_name(run_selfcheck(NoAlgoEndpoint(), Params(), ["BTCUSDC"], timeout_s=2))[
        "Algo conditional orders"
    ]
    assert result == FAIL and "futures_get_open_algo_orders" in reason


def test_stops_not_visible_fail_the_algo_probe():
    venue = InvisibleStops()
    result, reason = by_name(
        run_selfcheck(venue, Params(), ["BTCUSDC"], timeout_s=2, algo_probe=True)
    )["Algo conditional orders"]
    assert result == FAIL and "not visible in open algo orders within 1 s" in reason
    assert SimVenue.get_open_algo_orders(venue, "BTCUSDC") == []  # cancelled anyway


def test_hedge_mode_and_unknown_mode():
    hedge = by_name(run_selfcheck(HedgeSim(), Params(), ["BTCUSDC"], timeout_s=2))["position mode"]
    assert hedge[0] == FAIL and "HEDGE mode" in hedge[1] and "one-way" in hedge[1]
    unknown = by_name(run_selfcheck(NoPositionModeSim(), Params(), ["BTCUSDC"], timeout_s=2))[
        "position mode"
    ]
    assert unknown == (
        FAIL,
        "NoPositionModeSim has no get_position_mode(): cannot prove one-way mode",
    )


def test_a_hanging_call_is_a_fail_not_a_hang():
    venue = HangingPositionMode()
    try:
        result, reason = by_name(run_selfcheck(venue, Params(), ["BTCUSDC"], timeout_s=0.5))[
            "position mode"
        ]
    finally:
        venue.release.set()
    assert result == FAIL and reason == "CheckTimeout: position mode: no answer within 0.5s"


def test_risk_too_small_for_min_qty():
    venue = PaperSim()
    venue.add_symbol("BTCUSDC", tick_size=0.1, step_size=0.001, min_qty=0.5, min_notional=5.0)
    lines = by_name(run_selfcheck(venue, Params(), ["BTCUSDC"], timeout_s=2))
    result, reason = lines["min qty / precision BTCUSDC"]
    assert result == FAIL
    assert "tier A" in reason and "< min qty 0.5" in reason and "raise the risk share" in reason


def test_min_notional_and_margin_problems():
    venue = PaperSim(starting_balance=50.0)
    venue.add_symbol("XRPUSDT", tick_size=0.0001, step_size=0.1, min_qty=0.1, min_notional=1000.0)
    result, reason = by_name(run_selfcheck(venue, Params(), ["XRPUSDT"], timeout_s=2))[
        "min qty / precision XRPUSDT"
    ]
    assert result == FAIL and "< min notional 1000" in reason


def test_tier_with_zero_risk_is_skipped():
    params = load_params({"risk": {"risk_per_trade_b": 0.0}})
    result, reason = by_name(run_selfcheck(PaperSim(), params, ["BTCUSDC"], timeout_s=2))[
        "min qty / precision BTCUSDC"
    ]
    assert result == PASS and "tier B off (risk 0)" in reason


def test_missing_params_and_no_symbols():
    report = run_selfcheck(PaperSim(), None, [], timeout_s=1)
    lines = by_name(report)
    assert lines["symbols"] == (FAIL, "no symbols configured (run.symbols)")
    assert not report.ok


def test_config_object_is_accepted():
    cfg = config_from_mapping({"run": {"symbols": ["BTCUSDC"], "client_id_prefix": "zz"}})
    assert run_selfcheck(PaperSim(), cfg, cfg.run.symbols, timeout_s=5, algo_probe=True).ok


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "atlas.toml"
    path.write_text(textwrap.dedent(body))
    return path


def test_main_selfcheck_paper_sim_passes_only_with_position_mode(tmp_path, capsys):
    cfg = write_config(tmp_path, '[run]\nsymbols = ["BTCUSDC", "XRPUSDT"]\n')
    code = main_selfcheck(["--config", str(cfg), "--json", "--timeout", "5"])
    report = json.loads(capsys.readouterr().out)
    names = {line["name"]: line["result"] for line in report["lines"]}
    assert names["REST connectivity"] == PASS and names["stream connectivity"] == PASS
    assert names["Algo conditional orders"] == PASS
    assert names["min qty / precision BTCUSDC"] == PASS
    expected_ok = callable(getattr(SimVenue, "get_position_mode", None))
    assert names["position mode"] == (PASS if expected_ok else FAIL)
    assert code == (0 if expected_ok else 1) and report["ok"] is expected_ok


def test_main_selfcheck_bad_config_exits_2(tmp_path, capsys):
    cfg = write_config(tmp_path, '[run]\nmode = "sometimes"\n')
    assert main_selfcheck(["--config", str(cfg)]) == 2
    assert "run.mode" in capsys.readouterr().err


def test_main_selfcheck_live_refuses_a_loopback_host(tmp_path, capsys, monkeypatch):
    for var in ("BINANCE_API_KEY", "BINANCE_API_SECRET", "SENTRY_DSN", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    cfg = write_config(
        tmp_path,
        """
        [run]
        mode = "live"
        symbols = ["BTCUSDC"]
        [venue]
        kind = "binance"
        url = "http://127.0.0.1:9"
        ws_url = "ws://127.0.0.1:9"
        """,
    )
    # live never talks to a loopback host (contract §0.4): refused before any key is read
    assert main_selfcheck(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "venue.url: live mode talks only to https://fapi.binance.com" in err
    assert "Traceback" not in err


def test_main_selfcheck_unreachable_binance(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BINANCE_API_KEY", "k" * 64)
    monkeypatch.setenv("BINANCE_API_SECRET", "s" * 64)
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    cfg = write_config(
        tmp_path,
        """
        [run]
        symbols = ["BTCUSDC"]
        [venue]
        kind = "sim-exchange"
        url = "http://127.0.0.1:9"
        ws_url = "ws://127.0.0.1:9"
        """,
    )
    assert main_selfcheck(["--config", str(cfg), "--timeout", "3"]) == 1
    out = capsys.readouterr().out
    rest = next(line for line in out.splitlines() if line.startswith("REST connectivity"))
    assert "FAIL" in rest and "cannot reach http://127.0.0.1:9" in rest
    assert "k" * 64 not in out and "s" * 64 not in out


def test_python_binance_line_names_the_version_and_the_algo_methods():
    """Issue 13 B17: releases before 1.0.33 install fine and fail at the first stop."""
    from binance.client import Client

    from atlas_actors.selfcheck import python_binance_check

    ok, reason = python_binance_check()
    assert ok and "has the algo methods" in reason, reason

    class OldClient:
        def futures_create_order(self) -> None: ...

    ok, reason = python_binance_check("1.0.29", OldClient)
    assert not ok
    assert "1.0.29" in reason and "futures_create_algo_order" in reason and ">= 1.0.33" in reason
    ok, reason = python_binance_check("1.0.32", Client)
    assert not ok and ">= 1.0.33" in reason


def test_the_setup_floor_is_the_first_release_with_algo_methods():
    from pathlib import Path

    setup = (Path(__file__).resolve().parents[2] / "setup.cfg").read_text()
    assert "python-binance>=1.0.33," in setup
