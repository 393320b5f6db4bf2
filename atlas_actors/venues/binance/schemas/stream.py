"""Binance USDⓈ-M market and user-data stream messages <-> Atlas's `VenueEvent`s.

`parse_stream_message` turns one message (raw or combined-wrapped) into a normalised event;
the encoders (`*_wire`) build the same messages for the sim exchange.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from atlas_actors.domain.events import (
    AccountUpdate,
    AlgoUpdate,
    BarClosed,
    MarkPrice,
    OrderUpdate,
    StreamStatus,
)
from atlas_actors.venues.base import VenueEvent
from atlas_actors.venues.binance.schemas.common import (
    ORDER_STATUS,
    SchemaError,
    dec,
    decimal_str,
    flag,
    id_str,
    num,
    req,
    side_of,
)

# ------------------------------------------------------------------ stream messages


def unwrap(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """Combined streams wrap payloads as {"stream": ..., "data": ...}; raw streams do not."""
    if "data" in message and "stream" in message and isinstance(message["data"], Mapping):
        return message["data"]
    return message


def parse_kline_event(data: Mapping[str, Any]) -> BarClosed | dict[str, Any]:
    k = req(data, "k", "kline event")
    bar: dict[str, Any] = {
        "symbol": str(k.get("s") or data.get("s", "")),
        "interval": str(req(k, "i", "kline event k")),
        "open_time": int(req(k, "t", "kline event k")),
        "open": num(k.get("o"), "k.o"),
        "high": num(k.get("h"), "k.h"),
        "low": num(k.get("l"), "k.l"),
        "close": num(k.get("c"), "k.c"),
        "volume": num(k.get("v"), "k.v"),
        "close_time": int(req(k, "T", "kline event k")),
    }
    if flag(k.get("x", False)):
        return BarClosed(**bar)
    return {"event": "kline_open", **bar, "event_time": int(data.get("E") or 0)}


def parse_order_update(data: Mapping[str, Any]) -> OrderUpdate:
    o = req(data, "o", "ORDER_TRADE_UPDATE")
    qty = dec(o.get("q"), "o.q")
    cum = dec(o.get("z"), "o.z")
    raw_status = str(req(o, "X", "ORDER_TRADE_UPDATE o"))
    status = ORDER_STATUS.get(raw_status, raw_status)
    if raw_status in ("NEW_ADL", "NEW_INSURANCE"):
        status = "FILLED" if cum >= qty else "PARTIALLY_FILLED"
    return OrderUpdate(
        symbol=str(req(o, "s", "ORDER_TRADE_UPDATE o")),
        order_id=id_str(req(o, "i", "ORDER_TRADE_UPDATE o")),
        client_order_id=str(o.get("c", "")),
        side=str(o.get("S", "")),
        order_type=str(o.get("o", "")),
        status=status,
        execution_type=str(o.get("x", "")),
        price=float(dec(o.get("p"), "o.p")),
        qty=float(qty),
        executed_qty=float(cum),
        avg_price=num(o.get("ap"), "o.ap"),
        last_fill_qty=num(o.get("l"), "o.l"),
        last_fill_price=num(o.get("L"), "o.L"),
        commission=num(o.get("n"), "o.n"),
        realized_pnl=num(o.get("rp"), "o.rp"),
        reduce_only=flag(o.get("R", False)),
        event_time=int(data.get("E") or 0),
    )


def parse_algo_update(data: Mapping[str, Any]) -> AlgoUpdate:
    o = req(data, "o", "ALGO_UPDATE")
    child = o.get("ai")
    return AlgoUpdate(
        symbol=str(req(o, "s", "ALGO_UPDATE o")),
        algo_id=id_str(req(o, "aid", "ALGO_UPDATE o")),
        client_algo_id=str(o.get("caid", "")),
        side=str(o.get("S", "")),
        status=str(req(o, "X", "ALGO_UPDATE o")),
        stop_price=num(o.get("tp"), "o.tp"),
        qty=num(o.get("q"), "o.q"),
        working_type=str(o.get("wt") or "CONTRACT_PRICE"),
        order_id=id_str(child) if child not in (None, "", 0) else None,
        event_time=int(data.get("E") or 0),
        # aq: what the triggered child executed (FINISHED with 0 = the stop was removed)
        executed_qty=num(o.get("aq"), "o.aq") if o.get("aq") not in (None, "") else None,
    )


def parse_account_update(data: Mapping[str, Any]) -> AccountUpdate:
    """ACCOUNT_UPDATE -> balances (asset -> wallet balance) and positions.

    One-way rows (`ps`=BOTH) are keyed by symbol; hedge-mode rows by "SYMBOL:LONG" /
    "SYMBOL:SHORT" so neither hides the other."""
    a = req(data, "a", "ACCOUNT_UPDATE")
    balances = {
        str(b["a"]): num(b.get("wb"), f"B[{b.get('a')}].wb") for b in a.get("B", []) if "a" in b
    }
    positions: dict[str, dict[str, Any]] = {}
    for p in a.get("P", []):
        symbol = str(req(p, "s", "ACCOUNT_UPDATE P[]"))
        amount = dec(p.get("pa"), f"{symbol}.pa")
        pside = str(p.get("ps", "BOTH"))
        key = symbol if pside == "BOTH" else f"{symbol}:{pside}"
        positions[key] = {
            "symbol": symbol,
            "side": side_of(amount),
            "qty": float(abs(amount)),
            "entry_price": num(p.get("ep"), f"{symbol}.ep"),
            "unrealized_pnl": num(p.get("up"), f"{symbol}.up"),
            "position_side": pside,
        }
    return AccountUpdate(
        reason=str(a.get("m", "")),
        balances=balances,
        positions=positions,
        event_time=int(data.get("E") or 0),
    )


def parse_mark_price_event(data: Mapping[str, Any]) -> MarkPrice:
    return MarkPrice(
        symbol=str(req(data, "s", "markPriceUpdate")),
        mark_price=num(req(data, "p", "markPriceUpdate"), "markPriceUpdate.p"),
        funding_rate=num(data.get("r"), "markPriceUpdate.r"),
        next_funding_time=int(data.get("T") or 0),
        event_time=int(data.get("E") or 0),
    )


def _plain_event(kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Stream messages Atlas does not act on: a snake_case-tagged dict, validated lightly."""
    out: dict[str, Any] = {"event": kind, "event_time": int(data.get("E") or 0)}
    if "s" in data:
        out["symbol"] = str(data["s"])
    if kind in ("aggTrade", "trade", "TRADE_LITE"):
        out["price"] = num(req(data, "p", kind), f"{kind}.p")
        out["qty"] = num(req(data, "q", kind), f"{kind}.q")
    elif kind == "bookTicker":
        out["bid_price"] = num(req(data, "b", kind), "bookTicker.b")
        out["bid_qty"] = num(data.get("B"), "bookTicker.B")
        out["ask_price"] = num(req(data, "a", kind), "bookTicker.a")
        out["ask_qty"] = num(data.get("A"), "bookTicker.A")
    elif kind == "depthUpdate":
        out["bids"] = [(num(p, "b.p"), num(q, "b.q")) for p, q in data.get("b", [])]
        out["asks"] = [(num(p, "a.p"), num(q, "a.q")) for p, q in data.get("a", [])]
    elif kind == "forceOrder":
        o = req(data, "o", kind)
        out["symbol"] = str(req(o, "s", "forceOrder o"))
        out["side"] = str(o.get("S", ""))
        out["price"] = num(o.get("p"), "forceOrder.p")
        out["qty"] = num(o.get("q"), "forceOrder.q")
    elif kind == "24hrTicker":
        out["last_price"] = num(req(data, "c", kind), "24hrTicker.c")
        out["volume"] = num(data.get("v"), "24hrTicker.v")
    if kind == "TRADE_LITE":
        out["order_id"] = id_str(data.get("i"))
        out["client_order_id"] = str(data.get("c", ""))
        out["last_fill_qty"] = num(data.get("l"), "TRADE_LITE.l")
        out["last_fill_price"] = num(data.get("L"), "TRADE_LITE.L")
    return out


def parse_stream_message(message: Mapping[str, Any]) -> VenueEvent | dict[str, Any]:
    """One stream message (raw or combined-wrapped) -> a normalised event, or a tagged
    dict for the kinds Atlas does not act on (open klines, trades, book, tickers, ...)."""
    data = unwrap(message)
    kind = data.get("e")
    if kind is None:
        if "result" in data and "id" in data:
            return {"event": "subscription_reply", "id": data.get("id")}
        raise SchemaError(f"stream message without an event type: keys {sorted(data)[:8]}")
    if kind == "kline":
        return parse_kline_event(data)
    if kind == "markPriceUpdate":
        return parse_mark_price_event(data)
    if kind == "ORDER_TRADE_UPDATE":
        return parse_order_update(data)
    if kind == "ALGO_UPDATE":
        return parse_algo_update(data)
    if kind == "ACCOUNT_UPDATE":
        return parse_account_update(data)
    if kind == "listenKeyExpired":
        return StreamStatus(
            stream="user",
            status="LISTEN_KEY_EXPIRED",
            detail="listenKeyExpired",
            event_time=int(data.get("E") or 0),
        )
    return _plain_event(str(kind), data)


# ------------------------------------------------------------------ stream encoders (sim side)


def kline_event_wire(
    symbol: str, interval: str, bar: Mapping[str, Any], *, closed: bool, event_time: int
) -> dict[str, Any]:
    return {
        "e": "kline",
        "E": event_time,
        "s": symbol,
        "k": {
            "t": int(bar["open_time"]),
            "T": int(bar["close_time"]),
            "s": symbol,
            "i": interval,
            "f": 0,
            "L": 0,
            "o": decimal_str(bar["open"]),
            "c": decimal_str(bar["close"]),
            "h": decimal_str(bar["high"]),
            "l": decimal_str(bar["low"]),
            "v": decimal_str(bar["volume"]),
            "n": 0,
            "x": closed,
            "q": "0",
            "V": "0",
            "Q": "0",
            "B": "0",
        },
    }


def mark_price_event_wire(ev: MarkPrice) -> dict[str, Any]:
    mark = decimal_str(ev.mark_price)
    return {
        "e": "markPriceUpdate",
        "E": ev.event_time,
        "s": ev.symbol,
        "p": mark,
        "i": mark,
        "P": mark,
        "r": decimal_str(ev.funding_rate),
        "T": ev.next_funding_time,
    }


def order_update_wire(ev: OrderUpdate) -> dict[str, Any]:
    return {
        "e": "ORDER_TRADE_UPDATE",
        "T": ev.event_time,
        "E": ev.event_time,
        "o": {
            "s": ev.symbol,
            "c": ev.client_order_id,
            "S": ev.side,
            "o": ev.order_type,
            "f": "GTC",
            "q": decimal_str(ev.qty),
            "p": decimal_str(ev.price),
            "ap": decimal_str(ev.avg_price),
            "sp": "0",
            "x": ev.execution_type,
            "X": ev.status,
            "i": int(ev.order_id) if ev.order_id.isdigit() else ev.order_id,
            "l": decimal_str(ev.last_fill_qty),
            "z": decimal_str(ev.executed_qty),
            "L": decimal_str(ev.last_fill_price),
            "N": "USDT",
            "n": decimal_str(ev.commission),
            "T": ev.event_time,
            "t": 0,
            "b": "0",
            "a": "0",
            "m": ev.execution_type == "TRADE" and ev.order_type == "LIMIT",
            "R": ev.reduce_only,
            "wt": "CONTRACT_PRICE",
            "ot": ev.order_type,
            "ps": "BOTH",
            "cp": False,
            "rp": decimal_str(ev.realized_pnl),
            "V": "EXPIRE_MAKER",
            "pm": "NONE",
            "gtd": 0,
        },
    }


def algo_update_wire(ev: AlgoUpdate) -> dict[str, Any]:
    return {
        "e": "ALGO_UPDATE",
        "T": ev.event_time,
        "E": ev.event_time,
        "o": {
            "caid": ev.client_algo_id,
            "aid": int(ev.algo_id) if ev.algo_id.isdigit() else ev.algo_id,
            "at": "CONDITIONAL",
            "o": "STOP_MARKET",
            "s": ev.symbol,
            "S": ev.side,
            "ps": "BOTH",
            "f": "GTC",
            "q": decimal_str(ev.qty),
            "X": ev.status,
            "ai": ev.order_id or "",
            "ap": "0",
            "aq": decimal_str(ev.executed_qty or 0.0),
            "act": "0",
            "tp": decimal_str(ev.stop_price),
            "p": "0",
            "V": "EXPIRE_MAKER",
            "wt": ev.working_type,
            "pm": "NONE",
            "cp": False,
            "pP": False,
            "R": True,
            "tt": 0,
            "gtd": 0,
            "rm": "",
        },
    }


def account_update_wire(ev: AccountUpdate) -> dict[str, Any]:
    rows = []
    for key, pos in ev.positions.items():
        symbol = str(pos.get("symbol") or key.split(":")[0])
        qty = Decimal(str(pos.get("qty", 0.0)))
        side = str(pos.get("side", "NONE"))
        amount = qty if side == "LONG" else -qty if side == "SHORT" else Decimal(0)
        rows.append(
            {
                "s": symbol,
                "pa": decimal_str(amount),
                "ep": decimal_str(pos.get("entry_price", 0.0)),
                "bep": decimal_str(pos.get("entry_price", 0.0)),
                "cr": "0",
                "up": decimal_str(pos.get("unrealized_pnl", 0.0)),
                "mt": "cross",
                "iw": "0",
                "ps": str(pos.get("position_side", "BOTH")),
            }
        )
    return {
        "e": "ACCOUNT_UPDATE",
        "T": ev.event_time,
        "E": ev.event_time,
        "a": {
            "m": ev.reason,
            "B": [
                {"a": asset, "wb": decimal_str(wb), "cw": decimal_str(wb), "bc": "0"}
                for asset, wb in ev.balances.items()
            ],
            "P": rows,
        },
    }


def listen_key_expired_wire(listen_key: str, event_time: int) -> dict[str, Any]:
    return {"e": "listenKeyExpired", "E": event_time, "listenKey": listen_key}
