"""The SimVenue's matching: the price walk over resting limits and algo stops, fills, stop
triggers and the knock-outs a position change causes (rules in the `venue` module docstring)."""

from __future__ import annotations

from atlas_actors.domain.events import AlgoUpdate, OrderUpdate
from atlas_actors.venues.base import VenueEvent
from atlas_actors.venues.sim.account import SimAccount
from atlas_actors.venues.sim.book import INF, Algo, Order, SymBook

# How the venue removes an open algo stop by itself (issue 13 A3): cancelled, expired,
# rejected, or triggered and FINISHED with its child order unfilled (aq = 0).
EXCHANGE_REMOVALS = ("EXPIRED", "CANCELED", "REJECTED", "FINISHED")


class SimMatching(SimAccount):
    """What a moving price reaches, and what executing an order does to the book."""

    _doomed = 0  # open algos marked for removal by the venue (fault injection); 0: none

    def _rewatch(self, st: SymBook) -> None:
        down, up = -INF, INF
        for o in st.orders.values():
            if o.side == "BUY":
                if o.price > down:
                    down = o.price
            elif o.price < up:
                up = o.price
        for a in st.algos.values():
            if a.working_type == "MARK_PRICE" and st.mark_explicit:
                continue  # follows the explicit mark, not the contract path
            if a.side == "SELL":
                if a.stop_price > down:
                    down = a.stop_price
            elif a.stop_price < up:
                up = a.stop_price
        st.down_watch, st.up_watch = down, up

    def _set_contract(self, st: SymBook, price: float) -> None:
        st.last = price
        if not st.mark_explicit:
            st.mark = price

    def _walk(
        self,
        st: SymBook,
        a: float,
        b: float,
        contract: bool,
        events: list[VenueEvent],
        *,
        gap: bool,
    ) -> None:
        """Move the contract (contract=True) or explicit mark price from a to b; fill what it reaches.

        gap=True: a jump, nothing trades in between; everything crossed acts at b."""
        down = b < a
        mark_follows = not st.mark_explicit
        while True:
            best: Order | Algo | None = None
            best_dist = INF
            best_level = b
            if contract:
                for o in st.orders.values():
                    if down:
                        if o.side != "BUY" or not (b < o.price):
                            continue
                        dist = a - o.price
                    else:
                        if o.side != "SELL" or not (b > o.price):
                            continue
                        dist = o.price - a
                    if dist < best_dist:
                        best, best_dist = o, dist
                        best_level = b if gap else (min(o.price, a) if down else max(o.price, a))
            for al in st.algos.values():
                is_mark = al.working_type == "MARK_PRICE"
                on_this_path = (
                    (is_mark and not mark_follows)
                    if not contract
                    else not (is_mark and not mark_follows)
                )
                if not on_this_path:
                    continue
                if down:
                    if al.side != "SELL" or not (b <= al.stop_price):
                        continue
                    dist = a - al.stop_price
                else:
                    if al.side != "BUY" or not (b >= al.stop_price):
                        continue
                    dist = al.stop_price - a
                if dist < best_dist:
                    best, best_dist = al, dist
                    best_level = (
                        b if gap else (min(al.stop_price, a) if down else max(al.stop_price, a))
                    )
            if best is None:
                return
            if contract:
                self._set_contract(st, best_level)
            else:
                st.mark = best_level
            if isinstance(best, Order):
                self._fill_resting(st, best, events)
            else:
                fill_px = best_level if contract else (st.last if st.last is not None else b)
                self._trigger(st, best, fill_px, events)

    def _new_order_id(self) -> str:
        oid = str(self._next_order_id)
        self._next_order_id += 1
        return oid

    def _order_event(
        self, o: Order, exec_type: str, fill_qty: float, fill_px: float, fee: float, rpnl: float
    ) -> OrderUpdate:
        return OrderUpdate(
            o.symbol,
            o.order_id,
            o.client_order_id,
            o.side,
            o.type,
            o.status,
            exec_type,
            o.price,
            o.qty,
            o.executed_qty,
            o.avg_price,
            fill_qty,
            fill_px,
            fee,
            rpnl,
            o.reduce_only,
            o.update_ms,
        )

    def _execute(
        self,
        st: SymBook,
        o: Order,
        qty: float,
        price: float,
        fee_bps: float,
        events: list[VenueEvent],
        exec_type: str = "TRADE",
    ) -> None:
        """Fill `qty` of order `o` at `price` and record the fill on the order and position
        (`exec_type` CALCULATED: a liquidation's fill, as Binance reports it)."""
        realized, fee = self._apply_fill(st, o.side, qty, price, fee_bps)
        done = o.executed_qty
        o.executed_qty = round(done + qty, st.qty_decimals)
        o.avg_price = (done * o.avg_price + qty * price) / o.executed_qty
        o.commission += fee
        o.realized_pnl += realized
        o.update_ms = self._now_ms()
        # A reduce-only order clipped to the position: the rest is knocked out (Binance er=4).
        o.status = "FILLED" if o.executed_qty >= o.qty * (1 - 1e-12) else "EXPIRED"
        self._orders.retire(o, self.max_closed)
        if self._user_on():
            events.append(self._order_event(o, exec_type, qty, price, fee, realized))
        self._account_event(st, events)
        self._after_position_change(st, events)

    def _fill_resting(self, st: SymBook, o: Order, events: list[VenueEvent]) -> None:
        st.orders.pop(o.order_id, None)
        qty = round(o.qty - o.executed_qty, st.qty_decimals)
        if o.reduce_only:
            qty = min(qty, self._closable(st, o.side))
            if qty <= 0.0:
                self._expire_order(st, o, events)
                self._rewatch(st)
                return
        self._execute(st, o, qty, o.price, self.maker_fee_bps, events)
        self._rewatch(st)

    def _expire_order(self, st: SymBook, o: Order, events: list[VenueEvent]) -> None:
        st.orders.pop(o.order_id, None)
        o.status = "EXPIRED"
        o.update_ms = self._now_ms()
        self._orders.retire(o, self.max_closed)
        if self._user_on():
            events.append(self._order_event(o, "EXPIRED", 0.0, 0.0, 0.0, 0.0))

    def _after_position_change(self, st: SymBook, events: list[VenueEvent]) -> None:
        """Binance knocks out reduce-only orders that can no longer reduce and closePosition
        stops whose position is gone."""
        changed = False
        for o in list(st.orders.values()):
            if o.reduce_only and self._closable(st, o.side) <= 0.0:
                self._expire_order(st, o, events)
                changed = True
        if st.pos == 0.0:
            for al in list(st.algos.values()):
                if al.close_position:
                    self._finish_algo(st, al, "EXPIRED", events)
                    changed = True
        if changed:
            self._rewatch(st)

    def _algo_event(self, al: Algo) -> AlgoUpdate:
        return AlgoUpdate(
            al.symbol,
            al.algo_id,
            al.client_algo_id,
            al.side,
            al.status,
            al.stop_price,
            al.qty,
            al.working_type,
            al.actual_order_id,
            al.update_ms,
            al.executed_qty,
        )

    def _finish_algo(self, st: SymBook, al: Algo, status: str, events: list[VenueEvent]) -> None:
        st.algos.pop(al.algo_id, None)
        al.status = status
        al.update_ms = self._now_ms()
        self._algos.retire(al, self.max_closed)
        if self._user_on():
            events.append(self._algo_event(al))

    def _trigger(self, st: SymBook, al: Algo, price: float, events: list[VenueEvent]) -> None:
        """A stop's condition is met: it becomes a reduce-only market order."""
        st.algos.pop(al.algo_id, None)
        qty = self._closable(st, al.side)
        if not al.close_position:
            qty = min(qty, al.qty)
        now = self._now_ms()
        al.trigger_ms = now
        if qty <= 0.0:
            # Nothing to reduce: Binance rejects the reduce-only child / expires closePosition.
            self._finish_algo(st, al, "EXPIRED" if al.close_position else "REJECTED", events)
            self._rewatch(st)
            return
        slip = self.slippage_bps / 10_000.0
        fill_px = price * (1.0 + slip) if al.side == "BUY" else price * (1.0 - slip)
        child = Order(
            order_id=self._new_order_id(),
            client_order_id=f"algo-{al.algo_id}",
            symbol=st.symbol,
            side=al.side,
            type="MARKET",
            price=0.0,
            qty=qty,
            status="NEW",
            reduce_only=True,
            tif="GTC",
            create_ms=now,
            update_ms=now,
        )
        self._orders.add(child)
        al.status = "TRIGGERED"
        al.actual_order_id = child.order_id
        al.update_ms = now
        if self._user_on():
            events.append(self._algo_event(al))
            events.append(self._order_event(child, "NEW", 0.0, 0.0, 0.0, 0.0))
        self._execute(st, child, qty, fill_px, self.fee_bps, events)
        al.executed_qty = child.executed_qty
        self._finish_algo(st, al, "FINISHED", events)
        self._rewatch(st)

    # ------------------------------------------------------------------ the venue on its own

    def _remove_algo(self, st: SymBook, al: Algo, status: str, events: list[VenueEvent]) -> None:
        """The venue ends the open algo `al` by itself with `status` (EXCHANGE_REMOVALS);
        FINISHED: it triggers, its reduce-only child expires unfilled (aq = 0)."""
        if al.removal is not None:
            al.removal = None
            self._doomed = max(0, self._doomed - 1)
        if status != "FINISHED":
            self._finish_algo(st, al, status, events)
            self._rewatch(st)
            return
        st.algos.pop(al.algo_id, None)
        now = self._now_ms()
        child = Order(
            order_id=self._new_order_id(),
            client_order_id=f"algo-{al.algo_id}",
            symbol=st.symbol,
            side=al.side,
            type="MARKET",
            price=0.0,
            qty=al.qty,
            status="NEW",
            reduce_only=True,
            tif="GTC",
            create_ms=now,
            update_ms=now,
        )
        self._orders.add(child)
        al.trigger_ms = now
        al.status = "TRIGGERED"
        al.actual_order_id = child.order_id
        al.update_ms = now
        if self._user_on():
            events.append(self._algo_event(al))
            events.append(self._order_event(child, "NEW", 0.0, 0.0, 0.0, 0.0))
        self._expire_order(st, child, events)
        al.executed_qty = 0.0
        self._finish_algo(st, al, "FINISHED", events)
        self._rewatch(st)

    def _remove_doomed(self, st: SymBook, events: list[VenueEvent]) -> None:
        """Remove the algos the fault marked, once they have been seen open (listed)."""
        for al in list(st.algos.values()):
            if al.removal is not None and al.listed:
                self._remove_algo(st, al, al.removal, events)
