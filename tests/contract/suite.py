"""The ExchangeAdapter contract suite (contract §0.3, §1), reusable for every adapter.

Bind it to an adapter by defining a `venue_harness` fixture that yields a `VenueHarness`
and star-importing the tests:

    from tests.contract.suite import *  # noqa: F403

    @pytest.fixture
    def venue_harness():
        h = MyHarness()
        yield h
        h.close()

The suite only talks to `harness.venue` through the contract (plus the Atlas extensions
get_order / get_algo_order) and moves the market through the harness, so it knows nothing
about the adapter's internals.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest

from atlas_actors.domain.stops import StopSpec
from atlas_actors.venues.base import ExchangeAdapter, OrderRejected, WouldTakeLiquidity

__all__ = [
    "VenueHarness",
    "test_adapter_satisfies_protocol",
    "test_limit_order_fields",
    "test_same_client_order_id_twice_while_open_is_one_order",
    "test_a_filled_market_id_sent_again",
    "test_same_client_algo_id_twice_is_one_algo",
    "test_cancel_missing_order_is_success",
    "test_cancel_twice_and_cancel_filled_are_success",
    "test_cancel_missing_algo_is_success",
    "test_cancel_algo_twice_is_success",
    "test_get_order_by_client_id",
    "test_open_orders_list_and_cancel",
    "test_algo_visible_after_place",
    "test_recover_protection_created",
    "test_recover_protection_confirmed_sends_no_write",
    "test_recover_protection_replaced_places_new_before_cancelling_old",
    "test_recover_protection_replaced_on_qty_and_side",
    "test_recover_protection_adopts_open_stop_with_other_id",
    "test_post_only_that_would_take_is_rejected",
    "test_post_only_resting_then_filled_when_traded_through",
    "test_reduce_only_rejected_when_flat",
    "test_reduce_only_rejected_when_it_would_increase",
    "test_reduce_only_market_larger_than_position_is_clipped",
    "test_close_position_with_reduce_only_is_rejected",
    "test_stop_triggers_and_closes_position",
    "test_balances_fields",
    "test_positions_fields",
]


class VenueHarness:
    """What the suite needs from an adapter binding. Subclass and fill in.

    venue:      the adapter under test
    symbol:     a tradable symbol whose filters are tick_size / step_size / min_notional
    qty:        a valid order quantity (well above min qty / min notional at `price()`)
    """

    venue: ExchangeAdapter
    # True when the adapter answers a resend of an id it placed in this process itself.
    remembers_placed_ids: bool = False
    symbol: str
    tick_size: float
    step_size: float
    qty: float

    def set_price(self, symbol: str, price: float) -> None:
        """Move the last and mark price of `symbol` to `price`, trading through the levels
        in between (resting orders and stops on the way fill/trigger)."""
        raise NotImplementedError

    def price(self) -> float:
        """The current last price of `symbol`."""
        raise NotImplementedError

    def writes(self) -> int:
        """How many write requests (orders, cancels, algo place/cancel) the venue received."""
        raise NotImplementedError

    def make_position(self, side: str, qty: float) -> None:
        """Open a LONG/SHORT of `qty` with a market order."""
        order_side = "BUY" if side == "LONG" else "SELL"
        self.venue.place_market(
            symbol=self.symbol,
            side=order_side,
            qty=qty,
            reduce_only=False,
            client_order_id=self.new_id("pos"),
        )

    def settle(self) -> None:
        """Wait until asynchronous effects are visible (no-op for synchronous venues)."""

    _ids = itertools.count(1)

    def new_id(self, role: str) -> str:
        return f"ct-{role}-{next(self._ids)}-{int(time.time() * 1000) % 10**9}"

    def ticks(self, n: int) -> float:
        """A price `n` ticks away from the current price, on the tick grid."""
        return round(round(self.price() / self.tick_size + n) * self.tick_size, 10)


def _eventually(fn: Callable[[], Any], timeout: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(0.02)


def _position(h: VenueHarness) -> dict[str, Any]:
    return h.venue.get_positions().get(h.symbol, {"side": "NONE", "qty": 0.0, "entry_price": 0.0})


def _stop(h: VenueHarness, cid: str, *, below: int = 100, qty: float | None = None) -> StopSpec:
    return StopSpec(
        side="SELL",
        qty=h.qty if qty is None else qty,
        stop_price=h.ticks(-below),
        working_type="MARK_PRICE",
        client_algo_id=cid,
    )


def _open_algo_ids(h: VenueHarness) -> list[str]:
    return [a["client_algo_id"] for a in h.venue.get_open_algo_orders(h.symbol)]


# ------------------------------------------------------------------ shape


def test_adapter_satisfies_protocol(venue_harness: VenueHarness) -> None:
    assert isinstance(venue_harness.venue, ExchangeAdapter)


def test_limit_order_fields(venue_harness: VenueHarness) -> None:
    h = venue_harness
    cid = h.new_id("lim")
    o = h.venue.place_limit_postonly(
        symbol=h.symbol,
        side="BUY",
        qty=h.qty,
        price=h.ticks(-50),
        tif="GTX",
        reduce_only=False,
        client_order_id=cid,
    )
    for key in ("order_id", "client_order_id", "status"):
        assert key in o, key
    assert o["client_order_id"] == cid
    assert o["status"] == "NEW"
    assert isinstance(o["order_id"], str) and o["order_id"]


# ------------------------------------------------------------------ §0.3 idempotency


def test_same_client_order_id_twice_while_open_is_one_order(venue_harness: VenueHarness) -> None:
    """Binance refuses an open order's id (-4116); an adapter may resolve that to the order."""
    h = venue_harness
    cid = h.new_id("dup")
    kw: dict[str, Any] = dict(
        symbol=h.symbol,
        side="BUY",
        qty=h.qty,
        price=h.ticks(-50),
        tif="GTX",
        reduce_only=False,
        client_order_id=cid,
    )
    first = h.venue.place_limit_postonly(**kw)
    try:
        second = h.venue.place_limit_postonly(**kw)
    except OrderRejected as exc:
        assert exc.code == -4116
    else:
        assert second["order_id"] == first["order_id"]
    h.settle()
    mine = [o for o in h.venue.get_open_orders(h.symbol) if o["client_order_id"] == cid]
    assert len(mine) == 1


def test_a_filled_market_id_sent_again(venue_harness: VenueHarness) -> None:
    """Binance accepts a filled order's id again and executes it again: only an adapter that
    remembers the ids it placed (BinanceAdapter, within one process) answers with the first
    order. Callers never resend an id that may have filled without looking it up first."""
    h = venue_harness
    cid = h.new_id("mkt")
    kw: dict[str, Any] = dict(
        symbol=h.symbol, side="BUY", qty=h.qty, reduce_only=False, client_order_id=cid
    )
    first = h.venue.place_market(**kw)
    second = h.venue.place_market(**kw)
    h.settle()
    pos = _position(h)
    assert pos["side"] == "LONG"
    if h.remembers_placed_ids:
        assert second["order_id"] == first["order_id"]
        assert pos["qty"] == pytest.approx(h.qty)
    else:
        assert second["order_id"] != first["order_id"]
        assert pos["qty"] == pytest.approx(2 * h.qty)


def test_same_client_algo_id_twice_is_one_algo(venue_harness: VenueHarness) -> None:
    h = venue_harness
    h.make_position("LONG", h.qty)
    cid = h.new_id("sl")
    kw: dict[str, Any] = dict(
        symbol=h.symbol,
        side="SELL",
        qty=h.qty,
        stop_price=h.ticks(-100),
        reduce_only=True,
        client_algo_id=cid,
        working_type="MARK_PRICE",
    )
    first = h.venue.place_algo_stop(**kw)
    second = h.venue.place_algo_stop(**kw)
    for key in ("algo_id", "client_algo_id", "status"):
        assert key in first, key
    assert second["algo_id"] == first["algo_id"]
    h.settle()
    assert _open_algo_ids(h).count(cid) == 1


def test_place_limit_postonly_refuses_any_other_time_in_force(venue_harness: VenueHarness) -> None:
    """§1.3: the post-only entry path never sends a taker-capable order (no GTC/IOC/FOK)."""
    h = venue_harness
    writes = h.writes()
    for tif in ("GTC", "IOC", "FOK", "gtx"):
        with pytest.raises(ValueError, match="post-only"):
            h.venue.place_limit_postonly(
                symbol=h.symbol,
                side="BUY",
                qty=h.qty,
                price=h.ticks(-50),
                tif=tif,
                reduce_only=False,
                client_order_id=h.new_id("tif"),
            )
    assert h.writes() == writes  # refused before anything was sent


# ------------------------------------------------------------------ cancel = idempotent success


def test_cancel_missing_order_is_success(venue_harness: VenueHarness) -> None:
    h = venue_harness
    r1 = h.venue.cancel_order(symbol=h.symbol, order_id=None, client_order_id=h.new_id("nope"))
    r2 = h.venue.cancel_order(symbol=h.symbol, order_id="987654321", client_order_id=None)
    assert isinstance(r1, dict) and isinstance(r2, dict)
    assert r1["status"] in ("NOT_FOUND", "CANCELED")
    assert r2["status"] in ("NOT_FOUND", "CANCELED")


def test_cancel_twice_and_cancel_filled_are_success(venue_harness: VenueHarness) -> None:
    h = venue_harness
    cid = h.new_id("cx")
    o = h.venue.place_limit_postonly(
        symbol=h.symbol,
        side="BUY",
        qty=h.qty,
        price=h.ticks(-50),
        tif="GTX",
        reduce_only=False,
        client_order_id=cid,
    )
    r1 = h.venue.cancel_order(symbol=h.symbol, order_id=o["order_id"], client_order_id=None)
    r2 = h.venue.cancel_order(symbol=h.symbol, order_id=None, client_order_id=cid)
    assert r1["status"] == "CANCELED"
    assert r2["status"] == "CANCELED"
    h.settle()
    assert cid not in [x["client_order_id"] for x in h.venue.get_open_orders(h.symbol)]
    filled = h.venue.place_market(
        symbol=h.symbol, side="BUY", qty=h.qty, reduce_only=False, client_order_id=h.new_id("f")
    )
    r3 = h.venue.cancel_order(symbol=h.symbol, order_id=filled["order_id"], client_order_id=None)
    assert r3["status"] == "FILLED"


def test_cancel_missing_algo_is_success(venue_harness: VenueHarness) -> None:
    h = venue_harness
    r1 = h.venue.cancel_algo(symbol=h.symbol, algo_id=None, client_algo_id=h.new_id("nope"))
    r2 = h.venue.cancel_algo(symbol=h.symbol, algo_id="987654321", client_algo_id=None)
    assert r1["status"] in ("NOT_FOUND", "CANCELED")
    assert r2["status"] in ("NOT_FOUND", "CANCELED")


def test_cancel_algo_twice_is_success(venue_harness: VenueHarness) -> None:
    h = venue_harness
    h.make_position("LONG", h.qty)
    cid = h.new_id("sl")
    a = h.venue.place_algo_stop(
        symbol=h.symbol,
        side="SELL",
        qty=h.qty,
        stop_price=h.ticks(-100),
        reduce_only=True,
        client_algo_id=cid,
        working_type="MARK_PRICE",
    )
    r1 = h.venue.cancel_algo(symbol=h.symbol, algo_id=a["algo_id"], client_algo_id=None)
    r2 = h.venue.cancel_algo(symbol=h.symbol, algo_id=None, client_algo_id=cid)
    assert r1["status"] == "CANCELED"
    assert r2["status"] == "CANCELED"
    h.settle()
    assert cid not in _open_algo_ids(h)


def test_get_order_by_client_id(venue_harness: VenueHarness) -> None:
    h = venue_harness
    cid = h.new_id("q")
    o = h.venue.place_limit_postonly(
        symbol=h.symbol,
        side="BUY",
        qty=h.qty,
        price=h.ticks(-50),
        tif="GTX",
        reduce_only=False,
        client_order_id=cid,
    )
    found = h.venue.get_order(symbol=h.symbol, client_order_id=cid)
    assert found is not None and found["order_id"] == o["order_id"]
    assert h.venue.get_order(symbol=h.symbol, client_order_id=h.new_id("never")) is None


def test_open_orders_list_and_cancel(venue_harness: VenueHarness) -> None:
    h = venue_harness
    cids = [h.new_id("oo") for _ in range(2)]
    for i, cid in enumerate(cids):
        h.venue.place_limit_postonly(
            symbol=h.symbol,
            side="BUY",
            qty=h.qty,
            price=h.ticks(-50 - i),
            tif="GTX",
            reduce_only=False,
            client_order_id=cid,
        )
    h.settle()
    listed = {o["client_order_id"]: o for o in h.venue.get_open_orders(h.symbol)}
    assert set(cids) <= set(listed)
    for o in listed.values():
        for key in ("order_id", "client_order_id", "status", "side", "price", "qty"):
            assert key in o, key
    h.venue.cancel_order(symbol=h.symbol, order_id=None, client_order_id=cids[0])
    h.settle()
    left = [o["client_order_id"] for o in h.venue.get_open_orders(h.symbol)]
    assert cids[0] not in left and cids[1] in left


# ------------------------------------------------------------------ algo visibility


def test_algo_visible_after_place(venue_harness: VenueHarness) -> None:
    h = venue_harness
    h.make_position("LONG", h.qty)
    cid = h.new_id("vis")
    h.venue.place_algo_stop(
        symbol=h.symbol,
        side="SELL",
        qty=h.qty,
        stop_price=h.ticks(-100),
        reduce_only=True,
        client_algo_id=cid,
        working_type="MARK_PRICE",
    )
    assert _eventually(lambda: cid in _open_algo_ids(h), timeout=1.0)
    a = next(x for x in h.venue.get_open_algo_orders(h.symbol) if x["client_algo_id"] == cid)
    for key in ("algo_id", "client_algo_id", "status", "side", "stop_price", "working_type"):
        assert key in a, key
    assert a["working_type"] == "MARK_PRICE"
    assert a["stop_price"] == pytest.approx(h.ticks(-100))


# ------------------------------------------------------------------ recover_protection


def test_recover_protection_created(venue_harness: VenueHarness) -> None:
    h = venue_harness
    h.make_position("LONG", h.qty)
    spec = _stop(h, h.new_id("rp"))
    res = h.venue.recover_protection(h.symbol, spec.to_dict())
    assert res["action"] == "CREATED"
    assert res["algo"]["client_algo_id"] == spec.client_algo_id
    h.settle()
    assert _open_algo_ids(h) == [spec.client_algo_id]


def test_recover_protection_confirmed_sends_no_write(venue_harness: VenueHarness) -> None:
    h = venue_harness
    h.make_position("LONG", h.qty)
    spec = _stop(h, h.new_id("rp"))
    h.venue.recover_protection(h.symbol, spec)
    h.settle()
    before = h.writes()
    res = h.venue.recover_protection(h.symbol, spec)
    assert res["action"] == "CONFIRMED"
    assert res["algo"]["client_algo_id"] == spec.client_algo_id
    assert h.writes() == before
    # Less than one tick / one step away is still the same stop.
    nudged = StopSpec(
        side=spec.side,
        qty=spec.qty + h.step_size * 0.4,
        stop_price=spec.stop_price + h.tick_size * 0.4,
        working_type=spec.working_type,
        client_algo_id=spec.client_algo_id,
    )
    assert h.venue.recover_protection(h.symbol, nudged)["action"] == "CONFIRMED"
    assert h.writes() == before


def test_recover_protection_replaced_places_new_before_cancelling_old(
    venue_harness: VenueHarness,
) -> None:
    h = venue_harness
    h.make_position("LONG", h.qty)
    spec = _stop(h, h.new_id("rp"))
    old = h.venue.recover_protection(h.symbol, spec)["algo"]
    h.settle()
    moved = StopSpec(
        side="SELL",
        qty=spec.qty,
        stop_price=spec.stop_price + h.tick_size * 20,
        working_type="MARK_PRICE",
        client_algo_id=spec.client_algo_id,
    )
    res = h.venue.recover_protection(h.symbol, moved)
    assert res["action"] == "REPLACED"
    new = res["algo"]
    assert new["algo_id"] != old["algo_id"]
    assert new["stop_price"] == pytest.approx(moved.stop_price)
    assert len(new["client_algo_id"]) <= 36
    # New before old: the replacement was created first (a higher id), then the old one went.
    assert int(new["algo_id"]) > int(old["algo_id"])
    h.settle()
    assert _open_algo_ids(h) == [new["client_algo_id"]]
    old_now = h.venue.get_algo_order(symbol=h.symbol, algo_id=old["algo_id"])
    assert old_now is not None and old_now["status"] == "CANCELED"
    # Recovering again with the new parameters is a no-op.
    again = StopSpec(**{**moved.to_dict(), "client_algo_id": new["client_algo_id"]})
    before = h.writes()
    assert h.venue.recover_protection(h.symbol, again)["action"] == "CONFIRMED"
    assert h.writes() == before


def test_recover_protection_replaced_on_qty_and_side(venue_harness: VenueHarness) -> None:
    h = venue_harness
    h.make_position("LONG", h.qty * 2)
    spec = _stop(h, h.new_id("rp"), qty=h.qty)
    h.venue.recover_protection(h.symbol, spec)
    bigger = StopSpec(**{**spec.to_dict(), "qty": h.qty * 2})
    res = h.venue.recover_protection(h.symbol, bigger)
    assert res["action"] == "REPLACED"
    assert res["algo"]["qty"] == pytest.approx(h.qty * 2)
    mark_vs_contract = StopSpec(**{**bigger.to_dict(), "working_type": "CONTRACT_PRICE"})
    res2 = h.venue.recover_protection(
        h.symbol, {**mark_vs_contract.to_dict(), "client_algo_id": res["algo"]["client_algo_id"]}
    )
    assert res2["action"] == "REPLACED"
    assert res2["algo"]["working_type"] == "CONTRACT_PRICE"
    h.settle()
    assert len(h.venue.get_open_algo_orders(h.symbol)) == 1


def test_recover_protection_adopts_open_stop_with_other_id(venue_harness: VenueHarness) -> None:
    """After a restart the shard may carry a new id; an equivalent open stop is confirmed."""
    h = venue_harness
    h.make_position("LONG", h.qty)
    first = _stop(h, h.new_id("rp"))
    h.venue.recover_protection(h.symbol, first)
    h.settle()
    other = StopSpec(**{**first.to_dict(), "client_algo_id": h.new_id("rp2")})
    before = h.writes()
    res = h.venue.recover_protection(h.symbol, other)
    assert res["action"] == "CONFIRMED"
    assert res["algo"]["client_algo_id"] == first.client_algo_id
    assert h.writes() == before


# ------------------------------------------------------------------ post-only


def test_post_only_that_would_take_is_rejected(venue_harness: VenueHarness) -> None:
    h = venue_harness
    cid = h.new_id("gtx")
    with pytest.raises(WouldTakeLiquidity) as ei:
        h.venue.place_limit_postonly(
            symbol=h.symbol,
            side="BUY",
            qty=h.qty,
            price=h.ticks(+50),
            tif="GTX",
            reduce_only=False,
            client_order_id=cid,
        )
    assert ei.value.code == -5022
    h.settle()
    assert cid not in [o["client_order_id"] for o in h.venue.get_open_orders(h.symbol)]
    assert _position(h)["qty"] == 0


def test_post_only_resting_then_filled_when_traded_through(venue_harness: VenueHarness) -> None:
    h = venue_harness
    cid = h.new_id("rest")
    px = h.ticks(-10)
    h.venue.place_limit_postonly(
        symbol=h.symbol,
        side="BUY",
        qty=h.qty,
        price=px,
        tif="GTX",
        reduce_only=False,
        client_order_id=cid,
    )
    h.set_price(h.symbol, h.ticks(-20))
    h.settle()
    o = _eventually(
        lambda: (
            (x := h.venue.get_order(symbol=h.symbol, client_order_id=cid)) is not None
            and x["status"] == "FILLED"
            and x
        )
    )
    assert o and o["executed_qty"] == pytest.approx(h.qty)
    pos = _position(h)
    assert pos["side"] == "LONG"
    assert pos["entry_price"] == pytest.approx(px)


# ------------------------------------------------------------------ reduceOnly


def test_reduce_only_rejected_when_flat(venue_harness: VenueHarness) -> None:
    h = venue_harness
    with pytest.raises(OrderRejected) as ei:
        h.venue.place_market(
            symbol=h.symbol,
            side="SELL",
            qty=h.qty,
            reduce_only=True,
            client_order_id=h.new_id("ro"),
        )
    assert ei.value.code == -2022
    assert _position(h)["qty"] == 0


def test_reduce_only_rejected_when_it_would_increase(venue_harness: VenueHarness) -> None:
    h = venue_harness
    h.make_position("LONG", h.qty)
    with pytest.raises(OrderRejected) as ei:
        h.venue.place_market(
            symbol=h.symbol, side="BUY", qty=h.qty, reduce_only=True, client_order_id=h.new_id("r")
        )
    assert ei.value.code == -2022
    with pytest.raises(OrderRejected) as ei2:
        h.venue.place_limit_postonly(
            symbol=h.symbol,
            side="BUY",
            qty=h.qty,
            price=h.ticks(-50),
            tif="GTX",
            reduce_only=True,
            client_order_id=h.new_id("r"),
        )
    assert ei2.value.code == -2022
    h.settle()
    assert _position(h)["qty"] == pytest.approx(h.qty)


def test_reduce_only_market_larger_than_position_is_clipped(venue_harness: VenueHarness) -> None:
    h = venue_harness
    h.make_position("LONG", h.qty)
    o = h.venue.place_market(
        symbol=h.symbol, side="SELL", qty=h.qty * 3, reduce_only=True, client_order_id=h.new_id("c")
    )
    assert o["status"] == "FILLED"
    h.settle()
    pos = _position(h)
    assert pos["qty"] == pytest.approx(0.0)
    assert pos["side"] == "NONE"


def test_close_position_with_reduce_only_is_rejected(venue_harness: VenueHarness) -> None:
    h = venue_harness
    h.make_position("LONG", h.qty)
    cid = h.new_id("cp")
    with pytest.raises(OrderRejected) as ei:
        h.venue.place_algo_stop(
            symbol=h.symbol,
            side="SELL",
            qty=h.qty,
            stop_price=h.ticks(-100),
            reduce_only=True,
            client_algo_id=cid,
            working_type="MARK_PRICE",
            close_position=True,
        )
    assert ei.value.code == -1106
    ok = h.venue.place_algo_stop(
        symbol=h.symbol,
        side="SELL",
        qty=h.qty,
        stop_price=h.ticks(-100),
        reduce_only=False,
        client_algo_id=h.new_id("cp"),
        working_type="MARK_PRICE",
        close_position=True,
    )
    assert ok["status"] == "NEW" and ok["close_position"] is True


def test_stop_triggers_and_closes_position(venue_harness: VenueHarness) -> None:
    h = venue_harness
    h.make_position("LONG", h.qty)
    cid = h.new_id("trg")
    stop = h.ticks(-30)
    h.venue.place_algo_stop(
        symbol=h.symbol,
        side="SELL",
        qty=h.qty,
        stop_price=stop,
        reduce_only=True,
        client_algo_id=cid,
        working_type="MARK_PRICE",
    )
    h.set_price(h.symbol, h.ticks(-60))
    h.settle()
    assert _eventually(lambda: _position(h)["qty"] == 0)
    assert cid not in _open_algo_ids(h)
    a = h.venue.get_algo_order(symbol=h.symbol, client_algo_id=cid)
    assert a is not None and a["status"] in ("TRIGGERED", "FINISHED")


# ------------------------------------------------------------------ account fields


def test_balances_fields(venue_harness: VenueHarness) -> None:
    b = venue_harness.venue.get_balances()
    for key in ("total_equity", "available_balance", "margin_used"):
        assert key in b, key
        assert isinstance(b[key], float), key
    assert b["total_equity"] > 0


def test_positions_fields(venue_harness: VenueHarness) -> None:
    h = venue_harness
    h.make_position("SHORT", h.qty)
    h.settle()
    pos = h.venue.get_positions()
    assert isinstance(pos, dict)
    p = pos[h.symbol]
    for key in ("side", "qty", "entry_price", "unrealized_pnl", "leverage"):
        assert key in p, key
    assert p["side"] == "SHORT"
    assert p["qty"] == pytest.approx(h.qty)
    assert p["entry_price"] > 0
    b = h.venue.get_balances()
    assert b["margin_used"] > 0
    assert b["available_balance"] <= b["total_equity"]
