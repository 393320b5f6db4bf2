"""Binance USDⓈ-M regular orders (contract §1.3): LIMIT and MARKET on /fapi/v1/order only.

Prices and quantities are rounded with the exchangeInfo filters; a create whose outcome is
unknown is resolved by its client id before any resend (`BinanceHttp.write`); a cancel of an
order that is gone already (-2011/-2013) is success.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from atlas_actors.venues.base import (
    SIDES,
    OrderRejected,
    UnknownOutcome,
    VenueError,
    WouldTakeLiquidity,
    check_post_only,
)
from atlas_actors.venues.binance import schemas
from atlas_actors.venues.binance.codes import NOT_FOUND_CODES
from atlas_actors.venues.binance.http import BinanceHttp
from atlas_actors.venues.binance.market import MarketData
from atlas_actors.venues.binance.tracking import OpenTracker
from atlas_actors.venues.filters import SymbolFilters, on_grid, snap

CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
REGULAR_ORDER_TYPES = ("LIMIT", "MARKET")


# A value within float noise of the grid (32498.899999999998 on a 0.1 tick) is that grid
# value; only values really between two grid points are rounded in their direction.
def grid_qty(f: SymbolFilters, qty: float) -> float:
    return snap(qty, f.step_size) if on_grid(qty, f.step_size) else f.round_qty(qty)


def grid_price(f: SymbolFilters, price: float, side: str) -> float:
    return snap(price, f.tick_size) if on_grid(price, f.tick_size) else f.round_price(price, side)


def grid_stop(f: SymbolFilters, stop_price: float, side: str) -> float:
    if on_grid(stop_price, f.tick_size):
        return snap(stop_price, f.tick_size)
    return f.round_stop_price(stop_price, side)


def check_common(symbol: str, side: str, client_id: str, what: str) -> None:
    if not symbol or not isinstance(symbol, str):
        raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
    if side not in SIDES:
        raise ValueError(f"{symbol}: side must be BUY or SELL, got {side!r}")
    if not isinstance(client_id, str) or not CLIENT_ID_RE.match(client_id):
        raise ValueError(f"{symbol}: {what} {client_id!r} must match ^[.A-Z:/a-z0-9_-]{{1,36}}$")


def id_params(
    id_key: str, id_value: str | None, cid_key: str, cid_value: str | None
) -> dict[str, Any]:
    if id_value is None and cid_value is None:
        raise ValueError(f"send {id_key} or {cid_key}")
    if id_value is not None:
        return {id_key: int(id_value) if str(id_value).isdigit() else id_value}
    return {cid_key: cid_value}


class Orders:
    def __init__(self, http: BinanceHttp, market: MarketData, tracker: OpenTracker) -> None:
        self._http = http
        self._market = market
        self._tracker = tracker

    def post_order(self, **params: Any) -> Any:
        # The red line: only LIMIT/MARKET reach /fapi/v1/order. Conditional types belong to
        # /fapi/v1/algoOrder (Binance answers -4120 since 2025-12-09).
        if params.get("type") not in REGULAR_ORDER_TYPES:
            raise ValueError(
                f"refusing to send order type {params.get('type')!r} to /fapi/v1/order; "
                "stops go through place_algo_stop (/fapi/v1/algoOrder)"
            )
        return self._http.client._request_futures_api("post", "order", True, data=params)

    def _existing_order(self, symbol: str, client_order_id: str) -> dict[str, Any] | None:
        """Same client id again in this process -> the order it created (no second send)."""
        if not self._tracker.placed(client_order_id):
            return None
        return self.get_order(symbol=symbol, client_order_id=client_order_id)

    def place_limit_postonly(
        self,
        *,
        symbol: str,
        side: str,
        qty: float,
        price: float,
        tif: str,
        reduce_only: bool,
        client_order_id: str,
    ) -> dict[str, Any]:
        """LIMIT post-only (timeInForce GTX, the only one accepted). Price rounds toward
        the passive side, quantity down to the step."""
        check_common(symbol, side, client_order_id, "client_order_id")
        check_post_only(symbol, tif)
        existing = self._existing_order(symbol, client_order_id)
        if existing is not None:
            return existing

        def build() -> dict[str, Any]:
            f = self._market.filters_for(symbol)
            q, p = f.check_order(
                qty=grid_qty(f, qty),
                price=grid_price(f, price, side),
                reduce_only=reduce_only,
            )
            assert p is not None
            params = {
                "symbol": symbol,
                "side": side,
                "type": "LIMIT",
                "timeInForce": tif,
                "quantity": f.format_qty(q),
                "price": f.format_price(p),
                "newClientOrderId": client_order_id,
                "newOrderRespType": "ACK",
            }
            if reduce_only:
                params["reduceOnly"] = "true"
            return params

        order = self._place_order(symbol, client_order_id, build)
        if tif == "GTX" and order["status"] == "EXPIRED" and order["executed_qty"] == 0.0:
            # Some paths accept a taking GTX and expire it at once instead of answering -5022.
            raise WouldTakeLiquidity(-5022, f"{symbol}: post-only order would take liquidity")
        return order

    def place_market(
        self, *, symbol: str, side: str, qty: float, reduce_only: bool, client_order_id: str
    ) -> dict[str, Any]:
        check_common(symbol, side, client_order_id, "client_order_id")
        existing = self._existing_order(symbol, client_order_id)
        if existing is not None:
            return existing

        def build() -> dict[str, Any]:
            f = self._market.filters_for(symbol)
            q = f.check_market_qty(f.check_qty(grid_qty(f, qty)))
            params = {
                "symbol": symbol,
                "side": side,
                "type": "MARKET",
                "quantity": f.format_qty(q),
                "newClientOrderId": client_order_id,
                "newOrderRespType": "RESULT",
            }
            if reduce_only:
                params["reduceOnly"] = "true"
            return params

        return self._place_order(symbol, client_order_id, build)

    def _place_order(
        self, symbol: str, client_order_id: str, build: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        def place(params: Mapping[str, Any]) -> dict[str, Any]:
            def send() -> dict[str, Any]:
                body = self._http.call("order", self.post_order, params, weight=0, write=True)
                return schemas.parse_order(body)

            def lookup() -> dict[str, Any] | None:
                return self.get_order(symbol=symbol, client_order_id=client_order_id)

            # An order that opens is never resent on one "not found" (it may land later).
            return self._http.write(
                f"order {symbol} {client_order_id}",
                send,
                lookup,
                resend_when_absent=params.get("reduceOnly") == "true",
            )

        order: dict[str, Any] = self._market.with_filter_refresh(symbol, build, place)
        self._tracker.remember_client_id(client_order_id, symbol)
        self._tracker.track_order(order)
        return order

    def cancel_order(
        self, *, symbol: str, order_id: str | None, client_order_id: str | None
    ) -> dict[str, Any]:
        """Cancel; unknown / filled / already cancelled (-2011, -2013) is success."""
        params = {
            "symbol": symbol,
            **id_params("orderId", order_id, "origClientOrderId", client_order_id),
        }
        for attempt in range(1, self._http.max_write_attempts + 1):
            try:
                body = self._http.call(
                    "cancel order",
                    self._http.client.futures_cancel_order,
                    params,
                    weight=1,
                    write=True,
                )
                order = {**schemas.parse_order(body), "canceled_now": True}
                self._tracker.track_order(order)
                return order
            except OrderRejected as exc:
                if exc.code not in NOT_FOUND_CODES:
                    raise
                break
            except UnknownOutcome:
                if attempt >= self._http.max_write_attempts:
                    raise
                self._http.sleep(0.2 * attempt)  # a cancel may be repeated: -2011 then means done
        current = self.get_order(symbol=symbol, order_id=order_id, client_order_id=client_order_id)
        if current is None:
            return {
                "status": "NOT_FOUND",
                "order_id": order_id,
                "client_order_id": client_order_id,
                "symbol": symbol,
                "canceled_now": False,
            }
        self._tracker.track_order(current)
        return {**current, "canceled_now": False}

    def get_open_orders(self, symbol: str) -> list[dict[str, Any]]:
        rows = self._http.call(
            "openOrders", self._http.client.futures_get_open_orders, {"symbol": symbol}, weight=1
        )
        return [schemas.parse_order(r) for r in rows]

    def get_order(
        self, *, symbol: str, order_id: str | None = None, client_order_id: str | None = None
    ) -> dict[str, Any] | None:
        params = {
            "symbol": symbol,
            **id_params("orderId", order_id, "origClientOrderId", client_order_id),
        }
        try:
            body = self._http.call(
                "query order", self._http.client.futures_get_order, params, weight=1
            )
        except VenueError as exc:
            if exc.code in NOT_FOUND_CODES:
                return None
            raise
        return schemas.parse_order(body)
