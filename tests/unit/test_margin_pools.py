"""Balances per margin asset (reference §8): in single-asset mode every margin asset is its
own pool and Binance's top-level account totals are USDT-only; USDC-M sizing reads the USDC
`assets[]` row, never the totals or a sum of rows. Multi-Assets mode uses the USD totals.

The wallet here is USDC 1000 + USDT 5000 + 2 BNB: it used to report equity 6002."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atlas_actors.sim_exchange import SimExchangeServer
from atlas_actors.venues.binance import BinanceAdapter, schemas
from atlas_actors.venues.binance.account import MarginAssetMix, margin_asset_of_symbols
from atlas_actors.venues.sim import SimVenue

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "binance-usdm"


def _row(asset: str, amount: str) -> dict[str, object]:
    template = json.loads((FIXTURES / "http_json__account_info_v2.json").read_text())["assets"][0]
    return {
        **template,
        "asset": asset,
        "walletBalance": amount,
        "marginBalance": amount,
        "crossWalletBalance": amount,
        "availableBalance": amount,
        "maxWithdrawAmount": amount,
    }


def _account(multi: bool) -> dict[str, object]:
    body = json.loads((FIXTURES / "http_json__account_info_v2.json").read_text())
    body["assets"] = [_row("USDC", "1000"), _row("USDT", "5000"), _row("BNB", "2")]
    body["multiAssetsMargin"] = multi
    usd = "7200" if multi else "5000"  # multi: USD value of all collateral (BNB at 600)
    for key in ("totalWalletBalance", "totalMarginBalance", "availableBalance"):
        body[key] = usd
    return body


@pytest.mark.parametrize(("asset", "equity"), [("USDC", 1000.0), ("USDT", 5000.0)])
def test_single_asset_mode_sizes_from_the_margin_assets_row(asset, equity):
    """Failed before: equity 6002 (USDC + USDT + BNB rows summed) for either asset."""
    b = schemas.parse_account(_account(False), asset)
    assert b["total_equity"] == equity and b["available_balance"] == equity
    assert b["asset"] == asset and b["multi_assets_margin"] is False


def test_single_asset_mode_without_a_row_of_that_asset_has_nothing_to_size_with():
    b = schemas.parse_account(_account(False), "FDUSD")
    assert b["total_equity"] == 0.0 and b["available_balance"] == 0.0


@pytest.mark.parametrize("asset", ["USDC", "USDT"])
def test_multi_assets_mode_uses_the_usd_totals(asset):
    b = schemas.parse_account(_account(True), asset)
    assert b["total_equity"] == 7200.0 and b["asset"] == "USD" and b["multi_assets_margin"]


def test_the_instance_margin_asset_comes_from_its_symbols():
    assert margin_asset_of_symbols(("BTCUSDC", "ETHUSDC")) == "USDC"
    assert margin_asset_of_symbols(("BTCUSDT", "ADABTC")) == "USDT"
    assert margin_asset_of_symbols(()) == "USDT"
    a = BinanceAdapter("k", "s", rest_url="http://127.0.0.1:9", symbols=["btcusdc"])
    assert a.pool_asset == "USDC"


def test_usdc_and_usdt_symbols_in_one_instance_are_refused_naming_them():
    with pytest.raises(MarginAssetMix, match=r"USDC: BTCUSDC; USDT: ETHUSDT, XRPUSDT"):
        BinanceAdapter(
            "k", "s", rest_url="http://127.0.0.1:9", symbols=["BTCUSDC", "ETHUSDT", "XRPUSDT"]
        )


# ====================================================================== over the wire


@pytest.fixture
def wallet():
    sim = SimVenue(seed=3, asset="USDC", starting_balance=1000.0)
    sim.add_symbol("BTCUSDC", tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=5.0)
    sim.set_price("BTCUSDC", 50_000.0)
    sim.set_wallet("USDT", 5000.0)
    sim.set_wallet("BNB", 2.0)
    server = SimExchangeServer(sim, symbols=["BTCUSDC"]).start()
    adapter = BinanceAdapter(
        "paper", "paper", rest_url=server.rest_url, symbols=["BTCUSDC"], request_timeout_s=5.0
    )
    try:
        yield sim, adapter, server
    finally:
        adapter.close()
        server.stop()


def test_a_usdc_instance_on_a_multi_asset_wallet_sizes_from_usdc(wallet):
    sim, adapter, _server = wallet
    b = adapter.get_balances()
    assert b["total_equity"] == pytest.approx(1000.0)
    assert set(b["assets"]) == {"USDC", "USDT", "BNB"}
    assert sim.get_balances()["total_equity"] == pytest.approx(1000.0)


def test_multi_assets_mode_reports_usd_totals_over_the_wire(wallet):
    sim, adapter, server = wallet
    server._admin_call("POST", "faults", {"multi_assets_margin": True, "wallet": {"BNB": 2}})
    b = adapter.get_balances()
    assert b["multi_assets_margin"] is True
    assert b["total_equity"] == pytest.approx(1000.0 + 5000.0 + 2 * 600.0)
    assert sim.get_balances()["total_equity"] == pytest.approx(7200.0)
