"""Binance USDⓈ-M REST order shapes <-> Atlas's order and algo dicts: regular orders
(POST/GET/DELETE /fapi/v1/order, openOrders) and algo orders (/fapi/v1/algoOrder,
openAlgoOrders). `parse_*` for the adapter, `*_wire` for the sim exchange.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from atlas_actors.venues.binance.schemas.common import (
    ORDER_STATUS,
    decimal_str,
    flag,
    id_str,
    num,
    req,
)


def parse_order(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A regular order (POST/GET/DELETE /fapi/v1/order, openOrders[]) -> order dict."""
    what = "order"
    raw_status = str(req(payload, "status", what))
    return {
        "order_id": id_str(req(payload, "orderId", what)),
        "client_order_id": str(payload.get("clientOrderId", "")),
        "symbol": str(req(payload, "symbol", what)),
        "side": str(req(payload, "side", what)),
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
        "algo_id": id_str(req(payload, "algoId", what)),
        "client_algo_id": str(payload.get("clientAlgoId", "")),
        "symbol": str(req(payload, "symbol", what)),
        "side": str(req(payload, "side", what)),
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
