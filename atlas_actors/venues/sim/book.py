"""The simulated venue's records: orders, algo stops, the per-symbol book and the id book that
keeps every order (or algo) by venue id and client id."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar

from atlas_actors.venues.filters import SymbolFilters, decimals_of

OPEN_STATUSES = ("NEW", "PARTIALLY_FILLED")
INF = math.inf
DEFAULT_LEVERAGE = 20
KLINE_HISTORY = 1500  # Binance serves at most 1500 klines per request


class Order:
    __slots__ = (
        "order_id",
        "client_order_id",
        "symbol",
        "side",
        "type",
        "price",
        "qty",
        "executed_qty",
        "avg_price",
        "status",
        "reduce_only",
        "tif",
        "create_ms",
        "update_ms",
        "commission",
        "realized_pnl",
    )

    def __init__(
        self,
        *,
        order_id: str,
        client_order_id: str,
        symbol: str,
        side: str,
        type: str,
        price: float,
        qty: float,
        status: str,
        reduce_only: bool,
        tif: str,
        create_ms: int,
        update_ms: int,
    ) -> None:
        self.order_id = order_id
        self.client_order_id = client_order_id
        self.symbol = symbol
        self.side = side
        self.type = type
        self.price = price  # 0.0 for market orders
        self.qty = qty
        self.status = status
        self.reduce_only = reduce_only
        self.tif = tif
        self.create_ms = create_ms
        self.update_ms = update_ms
        self.executed_qty = 0.0
        self.avg_price = 0.0
        self.commission = 0.0
        self.realized_pnl = 0.0

    @property
    def id(self) -> str:
        return self.order_id

    @property
    def cid(self) -> str:
        return self.client_order_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side,
            "type": self.type,
            "status": self.status,
            "price": self.price,
            "qty": self.qty,
            "executed_qty": self.executed_qty,
            "avg_price": self.avg_price,
            "reduce_only": self.reduce_only,
            "time_in_force": self.tif,
            "create_time": self.create_ms,
            "update_time": self.update_ms,
            "commission": self.commission,
            "realized_pnl": self.realized_pnl,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Order:
        o = cls(
            order_id=str(d["order_id"]),
            client_order_id=str(d["client_order_id"]),
            symbol=str(d["symbol"]),
            side=str(d["side"]),
            type=str(d["type"]),
            price=float(d["price"]),
            qty=float(d["qty"]),
            status=str(d["status"]),
            reduce_only=bool(d["reduce_only"]),
            tif=str(d["time_in_force"]),
            create_ms=int(d["create_time"]),
            update_ms=int(d["update_time"]),
        )
        o.executed_qty = float(d["executed_qty"])
        o.avg_price = float(d["avg_price"])
        o.commission = float(d.get("commission", 0.0))
        o.realized_pnl = float(d.get("realized_pnl", 0.0))
        return o


class Algo:
    __slots__ = (
        "algo_id",
        "client_algo_id",
        "symbol",
        "side",
        "stop_price",
        "qty",
        "working_type",
        "reduce_only",
        "close_position",
        "status",
        "create_ms",
        "update_ms",
        "trigger_ms",
        "actual_order_id",
        "visible_at",
        "executed_qty",
        "removal",
        "listed",
    )

    def __init__(
        self,
        *,
        algo_id: str,
        client_algo_id: str,
        symbol: str,
        side: str,
        stop_price: float,
        qty: float,
        working_type: str,
        reduce_only: bool,
        close_position: bool,
        status: str,
        create_ms: int,
        update_ms: int,
    ) -> None:
        self.algo_id = algo_id
        self.client_algo_id = client_algo_id
        self.symbol = symbol
        self.side = side
        self.stop_price = stop_price
        self.qty = qty  # 0.0 with close_position
        self.working_type = working_type
        self.reduce_only = reduce_only
        self.close_position = close_position
        self.status = status
        self.create_ms = create_ms
        self.update_ms = update_ms
        self.trigger_ms = 0
        self.actual_order_id: str | None = None  # the triggered child order
        self.visible_at = 0.0  # lag-clock time from which it is listed (0 = at once)
        self.executed_qty = 0.0  # what the triggered child executed (ALGO_UPDATE aq)
        # fault injection (exchange_cancels_algo): the status the venue ends it with by itself
        # once it has been listed in an open-algo answer (`listed`)
        self.removal: str | None = None
        self.listed = False

    @property
    def id(self) -> str:
        return self.algo_id

    @property
    def cid(self) -> str:
        return self.client_algo_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "algo_id": self.algo_id,
            "client_algo_id": self.client_algo_id,
            "symbol": self.symbol,
            "side": self.side,
            "type": "STOP_MARKET",
            "status": self.status,
            "stop_price": self.stop_price,
            "qty": self.qty,
            "working_type": self.working_type,
            "reduce_only": self.reduce_only,
            "close_position": self.close_position,
            "create_time": self.create_ms,
            "update_time": self.update_ms,
            "trigger_time": self.trigger_ms,
            "actual_order_id": self.actual_order_id,
            "executed_qty": self.executed_qty,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Algo:
        a = cls(
            algo_id=str(d["algo_id"]),
            client_algo_id=str(d["client_algo_id"]),
            symbol=str(d["symbol"]),
            side=str(d["side"]),
            stop_price=float(d["stop_price"]),
            qty=float(d["qty"]),
            working_type=str(d["working_type"]),
            reduce_only=bool(d["reduce_only"]),
            close_position=bool(d["close_position"]),
            status=str(d["status"]),
            create_ms=int(d["create_time"]),
            update_ms=int(d["update_time"]),
        )
        a.trigger_ms = int(d.get("trigger_time") or 0)
        aid = d.get("actual_order_id")
        a.actual_order_id = str(aid) if aid is not None else None
        a.executed_qty = float(d.get("executed_qty") or 0.0)
        return a


class SymBook:
    """Per-symbol book: prices, position, resting orders, open algos and the watch levels."""

    __slots__ = (
        "symbol",
        "filters",
        "filters_explicit",
        "qty_decimals",
        "last",
        "mark",
        "mark_explicit",
        "pos",
        "entry",
        "leverage",
        "realized",
        "traded",
        "orders",
        "algos",
        "bars",
        "funding",
        "funding_idx",
        "funding_rate",
        "next_funding_ms",
        "open_interest",
        "down_watch",
        "up_watch",
    )

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.filters: SymbolFilters | None = None
        self.filters_explicit = False
        self.qty_decimals = 12
        self.last: float | None = None
        self.mark: float | None = None
        self.mark_explicit = False
        self.pos = 0.0  # signed: + long, - short
        self.entry = 0.0
        self.leverage = DEFAULT_LEVERAGE
        self.realized = 0.0
        self.traded = False
        self.orders: dict[str, Order] = {}  # resting (open) limit orders
        self.algos: dict[str, Algo] = {}  # open algo stops
        self.bars: deque[Mapping[str, Any]] = deque(maxlen=KLINE_HISTORY)
        self.funding: list[tuple[int, float]] = []  # (funding_time_ms, rate), ascending
        self.funding_idx = 0  # first funding not applied yet
        self.funding_rate = 0.0
        self.next_funding_ms: float = INF
        self.open_interest = 0.0
        # The contract price path needs the slow walk only when it reaches one of these levels:
        # down_watch = highest buy limit / sell stop, up_watch = lowest sell limit / buy stop.
        self.down_watch = -INF
        self.up_watch = INF

    def set_filters(self, f: SymbolFilters) -> None:
        self.filters = f
        self.qty_decimals = decimals_of(f.step_size) + 2


class _Record(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def cid(self) -> str: ...
    @property
    def symbol(self) -> str: ...


R = TypeVar("R", bound=_Record)


class IdBook(Generic[R]):
    """Every order (or every algo) the venue accepted, by venue id and by client id.

    Finished ones are kept for idempotency and queries, the oldest pruned beyond `max_closed`
    (see `retire`)."""

    __slots__ = ("by_id", "by_cid", "closed")

    def __init__(self) -> None:
        self.by_id: dict[str, R] = {}
        self.by_cid: dict[str, str] = {}  # client id -> venue id
        self.closed: deque[str] = deque()  # finished ids, oldest first

    def add(self, rec: R) -> None:
        self.by_id[rec.id] = rec
        self.by_cid[rec.cid] = rec.id

    def values(self) -> Iterator[R]:
        return iter(self.by_id.values())

    def find(self, symbol: str, rec_id: str | None, cid: str | None) -> R | None:
        """By venue id, else by client id; None when unknown or of another symbol."""
        rec: R | None = None
        if rec_id is not None:
            rec = self.by_id.get(str(rec_id))
        if rec is None and cid is not None:
            found = self.by_cid.get(cid)
            rec = self.by_id.get(found) if found is not None else None
        if rec is not None and rec.symbol != symbol:
            return None
        return rec

    def retire(self, rec: R, max_closed: int) -> None:
        """`rec` is finished: keep it, forget the oldest finished beyond `max_closed`."""
        self.closed.append(rec.id)
        while len(self.closed) > max_closed:
            old = self.by_id.pop(self.closed.popleft(), None)
            if old is not None and self.by_cid.get(old.cid) == old.id:
                del self.by_cid[old.cid]
