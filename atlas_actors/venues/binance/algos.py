"""Binance USDⓈ-M algo orders (contract §1.4, §1.5): every protective stop is an Algo
CONDITIONAL STOP_MARKET on /fapi/v1/algoOrder (`openAlgoOrders`, `algoOrder` queries), never
/fapi/v1/order; and `recover_protection`, which makes the venue's stop match the desired one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from atlas_actors.domain.stops import StopSpec
from atlas_actors.venues.base import (
    WORKING_TYPES,
    OrderRejected,
    UnknownOutcome,
    VenueError,
    replacement_client_id,
)
from atlas_actors.venues.binance import schemas
from atlas_actors.venues.binance.codes import NOT_FOUND_CODES, TRIGGERING_CODE
from atlas_actors.venues.binance.http import BinanceHttp
from atlas_actors.venues.binance.market import MarketData
from atlas_actors.venues.binance.orders import check_common, grid_qty, grid_stop, id_params
from atlas_actors.venues.binance.tracking import OpenTracker
from atlas_actors.venues.protection import ProtectionCalls, recover_protection


class AlgoOrders:
    def __init__(self, http: BinanceHttp, market: MarketData, tracker: OpenTracker) -> None:
        self._http = http
        self._market = market
        self._tracker = tracker

    def place_algo_stop(
        self,
        *,
        symbol: str,
        side: str,
        qty: float,
        stop_price: float,
        reduce_only: bool,
        client_algo_id: str,
        working_type: str,
        close_position: bool = False,
    ) -> dict[str, Any]:
        """Algo CONDITIONAL STOP_MARKET on /fapi/v1/algoOrder. reduceOnly XOR closePosition:
        with close_position neither quantity nor reduceOnly is sent (-1106/-4137/-4138)."""
        check_common(symbol, side, client_algo_id, "client_algo_id")
        if working_type not in WORKING_TYPES:
            raise ValueError(
                f"{symbol}: working_type must be one of {', '.join(WORKING_TYPES)}, "
                f"got {working_type!r}"
            )
        # Refused locally with Binance's own codes: such a request is never sent.
        if close_position and reduce_only:
            raise OrderRejected(
                -1106, f"{symbol}: reduceOnly cannot be sent with closePosition=true"
            )
        if not close_position and not reduce_only:
            raise OrderRejected(
                -2010,
                f"{symbol}: protective stops must be reduce_only or close_position "
                "(an orphaned stop must never open a position)",
            )

        def build() -> dict[str, Any]:
            f = self._market.filters_for(symbol)
            trigger = f.check_price(grid_stop(f, stop_price, side), what="stop price")
            params: dict[str, Any] = {
                "algoType": "CONDITIONAL",
                "symbol": symbol,
                "side": side,
                "type": "STOP_MARKET",
                "triggerPrice": f.format_price(trigger),
                "workingType": working_type,
                "clientAlgoId": client_algo_id,
            }
            if close_position:
                params["closePosition"] = "true"
            else:
                params["quantity"] = f.format_qty(f.check_qty(grid_qty(f, qty)))
                params["reduceOnly"] = "true"
            return params

        def place(params: Mapping[str, Any]) -> dict[str, Any]:
            def send() -> dict[str, Any]:
                body = self._http.call(
                    "algoOrder",
                    self._http.client.futures_create_algo_order,
                    params,
                    weight=0,
                    write=True,
                )
                return schemas.parse_algo(body)

            def lookup() -> dict[str, Any] | None:
                return self.get_algo_order(symbol=symbol, client_algo_id=client_algo_id)

            return self._http.write(f"algoOrder {symbol} {client_algo_id}", send, lookup)

        algo: dict[str, Any] = self._market.with_filter_refresh(symbol, build, place)
        self._tracker.track_algo(algo)
        return algo

    def cancel_algo(
        self, *, symbol: str, algo_id: str | None, client_algo_id: str | None
    ) -> dict[str, Any]:
        """Cancel an algo order; unknown / triggered / cancelled is success."""
        params = id_params("algoId", algo_id, "clientAlgoId", client_algo_id)
        for attempt in range(1, self._http.max_write_attempts + 1):
            try:
                body = self._http.call(
                    "cancel algoOrder",
                    self._http.client.futures_cancel_algo_order,
                    params,
                    weight=1,
                    write=True,
                )
                result = {
                    "algo_id": schemas.id_str(body.get("algoId", algo_id)),
                    "client_algo_id": str(body.get("clientAlgoId") or client_algo_id or ""),
                    "symbol": symbol,
                    "status": "CANCELED",
                    "canceled_now": True,
                }
                self._tracker.track_algo(result)
                return result
            except OrderRejected as exc:
                if exc.code not in NOT_FOUND_CODES and exc.code != TRIGGERING_CODE:
                    raise
                break
            except UnknownOutcome:
                if attempt >= self._http.max_write_attempts:
                    raise
                self._http.sleep(0.2 * attempt)
        current = self.get_algo_order(symbol=symbol, algo_id=algo_id, client_algo_id=client_algo_id)
        if current is None:
            return {
                "status": "NOT_FOUND",
                "algo_id": algo_id,
                "client_algo_id": client_algo_id,
                "symbol": symbol,
                "canceled_now": False,
            }
        self._tracker.track_algo(current)
        return {**current, "canceled_now": False}

    def get_open_algo_orders(self, symbol: str) -> list[dict[str, Any]]:
        rows = self._http.call(
            "openAlgoOrders",
            self._http.client.futures_get_open_algo_orders,
            {"symbol": symbol},
            weight=1,
        )
        return [schemas.parse_algo(r) for r in rows]

    def get_algo_order(
        self, *, symbol: str, algo_id: str | None = None, client_algo_id: str | None = None
    ) -> dict[str, Any] | None:
        params = id_params("algoId", algo_id, "clientAlgoId", client_algo_id)
        try:
            body = self._http.call(
                "query algoOrder", self._http.client.futures_get_algo_order, params, weight=1
            )
        except VenueError as exc:
            if exc.code in NOT_FOUND_CODES:
                return None
            raise
        algo = schemas.parse_algo(body)
        if algo["symbol"] != symbol:
            return None
        return algo

    # ------------------------------------------------------------------ §1.5 recovery

    def recover_protection(
        self, symbol: str, desired_sl: StopSpec | Mapping[str, Any]
    ) -> dict[str, Any]:
        """CREATED / REPLACED / CONFIRMED: `venues.protection.recover_protection`."""

        def step_and_tick() -> tuple[float, float]:
            f = self._market.filters_for(symbol)
            return float(f.step_size), float(f.tick_size)

        calls = ProtectionCalls(
            open_algos=lambda: self.get_open_algo_orders(symbol),
            step_and_tick=step_and_tick,
            place=lambda spec, cid: self.place_algo_stop(
                symbol=symbol,
                side=spec.side,
                qty=spec.qty,
                stop_price=spec.stop_price,
                reduce_only=True,
                client_algo_id=cid,
                working_type=spec.working_type,
            ),
            cancel=lambda a: self.cancel_algo(
                symbol=symbol, algo_id=a["algo_id"], client_algo_id=a["client_algo_id"]
            ),
            free_client_id=lambda wanted: self._free_client_algo_id(symbol, wanted),
            sleep=self._http.sleep,
        )
        return recover_protection(calls, symbol, desired_sl)

    def _free_client_algo_id(self, symbol: str, wanted: str) -> str:
        """`wanted` unless an algo (any status) already carries it: then the next `.r<n>`."""
        candidate = wanted
        for n in range(2, 100):
            if self.get_algo_order(symbol=symbol, client_algo_id=candidate) is None:
                return candidate
            candidate = replacement_client_id(wanted, n)
        raise VenueError(f"{symbol}: no free replacement id for {wanted!r} after 98 tries")
