"""Configuration loading: every section validated, errors name file and key, exit status 2."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from supervisor.config import (
    AtlasConfig,
    ConfigError,
    apply_overrides,
    config_error_exit,
    load_config,
)

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, body: str, name: str = "atlas.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_shipped_configs_load():
    paper = load_config(ROOT / "config" / "atlas.toml")
    assert isinstance(paper, AtlasConfig)
    assert paper.run.mode == "paper" and paper.venue.kind == "sim"
    assert paper.run.symbols == ("BTCUSDC", "XRPUSDT", "ADABTC", "LTCBTC")
    assert paper.supervisor.sentinel_deadline_ms == 1000
    assert paper.params is not None and paper.params.tier_a.leverage >= 1
    live = load_config(ROOT / "config" / "live.example.toml")
    assert live.run.mode == "live" and live.venue.kind == "binance" and not live.venue.testnet
    assert live.venue.url == "https://fapi.binance.com"
    assert live.environment == "live" and live.instance == "live-1"


def test_defaults_with_minimal_file(tmp_path):
    cfg = load_config(write(tmp_path, '[run]\nsymbols = ["ETHUSDT"]\n', "acct7.toml"))
    assert cfg.run.mode == "paper" and cfg.run.symbols == ("ETHUSDT",)
    assert cfg.supervisor.restart_intensity == 5 and cfg.supervisor.restart_window_s == 60.0
    assert cfg.paper.speed == "max" and cfg.admin.socket is None
    assert cfg.instance == "acct7" and cfg.environment == "paper"


def test_testnet_defaults_to_testnet_urls(tmp_path):
    cfg = load_config(
        write(tmp_path, '[run]\nmode = "testnet"\n[venue]\nkind = "binance"\ntestnet = true\n')
    )
    assert cfg.venue.url == "https://testnet.binancefuture.com"
    assert cfg.venue.ws_url.startswith("wss://")


@pytest.mark.parametrize(
    "body, fragment",
    [
        (
            '[run]\nmode = "demo"\n',
            "run.mode: expected one of paper, testnet, live, got 'demo' (line 2)",
        ),
        ('[run]\nsymbols = ["btcusdc"]\n', "run.symbols: invalid symbol 'btcusdc'"),
        ("[run]\nsymbols = []\n", "run.symbols: expected a non-empty array"),
        ('[run]\nsymbols = ["BTCUSDC", "BTCUSDC"]\n', "listed twice"),
        (
            '[run]\nclient_id_prefix = "Atlas-01"\n',
            "run.client_id_prefix: expected 1-8 characters of [a-z0-9]",
        ),
        ('[run]\nclient_id_prefix = "abcdefghi"\n', "run.client_id_prefix"),
        ('[run]\ninterval = "7m"\n', "run.interval: expected one of"),
        (
            "[run]\ncolour = 1\n",
            "run.colour: unknown key (allowed: mode, symbols, state_dir, log_dir, interval, client_id_prefix)",
        ),
        ("[nonsense]\nx = 1\n", "[nonsense]: unknown section (allowed: run, venue"),
        ('run = "x"\n', "[run]: must be a table"),
        ('[venue]\nkind = "kraken"\n', "venue.kind: expected one of sim, sim-exchange, binance"),
        (
            '[venue]\nkind = "binance"\n',
            'venue.kind: paper mode trades only "sim" or "sim-exchange"',
        ),
        ('[run]\nmode = "live"\n', 'venue.kind: live mode needs kind = "binance"'),
        (
            '[run]\nmode = "live"\n[venue]\nkind = "binance"\ntestnet = true\n',
            "venue.testnet: live mode needs testnet = false",
        ),
        (
            '[run]\nmode = "testnet"\n[venue]\nkind = "binance"\n',
            "venue.testnet: testnet mode needs testnet = true",
        ),
        ('[venue]\nkind = "sim-exchange"\n', "venue.url: kind sim-exchange needs"),
        ('[venue]\nurl = "ftp://x"\n', "venue.url: expected a http or https URL"),
        ('[venue]\nurl = "https://user:pw@host"\n', "without credentials"),
        ("[venue]\nfee_bps = -1\n", "venue.fee_bps: must be >= 0, got -1"),
        ('[venue]\nfee_bps = "4"\n', "venue.fee_bps: expected a number, got a string"),
        ("[venue]\ntestnet = 1\n", "venue.testnet: expected true or false"),
        ("[venue]\nrecv_window_ms = 70000\n", "venue.recv_window_ms: must be <= 60000"),
        ("[venue]\nstarting_balance = 0\n", "venue.starting_balance: must be > 0"),
        ('[paper]\nspeed = "fast"\n', 'paper.speed: expected "max" or a positive number'),
        ("[paper]\nspeed = 0\n", "paper.speed"),
        ("[paper]\nmax_bars = 0\n", "paper.max_bars: must be >= 1"),
        ('[paper.data]\nbtc = "x.csv"\n', "paper.data.btc: invalid symbol name"),
        ("[paper.data]\nBTCUSDC = 3\n", "paper.data.BTCUSDC: expected a file path"),
        (
            "[supervisor]\nsentinel_deadline_ms = 1500\n",
            "supervisor.sentinel_deadline_ms: must be <= 1000, got 1500",
        ),
        ("[supervisor]\nrestart_intensity = 0\n", "supervisor.restart_intensity: must be >= 1"),
        (
            "[supervisor]\nrestart_intensity = 2.5\n",
            "supervisor.restart_intensity: expected an integer",
        ),
        (
            "[supervisor]\nping_interval_s = 2.0\nping_timeout_s = 1.0\n",
            "supervisor.ping_timeout_s: must be >= ping_interval_s",
        ),
        (
            '[alerts]\ndsn = "https://k@o1.ingest.sentry.io/1"\n',
            "alerts.dsn: secrets never go in the config file: set SENTRY_DSN",
        ),
        (
            '[venue]\napi_key = "abc"\n',
            "venue.api_key: secrets never go in the config file: set BINANCE_API_KEY",
        ),
        ('[alerts]\nsentry = "yes"\n', "alerts.sentry: expected true or false"),
        (
            "[runner]\nRUNNER_GIVEBACK = 1.5\n",
            "runner.RUNNER_GIVEBACK = 1.5 is out of range [0, 1]",
        ),
        ("[tiers.C]\nleverage = 3\n", "tiers.C is not a known tier"),
        (
            '[strategy]\ntemplates = ["nope"]\n',
            "strategy.templates[0] = 'nope' is not a known template",
        ),
        ("[run\n", "invalid TOML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, body, fragment):
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert fragment in message, message


def test_errors_do_not_echo_credentials(tmp_path):
    path = write(tmp_path, '[alerts]\ndsn = "https://SECRETKEY123456@o1.ingest.sentry.io/1"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "SECRETKEY123456" not in str(info.value)
    path = write(tmp_path, '[venue]\nws_url = "wss://user:hunter2pass@host/ws"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "venue.ws_url" in str(info.value) and "hunter2pass" not in str(info.value)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe[run]")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


def test_overrides_are_validated(tmp_path):
    cfg = load_config(write(tmp_path, '[run]\nsymbols = ["BTCUSDC"]\n'))
    out = apply_overrides(
        cfg,
        run_symbols="BTCUSDC,XRPUSDT",
        run_state_dir=str(tmp_path / "s"),
        paper_speed="max",
        paper_max_bars=100,
        admin_socket="/tmp/x.sock",
        run_log_dir=None,
    )
    assert out.run.symbols == ("BTCUSDC", "XRPUSDT") and out.paper.max_bars == 100
    assert out.admin.socket == "/tmp/x.sock" and out.run.log_dir == cfg.run.log_dir
    with pytest.raises(ConfigError, match=r"run\.symbols: invalid symbol 'btc'"):
        apply_overrides(cfg, run_symbols="btc")
    with pytest.raises(ConfigError, match="unknown override 'run_colour'"):
        apply_overrides(cfg, run_colour="red")
    with pytest.raises(ConfigError, match="venue.url: kind sim-exchange needs"):
        apply_overrides(cfg, venue_kind="sim-exchange")
    sx = apply_overrides(cfg, venue_kind="sim-exchange", venue_url="http://127.0.0.1:8765")
    assert sx.venue.kind == "sim-exchange" and sx.venue.url == "http://127.0.0.1:8765"
    tn = apply_overrides(cfg, run_mode="testnet", venue_kind="binance")
    assert tn.venue.testnet and tn.venue.url == "https://testnet.binancefuture.com"
    live = apply_overrides(tn, run_mode="live")
    assert not live.venue.testnet and live.venue.url == "https://fapi.binance.com"
    with pytest.raises(ConfigError, match='live mode needs kind = "binance"'):
        apply_overrides(cfg, run_mode="live")


def test_config_error_exit_prints_and_returns_2(capsys):
    assert config_error_exit(ConfigError("a.toml: run.mode: bad")) == 2
    assert "a.toml: run.mode: bad" in capsys.readouterr().err


def test_every_service_key_of_the_default_config_is_commented():
    """The shipped file documents each key: a comment line right above every assignment."""
    lines = (ROOT / "config" / "atlas.toml").read_text().splitlines()
    end = next(i for i, ln in enumerate(lines) if "---- strategy" in ln)
    for i, line in enumerate(lines[:end]):
        if "=" in line and not line.lstrip().startswith("#"):
            j = i - 1
            while j >= 0 and not lines[j].lstrip().startswith("#"):
                assert "=" in lines[j] and not lines[j].startswith("["), f"line {i + 1}: {line}"
                j -= 1
            assert j >= 0 and lines[j].lstrip().startswith("#"), f"undocumented: {line}"


def test_a_bad_config_fails_in_a_fresh_interpreter_without_traceback(tmp_path):
    path = write(tmp_path, "[supervisor]\nsentinel_deadline_ms = 5000\n")
    code = (
        "import sys\n"
        "from supervisor.config import load_config, ConfigError, config_error_exit\n"
        "try:\n"
        f"    load_config({str(path)!r})\n"
        "except ConfigError as exc:\n"
        "    sys.exit(config_error_exit(exc))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 2
    assert "supervisor.sentinel_deadline_ms" in proc.stderr and "Traceback" not in proc.stderr
