"""The SimVenue's market: feeding bars and prices (the contract price path and the explicit
mark), funding, and the market-data requests (§1.1)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from atlas_actors.domain.events import AccountUpdate, BarClosed, MarkPrice
from atlas_actors.venues.base import VenueError, VenueEvent
from atlas_actors.venues.sim.book import INF, SymBook
from atlas_actors.venues.sim.matching import SimMatching

_INTERVALS = {
    60_000: "1m",
    180_000: "3m",
    300_000: "5m",
    900_000: "15m",
    1_800_000: "30m",
    3_600_000: "1h",
    7_200_000: "2h",
    14_400_000: "4h",
    21_600_000: "6h",
    28_800_000: "8h",
    43_200_000: "12h",
    86_400_000: "1d",
}


def interval_of(open_time: int, close_time: int) -> str:
    """Binance interval name of a bar from its times ("1m", "5m", "1h"...)."""
    ms = close_time - open_time + 1
    return _INTERVALS.get(ms) or f"{max(ms, 0) // 1000}s"


class SimMarket(SimMatching):
    """Prices move only when fed; what they reach fills or triggers (see `SimMatching`)."""

    # ================================================================== market data (§1.1)

    def get_kline(self, symbol: str, interval: str, limit: int) -> list[dict[str, Any]]:
        """The last `limit` bars fed for `symbol` (the interval is that of the fed bars)."""
        plan = self._begin("get_kline")
        with self._lock:
            st = self._syms.get(symbol)
            bars = list(st.bars)[-limit:] if st is not None and limit > 0 else []
        self._end(plan)
        return [
            {
                "open_time": int(b["open_time"]),
                "open": float(b["open"]),
                "high": float(b["high"]),
                "low": float(b["low"]),
                "close": float(b["close"]),
                "volume": float(b.get("volume") or 0.0),
                "close_time": int(b["close_time"]),
            }
            for b in bars
        ]

    def get_mark_price(self, symbol: str) -> float:
        plan = self._begin("get_mark_price")
        with self._lock:
            st = self._syms.get(symbol)
            px = None if st is None else (st.mark if st.mark is not None else st.last)
        self._end(plan)
        if px is None:
            raise VenueError(f"{symbol}: no mark price yet (feed a bar or set a price first)")
        return px

    def get_last_price(self, symbol: str) -> float:
        """The last contract price (the close of the last bar fed, or the last set_price)."""
        plan = self._begin("get_last_price")
        with self._lock:
            st = self._syms.get(symbol)
            px = None if st is None else st.last
        self._end(plan)
        if px is None:
            raise VenueError(f"{symbol}: no last price yet (feed a bar or set a price first)")
        return px

    def get_funding_rate(self, symbol: str) -> float:
        """The rate of the next scheduled funding, else the last one set or applied."""
        plan = self._begin("get_funding_rate")
        with self._lock:
            st = self._syms.get(symbol)
            rate = 0.0
            if st is not None:
                rate = (
                    st.funding[st.funding_idx][1]
                    if st.funding_idx < len(st.funding)
                    else st.funding_rate
                )
        self._end(plan)
        return rate

    def get_open_interest(self, symbol: str) -> float:
        plan = self._begin("get_open_interest")
        with self._lock:
            st = self._syms.get(symbol)
            oi = st.open_interest if st is not None else 0.0
        self._end(plan)
        return oi

    def set_open_interest(self, symbol: str, value: float) -> None:
        with self._lock:
            self._sym(symbol).open_interest = float(value)

    # ================================================================== feeding the market

    def feed_bar(self, symbol: str, bar: Mapping[str, Any]) -> None:
        """A closed kline of `symbol`: walk its path, fill/trigger, then emit BarClosed."""
        o = float(bar["open"])
        h = float(bar["high"])
        lo = float(bar["low"])
        c = float(bar["close"])
        ct = int(bar["close_time"])
        if not (lo <= o <= h and lo <= c <= h and lo > 0):
            raise ValueError(
                f"{symbol}: inconsistent bar at open_time {bar.get('open_time')}: "
                f"open={o} high={h} low={lo} close={c}"
            )
        events: list[VenueEvent] | None = None
        with self._lock:
            st = self._syms.get(symbol)
            if st is None:
                st = self._sym(symbol)
            st.bars.append(bar)
            if ct > self._sim_ms:
                self._sim_ms = ct
            if self._doomed:  # the venue drops a marked stop as time passes (fault injection)
                events = []
                self._remove_doomed(st, events)
            if lo > st.down_watch and h < st.up_watch and ct < st.next_funding_ms:
                # Hot path: nothing resting is reached and no funding is due.
                st.last = c
                if not st.mark_explicit:
                    st.mark = c
            else:
                events = events if events is not None else []
                self._bar_slow(st, o, h, lo, c, int(bar["open_time"]), ct, events)
            if (
                self.bar_events
                and self._listeners
                and self._ws_on
                and self.faults.stream_up("market")
            ):
                ot = int(bar["open_time"])
                ev = BarClosed(
                    symbol,
                    str(bar.get("interval") or interval_of(ot, ct)),
                    ot,
                    o,
                    h,
                    lo,
                    c,
                    float(bar.get("volume") or 0.0),
                    ct,
                )
                if events is None:
                    events = [ev]
                else:
                    events.append(ev)
        if events:
            self._dispatch(events)

    def _bar_slow(
        self,
        st: SymBook,
        o: float,
        h: float,
        lo: float,
        c: float,
        ot: int,
        ct: int,
        events: list[VenueEvent],
    ) -> None:
        if st.filters is None:
            self._filters(st, c)
        self._apply_funding_until(st, ot, events)
        prev = st.last
        if prev is not None and prev != o:
            self._walk(st, prev, o, True, events, gap=True)
        else:
            self._set_contract(st, o)
        pts = (lo, h, c) if c >= o else (h, lo, c)
        a = o
        for b in pts:
            if b != a:
                self._walk(st, a, b, True, events, gap=False)
            a = b
        self._set_contract(st, c)
        self._apply_funding_until(st, ct, events)

    def set_price(self, symbol: str, price: float) -> None:
        """Move the contract price continuously from the last price to `price`."""
        price = float(price)
        if not (price > 0 and math.isfinite(price)):
            raise ValueError(f"{symbol}: price must be positive, got {price!r}")
        events: list[VenueEvent] = []
        with self._lock:
            st = self._sym(symbol)
            self._filters(st, price)
            if st.last is None or st.last == price:
                self._set_contract(st, price)
            else:
                self._walk(st, st.last, price, True, events, gap=False)
                self._set_contract(st, price)
        self._dispatch(events)

    def set_mark_price(self, symbol: str, price: float) -> None:
        """Set an explicit mark price (a jump); MARK_PRICE stops it crosses trigger now."""
        price = float(price)
        if not (price > 0 and math.isfinite(price)):
            raise ValueError(f"{symbol}: mark price must be positive, got {price!r}")
        events: list[VenueEvent] = []
        with self._lock:
            st = self._sym(symbol)
            self._filters(st, price)
            self._make_mark_explicit(st)
            prev = st.mark
            if prev is not None and prev != price:
                self._walk(st, prev, price, False, events, gap=True)
            st.mark = price
            self._emit_mark(st, events)
        self._dispatch(events)

    def feed_mark_bar(self, symbol: str, bar: Mapping[str, Any]) -> None:
        """A mark-price kline: the explicit mark walks its path (MARK_PRICE stops only)."""
        o, h, lo, c = (float(bar[k]) for k in ("open", "high", "low", "close"))
        if not (lo <= o <= h and lo <= c <= h and lo > 0):
            raise ValueError(f"{symbol}: inconsistent mark bar at open_time {bar.get('open_time')}")
        events: list[VenueEvent] = []
        with self._lock:
            st = self._sym(symbol)
            self._filters(st, c)
            self._make_mark_explicit(st)
            if st.mark is not None and st.mark != o:
                self._walk(st, st.mark, o, False, events, gap=True)
            st.mark = o
            a = o
            for b in (lo, h, c) if c >= o else (h, lo, c):
                if b != a:
                    self._walk(st, a, b, False, events, gap=False)
                a = b
            st.mark = c
            self._emit_mark(st, events)
        self._dispatch(events)

    def clear_mark_price(self, symbol: str) -> None:
        """Forget the explicit mark: the mark follows the contract price again."""
        with self._lock:
            st = self._sym(symbol)
            st.mark_explicit = False
            st.mark = st.last
            self._rewatch(st)

    def _make_mark_explicit(self, st: SymBook) -> None:
        if not st.mark_explicit:
            st.mark_explicit = True
            self._rewatch(st)

    def _emit_mark(self, st: SymBook, events: list[VenueEvent]) -> None:
        if self._market_on() and st.mark is not None:
            nxt = st.funding[st.funding_idx] if st.funding_idx < len(st.funding) else None
            events.append(
                MarkPrice(
                    st.symbol,
                    st.mark,
                    nxt[1] if nxt else st.funding_rate,
                    nxt[0] if nxt else 0,
                    self._now_ms(),
                )
            )

    # ================================================================== funding

    def set_funding(self, symbol: str, rate: float, funding_time_ms: int) -> None:
        """Schedule one funding of `rate` at `funding_time_ms` (applied when bars pass it)."""
        with self._lock:
            st = self._sym(symbol)
            pending = st.funding[st.funding_idx :]
            pending.append((int(funding_time_ms), float(rate)))
            pending.sort()
            st.funding = st.funding[: st.funding_idx] + pending
            st.funding_rate = float(rate)
            self._refresh_funding(st)

    def set_funding_schedule(self, symbol: str, schedule: Iterable[Any]) -> None:
        """Replace the funding schedule: (time_ms, rate) pairs or dicts funding_time/funding_rate.

        Entries at or before the venue's last bar are treated as already applied."""
        entries: list[tuple[int, float]] = []
        for e in schedule:
            if isinstance(e, Mapping):
                entries.append((int(e["funding_time"]), float(e["funding_rate"])))
            else:
                t, r = e
                entries.append((int(t), float(r)))
        entries.sort()
        with self._lock:
            st = self._sym(symbol)
            st.funding = entries
            last_ct = int(st.bars[-1]["close_time"]) if st.bars else -1
            st.funding_idx = sum(1 for t, _ in entries if t <= last_ct)
            self._refresh_funding(st)

    @staticmethod
    def _refresh_funding(st: SymBook) -> None:
        st.next_funding_ms = (
            st.funding[st.funding_idx][0] if st.funding_idx < len(st.funding) else INF
        )

    def _apply_funding_until(self, st: SymBook, until_ms: int, events: list[VenueEvent]) -> None:
        while st.funding_idx < len(st.funding) and st.funding[st.funding_idx][0] <= until_ms:
            t, rate = st.funding[st.funding_idx]
            st.funding_idx += 1
            st.funding_rate = rate
            if st.pos != 0.0:
                mark = st.mark if st.mark is not None else st.entry
                fee = st.pos * mark * rate  # longs pay a positive rate, shorts receive it
                self._wallet -= fee
                self._funding_paid += fee
                if self._user_on():
                    events.append(
                        AccountUpdate(
                            "FUNDING_FEE",
                            {self.asset: self._wallet},
                            {st.symbol: self._position_dict(st)},
                            t,
                        )
                    )
        self._refresh_funding(st)
