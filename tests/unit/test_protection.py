"""recover_protection, written once (venues/protection.py) for SimVenue and BinanceAdapter:
the covering rule, every superseded stop cancelled, and the old stop cancelled only once the
new one is listed in open algo orders."""

from __future__ import annotations

from typing import Any

from atlas_actors.domain.stops import StopSpec
from atlas_actors.venues.sim import SimVenue

SYM = "BTCUSDT"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def long_position(v: SimVenue, qty: float = 0.01) -> None:
    v.set_price(SYM, 50_000.0)
    v.place_market(symbol=SYM, side="BUY", qty=qty, reduce_only=False, client_order_id="e-1")


def stop(v: SimVenue, cid: str, qty: float, price: float = 49_000.0) -> dict[str, Any]:
    return v.place_algo_stop(
        symbol=SYM,
        side="SELL",
        qty=qty,
        stop_price=price,
        reduce_only=True,
        client_algo_id=cid,
        working_type="MARK_PRICE",
    )


def spec(cid: str = "want", qty: float = 0.01) -> StopSpec:
    return StopSpec(side="SELL", qty=qty, stop_price=49_000.0, client_algo_id=cid)


def open_ids(v: SimVenue) -> list[str]:
    return sorted(a["client_algo_id"] for a in v.get_open_algo_orders(SYM))


def test_a_token_stop_is_replaced_and_every_superseded_stop_is_cancelled() -> None:
    v = SimVenue(seed=1)
    long_position(v)
    stop(v, "token-1", 0.001)
    stop(v, "token-2", 0.002, price=48_000.0)
    res = v.recover_protection(SYM, spec())
    assert res["action"] == "REPLACED"
    assert open_ids(v) == [res["algo"]["client_algo_id"]]  # both old ones went, not only one
    for cid in ("token-1", "token-2"):
        assert v.get_algo_order(symbol=SYM, client_algo_id=cid)["status"] == "CANCELED"


def test_a_covering_stop_with_another_id_is_confirmed_without_writes() -> None:
    v = SimVenue(seed=1)
    long_position(v)
    stop(v, "token", 0.001)
    stop(v, "whole", 0.01)
    writes = v.write_count
    res = v.recover_protection(SYM, spec())
    assert res["action"] == "CONFIRMED" and res["algo"]["client_algo_id"] == "whole"
    assert v.write_count == writes


def test_the_old_stop_stays_until_the_new_one_is_listed() -> None:
    clock = Clock()
    v = SimVenue(seed=1)
    v.faults.lag_clock = clock  # stands still: the replacement is never listed
    v.faults.sleep = lambda s: None
    long_position(v)
    stop(v, "old", 0.01, price=48_000.0)
    v.faults.visibility_lag_ms = 300.0
    res = v.recover_protection(SYM, spec())
    assert res["action"] == "REPLACED"
    assert [a["client_algo_id"] for a in res["kept"]] == ["old"]
    assert v.get_algo_order(symbol=SYM, client_algo_id="old")["status"] == "NEW"
    clock.t += 1.0
    assert open_ids(v) == sorted(["old", res["algo"]["client_algo_id"]])
