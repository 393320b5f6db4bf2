"""SimVenue accounting: one-way positions, PnL, margin, funding, leverage, filters, idempotency."""

from __future__ import annotations

from typing import Any

import pytest

from atlas_actors.domain.events import AccountUpdate
from atlas_actors.venues.base import FilterError, InsufficientMargin, OrderRejected, VenueError
from atlas_actors.venues.sim import SimVenue

SYM = "ETHUSDT"


def venue(price: float = 100.0, **kw: Any) -> SimVenue:
    kw.setdefault("fee_bps", 0.0)
    kw.setdefault("slippage_bps", 0.0)
    v = SimVenue(**kw)
    v.add_symbol(SYM, tick_size=0.01, step_size=0.001, min_qty=0.001, min_notional=5.0)
    v.set_price(SYM, price)
    return v


def mkt(v: SimVenue, side: str, qty: float, cid: str, ro: bool = False) -> dict[str, Any]:
    return v.place_market(symbol=SYM, side=side, qty=qty, reduce_only=ro, client_order_id=cid)


def test_averaged_entry_and_realized_pnl_on_reduce() -> None:
    v = venue()
    mkt(v, "BUY", 1.0, "a")
    v.set_price(SYM, 110.0)
    mkt(v, "BUY", 1.0, "b")
    p = v.get_positions()[SYM]
    assert p["side"] == "LONG" and p["qty"] == 2.0
    assert p["entry_price"] == pytest.approx(105.0)
    assert p["unrealized_pnl"] == pytest.approx(10.0)
    v.set_price(SYM, 120.0)
    mkt(v, "SELL", 0.5, "c", ro=True)
    p = v.get_positions()[SYM]
    assert p["qty"] == 1.5 and p["entry_price"] == pytest.approx(105.0)
    assert p["realized_pnl"] == pytest.approx(7.5)
    assert v.get_balances()["wallet_balance"] == pytest.approx(10_007.5)


def test_flip_opens_the_remainder_at_the_fill_price() -> None:
    v = venue()
    mkt(v, "BUY", 1.0, "a")
    v.set_price(SYM, 90.0)
    mkt(v, "SELL", 3.0, "b")
    p = v.get_positions()[SYM]
    assert p["side"] == "SHORT" and p["qty"] == 2.0 and p["entry_price"] == 90.0
    assert p["realized_pnl"] == pytest.approx(-10.0)


def test_float_residue_does_not_leave_dust() -> None:
    v = venue()
    for i, q in enumerate((0.1, 0.2)):
        mkt(v, "BUY", q, f"o{i}")
    mkt(v, "SELL", 0.3, "c", ro=True)
    p = v.get_positions()[SYM]
    assert p["qty"] == 0.0 and p["side"] == "NONE"


def test_equity_margin_and_available() -> None:
    v = venue()
    v.set_leverage(SYM, 10)
    mkt(v, "BUY", 10.0, "a")
    v.set_price(SYM, 95.0)
    b = v.get_balances()
    assert b["total_equity"] == pytest.approx(10_000.0 - 50.0)
    assert b["margin_used"] == pytest.approx(10.0 * 95.0 / 10)
    assert b["available_balance"] == pytest.approx(b["total_equity"] - b["margin_used"])
    # Resting opening orders reserve margin too (like Binance's open order initial margin).
    v.place_limit_postonly(
        symbol=SYM,
        side="BUY",
        qty=1.0,
        price=90.0,
        tif="GTX",
        reduce_only=False,
        client_order_id="l",
    )
    assert v.get_balances()["margin_used"] == pytest.approx(95.0 + 9.0)


def test_insufficient_margin_is_rejected() -> None:
    v = venue(starting_balance=100.0)
    v.set_leverage(SYM, 1)
    with pytest.raises(InsufficientMargin) as ei:
        mkt(v, "BUY", 2.0, "big")
    assert ei.value.code == -2019
    assert v.get_order(symbol=SYM, client_order_id="big") is None
    mkt(v, "BUY", 0.5, "small")
    # Reducing never needs margin.
    mkt(v, "SELL", 0.5, "close", ro=True)


def test_leverage_validation() -> None:
    v = venue()
    for bad in (0, 126):
        with pytest.raises(OrderRejected) as ei:
            v.set_leverage(SYM, bad)
        assert ei.value.code == -4028
    v.set_leverage(SYM, 3)
    mkt(v, "BUY", 1.0, "a")
    assert v.get_positions()[SYM]["leverage"] == 3
    v.set_position_mode_one_way()  # always one-way: success


def test_positions_keep_flat_symbols_that_traded() -> None:
    v = venue()
    v.set_price("OTHERUSDT", 50.0)
    assert v.get_positions() == {}
    mkt(v, "BUY", 1.0, "a")
    mkt(v, "SELL", 1.0, "b", ro=True)
    p = v.get_positions()
    assert set(p) == {SYM}
    assert p[SYM]["side"] == "NONE" and p[SYM]["qty"] == 0.0


def test_funding_is_charged_at_funding_time() -> None:
    v = venue()
    mkt(v, "BUY", 2.0, "a")
    events: list[Any] = []
    v.add_listener(events.append)
    v.set_funding(SYM, 0.001, 120_000)
    base = {"open": 100.0, "high": 100.0, "low": 100.0, "close": 100.0, "volume": 0}
    v.feed_bar(SYM, {**base, "open_time": 0, "close_time": 59_999})
    assert v.get_balances()["wallet_balance"] == pytest.approx(10_000.0)
    assert v.get_funding_rate(SYM) == 0.001
    v.feed_bar(SYM, {**base, "open_time": 120_000, "close_time": 179_999})
    assert v.get_balances()["wallet_balance"] == pytest.approx(10_000.0 - 2.0 * 100.0 * 0.001)
    assert v.get_balances()["funding_paid"] == pytest.approx(0.2)
    fee_events = [e for e in events if isinstance(e, AccountUpdate) and e.reason == "FUNDING_FEE"]
    assert len(fee_events) == 1 and fee_events[0].event_time == 120_000


def test_funding_schedule_shorts_receive_positive_rates() -> None:
    v = venue()
    mkt(v, "SELL", 1.0, "s")
    v.set_funding_schedule(SYM, [(60_000, 0.01), {"funding_time": 180_000, "funding_rate": -0.02}])
    base = {"open": 100.0, "high": 100.0, "low": 100.0, "close": 100.0, "volume": 0}
    for k in range(4):
        v.feed_bar(SYM, {**base, "open_time": k * 60_000, "close_time": k * 60_000 + 59_999})
    # +1.0 received at 60s, -2.0 paid at 180s
    assert v.get_balances()["wallet_balance"] == pytest.approx(10_000.0 + 1.0 - 2.0)


def test_orders_must_respect_filters() -> None:
    v = venue()
    cases = [
        (dict(qty=0.0015, price=99.0), -1111),
        (dict(qty=1.0, price=99.005), -1111),
        (dict(qty=0.01, price=99.0), -4164),
        (dict(qty=0.0, price=99.0), -4003),
    ]
    for i, (kw, code) in enumerate(cases):
        with pytest.raises(FilterError) as ei:
            v.place_limit_postonly(
                symbol=SYM, side="BUY", tif="GTX", reduce_only=False, client_order_id=f"f{i}", **kw
            )
        assert ei.value.code == code, kw


def test_client_id_rules() -> None:
    v = venue()
    for bad in ("x" * 37, "has space", ""):
        with pytest.raises(OrderRejected) as ei:
            mkt(v, "BUY", 1.0, bad)
        assert ei.value.code == -4015
    ok = "a" * 36
    assert mkt(v, "BUY", 1.0, ok)["client_order_id"] == ok


def test_client_ids_are_refused_only_while_their_order_is_open() -> None:
    """Binance's rule (-4116 only while open), not a kinder one: a finished order's id is
    accepted again and executes again."""
    v = venue()
    kw: dict[str, Any] = dict(
        symbol=SYM, side="BUY", qty=1.0, price=99.0, tif="GTX", reduce_only=False
    )
    o = v.place_limit_postonly(**kw, client_order_id="x")
    with pytest.raises(OrderRejected) as dup:
        v.place_limit_postonly(**kw, client_order_id="x")
    assert dup.value.code == -4116
    assert [r["order_id"] for r in v.get_open_orders(SYM)] == [o["order_id"]]
    v.cancel_order(symbol=SYM, order_id=o["order_id"], client_order_id=None)
    again = v.place_limit_postonly(**{**kw, "qty": 2.0, "price": 98.0}, client_order_id="x")
    assert again["order_id"] != o["order_id"] and again["status"] == "NEW"
    assert v.get_order(symbol=SYM, client_order_id="x")["order_id"] == again["order_id"]  # type: ignore[index]


def test_a_filled_market_id_sent_again_executes_again() -> None:
    v = venue()
    first = mkt(v, "BUY", 1.0, "m")
    second = mkt(v, "BUY", 1.0, "m")
    assert first["status"] == second["status"] == "FILLED"
    assert second["order_id"] != first["order_id"]
    assert v.get_positions()[SYM]["qty"] == pytest.approx(2.0)


def test_unknown_symbol_gets_defaults_and_orders_need_a_price() -> None:
    v = SimVenue()
    with pytest.raises(OrderRejected) as ei:
        v.place_market(symbol="NEWBTC", side="BUY", qty=1.0, reduce_only=False, client_order_id="n")
    assert ei.value.code == -2010
    v.set_price("NEWBTC", 5.3e-05)
    f = v.get_filters("NEWBTC")
    assert f.tick_size <= 1e-9
    qty = f.min_qty_for_notional(5.3e-05)
    o = v.place_market(symbol="NEWBTC", side="BUY", qty=qty, reduce_only=False, client_order_id="n")
    assert o["status"] == "FILLED"


def test_clock_injection_and_sim_clock() -> None:
    now = [1_700_000_000.0]
    v = SimVenue(clock=lambda: now[0])
    v.set_price(SYM, 100.0)
    o = v.place_market(symbol=SYM, side="BUY", qty=1.0, reduce_only=False, client_order_id="t")
    assert o["create_time"] == 1_700_000_000_000
    assert v.now() == 1_700_000_000.0
    sim = SimVenue()
    sim.feed_bar(
        SYM,
        {"open_time": 0, "open": 1, "high": 1, "low": 1, "close": 1, "close_time": 59_999},
    )
    assert sim.now() == pytest.approx(59.999)


def test_read_only_getters() -> None:
    v = venue()
    v.set_open_interest(SYM, 1234.5)
    assert v.get_open_interest(SYM) == 1234.5
    assert v.get_open_interest("NOPE") == 0.0
    assert v.get_funding_rate("NOPE") == 0.0
    assert v.get_mark_price(SYM) == 100.0
    with pytest.raises(VenueError, match="NOPE"):
        v.get_last_price("NOPE")


def test_symbol_filters_dict_and_symbol_list() -> None:
    v = venue()
    f = v.get_symbol_filters(SYM)
    assert f == {"tick_size": 0.01, "step_size": 0.001, "min_qty": 0.001, "min_notional": 5.0}
    other = SimVenue()
    other.add_symbol("COPYUSDT", **f)
    assert other.get_filters("COPYUSDT").tick_size == 0.01
    v.set_price("ZZZUSDT", 3.0)
    assert v.symbols() == [SYM, "ZZZUSDT"]
