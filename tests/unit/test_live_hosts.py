"""Contract §0.4 and the live floors: live trades only against Binance's own hosts, and the
30-minute emergency freeze cannot be configured away where money is real."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from atlas_actors.venues.hosts import BINANCE_HOSTS, HostRefused, check_binance_urls
from supervisor.config import ConfigError, apply_overrides, load_config
from supervisor.run import LiveModeRefused, build_venue

LIVE = '[run]\nmode = "live"\n[venue]\nkind = "binance"\n'
TESTNET = '[run]\nmode = "testnet"\n[venue]\nkind = "binance"\ntestnet = true\n'


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "atlas.toml"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (LIVE + 'url = "http://127.0.0.1:8765"\n', "venue.url: live mode talks only to https://"),
        (LIVE + 'ws_url = "ws://127.0.0.1:8765"\n', "venue.ws_url: live mode talks only to wss://"),
        (LIVE + 'url = "https://fapi.binance.com.evil.example"\n', "fapi.binance.com.evil"),
        (LIVE + 'url = "https://testnet.binancefuture.com"\n', "testnet.binancefuture.com"),
        (LIVE + 'url = "https://fapi.binance.com:8443"\n', "venue.url: live mode"),
        (LIVE + 'url = "http://fapi.binance.com"\n', "venue.url: live mode"),
        (TESTNET + 'url = "https://fapi.binance.com"\n', "venue.url: testnet mode talks only to"),
        (TESTNET + 'ws_url = "ws://localhost:9000"\n', "venue.ws_url: testnet mode"),
    ],
)
def test_live_and_testnet_refuse_hosts_that_are_not_binances(tmp_path, body, message):
    with pytest.raises(ConfigError, match="line") as err:
        load_config(write(tmp_path, body))
    assert message in str(err.value)
    assert "§0.4" in str(err.value)


def test_binance_hosts_are_accepted_and_paper_keeps_loopback(tmp_path):
    live = load_config(write(tmp_path, LIVE + 'url = "https://FAPI.binance.com/"\n'))
    assert live.venue.ws_url == "wss://fstream.binance.com"
    demo = load_config(write(tmp_path, TESTNET + 'url = "https://demo-fapi.binance.com"\n'))
    assert demo.venue.url == "https://demo-fapi.binance.com"
    paper = load_config(
        write(tmp_path, '[venue]\nkind = "sim-exchange"\nurl = "http://127.0.0.1:8765"\n')
    )
    assert paper.venue.url == "http://127.0.0.1:8765"


def test_command_line_urls_are_checked_too(tmp_path):
    paper = load_config(write(tmp_path, "[run]\n"))
    live = apply_overrides(paper, run_mode="live", venue_kind="binance")
    assert live.venue.url == "https://fapi.binance.com"
    with pytest.raises(ConfigError, match=r"venue\.url: live mode talks only to"):
        apply_overrides(live, venue_url="http://127.0.0.1:9")


def test_one_list_for_both_modes():
    assert BINANCE_HOSTS["live"] == (
        frozenset({"fapi.binance.com"}),
        frozenset({"fstream.binance.com"}),
    )
    with pytest.raises(HostRefused) as err:
        check_binance_urls("live", "https://fapi.binance.com", "wss://127.0.0.1")
    assert err.value.key == "ws_url" and err.value.host == "127.0.0.1"
    check_binance_urls("paper", "http://127.0.0.1:1", "ws://127.0.0.1:1")  # not refused


def _cfg(mode: str, kind: str, url: str, ws_url: str) -> SimpleNamespace:
    return SimpleNamespace(
        run=SimpleNamespace(mode=mode, interval="1m", symbols=("BTCUSDC",)),
        venue=SimpleNamespace(
            kind=kind, url=url, ws_url=ws_url, testnet=mode == "testnet", recv_window_ms=5000
        ),
    )


@pytest.mark.parametrize("mode", ["live", "testnet"])
def test_build_venue_refuses_a_loopback_host_even_past_the_config(mode):
    """Defence in depth: a config object that skipped the loader's check still cannot build
    a live venue on a simulator's address."""
    secrets = SimpleNamespace(binance_api_key="k" * 64, binance_api_secret="s" * 64)
    cfg = _cfg(mode, "binance", "http://127.0.0.1:8765", "ws://127.0.0.1:8765")
    with pytest.raises(LiveModeRefused, match=r"venue\.url: .* not '127\.0\.0\.1'"):
        build_venue(cfg, secrets, None)


@pytest.mark.parametrize(("mode", "body"), [("live", LIVE), ("testnet", TESTNET)])
def test_emergency_freeze_floor_in_live_and_testnet(tmp_path, mode, body):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, body + "[cooldown]\nemergency_freeze_s = 600\n"))
    text = str(err.value)
    assert "cooldown.emergency_freeze_s" in text and "at least 1800" in text
    assert load_config(write(tmp_path, body + "[cooldown]\nemergency_freeze_s = 3600\n"))


def test_paper_may_explore_a_shorter_freeze_but_not_carry_it_into_live(tmp_path):
    paper = load_config(write(tmp_path, "[cooldown]\nemergency_freeze_s = 60\n"))
    assert paper.params.cooldown.emergency_freeze_s == 60
    with pytest.raises(ConfigError, match="cooldown.emergency_freeze_s: live mode needs"):
        apply_overrides(paper, run_mode="live", venue_kind="binance")
