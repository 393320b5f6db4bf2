"""Recovery after a (re)start: reconcile the shard with the venue (the truth), then make the
desired protective stop real with recover_protection.

`Recovery` is mixed into `SymbolEngine` and uses its attributes (symbol, venue, state, params)
and methods (ctx, now, _commit, _persist, _emit, _flatten).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from atlas_actors.domain import core
from atlas_actors.domain.commands import risk_record
from atlas_actors.domain.stops import StopSpec
from atlas_actors.venues.base import OrderRejected, RateLimited, VenueUnavailable
from atlas_actors.venues.priority import Priority, request_priority

T = TypeVar("T")
READ_TRIES = 4  # a recovery read refused by a brief 503 / rate limit is simply read again


def read_again(read: Callable[[], T], *, sleep: Callable[[float], None] = time.sleep) -> T:
    """A read (idempotent) retried a few times, quickly, over refusals that certainly did not
    apply anything: recovery - the path that puts a lost stop back - should not wait for the
    actor's slower recovery back-off over one refused read. A ban is not waited out here."""
    for attempt in range(READ_TRIES):
        try:
            return read()
        except (RateLimited, VenueUnavailable) as exc:
            wait = exc.retry_after if isinstance(exc, RateLimited) else 0.05 * 2**attempt
            if attempt == READ_TRIES - 1 or wait > 0.5:
                raise
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def _same_position(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return str(a.get("side")) == str(b.get("side")) and float(a.get("qty") or 0.0) == float(
        b.get("qty") or 0.0
    )


class Recovery:
    """SymbolEngine.recover and the venue reads it needs."""

    def recover(self) -> dict[str, Any]:
        """Reconcile the shard with the venue (the venue is the truth), then make the
        desired protective stop real with recover_protection. Returns a summary.
        The reconciliation reads yield to protection; the stop itself is protection."""
        with request_priority(Priority.BACKGROUND):
            venue_pos, open_orders, open_algos = self._read_venue()
        step = core.reconcile(
            self.state, venue_pos, open_orders, open_algos, self.ctx(), self.params, self.now()
        )
        self._commit(step)
        desired = core.desired_stop(self.state)
        out: dict[str, Any] = {"action": None, "algo": None, "desired": None}
        if desired is None:
            return out
        out["desired"] = desired.to_dict()
        try:
            with request_priority(Priority.PROTECTION):
                res = self.venue.recover_protection(self.symbol, desired)
        except OrderRejected as exc:
            # The stop cannot exist (its level is already crossed: -2021 "would immediately
            # trigger"): the position it should protect is closed now instead of crash-looping
            # on a recovery that can never succeed.
            out["action"] = "FLATTENED"
            out["flattened"] = self._flatten(
                f"recover_protection refused the stop at {desired.stop_price:g}: "
                f"{exc.msg} (code {exc.code})"
            )
            return out
        out.update(res)
        algo = res.get("algo") or {}
        cid = str(algo.get("client_algo_id") or desired.client_algo_id)
        ps = self.state.position_state
        ps = replace(
            ps,
            sl_algo=replace(
                ps.sl_algo,
                algo_id=None if algo.get("algo_id") is None else str(algo["algo_id"]),
                client_algo_id=cid,
            ),
            last_orders=replace(
                ps.last_orders,
                sl=replace(
                    ps.last_orders.sl,
                    algo_id=None if algo.get("algo_id") is None else str(algo["algo_id"]),
                    client_algo_id=cid,
                ),
            ),
        )
        self.state = replace(self.state, position_state=ps)
        self._persist(flush=True)
        self._emit(
            risk_record(
                event_type="SL_RECOVER",
                symbol=self.symbol,
                side=ps.side,
                qty=ps.qty_total,
                price=float(algo.get("stop_price") or desired.stop_price),
                order_ids=[] if algo.get("algo_id") is None else [str(algo["algo_id"])],
                client_ids=[cid],
                reason=f"recover_protection {res.get('action')}",
                ts=self.now(),
            )
        )
        return out

    def _read_venue(
        self,
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        """Position, open orders and open algos, read until the position held still."""
        venue_pos = self._venue_position()
        for _ in range(3):
            open_orders = read_again(lambda: self.venue.get_open_orders(self.symbol))
            open_algos = read_again(lambda: self.venue.get_open_algo_orders(self.symbol))
            # An order that fills between these reads is gone from the open orders while the
            # position read before does not show its fill yet (and its fill event is then no
            # longer ours to apply): read until the position held still across the reads.
            again = self._venue_position()
            if _same_position(venue_pos, again):
                break
            venue_pos = again
        return venue_pos, open_orders, open_algos

    def _venue_position(self) -> dict[str, Any]:
        pos = read_again(self.venue.get_positions).get(self.symbol)
        return pos or {"side": "NONE", "qty": 0.0, "entry_price": 0.0}

    def desired_stop(self) -> StopSpec | None:
        return core.desired_stop(self.state)
