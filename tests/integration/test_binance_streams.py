"""BinanceAdapter streams against the sim exchange's WebSockets (real sockets, loopback).

Market stream (closed klines, mark price) and user-data stream (listenKey); a disconnect
mid-run reconnects and resyncs over REST without losing a fill; listenKey expiry renews the
key; keep-alive, proactive rotation, listener failures, and a clean stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from atlas_actors.domain.events import (
    AccountUpdate,
    AlgoUpdate,
    BarClosed,
    MarkPrice,
    OrderUpdate,
    StreamStatus,
    VenueEvent,
)
from atlas_actors.sim_exchange import SimExchangeServer, free_port
from atlas_actors.venues.binance import BinanceAdapter
from atlas_actors.venues.sim import SimVenue

SYMBOL = "BTCUSDT"
T0 = 1_637_000_000_000 // 60_000 * 60_000  # bar times in the past (2021), minute aligned


class Events:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[VenueEvent] = []

    def __call__(self, ev: VenueEvent) -> None:
        with self._lock:
            self.items.append(ev)

    def of(self, kind: type, pred: Callable[[Any], bool] = lambda e: True) -> list[Any]:
        with self._lock:
            return [e for e in self.items if isinstance(e, kind) and pred(e)]

    def wait(
        self, kind: type, pred: Callable[[Any], bool] = lambda e: True, n: int = 1, timeout=5.0
    ) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of(kind, pred)
            if len(found) >= n:
                return found
            time.sleep(0.01)
        raise AssertionError(f"no {n} x {kind.__name__} within {timeout}s; got {self.items[-8:]}")

    def status(self, stream: str, status: str) -> Callable[[Any], bool]:
        return lambda e: e.stream == stream and e.status == status


@dataclass
class Rig:
    sim: SimVenue
    server: SimExchangeServer
    adapter: BinanceAdapter
    events: Events

    @staticmethod
    def bar(i: int, o: float, h: float, lo: float, c: float) -> dict[str, Any]:
        t = T0 + i * 60_000
        return {
            "open_time": t,
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": 10.0,
            "close_time": t + 59_999,
        }


def _rig(**adapter_kw: Any) -> Rig:
    sim = SimVenue(seed=5)
    sim.add_symbol(SYMBOL, tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100.0)
    sim.set_price(SYMBOL, 50_000.0)
    server = SimExchangeServer(sim, symbols=[SYMBOL]).start()
    opts: dict[str, Any] = {
        "rest_url": server.rest_url,
        "symbols": [SYMBOL],
        "interval": "1m",
        "stream_backoff_s": 0.05,
        "request_timeout_s": 5.0,
    }
    opts.update(adapter_kw)
    adapter = BinanceAdapter("paper", "paper", **opts)
    events = Events()
    adapter.add_listener(events)
    return Rig(sim, server, adapter, events)


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = _rig()
    r.adapter.ws_start()
    r.events.wait(StreamStatus, r.events.status("user", "RESYNCED"))
    r.events.wait(StreamStatus, r.events.status("market", "CONNECTED"))
    try:
        yield r
    finally:
        r.adapter.close()
        r.server.stop()


def _stream_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in ("ws-market", "ws-user")]


def test_streams_deliver_closed_bars_mark_prices_and_user_events(rig: Rig) -> None:
    rig.sim.feed_bar(SYMBOL, rig.bar(0, 50_000, 50_050, 49_990, 50_020))
    (bar,) = rig.events.wait(BarClosed)
    assert bar == BarClosed(SYMBOL, "1m", T0, 50_000, 50_050, 49_990, 50_020, 10.0, T0 + 59_999)
    rig.server.publish_mark_price(SYMBOL, 50_021.5, 0.0001)
    mark = rig.events.wait(MarkPrice)[0]
    assert (mark.symbol, mark.mark_price, mark.funding_rate) == (SYMBOL, 50_021.5, 0.0001)
    rig.adapter.place_market(
        symbol=SYMBOL, side="BUY", qty=0.01, reduce_only=False, client_order_id="s-e"
    )
    fills = rig.events.wait(
        OrderUpdate, lambda e: e.client_order_id == "s-e" and e.status == "FILLED"
    )
    assert fills[0].execution_type == "TRADE" and fills[0].last_fill_qty == pytest.approx(0.01)
    acct = rig.events.wait(AccountUpdate, lambda e: e.reason == "ORDER")[-1]
    assert acct.positions[SYMBOL]["side"] == "LONG"
    rig.adapter.place_algo_stop(
        symbol=SYMBOL,
        side="SELL",
        qty=0.01,
        stop_price=45_000,
        reduce_only=True,
        client_algo_id="s-sl",
        working_type="MARK_PRICE",
    )
    (algo,) = rig.events.wait(AlgoUpdate, lambda e: e.client_algo_id == "s-sl")
    assert algo.status == "NEW" and algo.stop_price == 45_000 and algo.order_id is None
    rig.adapter.ws_stop()
    assert _stream_threads() == []


def test_disconnect_mid_run_reconnects_and_resyncs_without_losing_a_fill(rig: Rig) -> None:
    a, ev = rig.adapter, rig.events
    a.place_market(symbol=SYMBOL, side="BUY", qty=0.01, reduce_only=False, client_order_id="d-pos")
    entry = a.place_limit_postonly(
        symbol=SYMBOL,
        side="BUY",
        qty=0.01,
        price=49_900,
        tif="GTX",
        reduce_only=False,
        client_order_id="d-entry",
    )
    a.place_algo_stop(
        symbol=SYMBOL,
        side="SELL",
        qty=0.01,
        stop_price=49_500,
        reduce_only=True,
        client_algo_id="d-sl",
        working_type="MARK_PRICE",
    )
    ev.wait(AlgoUpdate, lambda e: e.client_algo_id == "d-sl")
    rig.sim.faults.disconnect_stream("user")
    ev.wait(StreamStatus, ev.status("user", "DISCONNECTED"))
    # While the user stream is down the market trades through the entry and the stop.
    rig.sim.set_price(SYMBOL, 49_400.0)
    time.sleep(0.3)  # reconnect attempts are refused meanwhile
    assert not ev.of(OrderUpdate, lambda e: e.client_order_id == "d-entry" and e.status == "FILLED")
    rig.sim.faults.reconnect_stream("user")
    ev.wait(StreamStatus, ev.status("user", "RESYNCED"), n=2)
    (filled,) = ev.of(
        OrderUpdate, lambda e: e.order_id == entry["order_id"] and e.status == "FILLED"
    )
    assert filled.execution_type == "TRADE"
    assert filled.last_fill_qty == pytest.approx(0.01) and filled.avg_price == pytest.approx(49_900)
    (stop,) = ev.of(AlgoUpdate, lambda e: e.client_algo_id == "d-sl" and e.status != "NEW")
    assert stop.status in ("TRIGGERED", "FINISHED") and stop.order_id
    (child,) = ev.of(OrderUpdate, lambda e: e.order_id == stop.order_id)
    assert child.status == "FILLED" and child.side == "SELL" and child.last_fill_qty == 0.01
    resync = ev.of(AccountUpdate, lambda e: e.reason == "RESYNC")[-1]
    assert resync.positions[SYMBOL]["side"] == "LONG"
    assert resync.positions[SYMBOL]["qty"] == pytest.approx(0.01)
    # And the live stream works again after the resync.
    a.place_market(symbol=SYMBOL, side="SELL", qty=0.01, reduce_only=True, client_order_id="d-x")
    ev.wait(OrderUpdate, lambda e: e.client_order_id == "d-x" and e.status == "FILLED")


def test_listen_key_expiry_renews_the_key_and_resyncs(rig: Rig) -> None:
    ev = rig.events
    rig.server.expire_listen_keys()
    ev.wait(StreamStatus, ev.status("user", "LISTEN_KEY_EXPIRED"))
    ev.wait(StreamStatus, ev.status("user", "RESYNCED"), n=2)
    assert len(rig.server.recorded("/fapi/v1/listenKey", "POST")) == 2
    rig.adapter.place_market(
        symbol=SYMBOL, side="BUY", qty=0.01, reduce_only=False, client_order_id="k-1"
    )
    ev.wait(OrderUpdate, lambda e: e.client_order_id == "k-1" and e.status == "FILLED")


def test_keepalive_every_30_minutes_of_the_injected_clock() -> None:
    shift = [0.0]
    r = _rig(clock=lambda: time.time() + shift[0])
    try:
        r.adapter.ws_start()
        r.events.wait(StreamStatus, r.events.status("user", "RESYNCED"))
        assert r.server.recorded("/fapi/v1/listenKey", "PUT") == []
        shift[0] = 31 * 60.0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not r.server.recorded("/fapi/v1/listenKey", "PUT"):
            time.sleep(0.02)
        (put,) = r.server.recorded("/fapi/v1/listenKey", "PUT")
        assert put.params["listenKey"] and put.status == 200
        # The clock jump also re-measures the server offset (right after the keep-alive);
        # signed calls still work.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and r.adapter.time_offset_ms > -60_000:
            time.sleep(0.02)
        assert r.adapter.time_offset_ms == pytest.approx(-31 * 60_000, abs=2_000)
        assert r.adapter.get_open_orders(SYMBOL) == []
    finally:
        r.adapter.close()
        r.server.stop()


def test_connections_are_rotated_before_the_24h_limit() -> None:
    r = _rig(rotate_after_s=0.3)
    try:
        r.adapter.ws_start()
        r.events.wait(StreamStatus, r.events.status("user", "RESYNCED"), n=3, timeout=8)
        rotated = r.events.of(StreamStatus, lambda e: e.status == "DISCONNECTED")
        assert rotated and all("rotating" in e.detail for e in rotated)
    finally:
        r.adapter.close()
        r.server.stop()
    assert _stream_threads() == []


def test_a_failing_listener_never_kills_the_stream(rig: Rig) -> None:
    def broken(ev: VenueEvent) -> None:
        raise RuntimeError("listener bug")

    rig.adapter.add_listener(broken)
    for i in range(3):
        rig.sim.feed_bar(SYMBOL, rig.bar(i, 50_000, 50_010, 49_995, 50_005))
    bars = rig.events.wait(BarClosed, n=3)
    assert [b.open_time for b in bars] == [T0, T0 + 60_000, T0 + 120_000]


def test_bars_missed_during_a_market_outage_are_backfilled(rig: Rig) -> None:
    ev = rig.events
    rig.sim.feed_bar(SYMBOL, rig.bar(0, 50_000, 50_010, 49_995, 50_005))
    ev.wait(BarClosed)
    rig.sim.faults.disconnect_stream("market")
    ev.wait(StreamStatus, ev.status("market", "DISCONNECTED"))
    rig.sim.feed_bar(SYMBOL, rig.bar(1, 50_005, 50_020, 50_000, 50_015))
    rig.sim.feed_bar(SYMBOL, rig.bar(2, 50_015, 50_030, 50_010, 50_025))
    rig.sim.faults.reconnect_stream("market")
    ev.wait(StreamStatus, ev.status("market", "RESYNCED"))
    bars = ev.of(BarClosed)
    assert [b.open_time for b in bars] == [T0, T0 + 60_000, T0 + 120_000]
    assert bars[2].close == 50_025


def test_streams_on_a_separate_ws_port() -> None:
    sim = SimVenue(seed=8)
    sim.add_symbol(SYMBOL, tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100.0)
    sim.set_price(SYMBOL, 50_000.0)
    port = free_port()
    with SimExchangeServer(sim, symbols=[SYMBOL], ws_port=port) as server:
        assert server.ws_url == f"ws://127.0.0.1:{port}" and server.ws_port != server.port
        a = BinanceAdapter(
            "paper",
            "paper",
            rest_url=server.rest_url,
            ws_url=server.ws_url,
            symbols=[SYMBOL],
            stream_backoff_s=0.05,
        )
        events = Events()
        a.add_listener(events)
        a.ws_start()
        try:
            events.wait(StreamStatus, events.status("user", "RESYNCED"))
            events.wait(StreamStatus, events.status("market", "CONNECTED"))
            sim.feed_bar(SYMBOL, Rig.bar(0, 50_000, 50_010, 49_990, 50_001))
            assert events.wait(BarClosed)[0].close == 50_001
        finally:
            a.close()


@pytest.mark.parametrize(
    ("kind", "head", "exec_type"),
    [
        ("liquidation", "autoclose-", "CALCULATED"),
        ("adl", "adl_autoclose", "CALCULATED"),
        ("settlement", "settlement_autoclose-", "TRADE"),
    ],
)
def test_the_venue_closing_a_position_reaches_the_adapter_as_binance_sends_it(
    rig: Rig, kind: str, head: str, exec_type: str
) -> None:
    """/admin/faults venue_close: ORDER_TRADE_UPDATE with the venue's client id and the
    ACCOUNT_UPDATE with the new position, parsed by the adapter's stream schemas."""
    a, ev = rig.adapter, rig.events
    a.place_market(symbol=SYMBOL, side="BUY", qty=0.01, reduce_only=False, client_order_id="v-e")
    ev.wait(OrderUpdate, lambda e: e.client_order_id == "v-e" and e.status == "FILLED")
    rig.server._admin_call("POST", "faults", {"venue_close": {"symbol": SYMBOL, "kind": kind}})
    (close,) = ev.wait(OrderUpdate, lambda e: e.client_order_id.startswith(head))
    assert close.execution_type == exec_type and close.side == "SELL" and close.reduce_only
    left = 0.0 if kind != "adl" else 0.005
    assert close.last_fill_qty == pytest.approx(0.01 - left)
    acct = ev.wait(AccountUpdate, lambda e: e.positions.get(SYMBOL, {}).get("qty") == left)
    assert acct[-1].reason == "ORDER"
    assert a.get_positions()[SYMBOL]["qty"] == pytest.approx(left)
