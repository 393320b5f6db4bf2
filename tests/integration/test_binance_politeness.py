"""BinanceAdapter against the sim exchange when Binance is not polite (issue 13): bans (429,
then 418 "banned until" for whoever goes on), the weight window of the *server's* minute,
protection before everything else at the weight limit, MARKET_LOT_SIZE and slow replies.
Real sockets on loopback; the sim exchange records what reached it."""

from __future__ import annotations

import time

import pytest

from atlas_actors.domain.events import StreamStatus
from atlas_actors.engine import close_at_market
from atlas_actors.sim_exchange import SimExchangeServer
from atlas_actors.venues.base import FilterError, RateLimited
from atlas_actors.venues.binance.governor import WeightGovernor
from atlas_actors.venues.priority import Priority, request_priority
from tests.integration.test_binance_wire import SYMBOLS, Loop, loop  # noqa: F401 - fixture


def test_after_a_429_no_request_leaves_until_its_retry_after_and_the_ban_is_told_once(
    loop: Loop,  # noqa: F811
) -> None:
    a = loop.new_adapter(max_rate_limit_wait_s=0.1)
    told: list[StreamStatus] = []
    a.add_listener(lambda ev: told.append(ev) if isinstance(ev, StreamStatus) else None)
    a.get_mark_price("BTCUSDT")
    loop.sim.faults.arm("*", kind="ban", retry_after=0.5, ban_s=120.0)
    with pytest.raises(RateLimited):
        a.get_positions()
    sent = len(loop.server.recorded())
    assert loop.server.recorded()[-1].status == 429
    # everyone keeps asking during the ban: protection, trading, market data
    with request_priority(Priority.PROTECTION):
        with pytest.raises(RateLimited):
            a.get_open_algo_orders("BTCUSDT")
        with pytest.raises(RateLimited):
            a.place_market(
                symbol="BTCUSDT", side="BUY", qty=0.01, reduce_only=False, client_order_id="b-1"
            )
    with pytest.raises(RateLimited):
        a.get_mark_price("BTCUSDT")
    assert len(loop.server.recorded()) == sent, "a request left the process during the ban"
    assert all(r.status != 418 for r in loop.server.recorded())
    bans = [ev for ev in told if ev.stream == "rest" and ev.status == "BANNED"]
    assert len(bans) == 1 and bans[0].detail.startswith("until ")
    time.sleep(1.1)  # the Retry-After (1 s on the wire) has passed
    assert a.get_positions()["BTCUSDT"]["side"] == "NONE"
    assert loop.server.recorded()[-1].status == 200
    a.close()


def test_a_418_ban_is_read_from_banned_until_and_kept(loop: Loop) -> None:  # noqa: F811
    a = loop.new_adapter(max_rate_limit_wait_s=0.1)
    until_ms = int(time.time() * 1000) + 120_000
    loop.server.arm_http_fault(
        "/fapi/v1/premiumIndex",
        method="GET",
        status=418,
        code=-1003,
        msg=f"Way too many requests; IP(127.0.0.1) banned until {until_ms}. Please use the "
        "websocket for live updates to avoid bans.",
    )
    with pytest.raises(RateLimited) as err:
        a.get_mark_price("BTCUSDT")
    assert 100.0 < err.value.retry_after <= 120.0
    sent = len(loop.server.recorded())
    with pytest.raises(RateLimited):
        a.get_positions()
    assert len(loop.server.recorded()) == sent
    assert a.governor.banned_for() > 100.0
    a.close()


def test_the_weight_window_is_the_servers_minute(loop: Loop) -> None:  # noqa: F811
    # Host at 40 s into its minute, server 30 s ahead (10 s into the next): the server's
    # window ends in 50 s, the host's in 20 s.
    t0 = (int(time.time()) // 60) * 60 + 40.0
    server = SimExchangeServer(loop.sim, symbols=SYMBOLS, clock=lambda: t0, weight_limit=40)
    server.clock_skew_ms = 30_000
    with server:
        a = loop.new_adapter(rest_url=server.rest_url, weight_limit_share=0.5, clock=lambda: t0)
        a.get_symbol_filters("BTCUSDT")
        assert a.sync_time() == pytest.approx(30_000.0)
        for _ in range(20):
            a.get_mark_price("BTCUSDT")
        assert a.governor.waits, "the governor never held back"
        assert all(w == pytest.approx(50.01) for w in a.governor.waits), a.governor.waits
        a.close()


def test_protection_does_not_wait_at_the_weight_limit_and_market_data_does(
    loop: Loop,  # noqa: F811
) -> None:
    t0 = (int(time.time()) // 60) * 60 + 1.0
    server = SimExchangeServer(loop.sim, symbols=SYMBOLS, clock=lambda: t0, weight_limit=100)
    with server:
        a = loop.new_adapter(rest_url=server.rest_url, weight_limit_share=1.0, clock=lambda: t0)
        a.get_symbol_filters("BTCUSDT")
        a.governor.observe(80)  # the server says 80 of 100 used this minute
        with request_priority(Priority.PROTECTION):
            a.get_open_algo_orders("BTCUSDT")  # a visibility check
            close_at_market(a, "BTCUSDT", "atl-BTCUSDT-1-fx")  # nothing to close: reads only
        assert a.governor.waits == [], "protection waited behind the weight governor"
        assert all(w == 0.0 for w in a.governor.waited[Priority.PROTECTION])
        a.get_mark_price("BTCUSDT")  # market data: above the others' share, it waits
        assert len(a.governor.waits) == 1 and a.governor.waited[Priority.BACKGROUND][-1] > 0
        a.close()


def test_governor_lets_the_most_urgent_waiter_go_first() -> None:
    clock = [61.0]
    order: list[str] = []
    gov = WeightGovernor(limit=100, share=1.0, clock=lambda: clock[0], sleep=lambda s: None)
    gov.observe(100)
    gov._waiting[Priority.PROTECTION] = 1  # a protection caller is queued right now
    gov.priorities = True
    # a trading caller must yield to it: it polls (no budget wait recorded) until it is gone
    polls = []

    def sleep(s: float) -> None:
        polls.append(s)
        if len(polls) == 3:
            gov._waiting[Priority.PROTECTION] = 0
            order.append("protection")

    gov._sleep = sleep
    gov.acquire(1, Priority.TRADING)
    order.append("trading")
    assert order == ["protection", "trading"]
    assert polls[:3] == [gov._poll_s] * 3


def test_market_lot_size_reaches_the_adapter_and_a_big_close_is_chunked(
    loop: Loop,  # noqa: F811
) -> None:
    a = loop.adapter
    a.place_market(
        symbol="BTCUSDT", side="BUY", qty=0.05, reduce_only=False, client_order_id="big-1"
    )
    loop.sim.set_market_max_qty("BTCUSDT", 0.02)
    a.load_exchange_info()
    assert a.market_max_qty("BTCUSDT") == 0.02
    with pytest.raises(FilterError) as err:  # refused before sending (the venue says -4005)
        a.place_market(
            symbol="BTCUSDT", side="SELL", qty=0.05, reduce_only=True, client_order_id="x-1"
        )
    assert err.value.code == -4005
    closed, orders = close_at_market(a, "BTCUSDT", "atl-BTCUSDT-9-fx")
    assert closed == pytest.approx(0.05) and len(orders) == 3
    posts = loop.server.recorded("/fapi/v1/order", "POST")
    chunks = [r.params for r in posts if r.params["newClientOrderId"].startswith("atl-")]
    assert [c["quantity"] for c in chunks] == ["0.02", "0.02", "0.01"]
    assert all(c["reduceOnly"] == "true" and c["type"] == "MARKET" for c in chunks)
    assert a.get_positions()["BTCUSDT"]["side"] == "NONE"


def test_a_slow_reply_is_an_unknown_outcome_resolved_by_client_id(loop: Loop) -> None:  # noqa: F811
    a = loop.new_adapter(request_timeout_s=0.5, max_write_attempts=1)
    loop.sim.faults.arm("place_market", kind="slow_reply", reply_s=[1.0, 1.2])
    res = a.place_market(
        symbol="BTCUSDT", side="BUY", qty=0.01, reduce_only=False, client_order_id="slow-1"
    )
    # the reply timed out; the query by client id found what the venue applied
    assert res["client_order_id"] == "slow-1"
    assert loop.sim.faults.injected["slow_reply"] == 1
    posts = loop.server.recorded("/fapi/v1/order", "POST")
    assert len(posts) == 1, "the slow order was sent again"
    time.sleep(0.8)  # let the slow reply finish before the server stops
    a.close()
