"""What BinanceAdapter puts on the wire, recorded at the sim exchange (real sockets, loopback).

Paths, parameters, GTX, the algo fields (algoType/type/triggerPrice/workingType/clientAlgoId,
reduceOnly XOR closePosition), signatures, and the red line: no conditional type on
/fapi/v1/order, ever."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from atlas_actors.domain.stops import StopSpec
from atlas_actors.sim_exchange import SimExchangeServer
from atlas_actors.venues.base import AuthError, FilterError
from atlas_actors.venues.binance import BinanceAdapter
from atlas_actors.venues.binance.schemas import CONDITIONAL_ORDER_TYPES
from atlas_actors.venues.sim import SimVenue

SYMBOLS = ["BTCUSDT", "BTCUSDC", "XRPUSDT"]  # what the exchange lists
ADAPTER_SYMBOLS = ["BTCUSDT", "XRPUSDT"]  # one margin asset per instance (BTCUSDC still trades)


@dataclass
class Loop:
    sim: SimVenue
    server: SimExchangeServer
    adapter: BinanceAdapter
    sleeps: list[float]

    def new_adapter(self, **kw: object) -> BinanceAdapter:
        opts: dict = {
            "rest_url": self.server.rest_url,
            "symbols": ADAPTER_SYMBOLS,
            "sleep": self.sleeps.append,
            "request_timeout_s": 5.0,
        }
        opts.update(kw)
        key = str(opts.pop("api_key", "paper"))
        secret = str(opts.pop("api_secret", "paper"))
        return BinanceAdapter(key, secret, **opts)  # type: ignore[arg-type]


@pytest.fixture
def loop() -> Iterator[Loop]:
    sim = SimVenue(seed=3)
    sim.add_symbol("BTCUSDT", tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100.0)
    sim.add_symbol("BTCUSDC", tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=5.0)
    sim.add_symbol("XRPUSDT", tick_size=0.0001, step_size=0.1, min_qty=0.1, min_notional=5.0)
    sim.set_price("BTCUSDT", 50_000.0)
    sim.set_price("BTCUSDC", 50_010.0)
    sim.set_price("XRPUSDT", 1.1934)
    server = SimExchangeServer(sim, symbols=SYMBOLS).start()
    sleeps: list[float] = []
    lp = Loop(sim, server, None, sleeps)  # type: ignore[arg-type]
    lp.adapter = lp.new_adapter()
    try:
        yield lp
    finally:
        lp.adapter.close()
        server.stop()


def _long(lp: Loop, symbol: str = "BTCUSDT", qty: float = 0.01) -> None:
    lp.adapter.place_market(
        symbol=symbol, side="BUY", qty=qty, reduce_only=False, client_order_id=f"pos-{symbol}"
    )


def test_constructing_the_adapter_sends_nothing(loop: Loop) -> None:
    loop.new_adapter()
    assert loop.server.recorded() == []


def test_algo_stop_wire_fields(loop: Loop) -> None:
    _long(loop)
    loop.server.clear_requests()
    algo = loop.adapter.place_algo_stop(
        symbol="BTCUSDT",
        side="SELL",
        qty=0.0109,
        stop_price=48_000.04,
        reduce_only=True,
        client_algo_id="atl-BTCUSDT-1-sl",
        working_type="MARK_PRICE",
    )
    (req,) = loop.server.recorded("/fapi/v1/algoOrder", "POST")
    p = req.params
    assert p["algoType"] == "CONDITIONAL"
    assert p["type"] == "STOP_MARKET"
    assert p["triggerPrice"] == "48000"  # a SELL stop rounds away from the market
    assert p["workingType"] == "MARK_PRICE"
    assert p["clientAlgoId"] == "atl-BTCUSDT-1-sl"
    assert p["quantity"] == "0.01"  # down to the step
    assert p["reduceOnly"] == "true"
    assert "closePosition" not in p and "stopPrice" not in p
    assert p["recvWindow"] == "5000" and p["timestamp"].isdigit()
    assert req.signature_valid is True and req.api_key == "paper"
    assert loop.server.recorded("/fapi/v1/order", "POST") == []
    assert algo["status"] == "NEW" and algo["stop_price"] == 48_000.0
    assert algo["client_algo_id"] == "atl-BTCUSDT-1-sl" and algo["reduce_only"] is True


def test_close_position_stop_sends_neither_quantity_nor_reduce_only(loop: Loop) -> None:
    _long(loop)
    loop.server.clear_requests()
    algo = loop.adapter.place_algo_stop(
        symbol="BTCUSDT",
        side="SELL",
        qty=0.01,
        stop_price=48_000,
        reduce_only=False,
        client_algo_id="atl-BTCUSDT-2-sl",
        working_type="CONTRACT_PRICE",
        close_position=True,
    )
    (req,) = loop.server.recorded("/fapi/v1/algoOrder", "POST")
    assert req.params["closePosition"] == "true"
    assert "quantity" not in req.params and "reduceOnly" not in req.params
    assert req.params["workingType"] == "CONTRACT_PRICE"
    assert algo["close_position"] is True and algo["status"] == "NEW"


def test_post_only_entry_is_a_gtx_limit_rounded_to_the_passive_side(loop: Loop) -> None:
    loop.adapter.place_limit_postonly(
        symbol="BTCUSDT",
        side="BUY",
        qty=0.0109,
        price=49_000.07,
        tif="GTX",
        reduce_only=False,
        client_order_id="atl-BTCUSDT-3-entry",
    )
    _long(loop)
    loop.adapter.place_limit_postonly(
        symbol="BTCUSDT",
        side="SELL",
        qty=0.01,
        price=51_000.01,
        tif="GTX",
        reduce_only=True,
        client_order_id="atl-BTCUSDT-3-tp1",
    )
    buy, _market, sell = loop.server.recorded("/fapi/v1/order", "POST")
    assert buy.params["type"] == "LIMIT" and buy.params["timeInForce"] == "GTX"
    assert buy.params["price"] == "49000" and buy.params["quantity"] == "0.01"
    assert buy.params["newClientOrderId"] == "atl-BTCUSDT-3-entry"
    assert "reduceOnly" not in buy.params
    assert sell.params["price"] == "51000.1" and sell.params["reduceOnly"] == "true"
    assert sell.params["timeInForce"] == "GTX"


def test_market_order_asks_for_the_result_and_keeps_reduce_only(loop: Loop) -> None:
    _long(loop, qty=0.02)
    out = loop.adapter.place_market(
        symbol="BTCUSDT", side="SELL", qty=0.01, reduce_only=True, client_order_id="atl-x-1-exit"
    )
    req = loop.server.recorded("/fapi/v1/order", "POST")[-1]
    assert req.params["type"] == "MARKET" and req.params["newOrderRespType"] == "RESULT"
    assert req.params["reduceOnly"] == "true" and "price" not in req.params
    assert out["status"] == "FILLED" and out["executed_qty"] == pytest.approx(0.01)


def test_a_whole_session_never_sends_a_conditional_type_to_the_order_endpoint(
    loop: Loop,
) -> None:
    a = loop.adapter
    for sym, qty in (("BTCUSDT", 0.01), ("BTCUSDC", 0.002), ("XRPUSDT", 10.0)):
        price = a.get_last_price(sym)
        a.place_market(
            symbol=sym, side="BUY", qty=qty, reduce_only=False, client_order_id=f"s-{sym}-e"
        )
        spec = StopSpec("SELL", qty, price * 0.95, "MARK_PRICE", f"s-{sym}-sl")
        assert a.recover_protection(sym, spec)["action"] == "CREATED"
        assert a.recover_protection(sym, spec)["action"] == "CONFIRMED"
        moved = StopSpec("SELL", qty, price * 0.9, "MARK_PRICE", f"s-{sym}-sl")
        assert a.recover_protection(sym, moved)["action"] == "REPLACED"
        tp = a.place_limit_postonly(
            symbol=sym,
            side="SELL",
            qty=qty,
            price=price * 1.05,
            tif="GTX",
            reduce_only=True,
            client_order_id=f"s-{sym}-tp",
        )
        a.cancel_order(symbol=sym, order_id=tp["order_id"], client_order_id=None)
        assert len(a.get_open_algo_orders(sym)) == 1
    with pytest.raises(ValueError, match="algoOrder"):
        a._post_order(symbol="BTCUSDT", side="SELL", type="STOP_MARKET", quantity="0.01")
    reqs = loop.server.recorded()
    orders = [r for r in reqs if r.path == "/fapi/v1/order" and r.method == "POST"]
    assert len(orders) == 6
    assert all(r.params["type"] in ("LIMIT", "MARKET") for r in orders)
    assert not any(r.params.get("type") in CONDITIONAL_ORDER_TYPES for r in orders)
    assert len(loop.server.recorded("/fapi/v1/algoOrder", "POST")) == 6
    assert all(r.signature_valid for r in reqs if r.signed)
    assert all(r.api_key == "paper" for r in reqs)
    # The only refusals: the free-id probes of recover_protection (GET algoOrder -> -2013).
    refused = [r for r in reqs if r.status != 200]
    assert refused and all(
        (r.method, r.path, r.code) == ("GET", "/fapi/v1/algoOrder", -2013) for r in refused
    )


def test_cancel_and_query_algo_by_id_only(loop: Loop) -> None:
    _long(loop)
    algo = loop.adapter.place_algo_stop(
        symbol="BTCUSDT",
        side="SELL",
        qty=0.01,
        stop_price=45_000,
        reduce_only=True,
        client_algo_id="c-sl-1",
        working_type="MARK_PRICE",
    )
    got = loop.adapter.get_algo_order(symbol="BTCUSDT", client_algo_id="c-sl-1")
    assert got is not None and got["algo_id"] == algo["algo_id"]
    res = loop.adapter.cancel_algo(symbol="BTCUSDT", algo_id=algo["algo_id"], client_algo_id=None)
    assert res["status"] == "CANCELED" and res["canceled_now"] is True
    (query,) = loop.server.recorded("/fapi/v1/algoOrder", "GET")
    (cancel,) = loop.server.recorded("/fapi/v1/algoOrder", "DELETE")
    assert set(query.params) == {"clientAlgoId", "recvWindow", "timestamp"}
    assert set(cancel.params) == {"algoId", "recvWindow", "timestamp"}
    assert cancel.params["algoId"] == algo["algo_id"]


def test_wrong_secret_and_wrong_key_are_auth_errors_not_retried(loop: Loop) -> None:
    bad_secret = loop.new_adapter(api_secret="not-the-secret")
    with pytest.raises(AuthError) as e1:
        bad_secret.get_balances()
    assert e1.value.code == -1022
    loop.server.clear_requests()
    bad_key = loop.new_adapter(api_key="someone-else")
    with pytest.raises(AuthError) as e2:
        bad_key.get_open_orders("BTCUSDT")
    assert e2.value.code == -2015
    assert len(loop.server.recorded("/fapi/v1/openOrders")) == 1
    assert "not-the-secret" not in str(e1.value) and "not-the-secret" not in repr(e1.value)


def test_filters_reload_once_on_a_filter_reject(loop: Loop) -> None:
    assert loop.adapter.get_symbol_filters("BTCUSDT")["tick_size"] == 0.1
    # The exchange changes its tick; the adapter's cached filters are now stale.
    loop.sim.add_symbol("BTCUSDT", tick_size=1.0, step_size=0.001, min_qty=0.001, min_notional=100)
    loop.server.clear_requests()
    o = loop.adapter.place_limit_postonly(
        symbol="BTCUSDT",
        side="BUY",
        qty=0.01,
        price=49_000.5,
        tif="GTX",
        reduce_only=False,
        client_order_id="f-1",
    )
    first, second = loop.server.recorded("/fapi/v1/order", "POST")
    assert first.params["price"] == "49000.5" and first.code == -1111
    assert second.params["price"] == "49000" and second.status == 200
    assert second.params["newClientOrderId"] == "f-1"
    assert len(loop.server.recorded("/fapi/v1/exchangeInfo")) == 1
    assert o["price"] == 49_000.0
    assert loop.adapter.get_symbol_filters("BTCUSDT")["tick_size"] == 1.0


def test_an_order_below_the_filters_is_refused_locally(loop: Loop) -> None:
    loop.adapter.get_symbol_filters("BTCUSDT")
    loop.server.clear_requests()
    with pytest.raises(FilterError):
        loop.adapter.place_market(
            symbol="BTCUSDT", side="BUY", qty=0.0004, reduce_only=False, client_order_id="tiny"
        )
    with pytest.raises(FilterError) as notional:
        loop.adapter.place_limit_postonly(
            symbol="BTCUSDT",
            side="BUY",
            qty=0.001,
            price=49_000,
            tif="GTX",
            reduce_only=False,
            client_order_id="small",
        )
    assert notional.value.code == -4164
    assert loop.server.recorded("/fapi/v1/order") == []


def test_duplicate_client_id_reply_returns_the_existing_order(loop: Loop) -> None:
    first = loop.adapter.place_limit_postonly(
        symbol="BTCUSDT",
        side="BUY",
        qty=0.01,
        price=49_000,
        tif="GTX",
        reduce_only=False,
        client_order_id="dup-1",
    )
    restarted = loop.new_adapter()  # no memory of what the first process sent
    loop.server.arm_http_fault(
        "/fapi/v1/order", method="POST", status=400, code=-4116, msg="ClientOrderId is duplicated."
    )
    again = restarted.place_limit_postonly(
        symbol="BTCUSDT",
        side="BUY",
        qty=0.01,
        price=49_000,
        tif="GTX",
        reduce_only=False,
        client_order_id="dup-1",
    )
    assert again["order_id"] == first["order_id"]
    assert [o["client_order_id"] for o in restarted.get_open_orders("BTCUSDT")] == ["dup-1"]


def test_weight_governor_reads_the_header_and_waits_below_the_share(loop: Loop) -> None:
    # One frozen clock for both ends: the test never straddles a weight window.
    t0 = (int(time.time()) // 60) * 60 + 1.0
    server = SimExchangeServer(loop.sim, symbols=SYMBOLS, clock=lambda: t0, weight_limit=40)
    with server:
        a = loop.new_adapter(rest_url=server.rest_url, weight_limit_share=0.5, clock=lambda: t0)
        a.get_symbol_filters("BTCUSDT")  # exchangeInfo: the limit comes from rateLimits
        assert a.governor.limit == 40
        for _ in range(24):
            a.get_mark_price("BTCUSDT")
        assert a.governor.waits, "the governor never held back"
        assert all(w == pytest.approx(59.01) for w in a.governor.waits)
        assert loop.sleeps == a.governor.waits
        assert a.governor.used == server.recorded().__len__()
        assert all(r.status == 200 for r in server.recorded())
        a.close()


def test_account_mode_leverage_and_filters(loop: Loop) -> None:
    a = loop.adapter
    assert a.get_position_mode() == "ONE_WAY"
    a.set_position_mode_one_way()  # the sim answers -4059: already one-way = success
    (mode,) = loop.server.recorded("/fapi/v1/positionSide/dual", "POST")
    assert mode.params["dualSidePosition"] == "false" and mode.code == -4059
    a.set_leverage("BTCUSDC", 7)
    (lev,) = loop.server.recorded("/fapi/v1/leverage", "POST")
    assert lev.params["leverage"] == "7" and lev.params["symbol"] == "BTCUSDC"
    assert a.get_symbol_filters("XRPUSDT") == {
        "tick_size": 0.0001,
        "step_size": 0.1,
        "min_qty": 0.1,
        "min_notional": 5.0,
    }
    assert a.margin_asset("BTCUSDC") == "USDC" and a.margin_asset("BTCUSDT") == "USDT"


def test_usdc_and_usdt_symbols_both_trade(loop: Loop) -> None:
    a = loop.adapter
    for sym in ("BTCUSDC", "BTCUSDT"):
        a.place_market(
            symbol=sym, side="SELL", qty=0.003, reduce_only=False, client_order_id=f"u-{sym}"
        )
    positions = a.get_positions()
    assert positions["BTCUSDC"]["side"] == "SHORT" and positions["BTCUSDC"]["qty"] == 0.003
    assert positions["BTCUSDT"]["side"] == "SHORT"
    assert positions["XRPUSDT"]["side"] == "NONE"
    rows = loop.server.recorded("/fapi/v2/positionRisk", "GET")
    assert len(rows) == 1 and rows[0].signature_valid
    bars = a.get_kline("BTCUSDC", "1m", 10)
    assert bars == []  # no bars fed on this venue: nothing closed to report


def test_float_noise_is_not_rounded_a_tick_away(loop: Loop) -> None:
    _long(loop)
    desired = 32_498.9 * 1.0000000000000001 - 1e-11  # 32498.899999999998 after arithmetic
    spec = StopSpec("SELL", 0.1 * 0.1, desired, "MARK_PRICE", "noise-sl")
    assert loop.adapter.recover_protection("BTCUSDT", spec)["action"] == "CREATED"
    (req,) = loop.server.recorded("/fapi/v1/algoOrder", "POST")
    assert req.params["triggerPrice"] == "32498.9" and req.params["quantity"] == "0.01"
    assert loop.adapter.recover_protection("BTCUSDT", spec)["action"] == "CONFIRMED"
