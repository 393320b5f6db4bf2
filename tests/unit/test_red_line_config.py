"""Red-line settings of the service config: `build_venue` is the last gate before a live run
trades (whatever the loader let through, live never runs on a simulator, contract §0.4), and
a config that does not mention the Sentinel's deadline gets the contract's 1 s."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from supervisor.config import load_config
from supervisor.run import LiveModeRefused, build_venue
from supervisor.secrets import Secrets

ROOT = Path(__file__).resolve().parents[2]
KEYS = Secrets(binance_api_key="k" * 64, binance_api_secret="s" * 64)


@pytest.mark.parametrize("kind", ["sim", "sim-exchange"])
def test_live_mode_refuses_a_simulated_venue(kind):
    live = load_config(ROOT / "config" / "live.example.toml")
    assert live.run.mode == "live"
    # The loader refuses this combination; build_venue must refuse it on its own too.
    cfg = replace(live, venue=replace(live.venue, kind=kind, url="http://127.0.0.1:8765"))
    with pytest.raises(LiveModeRefused, match=r"live mode refuses the simulated venue.*§0\.4"):
        build_venue(cfg, KEYS, store=None)


def test_a_config_without_a_deadline_gets_one_second(tmp_path):
    path = tmp_path / "atlas.toml"
    path.write_text('[run]\nsymbols = ["ETHUSDT"]\n')
    assert load_config(path).supervisor.sentinel_deadline_ms == 1000
