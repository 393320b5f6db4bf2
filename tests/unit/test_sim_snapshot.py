"""SimVenue snapshot / from_snapshot: paper mode persists the book and resumes it."""

from __future__ import annotations

import msgpack
import pytest

from atlas_actors.venues.sim import SimVenue

SYM = "XRPUSDT"


def _bar(t: int, o: float, h: float, low: float, c: float) -> dict[str, float | int]:
    return {
        "open_time": t,
        "open": o,
        "high": h,
        "low": low,
        "close": c,
        "volume": 1.0,
        "close_time": t + 299_999,
    }


def test_snapshot_roundtrip_through_msgpack_resumes_the_book() -> None:
    v = SimVenue(seed=1)
    v.feed_bar(SYM, _bar(0, 1.0, 1.01, 0.99, 1.0))
    v.set_leverage(SYM, 5)
    v.place_market(symbol=SYM, side="BUY", qty=100.0, reduce_only=False, client_order_id="e")
    v.place_algo_stop(
        symbol=SYM,
        side="SELL",
        qty=100.0,
        stop_price=0.95,
        reduce_only=True,
        client_algo_id="sl",
        working_type="MARK_PRICE",
    )
    v.place_limit_postonly(
        symbol=SYM,
        side="SELL",
        qty=50.0,
        price=1.05,
        tif="GTX",
        reduce_only=True,
        client_order_id="tp",
    )
    v.set_funding_schedule(SYM, [(600_000, 0.0001), (900_000, 0.0002)])
    blob = msgpack.packb(v.snapshot())
    r = SimVenue.from_snapshot(msgpack.unpackb(blob))

    assert r.get_balances() == v.get_balances()
    assert r.get_positions() == v.get_positions()
    assert r.get_open_orders(SYM) == v.get_open_orders(SYM)
    assert r.get_open_algo_orders(SYM) == v.get_open_algo_orders(SYM)
    assert r.get_kline(SYM, "5m", 10) == v.get_kline(SYM, "5m", 10)
    assert r.now() == v.now()
    # The id book survives: the restored venue knows the same orders by client id.
    e = r.get_order(symbol=SYM, client_order_id="e")
    assert e is not None
    assert e["order_id"] == v.get_order(symbol=SYM, client_order_id="e")["order_id"]  # type: ignore[index]
    # Id counters continue: no id is ever reused.
    new = r.place_market(symbol=SYM, side="BUY", qty=10.0, reduce_only=False, client_order_id="n")
    assert int(new["order_id"]) > int(e["order_id"])
    # The resumed book keeps trading: TP fills, then the stop closes the rest.
    r.feed_bar(SYM, _bar(300_000, 1.0, 1.06, 1.0, 1.05))
    assert r.get_order(symbol=SYM, client_order_id="tp")["status"] == "FILLED"  # type: ignore[index]
    r.feed_bar(SYM, _bar(600_000, 1.0, 1.0, 0.9, 0.92))
    assert r.get_positions()[SYM]["side"] == "NONE"  # 110 - 50 left, the stop (100) closed it
    assert r.get_balances()["funding_paid"] != 0.0


def test_bad_snapshots_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="version"):
        SimVenue.from_snapshot({"version": 99})
    snap = SimVenue().snapshot()
    del snap["wallet"]
    with pytest.raises(ValueError, match="wallet"):
        SimVenue.from_snapshot(snap)


def test_from_snapshot_overrides_fees() -> None:
    v = SimVenue(fee_bps=4.0, slippage_bps=1.0)
    r = SimVenue.from_snapshot(v.snapshot(), fee_bps=10.0, slippage_bps=0.0)
    assert (r.fee_bps, r.slippage_bps, r.maker_fee_bps) == (10.0, 0.0, 2.0)
