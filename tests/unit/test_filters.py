from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from atlas_actors.venues.base import FilterError
from atlas_actors.venues.filters import (
    SymbolFilters,
    decimals_of,
    default_filters_for,
    format_decimal,
    on_grid,
)

BTC = SymbolFilters("BTCUSDT", tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100.0)
ADA = SymbolFilters("ADABTC", tick_size=1e-8, step_size=1.0, min_qty=1.0, min_notional=0.001)


def test_round_qty_goes_down_to_the_step() -> None:
    assert BTC.round_qty(0.0129) == 0.012
    assert BTC.round_qty(0.0009) == 0.0
    assert ADA.round_qty(1234.99) == 1234.0


def test_limit_price_rounds_to_the_passive_side() -> None:
    assert BTC.round_price(50000.07, "BUY") == 50000.0
    assert BTC.round_price(50000.01, "SELL") == 50000.1
    assert BTC.round_price(50000.04) == 50000.0
    assert ADA.round_price(5.2888e-05, "BUY") == 5.288e-05
    assert ADA.round_price(5.2881e-05, "SELL") == 5.289e-05


def test_stop_price_rounds_away_from_the_market() -> None:
    # SELL stop protects a long, sits below the market: rounding down moves it away.
    assert BTC.round_stop_price(49123.45, "SELL") == 49123.4
    # BUY stop protects a short, sits above the market: rounding up moves it away.
    assert BTC.round_stop_price(51123.41, "BUY") == 51123.5
    assert BTC.round_stop_price(51123.4, "BUY") == 51123.4  # already on the tick: unchanged
    with pytest.raises(ValueError, match="BUY or SELL"):
        BTC.round_stop_price(1.0, "LONG")


@pytest.mark.parametrize(
    ("qty", "price", "code"),
    [
        (0.0, 50000.0, -4003),
        (-1.0, 50000.0, -4003),
        (0.0015, 50000.0, -1111),
        (0.001, 50000.05, -1111),
        (0.001, 50000.0, -4164),
        (0.001, 0.0, -4001),
    ],
)
def test_check_order_names_the_binance_code(qty: float, price: float, code: int) -> None:
    with pytest.raises(FilterError) as ei:
        BTC.check_order(qty=qty, price=price, reduce_only=False)
    assert ei.value.code == code
    assert "BTCUSDT" in str(ei.value)


def test_min_qty_and_max_qty() -> None:
    f = SymbolFilters("X", tick_size=0.01, step_size=0.1, min_qty=1.0, min_notional=0.0, max_qty=5)
    with pytest.raises(FilterError) as lo:
        f.check_qty(0.5)
    assert lo.value.code == -4004
    with pytest.raises(FilterError) as hi:
        f.check_qty(5.1)
    assert hi.value.code == -4005
    assert f.check_qty(1.0) == 1.0


def test_reduce_only_is_exempt_from_min_notional() -> None:
    assert BTC.check_order(qty=0.001, price=50000.0, reduce_only=True) == (0.001, 50000.0)


def test_market_order_notional_uses_the_reference_price() -> None:
    with pytest.raises(FilterError):
        BTC.check_order(qty=0.001, price=None, reduce_only=False, ref_price=50000.0)
    assert BTC.check_order(qty=0.002, price=None, reduce_only=False, ref_price=50000.0) == (
        0.002,
        None,
    )


def test_float_noise_is_not_a_precision_error() -> None:
    noisy = 0.1 + 0.2  # 0.30000000000000004
    f = SymbolFilters("X", tick_size=0.1, step_size=0.1, min_qty=0.1, min_notional=0.0)
    assert f.check_qty(noisy) == 0.3
    assert f.check_price(noisy) == 0.3
    assert on_grid(3 * 0.1, 0.1)
    assert not on_grid(0.35, 0.1)


def test_min_qty_for_notional() -> None:
    assert BTC.min_qty_for_notional(50000.0) == 0.002
    assert ADA.min_qty_for_notional(5.3e-05) == 19.0
    with pytest.raises(ValueError):
        BTC.min_qty_for_notional(0.0)


def test_formatting_never_uses_exponents() -> None:
    assert ADA.format_price(5.288e-05) == "0.00005288"
    assert BTC.format_qty(0.012) == "0.012"
    assert format_decimal(100.0, 1.0) == "100"
    assert decimals_of(1e-08) == 8
    assert decimals_of(0.001) == 3
    assert decimals_of(1.0) == 0


def test_exchange_info_parsing() -> None:
    info = {
        "symbol": "BTCUSDC",
        "filters": [
            {"filterType": "PRICE_FILTER", "tickSize": "0.10", "minPrice": "100"},
            {"filterType": "LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "1000"},
            {"filterType": "MIN_NOTIONAL", "notional": "5"},
        ],
    }
    f = SymbolFilters.from_exchange_info(info)
    assert (f.tick_size, f.step_size, f.min_qty, f.min_notional, f.max_qty) == (
        0.1,
        0.001,
        0.001,
        5.0,
        1000.0,
    )
    with pytest.raises(ValueError, match="LOT_SIZE"):
        SymbolFilters.from_exchange_info({"symbol": "X", "filters": info["filters"][:1]})


def test_dict_roundtrip_and_bad_values() -> None:
    assert SymbolFilters.from_dict(BTC.to_dict()) == BTC
    with pytest.raises(ValueError, match="tick_size"):
        SymbolFilters("X", tick_size=0.0, step_size=1.0, min_qty=0.0, min_notional=0.0)
    with pytest.raises(ValueError, match="min_notional"):
        SymbolFilters.from_dict({"symbol": "X", "tick_size": 1, "step_size": 1, "min_qty": 1})


@pytest.mark.parametrize(
    ("symbol", "price"),
    [
        ("ADABTC", 5.3e-05),
        ("TRXBTC", 4.5e-06),
        ("NXTBTC", 2.1e-05),
        ("DASHBTC", 0.071),
        ("SYM0042", 0.0123),
        ("FOOUSDT", 46319.0),
    ],
)
def test_default_filters_keep_small_prices_precise(symbol: str, price: float) -> None:
    f = default_filters_for(symbol, price)
    # At least 4 significant digits of price resolution, and the price itself is valid.
    assert f.tick_size <= price / 1e4
    assert f.round_price(price) == pytest.approx(price, rel=1e-4)
    qty = f.min_qty_for_notional(price)
    f.check_order(qty=qty, price=f.round_price(price, "BUY"), reduce_only=False)


def test_default_filters_known_symbols_use_binance_values() -> None:
    f = default_filters_for("BTCUSDC", 46000.0)
    assert (f.tick_size, f.step_size) == (0.1, 0.001)
    assert default_filters_for("XRPUSDT").tick_size == 0.0001


@given(
    qty=st.floats(min_value=1e-6, max_value=1e6, allow_nan=False),
    step_exp=st.integers(min_value=-8, max_value=2),
)
@example(qty=524288.9148936126, step_exp=-8)  # large qty on a tiny step: float noise
def test_round_qty_property(qty: float, step_exp: int) -> None:
    step = 10.0**step_exp
    f = SymbolFilters("P", tick_size=0.01, step_size=step, min_qty=0.0, min_notional=0.0)
    q = f.round_qty(qty)
    assert q <= qty * (1 + 1e-12)
    assert qty - q < step * (1 + 1e-9)
    assert on_grid(q, step)


@given(
    price=st.floats(min_value=1e-7, max_value=1e6, allow_nan=False),
    tick_exp=st.integers(min_value=-10, max_value=0),
    side=st.sampled_from(["BUY", "SELL"]),
)
def test_round_stop_never_moves_toward_the_market(price: float, tick_exp: int, side: str) -> None:
    tick = 10.0**tick_exp
    f = SymbolFilters("P", tick_size=tick, step_size=1.0, min_qty=0.0, min_notional=0.0)
    sp = f.round_stop_price(price, side)
    if side == "SELL":
        assert sp <= price * (1 + 1e-12)
    else:
        assert sp >= price * (1 - 1e-12)
    assert math.isfinite(sp)
    assert abs(sp - price) < tick * (1 + 1e-9)
