"""The SimVenue's persistence: the whole book as a plain dict and back."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Self

from atlas_actors.venues.filters import SymbolFilters
from atlas_actors.venues.sim.book import OPEN_STATUSES, Algo, Order
from atlas_actors.venues.sim.market import SimMarket

SNAPSHOT_VERSION = 1


class SimSnapshot(SimMarket):
    """`snapshot()` / `from_snapshot()`: a venue outlives its process (sim-exchange --state)."""

    def snapshot(self) -> dict[str, Any]:
        """The whole book as a plain (msgpack/JSON-able) dict; see `from_snapshot`."""
        with self._lock:
            syms = {}
            for s, st in self._syms.items():
                syms[s] = {
                    "filters": st.filters.to_dict() if st.filters is not None else None,
                    "filters_explicit": st.filters_explicit,
                    "last": st.last,
                    "mark": st.mark,
                    "mark_explicit": st.mark_explicit,
                    "pos": st.pos,
                    "entry": st.entry,
                    "leverage": st.leverage,
                    "realized": st.realized,
                    "traded": st.traded,
                    "funding": [[t, r] for t, r in st.funding],
                    "funding_idx": st.funding_idx,
                    "funding_rate": st.funding_rate,
                    "open_interest": st.open_interest,
                    "bars": [dict(b) for b in list(st.bars)[-200:]],
                }
            return {
                "version": SNAPSHOT_VERSION,
                "asset": self.asset,
                "wallet": self._wallet,
                "fees_paid": self._fees_paid,
                "funding_paid": self._funding_paid,
                "sim_ms": self._sim_ms,
                "next_order_id": self._next_order_id,
                "next_algo_id": self._next_algo_id,
                "fee_bps": self.fee_bps,
                "maker_fee_bps": self.maker_fee_bps,
                "slippage_bps": self.slippage_bps,
                "symbols": syms,
                "orders": [o.to_dict() for o in self._orders.values()],
                "algos": [a.to_dict() for a in self._algos.values()],
            }

    @classmethod
    def from_snapshot(
        cls,
        d: Mapping[str, Any],
        *,
        clock: Callable[[], float] | None = None,
        seed: int = 0,
        sleep: Callable[[float], None] = time.sleep,
        fee_bps: float | None = None,
        slippage_bps: float | None = None,
        maker_fee_bps: float | None = None,
    ) -> Self:
        """Rebuild a venue from `snapshot()`. Fees/slippage come from the snapshot unless given
        (a changed config applies from the resume on)."""
        if d.get("version") != SNAPSHOT_VERSION:
            raise ValueError(
                f"SimVenue snapshot version {d.get('version')!r} unsupported"
                f" (expected {SNAPSHOT_VERSION})"
            )
        try:
            v = cls(
                clock=clock,
                fee_bps=float(d["fee_bps"] if fee_bps is None else fee_bps),
                slippage_bps=float(d["slippage_bps"] if slippage_bps is None else slippage_bps),
                maker_fee_bps=float(d["maker_fee_bps"] if maker_fee_bps is None else maker_fee_bps),
                seed=seed,
                starting_balance=float(d["wallet"]),
                asset=str(d["asset"]),
                sleep=sleep,
            )
            v._fees_paid = float(d["fees_paid"])
            v._funding_paid = float(d["funding_paid"])
            v._sim_ms = int(d["sim_ms"])
            v._next_order_id = int(d["next_order_id"])
            v._next_algo_id = int(d["next_algo_id"])
            for s, sd in d["symbols"].items():
                st = v._sym(s)
                if sd["filters"] is not None:
                    st.set_filters(SymbolFilters.from_dict(sd["filters"]))
                st.filters_explicit = bool(sd["filters_explicit"])
                st.last = sd["last"]
                st.mark = sd["mark"]
                st.mark_explicit = bool(sd["mark_explicit"])
                st.pos = float(sd["pos"])
                st.entry = float(sd["entry"])
                st.leverage = int(sd["leverage"])
                st.realized = float(sd["realized"])
                st.traded = bool(sd["traded"])
                st.funding = [(int(t), float(r)) for t, r in sd["funding"]]
                st.funding_idx = int(sd["funding_idx"])
                st.funding_rate = float(sd["funding_rate"])
                st.open_interest = float(sd["open_interest"])
                st.bars.extend(sd.get("bars") or [])
                v._refresh_funding(st)
            for od in d["orders"]:
                o = Order.from_dict(od)
                v._orders.add(o)
                if o.status in OPEN_STATUSES:
                    v._sym(o.symbol).orders[o.order_id] = o
                else:
                    v._orders.closed.append(o.order_id)
            for ad in d["algos"]:
                al = Algo.from_dict(ad)
                v._algos.add(al)
                if al.status == "NEW":
                    v._sym(al.symbol).algos[al.algo_id] = al
                else:
                    v._algos.closed.append(al.algo_id)
        except KeyError as e:
            raise ValueError(f"SimVenue snapshot is missing key {e.args[0]!r}") from None
        for st in v._syms.values():
            v._rewatch(st)
        return v
