"""The SimVenue's regular orders (§1.3): post-only/IOC/FOK limits, market orders, cancels and
queries."""

from __future__ import annotations

from typing import Any

from atlas_actors.venues.base import VenueEvent, WouldTakeLiquidity, check_post_only
from atlas_actors.venues.binance.codes import BINANCE_MESSAGES
from atlas_actors.venues.sim.book import OPEN_STATUSES, Order
from atlas_actors.venues.sim.core import reject
from atlas_actors.venues.sim.matching import SimMatching

_TIFS = ("GTX", "GTC", "IOC", "FOK")


class SimOrders(SimMatching):
    """Placing, cancelling and reading regular orders. Client ids follow Binance: unique among
    OPEN orders only (-4116), so a finished order's id executes again when sent again."""

    def place_limit_postonly(
        self,
        *,
        symbol: str,
        side: str,
        qty: float,
        price: float,
        tif: str,
        reduce_only: bool,
        client_order_id: str,
    ) -> dict[str, Any]:
        check_post_only(symbol, tif)
        plan = self._begin("place_limit_postonly")

        def apply() -> dict[str, Any]:
            events: list[VenueEvent] = []
            with self._lock:
                self._refuse_open_duplicate(client_order_id)
                result = self._new_limit(
                    symbol, side, qty, price, tif, reduce_only, client_order_id, events
                )
            self._dispatch(events)
            return result

        if plan is not None and plan.kind == "late_landing":
            self._land_later(plan, apply)
        result = apply()
        self._end(plan)
        return result

    def _refuse_open_duplicate(self, cid: str) -> None:
        """Binance refuses a client id only while the order that used it is open (-4116); a
        filled, cancelled or expired order's id is accepted again and executes again."""
        oid = self._orders.by_cid.get(cid)
        if oid is not None and self._orders.by_id[oid].status in OPEN_STATUSES:
            raise reject(-4116, f"client id {cid} belongs to open order {oid}")

    def _new_limit(
        self,
        symbol: str,
        side: str,
        qty: float,
        price: float,
        tif: str,
        reduce_only: bool,
        cid: str,
        events: list[VenueEvent],
    ) -> dict[str, Any]:
        self._validate_common(side, cid)
        if tif not in _TIFS:
            raise reject(-1115, f"tif must be one of {', '.join(_TIFS)}, got {tif!r}")
        st = self._sym(symbol)
        f = self._filters(st, st.last if st.last is not None else float(price))
        q, p = f.check_order(qty=float(qty), price=float(price), reduce_only=bool(reduce_only))
        assert p is not None
        if reduce_only and self._closable(st, side) <= 0.0:
            raise reject(-2022, f"{symbol}: no {('SHORT' if side == 'BUY' else 'LONG')} to reduce")
        ref = st.last
        crosses = ref is not None and (p >= ref if side == "BUY" else p <= ref)
        if crosses and tif == "GTX":
            raise WouldTakeLiquidity(
                -5022,
                f"{BINANCE_MESSAGES[-5022]} {symbol} {side} {p} vs last {ref}",
            )
        if not reduce_only:
            self._margin_check(st, side, q, p)
        now = self._now_ms()
        o = Order(
            order_id=self._new_order_id(),
            client_order_id=cid,
            symbol=symbol,
            side=side,
            type="LIMIT",
            price=p,
            qty=q,
            status="NEW",
            reduce_only=bool(reduce_only),
            tif=tif,
            create_ms=now,
            update_ms=now,
        )
        self._orders.add(o)
        if self._user_on():
            events.append(self._order_event(o, "NEW", 0.0, 0.0, 0.0, 0.0))
        if crosses:
            assert ref is not None
            fill_q = min(q, self._closable(st, side)) if reduce_only else q
            self._execute(st, o, fill_q, ref, self.fee_bps, events)
        elif tif in ("IOC", "FOK"):
            self._expire_order(st, o, events)
        else:
            st.orders[o.order_id] = o
            self._rewatch(st)
        return o.to_dict()

    def place_market(
        self, *, symbol: str, side: str, qty: float, reduce_only: bool, client_order_id: str
    ) -> dict[str, Any]:
        plan = self._begin("place_market")

        def apply() -> dict[str, Any]:
            events: list[VenueEvent] = []
            with self._lock:
                self._refuse_open_duplicate(client_order_id)
                result = self._new_market(
                    symbol, side, qty, bool(reduce_only), client_order_id, events
                )
            self._dispatch(events)
            return result

        if plan is not None and plan.kind == "late_landing":
            self._land_later(plan, apply)
        result = apply()
        self._end(plan)
        return result

    def _new_market(
        self, symbol: str, side: str, qty: float, reduce_only: bool, cid: str, events: list[Any]
    ) -> dict[str, Any]:
        self._validate_common(side, cid)
        st = self._sym(symbol)
        ref = st.last
        if ref is None:
            raise reject(-2010, f"{symbol}: no market price yet (feed a bar or set a price first)")
        f = self._filters(st, ref)
        q, _ = f.check_order(qty=float(qty), price=None, reduce_only=reduce_only, ref_price=ref)
        if reduce_only:
            closable = self._closable(st, side)
            if closable <= 0.0:
                raise reject(-2022, f"{symbol}: no position that a {side} can reduce")
            q = min(q, closable)
        else:
            self._margin_check(st, side, q, ref)
        slip = self.slippage_bps / 10_000.0
        px = ref * (1.0 + slip) if side == "BUY" else ref * (1.0 - slip)
        now = self._now_ms()
        o = Order(
            order_id=self._new_order_id(),
            client_order_id=cid,
            symbol=symbol,
            side=side,
            type="MARKET",
            price=0.0,
            qty=q,
            status="NEW",
            reduce_only=reduce_only,
            tif="GTC",
            create_ms=now,
            update_ms=now,
        )
        self._orders.add(o)
        if self._user_on():
            events.append(self._order_event(o, "NEW", 0.0, 0.0, 0.0, 0.0))
        self._execute(st, o, q, px, self.fee_bps, events)
        self._rewatch(st)
        return o.to_dict()

    def cancel_order(
        self, *, symbol: str, order_id: str | None, client_order_id: str | None
    ) -> dict[str, Any]:
        """Cancel; an unknown/filled/cancelled order is success: its status or NOT_FOUND."""
        plan = self._begin("cancel_order")
        if order_id is None and client_order_id is None:
            raise reject(-1102, "send order_id or client_order_id")
        events: list[VenueEvent] = []
        with self._lock:
            o = self._orders.find(symbol, order_id, client_order_id)
            if o is None:
                result: dict[str, Any] = {
                    "status": "NOT_FOUND",
                    "order_id": order_id,
                    "client_order_id": client_order_id,
                    "symbol": symbol,
                    "canceled_now": False,
                }
            elif o.status in OPEN_STATUSES:
                st = self._syms[symbol]
                st.orders.pop(o.order_id, None)
                o.status = "CANCELED"
                o.update_ms = self._now_ms()
                self._orders.retire(o, self.max_closed)
                self._rewatch(st)
                if self._user_on():
                    events.append(self._order_event(o, "CANCELED", 0.0, 0.0, 0.0, 0.0))
                result = {**o.to_dict(), "canceled_now": True}
            else:
                result = {**o.to_dict(), "canceled_now": False}
        self._dispatch(events)
        self._end(plan)
        return result

    def get_open_orders(self, symbol: str) -> list[dict[str, Any]]:
        plan = self._begin("get_open_orders")
        with self._lock:
            st = self._syms.get(symbol)
            out = [o.to_dict() for o in st.orders.values()] if st is not None else []
        self._end(plan)
        return out

    def get_order(
        self, *, symbol: str, order_id: str | None = None, client_order_id: str | None = None
    ) -> dict[str, Any] | None:
        plan = self._begin("get_order")
        with self._lock:
            o = self._orders.find(symbol, order_id, client_order_id)
            out = o.to_dict() if o is not None else None
        self._end(plan)
        return out
