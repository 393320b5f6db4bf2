"""The SimVenue's Algo stops (§1.4: STOP_MARKET, reduce-only or closePosition, visibility lag
and lost acknowledgements from fault injection, stops the venue removes by itself) and
protection recovery (§1.5, the shared `venues.protection.recover_protection`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from atlas_actors.domain.stops import StopSpec
from atlas_actors.venues.base import VenueEvent, replacement_client_id
from atlas_actors.venues.protection import ProtectionCalls, recover_protection
from atlas_actors.venues.sim.book import Algo
from atlas_actors.venues.sim.core import reject
from atlas_actors.venues.sim.matching import EXCHANGE_REMOVALS, SimMatching


class SimAlgos(SimMatching):
    """Placing, cancelling and reading algo stops; idempotent on the client algo id."""

    # ================================================================== algo orders (§1.4)

    def place_algo_stop(
        self,
        *,
        symbol: str,
        side: str,
        qty: float,
        stop_price: float,
        reduce_only: bool,
        client_algo_id: str,
        working_type: str,
        close_position: bool = False,
    ) -> dict[str, Any]:
        """Algo STOP_MARKET. Atlas stops must be reduce_only or close_position (not both: -1106);
        with close_position the qty is ignored (the whole position closes)."""
        plan = self._begin("place_algo_stop")
        events: list[VenueEvent] = []
        with self._lock:
            aid = self._algos.by_cid.get(client_algo_id)
            if aid is not None:
                result = self._algos.by_id[aid].to_dict()
            else:
                result = self._new_algo(
                    symbol,
                    side,
                    qty,
                    stop_price,
                    bool(reduce_only),
                    client_algo_id,
                    working_type,
                    bool(close_position),
                    events,
                    invisible=plan is not None and plan.kind == "invisible_algo",
                )
                if plan is not None and plan.kind == "exchange_cancels_algo":
                    self._doom(symbol, client_algo_id, plan.msg)
        self._dispatch(events)
        self._end(plan)
        return result

    def _doom(self, symbol: str, client_algo_id: str, status: str | None) -> None:
        """Fault exchange_cancels_algo: the venue will remove this open stop by itself once it
        has been listed (seen) - at the next open-algo read or bar of the symbol. `status`
        (the armed fault's msg) picks how; without it the kinds take turns."""
        al = self._algos.find(symbol, None, client_algo_id)
        if al is None or al.status != "NEW" or al.removal is not None:
            return
        if status is None:
            n = self.faults.injected["exchange_cancels_algo"] - 1
            status = EXCHANGE_REMOVALS[n % len(EXCHANGE_REMOVALS)]
        if status not in EXCHANGE_REMOVALS:
            raise ValueError(
                f"exchange_cancels_algo: status must be one of {', '.join(EXCHANGE_REMOVALS)}, "
                f"got {status!r}"
            )
        al.removal = status
        self._doomed += 1

    def exchange_cancels_algo(
        self, symbol: str, client_algo_id: str, status: str = "EXPIRED"
    ) -> bool:
        """The venue removes the open algo stop `client_algo_id` by itself, now: CANCELED,
        EXPIRED, REJECTED, or FINISHED (it triggers and its child order expires unfilled,
        aq = 0), with the matching ALGO_UPDATEs. Not a request: no fault applies to it.
        False when no such open stop exists."""
        if status not in EXCHANGE_REMOVALS:
            raise ValueError(
                f"status must be one of {', '.join(EXCHANGE_REMOVALS)}, got {status!r}"
            )
        events: list[VenueEvent] = []
        with self._lock:
            al = self._algos.find(symbol, None, client_algo_id)
            if al is None or al.status != "NEW" or al.algo_id not in self._syms[symbol].algos:
                return False
            self._remove_algo(self._syms[symbol], al, status, events)
        self._dispatch(events)
        return True

    def _new_algo(
        self,
        symbol: str,
        side: str,
        qty: float,
        stop_price: float,
        reduce_only: bool,
        cid: str,
        working_type: str,
        close_position: bool,
        events: list[VenueEvent],
        *,
        invisible: bool,
    ) -> dict[str, Any]:
        self._validate_common(side, cid)
        if working_type not in ("MARK_PRICE", "CONTRACT_PRICE"):
            raise reject(
                -1102, f"working_type must be MARK_PRICE or CONTRACT_PRICE, got {working_type!r}"
            )
        if close_position and reduce_only:
            raise reject(-1106, "reduceOnly cannot be sent with closePosition=true")
        if not close_position and not reduce_only:
            raise reject(
                -2010, "Atlas stops must be reduce_only=True or close_position=True (never opening)"
            )
        st = self._sym(symbol)
        f = self._filters(st, st.last if st.last is not None else float(stop_price))
        sp = f.check_price(float(stop_price), what="stop price")
        q = 0.0 if close_position else f.check_qty(float(qty))
        ref = st.mark if working_type == "MARK_PRICE" else st.last
        if ref is not None and (sp >= ref if side == "SELL" else sp <= ref):
            raise reject(-2021, f"{symbol} {side} stop {sp} vs {working_type.lower()} {ref}")
        now = self._now_ms()
        al = Algo(
            algo_id=str(self._next_algo_id),
            client_algo_id=cid,
            symbol=symbol,
            side=side,
            stop_price=sp,
            qty=q,
            working_type=working_type,
            reduce_only=reduce_only,
            close_position=close_position,
            status="NEW",
            create_ms=now,
            update_ms=now,
        )
        self._next_algo_id += 1
        if invisible:
            # The exchange acknowledged and then lost it: nothing is recorded.
            return al.to_dict()
        al.visible_at = self.faults.lag_visible_at()
        self._algos.add(al)
        st.algos[al.algo_id] = al
        self._rewatch(st)
        if self._user_on():
            events.append(self._algo_event(al))
        return al.to_dict()

    def cancel_algo(
        self, *, symbol: str, algo_id: str | None, client_algo_id: str | None
    ) -> dict[str, Any]:
        """Cancel; an unknown/triggered/cancelled algo is success: its status or NOT_FOUND."""
        plan = self._begin("cancel_algo")
        if algo_id is None and client_algo_id is None:
            raise reject(-1102, "send algo_id or client_algo_id")
        events: list[VenueEvent] = []
        with self._lock:
            al = self._algos.find(symbol, algo_id, client_algo_id)
            if al is None:
                result: dict[str, Any] = {
                    "status": "NOT_FOUND",
                    "algo_id": algo_id,
                    "client_algo_id": client_algo_id,
                    "symbol": symbol,
                    "canceled_now": False,
                }
            elif al.status == "NEW":
                st = self._syms[symbol]
                self._finish_algo(st, al, "CANCELED", events)
                self._rewatch(st)
                result = {**al.to_dict(), "canceled_now": True}
            else:
                result = {**al.to_dict(), "canceled_now": False}
        self._dispatch(events)
        self._end(plan)
        return result

    def get_open_algo_orders(self, symbol: str) -> list[dict[str, Any]]:
        plan = self._begin("get_open_algo_orders")
        events: list[VenueEvent] = []
        with self._lock:
            st = self._syms.get(symbol)
            out: list[dict[str, Any]] = []
            if st is not None:
                if self._doomed:
                    self._remove_doomed(st, events)
                vis = self.faults.is_visible
                for a in st.algos.values():
                    if vis(a.visible_at):
                        a.listed = True
                        out.append(a.to_dict())
        self._dispatch(events)
        self._end(plan)
        return out

    def get_algo_order(
        self, *, symbol: str, algo_id: str | None = None, client_algo_id: str | None = None
    ) -> dict[str, Any] | None:
        plan = self._begin("get_algo_order")
        with self._lock:
            al = self._algos.find(symbol, algo_id, client_algo_id)
            out = al.to_dict() if al is not None and self.faults.is_visible(al.visible_at) else None
        self._end(plan)
        return out

    # ================================================================== recovery (§1.5)

    def recover_protection(
        self, symbol: str, desired_sl: StopSpec | Mapping[str, Any]
    ) -> dict[str, Any]:
        """CREATED / REPLACED / CONFIRMED: `venues.protection.recover_protection`."""

        def step_and_tick() -> tuple[float, float]:
            f = self.get_filters(symbol)
            return float(f.step_size), float(f.tick_size)

        calls = ProtectionCalls(
            open_algos=lambda: self.get_open_algo_orders(symbol),
            step_and_tick=step_and_tick,
            place=lambda spec, cid: self._place_spec(symbol, spec, cid),
            cancel=lambda a: self.cancel_algo(
                symbol=symbol, algo_id=a["algo_id"], client_algo_id=a["client_algo_id"]
            ),
            free_client_id=self._free_algo_id,
            sleep=self.faults.sleep,
            clock=self.faults.lag_clock,
        )
        return recover_protection(calls, symbol, desired_sl)

    def _free_algo_id(self, wanted: str) -> str:
        with self._lock:
            if wanted not in self._algos.by_cid:
                return wanted
            n = 2
            while True:
                cid = replacement_client_id(wanted, n)
                if cid not in self._algos.by_cid:
                    return cid
                n += 1

    def _place_spec(self, symbol: str, spec: StopSpec, cid: str) -> dict[str, Any]:
        return self.place_algo_stop(
            symbol=symbol,
            side=spec.side,
            qty=spec.qty,
            stop_price=spec.stop_price,
            reduce_only=True,
            client_algo_id=cid,
            working_type=spec.working_type,
        )
