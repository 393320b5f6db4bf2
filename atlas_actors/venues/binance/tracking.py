"""What one BinanceAdapter believes is open at the venue (orders and algo orders) and the
client ids it has placed: kept from REST replies and stream updates, replaced on a resync."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from atlas_actors.domain.events import AlgoUpdate, OrderUpdate
from atlas_actors.venues.binance.schemas import OPEN_ALGO_STATUSES, OPEN_ORDER_STATUSES

MAX_CLIENT_IDS = 20_000


class OpenTracker:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._open_orders: dict[str, dict[str, Any]] = {}
        self._open_algos: dict[str, dict[str, Any]] = {}
        self._placed_client_ids: OrderedDict[str, str] = OrderedDict()  # client id -> symbol

    def track_order(self, order: Mapping[str, Any]) -> None:
        with self.lock:
            if order.get("status") in OPEN_ORDER_STATUSES:
                self._open_orders[str(order["order_id"])] = dict(order)
            else:
                self._open_orders.pop(str(order.get("order_id")), None)

    def track_algo(self, algo: Mapping[str, Any]) -> None:
        with self.lock:
            if algo.get("status") in OPEN_ALGO_STATUSES:
                self._open_algos[str(algo["algo_id"])] = dict(algo)
            else:
                self._open_algos.pop(str(algo.get("algo_id")), None)

    def remember_client_id(self, client_id: str, symbol: str) -> None:
        with self.lock:
            self._placed_client_ids[client_id] = symbol
            while len(self._placed_client_ids) > MAX_CLIENT_IDS:
                self._placed_client_ids.popitem(last=False)

    def placed(self, client_id: str) -> bool:
        return client_id in self._placed_client_ids

    def apply_order_update(self, ev: OrderUpdate) -> None:
        with self.lock:
            if ev.status in OPEN_ORDER_STATUSES:
                known = self._open_orders.setdefault(
                    ev.order_id,
                    {
                        "order_id": ev.order_id,
                        "client_order_id": ev.client_order_id,
                        "symbol": ev.symbol,
                        "side": ev.side,
                        "type": ev.order_type,
                        "price": ev.price,
                        "qty": ev.qty,
                        "reduce_only": ev.reduce_only,
                    },
                )
                known.update(status=ev.status, executed_qty=ev.executed_qty, avg_price=ev.avg_price)
            else:
                self._open_orders.pop(ev.order_id, None)

    def apply_algo_update(self, ev: AlgoUpdate) -> None:
        with self.lock:
            if ev.status in OPEN_ALGO_STATUSES:
                self._open_algos.setdefault(
                    ev.algo_id,
                    {
                        "algo_id": ev.algo_id,
                        "client_algo_id": ev.client_algo_id,
                        "symbol": ev.symbol,
                        "side": ev.side,
                        "status": ev.status,
                        "stop_price": ev.stop_price,
                        "qty": ev.qty,
                        "working_type": ev.working_type,
                    },
                )
            else:
                self._open_algos.pop(ev.algo_id, None)

    def snapshot(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """Copies of (open orders, open algos), keyed by id."""
        with self.lock:
            return (
                {k: dict(v) for k, v in self._open_orders.items()},
                {k: dict(v) for k, v in self._open_algos.items()},
            )

    def replace(
        self, open_orders: dict[str, dict[str, Any]], open_algos: dict[str, dict[str, Any]]
    ) -> None:
        with self.lock:
            self._open_orders = open_orders
            self._open_algos = open_algos
