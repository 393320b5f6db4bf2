"""Builds real actor trees (pykka, LMDB in a temp dir, SimVenue) for integration tests."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from atlas_actors.domain.params import default_params
from atlas_actors.domain.records import (
    AlgoRef,
    LastOrders,
    OrderRef,
    PositionState,
    SlAlgo,
    SymbolState,
)
from atlas_actors.events import JsonlRecordWriter
from atlas_actors.store import StateStore
from atlas_actors.venues.sim import SimVenue
from supervisor.alerts import Alerts
from supervisor.tree import AtlasTree


def wait_for(pred: Any, timeout_s: float = 10.0, interval_s: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval_s)
    return bool(pred())


class TreeRig:
    """A tree plus everything around it; `records` reads what the sink wrote so far."""

    def __init__(
        self,
        tmp_path: Path,
        symbols: list[str],
        *,
        venue: SimVenue | None = None,
        replay: Any = None,
        params: Any = None,
        **tree_kwargs: Any,
    ) -> None:
        self.tmp_path = tmp_path
        self.symbols = symbols
        self.venue = venue or SimVenue(starting_balance=100_000.0)
        self.store = StateStore(tmp_path / "state")
        self.store.load()
        self.sink = JsonlRecordWriter(
            tmp_path / "logs" / "records.jsonl", store=self.store, keep_in_memory=True
        )
        self.alerts = Alerts(None, environment="test", release="test", instance="test")
        self.params = params or default_params()
        self.clock_s = 1_700_000_000.0
        self.tree_kwargs = dict(
            venue=self.venue,
            store=self.store,
            sink=self.sink,
            params=self.params,
            symbols=symbols,
            clock=lambda: self.clock_s,
            replay=replay,
            alerts=self.alerts,
            ping_interval_s=0.2,
            ping_timeout_s=2.0,
            audit_interval_s=3600.0,
            flush_interval_s=0.2,
            sentinel_poll_s=0.02,
        )
        self.tree_kwargs.update(tree_kwargs)
        self.tree = AtlasTree(**self.tree_kwargs)

    @property
    def records(self) -> list[dict[str, Any]]:
        assert self.sink.records is not None
        return list(self.sink.records)

    def of_kind(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [
            r
            for r in self.records
            if r.get("kind") == kind and all(r.get(k) == v for k, v in match.items())
        ]

    def lifecycle(self, symbol: str) -> list[str]:
        return [r["state"] for r in self.of_kind("lifecycle", symbol=symbol)]

    def start(self, *, ready: bool = True) -> None:
        self.tree.start()
        if ready:
            assert self.tree.wait_ready(15.0), {s: c.status for s, c in self.tree.children.items()}

    def stop(self) -> None:
        self.tree.stop()
        self.sink.close()
        self.store.close()

    def status(self, symbol: str) -> str:
        return self.tree.children[symbol].status


def seed_long_position(
    rig: TreeRig,
    symbol: str,
    *,
    price: float = 100.0,
    qty: float = 1.0,
    stop: float = 95.0,
    stop_cid: str | None = None,
) -> str:
    """A LONG position at the venue and the matching shard state (its stop not yet placed)."""
    venue = rig.venue
    venue.add_symbol(symbol, tick_size=0.01, step_size=0.001, min_qty=0.001, min_notional=5.0)
    venue.set_price(symbol, price)
    venue.place_market(
        symbol=symbol, side="BUY", qty=qty, reduce_only=False, client_order_id=f"atl-{symbol}-1-e"
    )
    cid = stop_cid or f"atl-{symbol}-2-sl"
    ps = PositionState(
        side="LONG",
        entry_price=price,
        qty_total=qty,
        qty_runner=0.0,
        sl_price=stop,
        sl_algo=SlAlgo(algo_id=None, client_algo_id=cid, working_type="MARK_PRICE"),
        last_orders=LastOrders(
            entry=OrderRef(order_id=None, client_order_id=f"atl-{symbol}-1-e"),
            tp=[],
            sl=AlgoRef(algo_id=None, client_algo_id=cid),
        ),
        position_stage="PRE_TP1",
        initial_qty=qty,
        risk_per_unit=price - stop,
        template="seeded",
        tier="A",
    )
    st = replace(SymbolState.fresh(symbol), position_state=ps, seq=2)
    rig.store.set_symbol_state(symbol, st.to_dict())
    rig.store.flush()
    return cid


def open_algos(venue: SimVenue, symbol: str) -> list[dict[str, Any]]:
    return venue.get_open_algo_orders(symbol)
