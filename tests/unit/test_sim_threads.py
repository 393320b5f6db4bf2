"""SimVenue under concurrent actor threads: one order per client id, consistent book."""

from __future__ import annotations

import threading
from typing import Any

from atlas_actors.domain.events import OrderUpdate
from atlas_actors.venues.base import VenueError
from atlas_actors.venues.sim import SimVenue

SYMBOLS = ("AAAUSDT", "BBBUSDT", "CCCUSDT")


def _bar(t: int, price: float) -> dict[str, Any]:
    return {
        "open_time": t * 60_000,
        "open": price,
        "high": price * 1.002,
        "low": price * 0.998,
        "close": price,
        "volume": 1.0,
        "close_time": t * 60_000 + 59_999,
    }


def test_racing_resends_of_one_open_client_id_make_one_order() -> None:
    """While the first order rests, every racing resend of its id is refused (-4116) - the
    duplicate check and the insert are one step under the venue's lock."""
    v = SimVenue()
    v.set_price("AAAUSDT", 100.0)
    results: list[dict[str, Any]] = []
    refused: list[int | None] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        try:
            results.append(
                v.place_limit_postonly(
                    symbol="AAAUSDT",
                    side="BUY",
                    qty=1.0,
                    price=90.0,
                    tif="GTX",
                    reduce_only=False,
                    client_order_id="same",
                )
            )
        except VenueError as exc:
            refused.append(exc.code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(results) == 1 and refused == [-4116] * 7
    assert [o["client_order_id"] for o in v.get_open_orders("AAAUSDT")] == ["same"]


def test_concurrent_feeders_and_traders_keep_the_book_consistent() -> None:
    v = SimVenue(fee_bps=0.0, slippage_bps=0.0)
    for s in SYMBOLS:
        v.add_symbol(s, tick_size=0.01, step_size=0.001, min_qty=0.001, min_notional=1.0)
        v.set_price(s, 100.0)
    fills: list[OrderUpdate] = []
    lock = threading.Lock()

    def on_event(e: Any) -> None:
        if isinstance(e, OrderUpdate) and e.execution_type == "TRADE":
            with lock:
                fills.append(e)

    v.add_listener(on_event)
    errors: list[BaseException] = []

    traders_done = threading.Event()

    def feeder(sym: str, phase: float) -> None:
        try:
            t = 0
            while not traders_done.is_set() and t < 200_000:
                t += 1
                v.feed_bar(sym, _bar(t, 100.0 + 3.0 * ((t * 7 + phase) % 11 - 5) / 5))
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    def trader(sym: str, k: int) -> None:
        try:
            for i in range(150):
                cid = f"t{k}-{sym}-{i}"
                try:
                    v.place_limit_postonly(
                        symbol=sym,
                        side="BUY" if i % 2 else "SELL",
                        qty=0.5,
                        price=97.0 if i % 2 else 103.0,
                        tif="GTX",
                        reduce_only=False,
                        client_order_id=cid,
                    )
                except VenueError:
                    pass  # post-only rejected when the price has moved there: fine
                if i % 3 == 0:
                    v.cancel_order(symbol=sym, order_id=None, client_order_id=cid)
                v.get_balances()
                v.get_open_orders(sym)
        except BaseException as e:
            errors.append(e)

    feeders = [threading.Thread(target=feeder, args=(s, i)) for i, s in enumerate(SYMBOLS)]
    traders = [threading.Thread(target=trader, args=(s, k)) for k in range(2) for s in SYMBOLS]
    threads = feeders + traders
    for t in threads:
        t.start()
    for t in traders:
        t.join(timeout=60)
    traders_done.set()
    for t in feeders:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(fills) > 20  # the market really traded through the resting orders
    # Every fill was reported once, and positions equal the sum of reported fills.
    assert len({(f.order_id, f.executed_qty) for f in fills}) == len(fills)
    for s in SYMBOLS:
        net = sum(f.last_fill_qty * (1 if f.side == "BUY" else -1) for f in fills if f.symbol == s)
        amt = v.get_positions().get(s, {"position_amt": 0.0})["position_amt"]
        assert abs(amt - net) < 1e-9, s
        for o in v.get_open_orders(s):
            assert o["status"] == "NEW"
