"""SimVenue matching: bar paths, resting limits, Algo stop triggers, gaps, mark price, events."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from atlas_actors.domain.events import AccountUpdate, AlgoUpdate, BarClosed, MarkPrice, OrderUpdate
from atlas_actors.venues.base import OrderRejected, WouldTakeLiquidity
from atlas_actors.venues.sim import SimVenue

SYM = "BTCUSDT"
_t = [0]


def bar(o: float, h: float, low: float, c: float, *, minutes: int = 1) -> dict[str, Any]:
    ot = _t[0]
    _t[0] += 60_000 * minutes
    return {
        "open_time": ot,
        "open": o,
        "high": h,
        "low": low,
        "close": c,
        "volume": 1.0,
        "close_time": ot + 60_000 * minutes - 1,
    }


def venue(price: float = 100.0, **kw: Any) -> SimVenue:
    v = SimVenue(fee_bps=4.0, maker_fee_bps=2.0, slippage_bps=0.0, **kw)
    v.add_symbol(SYM, tick_size=0.01, step_size=0.001, min_qty=0.001, min_notional=1.0)
    v.feed_bar(SYM, bar(price, price, price, price))
    return v


def long(v: SimVenue, qty: float = 1.0, cid: str = "open-1") -> None:
    v.place_market(symbol=SYM, side="BUY", qty=qty, reduce_only=False, client_order_id=cid)


def short(v: SimVenue, qty: float = 1.0, cid: str = "open-1") -> None:
    v.place_market(symbol=SYM, side="SELL", qty=qty, reduce_only=False, client_order_id=cid)


def stop(v: SimVenue, side: str, price: float, cid: str = "sl-1", wt: str = "MARK_PRICE") -> None:
    v.place_algo_stop(
        symbol=SYM,
        side=side,
        qty=1.0,
        stop_price=price,
        reduce_only=True,
        client_algo_id=cid,
        working_type=wt,
    )


def limit(v: SimVenue, side: str, price: float, cid: str, *, ro: bool = False) -> dict[str, Any]:
    return v.place_limit_postonly(
        symbol=SYM, side=side, qty=1.0, price=price, tif="GTX", reduce_only=ro, client_order_id=cid
    )


def pos(v: SimVenue) -> dict[str, Any]:
    return v.get_positions()[SYM]


def status(v: SimVenue, cid: str) -> str:
    o = v.get_order(symbol=SYM, client_order_id=cid)
    assert o is not None
    return str(o["status"])


# ------------------------------------------------------------------ bar path


def test_bullish_bar_visits_low_before_high() -> None:
    v = venue()
    limit(v, "BUY", 98.0, "buy")
    limit(v, "SELL", 102.0, "sell")
    fills: list[str] = []
    v.add_listener(
        lambda e: (
            fills.append(e.client_order_id)
            if isinstance(e, OrderUpdate) and e.execution_type == "TRADE"
            else None
        )
    )
    v.feed_bar(SYM, bar(100.0, 103.0, 97.0, 102.5))  # bullish: open -> low -> high -> close
    assert fills == ["buy", "sell"]
    assert pos(v)["qty"] == 0.0
    assert pos(v)["realized_pnl"] == pytest.approx(4.0)


def test_bearish_bar_visits_high_before_low() -> None:
    v = venue()
    limit(v, "BUY", 98.0, "buy")
    limit(v, "SELL", 102.0, "sell")
    fills: list[str] = []
    v.add_listener(
        lambda e: (
            fills.append(e.client_order_id)
            if isinstance(e, OrderUpdate) and e.execution_type == "TRADE"
            else None
        )
    )
    v.feed_bar(SYM, bar(100.0, 103.0, 97.0, 97.5))  # bearish: open -> high -> low -> close
    assert fills == ["sell", "buy"]
    assert pos(v)["realized_pnl"] == pytest.approx(4.0)  # short 102, covered 98


def test_limit_fills_only_when_traded_through() -> None:
    v = venue()
    limit(v, "BUY", 98.0, "buy")
    v.feed_bar(SYM, bar(100.0, 100.5, 98.0, 99.0))  # touches 98.00 exactly: no fill
    assert status(v, "buy") == "NEW"
    v.feed_bar(SYM, bar(99.0, 99.5, 97.99, 99.2))  # one tick through
    assert status(v, "buy") == "FILLED"
    assert pos(v)["entry_price"] == 98.0  # maker fill at the limit price


def test_resting_limit_pays_maker_fee_and_market_pays_taker() -> None:
    v = venue()
    start = v.get_balances()["wallet_balance"]
    limit(v, "BUY", 99.0, "buy")
    v.feed_bar(SYM, bar(100.0, 100.0, 98.0, 99.5))
    maker_fee = 99.0 * 2.0 / 10_000
    assert v.get_balances()["wallet_balance"] == pytest.approx(start - maker_fee)
    v.place_market(symbol=SYM, side="SELL", qty=1.0, reduce_only=True, client_order_id="x")
    taker_fee = 99.5 * 4.0 / 10_000
    assert v.get_balances()["wallet_balance"] == pytest.approx(start - maker_fee - taker_fee + 0.5)


def test_market_slippage_is_against_the_taker() -> None:
    v = SimVenue(slippage_bps=10.0)
    v.set_price(SYM, 100.0)
    buy = v.place_market(symbol=SYM, side="BUY", qty=1.0, reduce_only=False, client_order_id="b")
    sell = v.place_market(symbol=SYM, side="SELL", qty=1.0, reduce_only=True, client_order_id="s")
    assert buy["avg_price"] == pytest.approx(100.1)
    assert sell["avg_price"] == pytest.approx(99.9)


def test_post_only_crossing_last_price_is_rejected_and_not_recorded() -> None:
    v = venue()
    with pytest.raises(WouldTakeLiquidity) as ei:
        limit(v, "SELL", 100.0, "gtx")
    assert ei.value.code == -5022
    assert v.get_order(symbol=SYM, client_order_id="gtx") is None
    assert limit(v, "SELL", 100.01, "gtx")["status"] == "NEW"  # same id reusable after a reject


def test_stop_fills_at_stop_price_inside_a_bar() -> None:
    v = venue()
    long(v)
    stop(v, "SELL", 95.0)
    v.feed_bar(SYM, bar(99.0, 99.5, 90.0, 91.0))
    assert pos(v)["side"] == "NONE"
    algo = v.get_algo_order(symbol=SYM, client_algo_id="sl-1")
    assert algo is not None and algo["status"] == "FINISHED"
    child = v.get_order(symbol=SYM, order_id=algo["actual_order_id"])
    assert child is not None and child["avg_price"] == 95.0 and child["reduce_only"] is True


def test_gap_beyond_the_stop_fills_at_the_worse_open() -> None:
    v = venue()
    long(v)
    stop(v, "SELL", 95.0)
    v.feed_bar(SYM, bar(90.0, 92.0, 89.0, 91.0))  # gapped from 100 to 90
    algo = v.get_algo_order(symbol=SYM, client_algo_id="sl-1")
    assert algo is not None
    child = v.get_order(symbol=SYM, order_id=algo["actual_order_id"])
    assert child is not None and child["avg_price"] == 90.0
    assert pos(v)["realized_pnl"] == pytest.approx(-10.0)


def test_short_stop_is_a_buy_above_and_uses_slippage() -> None:
    v = SimVenue(slippage_bps=10.0, fee_bps=0.0)
    v.set_price(SYM, 100.0)
    short(v)
    stop(v, "BUY", 105.0)
    v.set_price(SYM, 106.0)
    algo = v.get_algo_order(symbol=SYM, client_algo_id="sl-1")
    assert algo is not None
    child = v.get_order(symbol=SYM, order_id=algo["actual_order_id"])
    assert child is not None and child["avg_price"] == pytest.approx(105.0 * 1.001)
    assert pos(v)["side"] == "NONE"


def test_stop_that_would_trigger_immediately_is_rejected() -> None:
    v = venue()
    long(v)
    with pytest.raises(OrderRejected) as ei:
        stop(v, "SELL", 100.5)
    assert ei.value.code == -2021
    assert v.get_open_algo_orders(SYM) == []


def test_mark_price_stops_follow_an_explicit_mark_not_the_contract_path() -> None:
    v = venue()
    long(v)
    stop(v, "SELL", 95.0, "mark-sl", "MARK_PRICE")
    stop(v, "SELL", 94.0, "last-sl", "CONTRACT_PRICE")
    v.set_mark_price(SYM, 99.0)
    v.feed_bar(SYM, bar(99.0, 99.0, 94.5, 98.0))  # last dips to 94.5, mark stays 99
    assert [a["client_algo_id"] for a in v.get_open_algo_orders(SYM)] == ["mark-sl", "last-sl"]
    v.set_mark_price(SYM, 94.9)  # mark crosses 95: triggers now, fills at last (98)
    algo = v.get_algo_order(symbol=SYM, client_algo_id="mark-sl")
    assert algo is not None and algo["status"] == "FINISHED"
    child = v.get_order(symbol=SYM, order_id=algo["actual_order_id"])
    assert child is not None and child["avg_price"] == 98.0
    last_sl = v.get_algo_order(symbol=SYM, client_algo_id="last-sl")
    assert last_sl is not None and last_sl["status"] == "NEW"  # reduce-only qty stop stays


def test_feed_mark_bar_walks_the_mark_path() -> None:
    v = venue()
    long(v)
    stop(v, "SELL", 95.0)
    v.feed_mark_bar(SYM, bar(99.0, 99.5, 96.0, 98.0))
    assert v.get_open_algo_orders(SYM) != []
    assert v.get_mark_price(SYM) == 98.0
    v.feed_mark_bar(SYM, bar(98.0, 98.5, 94.0, 97.0))
    assert v.get_open_algo_orders(SYM) == []
    assert pos(v)["side"] == "NONE"
    v.clear_mark_price(SYM)
    assert v.get_mark_price(SYM) == v.get_last_price(SYM)


def test_contract_price_stop_ignores_the_mark() -> None:
    v = venue()
    long(v)
    stop(v, "SELL", 95.0, wt="CONTRACT_PRICE")
    v.set_mark_price(SYM, 90.0)
    assert len(v.get_open_algo_orders(SYM)) == 1
    v.set_price(SYM, 94.0)
    assert v.get_open_algo_orders(SYM) == []


def test_stop_with_nothing_to_reduce_is_rejected_at_trigger() -> None:
    v = venue()
    long(v)
    stop(v, "SELL", 95.0)
    v.place_market(symbol=SYM, side="SELL", qty=1.0, reduce_only=True, client_order_id="close")
    v.set_price(SYM, 94.0)
    algo = v.get_algo_order(symbol=SYM, client_algo_id="sl-1")
    assert algo is not None and algo["status"] == "REJECTED"
    assert pos(v)["side"] == "NONE"  # never opened a short


def test_close_position_stop_closes_everything_and_expires_when_flat() -> None:
    v = venue()
    long(v, 2.0)
    v.place_algo_stop(
        symbol=SYM,
        side="SELL",
        qty=0.0,
        stop_price=95.0,
        reduce_only=False,
        client_algo_id="cp",
        working_type="MARK_PRICE",
        close_position=True,
    )
    v.set_price(SYM, 94.0)
    assert pos(v)["qty"] == 0.0
    long(v, 1.0, "again")
    v.place_algo_stop(
        symbol=SYM,
        side="SELL",
        qty=0.0,
        stop_price=90.0,
        reduce_only=False,
        client_algo_id="cp2",
        working_type="MARK_PRICE",
        close_position=True,
    )
    v.place_market(symbol=SYM, side="SELL", qty=1.0, reduce_only=True, client_order_id="flat")
    cp2 = v.get_algo_order(symbol=SYM, client_algo_id="cp2")
    assert cp2 is not None and cp2["status"] == "EXPIRED"


def test_opening_stop_is_refused() -> None:
    v = venue()
    with pytest.raises(OrderRejected) as ei:
        v.place_algo_stop(
            symbol=SYM,
            side="SELL",
            qty=1.0,
            stop_price=95.0,
            reduce_only=False,
            client_algo_id="naked",
            working_type="MARK_PRICE",
        )
    assert "reduce_only" in str(ei.value)
    with pytest.raises(OrderRejected):
        v.place_algo_stop(
            symbol=SYM,
            side="SELL",
            qty=1.0,
            stop_price=95.0,
            reduce_only=True,
            client_algo_id="wt",
            working_type="LAST",
        )


def test_reduce_only_take_profit_expires_when_the_stop_closes_the_position() -> None:
    v = venue()
    long(v)
    limit(v, "SELL", 105.0, "tp", ro=True)
    stop(v, "SELL", 95.0)
    v.set_price(SYM, 94.0)
    assert status(v, "tp") == "EXPIRED"
    assert v.get_open_orders(SYM) == []


# ------------------------------------------------------------------ events


def test_trigger_event_sequence() -> None:
    v = venue()
    long(v)
    stop(v, "SELL", 95.0)
    events: list[Any] = []
    v.add_listener(events.append)
    v.feed_bar(SYM, bar(99.0, 99.0, 94.0, 96.0))
    kinds = [
        (type(e).__name__, getattr(e, "status", getattr(e, "reason", "")))
        for e in events
        if not isinstance(e, BarClosed)
    ]
    assert kinds == [
        ("AlgoUpdate", "TRIGGERED"),
        ("OrderUpdate", "NEW"),
        ("OrderUpdate", "FILLED"),
        ("AccountUpdate", "ORDER"),
        ("AlgoUpdate", "FINISHED"),
    ]
    algo_events = [e for e in events if isinstance(e, AlgoUpdate)]
    child_id = algo_events[0].order_id
    assert child_id is not None and algo_events[1].order_id == child_id
    fill = next(e for e in events if isinstance(e, OrderUpdate) and e.status == "FILLED")
    assert fill.order_id == child_id
    assert isinstance(events[-1], BarClosed)  # the bar closes after what happened inside it
    acct = next(e for e in events if isinstance(e, AccountUpdate))
    assert acct.positions[SYM]["side"] == "NONE"


def test_mark_price_event_and_bar_interval() -> None:
    v = venue()
    events: list[Any] = []
    v.add_listener(events.append)
    v.set_mark_price(SYM, 101.0)
    v.feed_bar(SYM, bar(100.0, 101.0, 99.0, 100.5, minutes=5))
    assert isinstance(events[0], MarkPrice) and events[0].mark_price == 101.0
    assert isinstance(events[1], BarClosed) and events[1].interval == "5m"


def test_a_failing_listener_does_not_break_the_venue(caplog: pytest.LogCaptureFixture) -> None:
    v = venue()
    got: list[Any] = []

    def bad(_: Any) -> None:
        raise RuntimeError("listener bug")

    v.add_listener(bad)
    v.add_listener(got.append)
    long(v)
    assert pos(v)["side"] == "LONG"
    assert any(isinstance(e, OrderUpdate) for e in got)
    assert "listener bug" in caplog.text


def test_listeners_run_outside_the_venue_lock() -> None:
    """A listener that waits for another thread using the venue must not deadlock."""
    v = venue()
    results: list[float] = []

    def listener(e: Any) -> None:
        if isinstance(e, BarClosed):
            t = threading.Thread(target=lambda: results.append(v.get_last_price(SYM)))
            t.start()
            t.join(timeout=5)

    v.add_listener(listener)
    v.feed_bar(SYM, bar(100.0, 101.0, 99.0, 100.7))
    assert results == [100.7]


def test_ws_stop_pauses_delivery() -> None:
    v = venue()
    got: list[Any] = []
    v.add_listener(got.append)
    v.ws_stop()
    long(v)
    assert got == []
    v.ws_start()
    v.feed_bar(SYM, bar(100.0, 100.0, 100.0, 100.0))
    assert [type(e).__name__ for e in got] == ["StreamStatus", "StreamStatus", "BarClosed"]


def test_inconsistent_bar_is_refused_with_its_time() -> None:
    v = venue()
    with pytest.raises(ValueError, match="open_time 42"):
        v.feed_bar(
            SYM,
            {"open_time": 42, "open": 1, "high": 0.5, "low": 1, "close": 1, "close_time": 99},
        )


def test_get_kline_returns_fed_bars() -> None:
    v = venue()
    b = bar(100.0, 101.0, 99.0, 100.5)
    v.feed_bar(SYM, b)
    ks = v.get_kline(SYM, "1m", 2)
    assert len(ks) == 2
    assert ks[-1]["close"] == 100.5 and ks[-1]["open_time"] == b["open_time"]
    assert set(ks[-1]) == {"open_time", "open", "high", "low", "close", "volume", "close_time"}
    assert v.now() == b["close_time"] / 1000.0
