"""The exchange closing positions by itself (reference §8): liquidation (`autoclose-…`,
execution type CALCULATED), auto-deleveraging (`adl_autoclose`, the same client id every
time) and delivery/settlement (`settlement_autoclose-…`). Each is an order of the venue's,
not of any client: an ORDER_TRADE_UPDATE with that client id plus an ACCOUNT_UPDATE with
the new position; resting reduce-only orders that can no longer reduce are knocked out, algo
stops (not closePosition) stay open, as on Binance."""

from __future__ import annotations

from typing import Any

from atlas_actors.venues.base import VenueEvent
from atlas_actors.venues.sim.book import Order
from atlas_actors.venues.sim.matching import SimMatching

VENUE_CLOSE_KINDS = ("liquidation", "adl", "settlement")
# how much of the position each closes when the caller does not say
DEFAULT_FRACTION = {"liquidation": 1.0, "adl": 0.5, "settlement": 1.0}


class SimVenueCloses(SimMatching):
    def venue_close(
        self, symbol: str, kind: str, *, fraction: float | None = None
    ) -> dict[str, Any] | None:
        """Close `fraction` of `symbol`'s position the way the exchange does by itself; the
        order's dict, or None when there is no position (not a request: no fault applies)."""
        if kind not in VENUE_CLOSE_KINDS:
            raise ValueError(f"venue close kind must be one of {VENUE_CLOSE_KINDS}, got {kind!r}")
        frac = DEFAULT_FRACTION[kind] if fraction is None else float(fraction)
        if not 0.0 < frac <= 1.0:
            raise ValueError(f"fraction must be within (0, 1], got {fraction!r}")
        events: list[VenueEvent] = []
        with self._lock:
            result = self._venue_close(symbol, kind, frac, events)
        self._dispatch(events)
        return result

    def _venue_close_any(self, kind: str) -> bool:
        """An armed venue-close fault: close the first symbol that holds a position."""
        events: list[VenueEvent] = []
        with self._lock:
            held = [s for s, st in self._syms.items() if st.pos]
            done = held and self._venue_close(held[0], kind, DEFAULT_FRACTION[kind], events)
        self._dispatch(events)
        return bool(done)

    def _venue_close(
        self, symbol: str, kind: str, frac: float, events: list[VenueEvent]
    ) -> dict[str, Any] | None:
        st = self._sym(symbol)
        if not st.pos:
            return None
        px = st.mark if st.mark is not None else st.last
        if px is None:
            return None
        f = self._filters(st, px)
        qty = abs(st.pos) if frac >= 1.0 else f.round_qty(abs(st.pos) * frac)
        if qty <= 0.0:
            qty = abs(st.pos)
        side = "SELL" if st.pos > 0 else "BUY"
        oid = self._new_order_id()
        cid = {
            "liquidation": f"autoclose-{oid}",
            "adl": "adl_autoclose",
            "settlement": f"settlement_autoclose-{oid}",
        }[kind]
        now = self._now_ms()
        o = Order(
            order_id=oid,
            client_order_id=cid,
            symbol=symbol,
            side=side,
            type="LIMIT",
            price=px,
            qty=qty,
            status="NEW",
            reduce_only=True,
            tif="IOC",
            create_ms=now,
            update_ms=now,
        )
        self._orders.add(o)
        exec_type = "TRADE" if kind == "settlement" else "CALCULATED"
        self._execute(st, o, qty, px, self.fee_bps, events, exec_type)
        self._rewatch(st)
        return o.to_dict()
