"""BinanceAdapter under the sim exchange's faults: unknown outcomes, rate limits, clock skew.

The acceptance cases: a 503 after the order was created leaves exactly one order; a 429
with Retry-After waits (the injected sleep records it) and succeeds; -1021 resyncs the clock
and succeeds. Faults are switched on through the admin HTTP endpoint, as chaos tests do."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from atlas_actors.sim_exchange import SimExchangeServer, free_port
from atlas_actors.venues.base import (
    InsufficientMargin,
    RateLimited,
    UnknownOutcome,
    VenueUnavailable,
)
from atlas_actors.venues.binance import BinanceAdapter
from atlas_actors.venues.sim import SimVenue

SYMBOL = "BTCUSDT"


@dataclass
class Rig:
    sim: SimVenue
    server: SimExchangeServer
    adapter: BinanceAdapter
    sleeps: list[float]

    def admin(self, what: str, body: dict[str, Any]) -> dict[str, Any]:
        r = requests.post(f"{self.server.rest_url}/admin/{what}", json=body, timeout=5)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def trail(self, *paths: str) -> list[tuple[str, str, int, int | None]]:
        return [
            (r.method, r.path, r.status, r.code) for r in self.server.recorded() if r.path in paths
        ]

    def orders_with(self, cid: str) -> list[dict[str, Any]]:
        return [o for o in self.sim.snapshot()["orders"] if o["client_order_id"] == cid]


@pytest.fixture
def rig() -> Iterator[Rig]:
    sim = SimVenue(seed=11)
    sim.add_symbol(SYMBOL, tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100.0)
    sim.set_price(SYMBOL, 50_000.0)
    server = SimExchangeServer(sim, symbols=[SYMBOL]).start()
    sleeps: list[float] = []
    adapter = BinanceAdapter(
        "paper",
        "paper",
        rest_url=server.rest_url,
        symbols=[SYMBOL],
        sleep=sleeps.append,
        request_timeout_s=5.0,
    )
    adapter.get_symbol_filters(SYMBOL)
    adapter.sync_time()
    server.clear_requests()
    try:
        yield Rig(sim, server, adapter, sleeps)
    finally:
        adapter.close()
        server.stop()


def _market(rig: Rig, cid: str, qty: float = 0.01, side: str = "BUY") -> dict[str, Any]:
    return rig.adapter.place_market(
        symbol=SYMBOL, side=side, qty=qty, reduce_only=False, client_order_id=cid
    )


# ------------------------------------------------------------------ unknown outcomes


def test_503_after_the_order_was_created_leaves_exactly_one_order(rig: Rig) -> None:
    rig.admin("faults", {"http": {"path": "/fapi/v1/order", "method": "POST", "after_apply": True}})
    order = _market(rig, "u-1")
    assert order["client_order_id"] == "u-1" and order["status"] == "FILLED"
    assert len(rig.orders_with("u-1")) == 1
    assert rig.adapter.get_positions()[SYMBOL]["qty"] == pytest.approx(0.01)
    # Resolved by a query by client id, never by a second send.
    assert rig.trail("/fapi/v1/order") == [
        ("POST", "/fapi/v1/order", 503, -1007),
        ("GET", "/fapi/v1/order", 200, None),
    ]
    (query,) = rig.server.recorded("/fapi/v1/order", "GET")
    assert query.params["origClientOrderId"] == "u-1"


def test_venue_timeout_after_applying_an_algo_stop_leaves_one_stop(rig: Rig) -> None:
    _market(rig, "pos-1")
    rig.admin("faults", {"arm": {"method": "place_algo_stop", "kind": "timeout_after_apply"}})
    algo = rig.adapter.place_algo_stop(
        symbol=SYMBOL,
        side="SELL",
        qty=0.01,
        stop_price=45_000,
        reduce_only=True,
        client_algo_id="u-sl",
        working_type="MARK_PRICE",
    )
    assert algo["client_algo_id"] == "u-sl" and algo["status"] == "NEW"
    assert [a["client_algo_id"] for a in rig.adapter.get_open_algo_orders(SYMBOL)] == ["u-sl"]
    assert rig.trail("/fapi/v1/algoOrder") == [
        ("POST", "/fapi/v1/algoOrder", 503, -1007),
        ("GET", "/fapi/v1/algoOrder", 200, None),
    ]


def test_503_before_apply_of_an_opening_order_is_never_resent(rig: Rig) -> None:
    """One "not found" after an unknown outcome proves nothing (the order can land later, and
    a filled id executes again at Binance): an order that opens is not resent."""
    rig.server.arm_http_fault("/fapi/v1/order", method="POST", status=503, code=-1007)
    with pytest.raises(UnknownOutcome, match="never resent"):
        _market(rig, "u-2")
    assert rig.trail("/fapi/v1/order") == [
        ("POST", "/fapi/v1/order", 503, -1007),
        ("GET", "/fapi/v1/order", 400, -2013),
    ]


def test_503_before_apply_of_a_reduce_only_order_is_resent_after_a_query(rig: Rig) -> None:
    _market(rig, "pos-2")
    rig.server.clear_requests()
    rig.server.arm_http_fault("/fapi/v1/order", method="POST", status=503, code=-1007)
    order = rig.adapter.place_market(
        symbol=SYMBOL, side="SELL", qty=0.01, reduce_only=True, client_order_id="u-2r"
    )
    assert order["status"] == "FILLED"
    assert len(rig.orders_with("u-2r")) == 1
    assert rig.trail("/fapi/v1/order") == [
        ("POST", "/fapi/v1/order", 503, -1007),
        ("GET", "/fapi/v1/order", 400, -2013),
        ("POST", "/fapi/v1/order", 200, None),
    ]
    posts = rig.server.recorded("/fapi/v1/order", "POST")
    assert [p.params["newClientOrderId"] for p in posts] == ["u-2r", "u-2r"]


def test_a_late_landing_market_entry_executes_once(rig: Rig) -> None:
    """Binance answers 503/-1007, a query says -2013, and the order executes 0.3 s later."""
    rig.admin(
        "faults",
        {"arm": {"method": "place_market", "kind": "late_landing", "land_after_ms": 300}},
    )
    with pytest.raises(UnknownOutcome):
        _market(rig, "u-late")
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and not rig.orders_with("u-late"):
        time.sleep(0.02)
    time.sleep(0.3)
    assert [o["status"] for o in rig.orders_with("u-late")] == ["FILLED"]
    assert rig.adapter.get_positions()[SYMBOL]["qty"] == pytest.approx(0.01)
    assert len(rig.server.recorded("/fapi/v1/order", "POST")) == 1


def test_client_side_timeout_is_unknown_and_the_order_executes_once(rig: Rig) -> None:
    slow = BinanceAdapter(
        "paper", "paper", rest_url=rig.server.rest_url, symbols=[SYMBOL], request_timeout_s=0.3
    )
    try:
        rig.sim.faults.arm("place_market", kind="latency", latency_ms=700)
        with pytest.raises(UnknownOutcome):
            slow.place_market(
                symbol=SYMBOL, side="BUY", qty=0.01, reduce_only=False, client_order_id="u-3"
            )
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not rig.orders_with("u-3"):
            time.sleep(0.02)
        time.sleep(0.3)
        assert len(rig.orders_with("u-3")) == 1
        assert rig.adapter.get_positions()[SYMBOL]["qty"] == pytest.approx(0.01)
        assert len(rig.server.recorded("/fapi/v1/order", "POST")) == 1
    finally:
        slow.close()


def test_unknown_outcome_when_the_query_cannot_answer_either(rig: Rig) -> None:
    rig.server.arm_http_fault("/fapi/v1/order", method="POST", status=503, code=-1007)
    rig.server.arm_http_fault("/fapi/v1/order", method="GET", status=503, code=-1001, times=None)
    with pytest.raises(UnknownOutcome) as e:
        _market(rig, "u-4")
    assert "query by client id failed" in str(e.value)
    assert len(rig.server.recorded("/fapi/v1/order", "POST")) == 1  # never resent blindly


def test_cancel_whose_reply_is_lost_resolves_to_canceled(rig: Rig) -> None:
    o = rig.adapter.place_limit_postonly(
        symbol=SYMBOL,
        side="BUY",
        qty=0.01,
        price=49_000,
        tif="GTX",
        reduce_only=False,
        client_order_id="u-5",
    )
    rig.server.arm_http_fault("/fapi/v1/order", method="DELETE", after_apply=True)
    res = rig.adapter.cancel_order(symbol=SYMBOL, order_id=o["order_id"], client_order_id=None)
    assert res["status"] == "CANCELED"
    assert [t[2:] for t in rig.trail("/fapi/v1/order") if t[0] == "DELETE"] == [
        (503, -1007),
        (400, -2011),
    ]


# ------------------------------------------------------------------ rate limits


def test_429_with_retry_after_waits_and_succeeds(rig: Rig) -> None:
    rig.admin(
        "faults",
        {"http": {"path": "/fapi/v1/order", "status": 429, "code": -1003, "retry_after": 2}},
    )
    order = _market(rig, "r-1")
    assert order["status"] == "FILLED"
    assert rig.sleeps == [pytest.approx(2.0, abs=0.05)]
    assert rig.trail("/fapi/v1/order") == [
        ("POST", "/fapi/v1/order", 429, -1003),
        ("POST", "/fapi/v1/order", 200, None),
    ]
    assert len(rig.orders_with("r-1")) == 1


def test_venue_rate_limit_fault_is_a_429_with_retry_after(rig: Rig) -> None:
    rig.admin(
        "faults", {"arm": {"method": "get_open_orders", "kind": "rate_limit", "retry_after": 3}}
    )
    assert rig.adapter.get_open_orders(SYMBOL) == []
    assert rig.sleeps == [pytest.approx(3.0, abs=0.05)]
    first, second = rig.server.recorded("/fapi/v1/openOrders")
    assert (first.status, first.code, second.status) == (429, -1003, 200)


def test_a_long_ban_raises_rate_limited_without_waiting(rig: Rig) -> None:
    rig.server.arm_http_fault(
        "/fapi/v2/positionRisk", method="GET", status=418, code=-1003, retry_after=120
    )
    with pytest.raises(RateLimited) as e:
        rig.adapter.get_positions()
    assert e.value.retry_after == pytest.approx(120.0)
    assert rig.sleeps == []


# ------------------------------------------------------------------ clock


def test_minus_1021_resyncs_the_clock_and_succeeds(rig: Rig) -> None:
    rig.admin("faults", {"clock_skew_ms": 20_000})  # the exchange's clock jumps ahead
    order = _market(rig, "t-1")
    assert order["status"] == "FILLED"
    assert rig.trail("/fapi/v1/order", "/fapi/v1/time") == [
        ("POST", "/fapi/v1/order", 400, -1021),
        ("GET", "/fapi/v1/time", 200, None),
        ("POST", "/fapi/v1/order", 200, None),
    ]
    assert rig.adapter.time_offset_ms == pytest.approx(20_000, abs=2_000)
    assert len(rig.orders_with("t-1")) == 1


def test_a_skewed_local_clock_is_corrected_before_the_first_signed_call(rig: Rig) -> None:
    skewed = BinanceAdapter(
        "paper",
        "paper",
        rest_url=rig.server.rest_url,
        symbols=[SYMBOL],
        clock=lambda: time.time() - 45.0,
    )
    try:
        assert skewed.get_balances()["total_equity"] > 0
        assert skewed.time_offset_ms == pytest.approx(45_000, abs=2_000)
        assert not [r for r in rig.server.recorded() if r.code == -1021]
    finally:
        skewed.close()


# ------------------------------------------------------------------ rejects and outages


def test_insufficient_margin_keeps_the_binance_code(rig: Rig) -> None:
    with pytest.raises(InsufficientMargin) as e:
        _market(rig, "m-1", qty=10.0)
    assert e.value.code == -2019


def test_a_read_retries_a_503_then_succeeds(rig: Rig) -> None:
    rig.server.arm_http_fault("/fapi/v1/openAlgoOrders", method="GET", status=503, code=-1001)
    assert rig.adapter.get_open_algo_orders(SYMBOL) == []
    assert len(rig.sleeps) == 1
    assert [r.status for r in rig.server.recorded("/fapi/v1/openAlgoOrders")] == [503, 200]


def test_venue_down_is_a_clear_venue_unavailable(rig: Rig) -> None:
    port = free_port()
    down = BinanceAdapter(
        "paper",
        "paper",
        rest_url=f"http://127.0.0.1:{port}",
        sleep=rig.sleeps.append,
        request_timeout_s=1.0,
    )
    try:
        with pytest.raises(VenueUnavailable, match=f"cannot reach http://127.0.0.1:{port}"):
            down.get_positions()
        with pytest.raises(VenueUnavailable, match="cannot reach"):
            down.place_market(
                symbol=SYMBOL, side="BUY", qty=0.01, reduce_only=False, client_order_id="d-1"
            )
    finally:
        down.close()


def test_a_write_to_a_stopped_exchange_is_unavailable_not_unknown() -> None:
    sim = SimVenue(seed=2)
    sim.add_symbol(SYMBOL, tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100.0)
    sim.set_price(SYMBOL, 50_000.0)
    server = SimExchangeServer(sim, symbols=[SYMBOL]).start()
    sleeps: list[float] = []
    a = BinanceAdapter(
        "paper", "paper", rest_url=server.rest_url, sleep=sleeps.append, request_timeout_s=1.0
    )
    try:
        a.get_symbol_filters(SYMBOL)
        a.sync_time()
        server.stop()
        # Nothing left this host (connection refused): not an unknown outcome.
        with pytest.raises(VenueUnavailable, match="cannot reach"):
            a.place_market(
                symbol=SYMBOL, side="BUY", qty=0.01, reduce_only=False, client_order_id="w-1"
            )
        assert sim.write_count == 0
    finally:
        a.close()
        server.stop()
