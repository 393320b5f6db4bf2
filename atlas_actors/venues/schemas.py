"""Binance USDⓈ-M wire shapes <-> Atlas's normalised dicts and events.

Everything that knows a Binance field name lives here: responses and stream messages are
parsed once, at the edge, into the snake_case dicts documented in `base.py` and the
`VenueEvent` dataclasses; venue enums are mapped once (`ORDER_STATUS`). The encoders
(`*_wire`) go the other way for the sim exchange, so both ends of the loopback share one
definition of the format. Numbers arrive as decimal strings: they go through `Decimal`
before becoming floats, and leave as plain decimal strings (never exponent form).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from atlas_actors.domain.events import (
    AccountUpdate,
    AlgoUpdate,
    BarClosed,
    MarkPrice,
    OrderUpdate,
    StreamStatus,
    VenueEvent,
)

# Binance order statuses -> the contract's. NEW_ADL / NEW_INSURANCE are liquidation-engine
# executions reported in full in the same event; EXPIRED_IN_MATCH is an STP expiry.
ORDER_STATUS = {
    "NEW": "NEW",
    "PARTIALLY_FILLED": "PARTIALLY_FILLED",
    "FILLED": "FILLED",
    "CANCELED": "CANCELED",
    "EXPIRED": "EXPIRED",
    "EXPIRED_IN_MATCH": "EXPIRED",
    "REJECTED": "REJECTED",
    "NEW_ADL": "FILLED",
    "NEW_INSURANCE": "FILLED",
}
OPEN_ORDER_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
ALGO_STATUSES = ("NEW", "CANCELED", "TRIGGERING", "TRIGGERED", "FINISHED", "REJECTED", "EXPIRED")
OPEN_ALGO_STATUSES = frozenset({"NEW"})
CONDITIONAL_ORDER_TYPES = frozenset(
    {"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}
)


class SchemaError(ValueError):
    """A venue payload does not have the shape this module expects (names the field)."""


# ------------------------------------------------------------------ scalars


def dec(value: Any, field: str = "value") -> Decimal:
    """A venue number (usually a decimal string) as Decimal; '' and None count as 0."""
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, bool):
        raise SchemaError(f"{field}: expected a number, got a boolean")
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise SchemaError(f"{field}: not a number: {value!r}") from exc


def num(value: Any, field: str = "value") -> float:
    return float(dec(value, field))


def flag(value: Any) -> bool:
    """Binance booleans come as JSON booleans or as "true"/"false"/"TRUE" strings."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def id_str(value: Any) -> str:
    return "" if value is None else str(value)


def decimal_str(value: Decimal | float | int | str) -> str:
    """Plain decimal text for the wire: no exponent, no trailing zeros, never '-0'."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    if d == 0:
        return "0"
    text = format(d.normalize(), "f")
    return text


def wire_bool(value: bool) -> str:
    """python-binance str()s every parameter; Binance wants lowercase booleans."""
    return "true" if value else "false"


def _req(payload: Mapping[str, Any], key: str, what: str) -> Any:
    try:
        return payload[key]
    except KeyError:
        raise SchemaError(f"{what}: missing field {key!r}") from None
    except TypeError:
        raise SchemaError(f"{what}: expected an object, got {type(payload).__name__}") from None


# ------------------------------------------------------------------ errors


def parse_error(text: str) -> tuple[int | None, str]:
    """`{"code": -2011, "msg": "Unknown order sent."}` -> (code, msg); non-JSON -> (None, text)."""
    try:
        body = json.loads(text)
    except (TypeError, ValueError):
        return None, text
    if not isinstance(body, dict):
        return None, text
    code = body.get("code")
    return (int(code) if code is not None else None), str(body.get("msg", ""))


def error_wire(code: int, msg: str) -> dict[str, Any]:
    return {"code": code, "msg": msg}


# ------------------------------------------------------------------ exchangeInfo


def parse_symbol_filters(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One `exchangeInfo.symbols[]` entry -> the filter values an order must respect."""
    symbol = str(_req(entry, "symbol", "exchangeInfo symbol"))
    out: dict[str, Any] = {
        "symbol": symbol,
        "status": str(entry.get("status", "TRADING")),
        "quote_asset": str(entry.get("quoteAsset", "")),
        "margin_asset": str(entry.get("marginAsset") or entry.get("quoteAsset", "")),
        "tick_size": Decimal(0),
        "step_size": Decimal(0),
        "min_qty": Decimal(0),
        "max_qty": Decimal(0),
        "market_step_size": Decimal(0),
        "market_min_qty": Decimal(0),
        "market_max_qty": Decimal(0),
        "min_notional": Decimal(0),
    }
    for flt in entry.get("filters", []):
        kind = flt.get("filterType")
        where = f"exchangeInfo {symbol} {kind}"
        if kind == "PRICE_FILTER":
            out["tick_size"] = dec(flt.get("tickSize"), f"{where}.tickSize")
        elif kind == "LOT_SIZE":
            out["step_size"] = dec(flt.get("stepSize"), f"{where}.stepSize")
            out["min_qty"] = dec(flt.get("minQty"), f"{where}.minQty")
            out["max_qty"] = dec(flt.get("maxQty"), f"{where}.maxQty")
        elif kind == "MARKET_LOT_SIZE":
            out["market_step_size"] = dec(flt.get("stepSize"), f"{where}.stepSize")
            out["market_min_qty"] = dec(flt.get("minQty"), f"{where}.minQty")
            out["market_max_qty"] = dec(flt.get("maxQty"), f"{where}.maxQty")
        elif kind == "MIN_NOTIONAL":
            # futures name the value `notional`; spot's `minNotional` is accepted too
            out["min_notional"] = dec(
                flt.get("notional", flt.get("minNotional")), f"{where}.notional"
            )
    if out["tick_size"] <= 0 or out["step_size"] <= 0:
        raise SchemaError(f"exchangeInfo {symbol}: PRICE_FILTER/LOT_SIZE missing or zero")
    for key in ("step_size", "min_qty", "max_qty"):
        if out[f"market_{key}"] <= 0:
            out[f"market_{key}"] = out[key]
    return out


def parse_exchange_info(payload: Mapping[str, Any]) -> dict[str, Any]:
    """-> {"symbols": {symbol: filters}, "request_weight_limit": int (per minute)}."""
    symbols = {}
    for entry in _req(payload, "symbols", "exchangeInfo"):
        parsed = parse_symbol_filters(entry)
        symbols[parsed["symbol"]] = parsed
    weight_limit = 2400
    for limit in payload.get("rateLimits", []):
        if (
            limit.get("rateLimitType") == "REQUEST_WEIGHT"
            and limit.get("interval") == "MINUTE"
            and int(limit.get("intervalNum", 1)) == 1
        ):
            weight_limit = int(limit["limit"])
    return {"symbols": symbols, "request_weight_limit": weight_limit}


def public_filters(filters: Mapping[str, Any]) -> dict[str, float]:
    """The float view of a symbol's filters that selfcheck and callers use."""
    return {
        "tick_size": float(filters["tick_size"]),
        "step_size": float(filters["step_size"]),
        "min_qty": float(filters["min_qty"]),
        "min_notional": float(filters["min_notional"]),
    }


def symbol_entry_wire(
    symbol: str,
    *,
    tick_size: str,
    step_size: str,
    min_qty: str,
    min_notional: str,
    max_qty: str = "1000000",
    quote_asset: str | None = None,
) -> dict[str, Any]:
    quote = quote_asset or _quote_of(symbol)
    return {
        "symbol": symbol,
        "pair": symbol,
        "contractType": "PERPETUAL",
        "status": "TRADING",
        "baseAsset": symbol[: -len(quote)] if symbol.endswith(quote) else symbol,
        "quoteAsset": quote,
        "marginAsset": quote,
        "pricePrecision": _decimals(tick_size),
        "quantityPrecision": _decimals(step_size),
        "orderTypes": ["LIMIT", "MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick_size,
                "maxPrice": "10000000",
                "tickSize": tick_size,
            },
            {"filterType": "LOT_SIZE", "minQty": min_qty, "maxQty": max_qty, "stepSize": step_size},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": min_qty,
                "maxQty": max_qty,
                "stepSize": step_size,
            },
            {"filterType": "MIN_NOTIONAL", "notional": min_notional},
        ],
    }


def _decimals(step: str) -> int:
    exponent = Decimal(step).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def _quote_of(symbol: str) -> str:
    for quote in ("USDT", "USDC", "BUSD", "FDUSD", "BTC", "ETH", "BNB"):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return quote
    return "USDT"


# ------------------------------------------------------------------ market data


def parse_kline_row(row: Sequence[Any]) -> dict[str, Any]:
    """REST kline row `[openTime, o, h, l, c, v, closeTime, ...]` -> bar dict."""
    if len(row) < 7:
        raise SchemaError(f"kline row: expected >= 7 columns, got {len(row)}")
    return {
        "open_time": int(row[0]),
        "open": num(row[1], "kline.open"),
        "high": num(row[2], "kline.high"),
        "low": num(row[3], "kline.low"),
        "close": num(row[4], "kline.close"),
        "volume": num(row[5], "kline.volume"),
        "close_time": int(row[6]),
    }


def kline_row_wire(bar: Mapping[str, Any]) -> list[Any]:
    return [
        int(bar["open_time"]),
        decimal_str(bar["open"]),
        decimal_str(bar["high"]),
        decimal_str(bar["low"]),
        decimal_str(bar["close"]),
        decimal_str(bar["volume"]),
        int(bar["close_time"]),
        "0",
        0,
        "0",
        "0",
        "0",
    ]


def parse_premium_index(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "symbol": str(_req(payload, "symbol", "premiumIndex")),
        "mark_price": num(_req(payload, "markPrice", "premiumIndex"), "premiumIndex.markPrice"),
        "index_price": num(payload.get("indexPrice"), "premiumIndex.indexPrice"),
        "funding_rate": num(payload.get("lastFundingRate"), "premiumIndex.lastFundingRate"),
        "next_funding_time": int(payload.get("nextFundingTime") or 0),
        "time": int(payload.get("time") or 0),
    }


def premium_index_wire(
    symbol: str, mark_price: float, funding_rate: float, next_funding_time: int, time_ms: int
) -> dict[str, Any]:
    mark = decimal_str(mark_price)
    return {
        "symbol": symbol,
        "markPrice": mark,
        "indexPrice": mark,
        "estimatedSettlePrice": mark,
        "lastFundingRate": decimal_str(funding_rate),
        "interestRate": "0.00010000",
        "nextFundingTime": int(next_funding_time),
        "time": int(time_ms),
    }


def parse_ticker_price(payload: Mapping[str, Any]) -> float:
    return num(_req(payload, "price", "ticker/price"), "ticker.price")


def parse_open_interest(payload: Mapping[str, Any]) -> float:
    return num(_req(payload, "openInterest", "openInterest"), "openInterest")


def parse_funding_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "symbol": str(r.get("symbol", "")),
            "funding_rate": num(_req(r, "fundingRate", "fundingRate"), "fundingRate"),
            "funding_time": int(r.get("fundingTime") or 0),
        }
        for r in rows
    ]


# ------------------------------------------------------------------ account and positions


def parse_account(payload: Mapping[str, Any]) -> dict[str, Any]:
    """GET /fapi/v2/account -> total_equity, available_balance, margin_used (+ per asset).

    In single-asset mode each margin asset (USDT, USDC, ...) is its own pool and the
    top-level totals cover USDT only, so the totals are summed over the asset rows; in
    Multi-Assets mode the top-level totals are already USD-valued across assets."""
    assets: dict[str, dict[str, float]] = {}
    for row in payload.get("assets", []):
        asset = str(_req(row, "asset", "account.assets[]"))
        assets[asset] = {
            "wallet_balance": num(row.get("walletBalance"), f"{asset}.walletBalance"),
            "unrealized_pnl": num(row.get("unrealizedProfit"), f"{asset}.unrealizedProfit"),
            "margin_balance": num(row.get("marginBalance"), f"{asset}.marginBalance"),
            "available_balance": num(row.get("availableBalance"), f"{asset}.availableBalance"),
            "initial_margin": num(row.get("initialMargin"), f"{asset}.initialMargin"),
            "maint_margin": num(row.get("maintMargin"), f"{asset}.maintMargin"),
        }
    if flag(payload.get("multiAssetsMargin")) or not assets:
        total = num(payload.get("totalMarginBalance"), "totalMarginBalance")
        available = num(payload.get("availableBalance"), "availableBalance")
        used = num(payload.get("totalInitialMargin"), "totalInitialMargin")
        wallet = num(payload.get("totalWalletBalance"), "totalWalletBalance")
        upnl = num(payload.get("totalUnrealizedProfit"), "totalUnrealizedProfit")
    else:
        total = sum(a["margin_balance"] for a in assets.values())
        available = sum(a["available_balance"] for a in assets.values())
        used = sum(a["initial_margin"] for a in assets.values())
        wallet = sum(a["wallet_balance"] for a in assets.values())
        upnl = sum(a["unrealized_pnl"] for a in assets.values())
    return {
        "total_equity": total,
        "available_balance": available,
        "margin_used": used,
        "wallet_balance": wallet,
        "unrealized_pnl": upnl,
        "assets": assets,
    }


def parse_balance_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """GET /fapi/v3/balance rows -> asset -> balances."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        asset = str(_req(row, "asset", "balance[]"))
        out[asset] = {
            "wallet_balance": num(row.get("balance"), f"{asset}.balance"),
            "cross_wallet_balance": num(row.get("crossWalletBalance"), f"{asset}.cross"),
            "unrealized_pnl": num(row.get("crossUnPnl"), f"{asset}.crossUnPnl"),
            "available_balance": num(row.get("availableBalance"), f"{asset}.availableBalance"),
        }
    return out


def account_wire(balances: Mapping[str, Any], asset: str, update_time: int) -> dict[str, Any]:
    """An Atlas balances dict -> the /fapi/v2/account shape (one margin asset)."""
    total = Decimal(str(balances.get("total_equity", 0.0)))
    available = Decimal(str(balances.get("available_balance", 0.0)))
    used = Decimal(str(balances.get("margin_used", 0.0)))
    upnl = Decimal(str(balances.get("unrealized_pnl", 0.0)))
    wallet = Decimal(str(balances.get("wallet_balance", float(total - upnl))))
    row = {
        "asset": asset,
        "walletBalance": decimal_str(wallet),
        "unrealizedProfit": decimal_str(upnl),
        "marginBalance": decimal_str(total),
        "maintMargin": "0",
        "initialMargin": decimal_str(used),
        "positionInitialMargin": decimal_str(used),
        "openOrderInitialMargin": "0",
        "crossWalletBalance": decimal_str(wallet),
        "crossUnPnl": decimal_str(upnl),
        "availableBalance": decimal_str(available),
        "maxWithdrawAmount": decimal_str(available),
        "marginAvailable": True,
        "updateTime": update_time,
    }
    return {
        "feeTier": 0,
        "canTrade": True,
        "canDeposit": True,
        "canWithdraw": True,
        "updateTime": 0,
        "multiAssetsMargin": False,
        "totalInitialMargin": decimal_str(used),
        "totalMaintMargin": "0",
        "totalWalletBalance": decimal_str(wallet),
        "totalUnrealizedProfit": decimal_str(upnl),
        "totalMarginBalance": decimal_str(total),
        "totalPositionInitialMargin": decimal_str(used),
        "totalOpenOrderInitialMargin": "0",
        "totalCrossWalletBalance": decimal_str(wallet),
        "totalCrossUnPnl": decimal_str(upnl),
        "availableBalance": decimal_str(available),
        "maxWithdrawAmount": decimal_str(available),
        "assets": [row],
        "positions": [],
    }


def balance_rows_wire(
    balances: Mapping[str, Any], asset: str, update_time: int
) -> list[dict[str, Any]]:
    total = Decimal(str(balances.get("total_equity", 0.0)))
    upnl = Decimal(str(balances.get("unrealized_pnl", 0.0)))
    wallet = Decimal(str(balances.get("wallet_balance", float(total - upnl))))
    available = decimal_str(balances.get("available_balance", 0.0))
    return [
        {
            "accountAlias": "SimX",
            "asset": asset,
            "balance": decimal_str(wallet),
            "crossWalletBalance": decimal_str(wallet),
            "crossUnPnl": decimal_str(upnl),
            "availableBalance": available,
            "maxWithdrawAmount": available,
            "marginAvailable": True,
            "updateTime": update_time,
        }
    ]


def _side_of(amount: Decimal) -> str:
    if amount > 0:
        return "LONG"
    if amount < 0:
        return "SHORT"
    return "NONE"


def parse_position_row(row: Mapping[str, Any]) -> dict[str, Any]:
    symbol = str(_req(row, "symbol", "positionRisk[]"))
    amount = dec(row.get("positionAmt"), f"{symbol}.positionAmt")
    leverage = row.get("leverage")
    return {
        "symbol": symbol,
        "side": _side_of(amount),
        "qty": float(abs(amount)),
        "entry_price": num(row.get("entryPrice"), f"{symbol}.entryPrice"),
        "unrealized_pnl": num(row.get("unRealizedProfit"), f"{symbol}.unRealizedProfit"),
        "leverage": int(dec(leverage, f"{symbol}.leverage")) if leverage not in (None, "") else 0,
        "mark_price": num(row.get("markPrice"), f"{symbol}.markPrice"),
        "liquidation_price": num(row.get("liquidationPrice"), f"{symbol}.liquidationPrice"),
        "margin_type": str(row.get("marginType", "cross")),
        "position_side": str(row.get("positionSide", "BOTH")),
    }


def parse_positions(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """positionRisk rows -> symbol -> position. One-way mode has one BOTH row per symbol;
    should hedge rows appear (LONG/SHORT), the non-flat one is reported (Atlas requires
    one-way mode; selfcheck refuses hedge mode)."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        pos = parse_position_row(row)
        current = out.get(pos["symbol"])
        if current is None or (current["side"] == "NONE" and pos["side"] != "NONE"):
            out[pos["symbol"]] = pos
    return out


def position_row_wire(symbol: str, pos: Mapping[str, Any], mark_price: float) -> dict[str, Any]:
    qty = Decimal(str(pos.get("qty", 0.0)))
    side = str(pos.get("side", "NONE"))
    amount = qty if side == "LONG" else -qty if side == "SHORT" else Decimal(0)
    entry = Decimal(str(pos.get("entry_price", 0.0))) if amount != 0 else Decimal(0)
    return {
        "symbol": symbol,
        "positionAmt": decimal_str(amount),
        "entryPrice": decimal_str(entry),
        "breakEvenPrice": decimal_str(entry),
        "markPrice": decimal_str(mark_price),
        "unRealizedProfit": decimal_str(pos.get("unrealized_pnl", 0.0)),
        "liquidationPrice": "0",
        "leverage": str(int(pos.get("leverage") or 1)),
        "maxNotionalValue": "1000000",
        "marginType": "cross",
        "isolatedMargin": "0",
        "isAutoAddMargin": "false",
        "positionSide": "BOTH",
        "notional": decimal_str(amount * Decimal(str(mark_price))),
        "isolatedWallet": "0",
        "updateTime": 0,
    }


# ------------------------------------------------------------------ orders


def parse_order(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A regular order (POST/GET/DELETE /fapi/v1/order, openOrders[]) -> order dict."""
    what = "order"
    raw_status = str(_req(payload, "status", what))
    return {
        "order_id": id_str(_req(payload, "orderId", what)),
        "client_order_id": str(payload.get("clientOrderId", "")),
        "symbol": str(_req(payload, "symbol", what)),
        "side": str(_req(payload, "side", what)),
        "type": str(payload.get("type") or payload.get("origType", "")),
        "status": ORDER_STATUS.get(raw_status, raw_status),
        "price": num(payload.get("price"), "order.price"),
        "qty": num(payload.get("origQty"), "order.origQty"),
        "executed_qty": num(payload.get("executedQty"), "order.executedQty"),
        "avg_price": num(payload.get("avgPrice"), "order.avgPrice"),
        "reduce_only": flag(payload.get("reduceOnly", False)),
        "time_in_force": str(payload.get("timeInForce", "")),
        "update_time": int(payload.get("updateTime") or payload.get("time") or 0),
    }


def order_wire(order: Mapping[str, Any]) -> dict[str, Any]:
    """An Atlas order dict -> Binance's order response / query shape."""
    executed = Decimal(str(order.get("executed_qty", 0.0)))
    avg = Decimal(str(order.get("avg_price", 0.0)))
    otype = str(order.get("type", "LIMIT"))
    updated = int(order.get("update_time") or 0)
    return {
        "orderId": int(order["order_id"])
        if str(order["order_id"]).isdigit()
        else order["order_id"],
        "symbol": order["symbol"],
        "status": order["status"],
        "clientOrderId": order["client_order_id"],
        "price": decimal_str(order.get("price", 0.0)),
        "avgPrice": decimal_str(avg),
        "origQty": decimal_str(order.get("qty", 0.0)),
        "executedQty": decimal_str(executed),
        "cumQty": decimal_str(executed),
        "cumQuote": decimal_str(executed * avg),
        "timeInForce": order.get("time_in_force") or ("GTC" if otype == "LIMIT" else "GTC"),
        "type": otype,
        "reduceOnly": bool(order.get("reduce_only", False)),
        "closePosition": False,
        "side": order["side"],
        "positionSide": "BOTH",
        "stopPrice": "0",
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": otype,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0,
        "time": updated,
        "updateTime": updated,
    }


def parse_algo(payload: Mapping[str, Any]) -> dict[str, Any]:
    """An algo order (POST/GET algoOrder, openAlgoOrders[]) -> algo dict.
    Open algo orders name the type `orderType`; `type` is accepted too."""
    what = "algoOrder"
    actual = payload.get("actualOrderId")
    return {
        "algo_id": id_str(_req(payload, "algoId", what)),
        "client_algo_id": str(payload.get("clientAlgoId", "")),
        "symbol": str(_req(payload, "symbol", what)),
        "side": str(_req(payload, "side", what)),
        "type": str(payload.get("orderType") or payload.get("type") or ""),
        "status": str(payload.get("algoStatus") or payload.get("status") or ""),
        "stop_price": num(payload.get("triggerPrice"), "algoOrder.triggerPrice"),
        "qty": num(payload.get("quantity"), "algoOrder.quantity"),
        "working_type": str(payload.get("workingType") or "CONTRACT_PRICE"),
        "reduce_only": flag(payload.get("reduceOnly", False)),
        "close_position": flag(payload.get("closePosition", False)),
        "algo_type": str(payload.get("algoType", "CONDITIONAL")),
        "order_id": id_str(actual) if actual not in (None, "", 0, "0") else None,
        "update_time": int(payload.get("updateTime") or payload.get("createTime") or 0),
    }


def algo_wire(algo: Mapping[str, Any]) -> dict[str, Any]:
    """An Atlas algo dict -> Binance's algoOrder response / query shape."""
    aid = str(algo["algo_id"])
    close = bool(algo.get("close_position", False))
    updated = int(algo.get("update_time") or 0)
    actual = algo.get("order_id") or algo.get("actual_order_id")  # SimVenue names it so
    return {
        "algoId": int(aid) if aid.isdigit() else aid,
        "clientAlgoId": algo["client_algo_id"],
        "algoType": "CONDITIONAL",
        "orderType": algo.get("type") or "STOP_MARKET",
        "symbol": algo["symbol"],
        "side": algo["side"],
        "positionSide": "BOTH",
        "timeInForce": "GTE_GTC" if close else "GTC",
        "quantity": "0" if close else decimal_str(algo.get("qty", 0.0)),
        "algoStatus": algo["status"],
        "triggerPrice": decimal_str(algo.get("stop_price", 0.0)),
        "price": "0",
        "icebergQuantity": None,
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "workingType": algo.get("working_type") or "MARK_PRICE",
        "priceMatch": "NONE",
        "closePosition": close,
        "priceProtect": False,
        "reduceOnly": bool(algo.get("reduce_only", False)),
        "activatePrice": "",
        "callbackRate": "",
        "createTime": updated,
        "updateTime": updated,
        "triggerTime": 0,
        "goodTillDate": 0,
        "actualOrderId": str(actual) if actual else "",
    }


# ------------------------------------------------------------------ stream messages


def unwrap(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """Combined streams wrap payloads as {"stream": ..., "data": ...}; raw streams do not."""
    if "data" in message and "stream" in message and isinstance(message["data"], Mapping):
        return message["data"]
    return message


def parse_kline_event(data: Mapping[str, Any]) -> BarClosed | dict[str, Any]:
    k = _req(data, "k", "kline event")
    bar: dict[str, Any] = {
        "symbol": str(k.get("s") or data.get("s", "")),
        "interval": str(_req(k, "i", "kline event k")),
        "open_time": int(_req(k, "t", "kline event k")),
        "open": num(k.get("o"), "k.o"),
        "high": num(k.get("h"), "k.h"),
        "low": num(k.get("l"), "k.l"),
        "close": num(k.get("c"), "k.c"),
        "volume": num(k.get("v"), "k.v"),
        "close_time": int(_req(k, "T", "kline event k")),
    }
    if flag(k.get("x", False)):
        return BarClosed(**bar)
    return {"event": "kline_open", **bar, "event_time": int(data.get("E") or 0)}


def parse_order_update(data: Mapping[str, Any]) -> OrderUpdate:
    o = _req(data, "o", "ORDER_TRADE_UPDATE")
    qty = dec(o.get("q"), "o.q")
    cum = dec(o.get("z"), "o.z")
    raw_status = str(_req(o, "X", "ORDER_TRADE_UPDATE o"))
    status = ORDER_STATUS.get(raw_status, raw_status)
    if raw_status in ("NEW_ADL", "NEW_INSURANCE"):
        status = "FILLED" if cum >= qty else "PARTIALLY_FILLED"
    return OrderUpdate(
        symbol=str(_req(o, "s", "ORDER_TRADE_UPDATE o")),
        order_id=id_str(_req(o, "i", "ORDER_TRADE_UPDATE o")),
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
    o = _req(data, "o", "ALGO_UPDATE")
    child = o.get("ai")
    return AlgoUpdate(
        symbol=str(_req(o, "s", "ALGO_UPDATE o")),
        algo_id=id_str(_req(o, "aid", "ALGO_UPDATE o")),
        client_algo_id=str(o.get("caid", "")),
        side=str(o.get("S", "")),
        status=str(_req(o, "X", "ALGO_UPDATE o")),
        stop_price=num(o.get("tp"), "o.tp"),
        qty=num(o.get("q"), "o.q"),
        working_type=str(o.get("wt") or "CONTRACT_PRICE"),
        order_id=id_str(child) if child not in (None, "", 0) else None,
        event_time=int(data.get("E") or 0),
    )


def parse_account_update(data: Mapping[str, Any]) -> AccountUpdate:
    """ACCOUNT_UPDATE -> balances (asset -> wallet balance) and positions.

    One-way rows (`ps`=BOTH) are keyed by symbol; hedge-mode rows by "SYMBOL:LONG" /
    "SYMBOL:SHORT" so neither hides the other."""
    a = _req(data, "a", "ACCOUNT_UPDATE")
    balances = {
        str(b["a"]): num(b.get("wb"), f"B[{b.get('a')}].wb") for b in a.get("B", []) if "a" in b
    }
    positions: dict[str, dict[str, Any]] = {}
    for p in a.get("P", []):
        symbol = str(_req(p, "s", "ACCOUNT_UPDATE P[]"))
        amount = dec(p.get("pa"), f"{symbol}.pa")
        pside = str(p.get("ps", "BOTH"))
        key = symbol if pside == "BOTH" else f"{symbol}:{pside}"
        positions[key] = {
            "symbol": symbol,
            "side": _side_of(amount),
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
        symbol=str(_req(data, "s", "markPriceUpdate")),
        mark_price=num(_req(data, "p", "markPriceUpdate"), "markPriceUpdate.p"),
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
        out["price"] = num(_req(data, "p", kind), f"{kind}.p")
        out["qty"] = num(_req(data, "q", kind), f"{kind}.q")
    elif kind == "bookTicker":
        out["bid_price"] = num(_req(data, "b", kind), "bookTicker.b")
        out["bid_qty"] = num(data.get("B"), "bookTicker.B")
        out["ask_price"] = num(_req(data, "a", kind), "bookTicker.a")
        out["ask_qty"] = num(data.get("A"), "bookTicker.A")
    elif kind == "depthUpdate":
        out["bids"] = [(num(p, "b.p"), num(q, "b.q")) for p, q in data.get("b", [])]
        out["asks"] = [(num(p, "a.p"), num(q, "a.q")) for p, q in data.get("a", [])]
    elif kind == "forceOrder":
        o = _req(data, "o", kind)
        out["symbol"] = str(_req(o, "s", "forceOrder o"))
        out["side"] = str(o.get("S", ""))
        out["price"] = num(o.get("p"), "forceOrder.p")
        out["qty"] = num(o.get("q"), "forceOrder.q")
    elif kind == "24hrTicker":
        out["last_price"] = num(_req(data, "c", kind), "24hrTicker.c")
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
            "aq": "0",
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
