"""The sim exchange's REST endpoints (`/fapi/...`): the route table with security and
request weights, and one handler per endpoint over SimVenue."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from atlas_actors.sim_exchange.streams import StreamsWire
from atlas_actors.sim_exchange.wire import (
    CONDITIONAL_TYPES,
    WireError,
    flag,
    mandatory,
    number,
    venue_call,
)
from atlas_actors.venues.binance import schemas
from atlas_actors.venues.filters import format_decimal
from atlas_actors.venues.sim import DEFAULT_LEVERAGE

LISTEN_KEY_TTL_S = 60 * 60.0


@dataclass
class Route:
    fn: Callable[[dict[str, str]], Any]
    security: str  # NONE | USER_STREAM | SIGNED
    weight: Callable[[dict[str, str]], int]
    write: bool = False


def _w(n: int) -> Callable[[dict[str, str]], int]:
    return lambda _p: n


def _w_symbol(with_symbol: int, without: int) -> Callable[[dict[str, str]], int]:
    return lambda p: with_symbol if p.get("symbol") else without


def _w_klines(p: dict[str, str]) -> int:
    limit = int(p.get("limit") or 500)
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


class RestRoutes(StreamsWire):
    """The endpoints; `_build_routes` maps (method, path) to them."""

    def _build_routes(self) -> dict[tuple[str, str], Route]:
        r: dict[tuple[str, str], Route] = {}

        def add(
            method: str,
            paths: tuple[str, ...],
            fn: Callable[[dict[str, str]], Any],
            security: str,
            weight: Callable[[dict[str, str]], int],
            write: bool = False,
        ) -> None:
            for p in paths:
                r[(method, p)] = Route(fn, security, weight, write)

        add("GET", ("/fapi/v1/ping",), lambda p: {}, "NONE", _w(1))
        add("GET", ("/fapi/v1/time",), lambda p: {"serverTime": self._now_ms()}, "NONE", _w(1))
        add("GET", ("/fapi/v1/exchangeInfo",), self._exchange_info, "NONE", _w(1))
        add("GET", ("/fapi/v1/klines",), self._klines, "NONE", _w_klines)
        add("GET", ("/fapi/v1/premiumIndex",), self._premium_index, "NONE", _w_symbol(1, 10))
        add(
            "GET",
            ("/fapi/v1/ticker/price", "/fapi/v2/ticker/price"),
            self._ticker_price,
            "NONE",
            _w_symbol(1, 2),
        )
        add("GET", ("/fapi/v1/fundingRate",), self._funding_rate, "NONE", _w(1))
        add("GET", ("/fapi/v1/openInterest",), self._open_interest, "NONE", _w(1))
        add("GET", ("/fapi/v2/account", "/fapi/v3/account"), self._account, "SIGNED", _w(5))
        add("GET", ("/fapi/v2/balance", "/fapi/v3/balance"), self._balance, "SIGNED", _w(5))
        add("GET", ("/fapi/v2/positionRisk",), self._position_risk_v2, "SIGNED", _w(5))
        add("GET", ("/fapi/v3/positionRisk",), self._position_risk_v3, "SIGNED", _w(5))
        add(
            "GET",
            ("/fapi/v1/positionSide/dual",),
            lambda p: {"dualSidePosition": False},
            "SIGNED",
            _w(30),
        )
        add("POST", ("/fapi/v1/positionSide/dual",), self._set_mode, "SIGNED", _w(1), True)
        add("POST", ("/fapi/v1/leverage",), self._leverage, "SIGNED", _w(1), True)
        add("POST", ("/fapi/v1/order",), self._new_order, "SIGNED", _w(0), True)
        add("GET", ("/fapi/v1/order",), self._get_order, "SIGNED", _w(1))
        add("DELETE", ("/fapi/v1/order",), self._cancel_order, "SIGNED", _w(1), True)
        add("GET", ("/fapi/v1/openOrders",), self._open_orders, "SIGNED", _w_symbol(1, 40))
        add("POST", ("/fapi/v1/algoOrder",), self._new_algo, "SIGNED", _w(0), True)
        add("GET", ("/fapi/v1/algoOrder",), self._get_algo, "SIGNED", _w(1))
        add("DELETE", ("/fapi/v1/algoOrder",), self._cancel_algo, "SIGNED", _w(1), True)
        add("GET", ("/fapi/v1/openAlgoOrders",), self._open_algos, "SIGNED", _w_symbol(1, 40))
        add("POST", ("/fapi/v1/listenKey",), self._listen_key_new, "USER_STREAM", _w(1))
        add("PUT", ("/fapi/v1/listenKey",), self._listen_key_keepalive, "USER_STREAM", _w(1))
        add("DELETE", ("/fapi/v1/listenKey",), self._listen_key_close, "USER_STREAM", _w(1))
        return r

    # ---------------------------------------------------------------- market data

    def _exchange_info(self, p: dict[str, str]) -> dict[str, Any]:
        entries = []
        for sym in self.symbols:
            f = self.venue.get_filters(sym)
            entries.append(
                schemas.symbol_entry_wire(
                    sym,
                    tick_size=format_decimal(f.tick_size, f.tick_size),
                    step_size=format_decimal(f.step_size, f.step_size),
                    min_qty=format_decimal(f.min_qty, f.step_size),
                    min_notional=schemas.decimal_str(f.min_notional),
                    max_qty=format_decimal(min(f.max_qty, 1e9), f.step_size),
                    status=self.venue.symbol_status(sym),
                    market_max_qty=format_decimal(
                        min(f.market_max_qty, f.max_qty, 1e9), f.step_size
                    ),
                )
            )
        return {
            "timezone": "UTC",
            "serverTime": self._now_ms(),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": self.weight_limit,
                },
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": self.venue.asset, "marginAvailable": True}],
            "symbols": entries,
        }

    def _known(self, p: dict[str, str]) -> str:
        sym = mandatory(p, "symbol")
        if sym not in self._symbols:
            raise WireError(400, -1121, "Invalid symbol.")
        return sym

    def _klines(self, p: dict[str, str]) -> list[list[Any]]:
        sym = self._known(p)
        limit = min(int(p.get("limit") or 500), 1500)
        bars = venue_call(lambda: self.venue.get_kline(sym, p.get("interval", ""), limit))
        return [schemas.kline_row_wire(b) for b in bars]

    def _premium_index(self, p: dict[str, str]) -> Any:
        def one(sym: str) -> dict[str, Any]:
            mark = venue_call(lambda: self.venue.get_mark_price(sym))
            rate = venue_call(lambda: self.venue.get_funding_rate(sym))
            return schemas.premium_index_wire(sym, mark, rate, 0, self._now_ms())

        if p.get("symbol"):
            return one(self._known(p))
        return [one(s) for s in self.symbols]

    def _ticker_price(self, p: dict[str, str]) -> dict[str, Any]:
        sym = self._known(p)
        price = venue_call(lambda: self.venue.get_last_price(sym))
        return {"symbol": sym, "price": schemas.decimal_str(price), "time": self._now_ms()}

    def _funding_rate(self, p: dict[str, str]) -> list[dict[str, Any]]:
        sym = self._known(p)
        rate = venue_call(lambda: self.venue.get_funding_rate(sym))
        return [
            {
                "symbol": sym,
                "fundingRate": schemas.decimal_str(rate),
                "fundingTime": int(self.venue.now() * 1000),
                "markPrice": "0",
            }
        ]

    def _open_interest(self, p: dict[str, str]) -> dict[str, Any]:
        sym = self._known(p)
        oi = venue_call(lambda: self.venue.get_open_interest(sym))
        return {"symbol": sym, "openInterest": schemas.decimal_str(oi), "time": self._now_ms()}

    # ---------------------------------------------------------------- account

    def _account(self, p: dict[str, str]) -> dict[str, Any]:
        b = venue_call(self.venue.get_balances)
        return schemas.account_wire(b, str(b.get("asset", self.venue.asset)), self._now_ms())

    def _balance(self, p: dict[str, str]) -> list[dict[str, Any]]:
        b = venue_call(self.venue.get_balances)
        return schemas.balance_rows_wire(b, str(b.get("asset", self.venue.asset)), self._now_ms())

    def _position_rows(self, include_flat: bool) -> list[dict[str, Any]]:
        positions = venue_call(self.venue.get_positions)
        rows = []
        for sym in sorted(set(self.symbols) | set(positions)):
            pos = positions.get(sym)
            if pos is None:
                if not include_flat:
                    continue
                pos = {"side": "NONE", "qty": 0.0, "leverage": DEFAULT_LEVERAGE}
            elif not include_flat and pos.get("side") == "NONE":
                continue
            rows.append(schemas.position_row_wire(sym, pos, float(pos.get("mark_price") or 0.0)))
        return rows

    def _position_risk_v2(self, p: dict[str, str]) -> list[dict[str, Any]]:
        rows = self._position_rows(include_flat=True)
        return [r for r in rows if not p.get("symbol") or r["symbol"] == p["symbol"]]

    def _position_risk_v3(self, p: dict[str, str]) -> list[dict[str, Any]]:
        rows = self._position_rows(include_flat=False)
        for r in rows:
            r.pop("leverage", None)
            r.pop("marginType", None)
            r.pop("isAutoAddMargin", None)
            r.pop("maxNotionalValue", None)
        return [r for r in rows if not p.get("symbol") or r["symbol"] == p["symbol"]]

    def _set_mode(self, p: dict[str, str]) -> dict[str, Any]:
        if flag(p, "dualSidePosition"):
            raise WireError(400, -4068, "The sim exchange supports one-way mode only.")
        venue_call(self.venue.set_position_mode_one_way)
        raise WireError(400, -4059, "No need to change position side.")

    def _leverage(self, p: dict[str, str]) -> dict[str, Any]:
        sym = self._known(p)
        try:
            lev = int(mandatory(p, "leverage"))
        except ValueError:
            raise WireError(400, -4028, "Leverage is not valid.") from None
        venue_call(lambda: self.venue.set_leverage(sym, lev))
        return {"leverage": lev, "maxNotionalValue": "1000000", "symbol": sym}

    # ---------------------------------------------------------------- regular orders

    def _client_id(self, p: dict[str, str], key: str) -> str:
        cid = p.get(key)
        if cid:
            return cid
        with self._lock:
            self._next_cid += 1
            return f"simx{secrets.token_hex(6)}{self._next_cid}"

    def _new_order(self, p: dict[str, str]) -> dict[str, Any]:
        sym = self._known(p)
        side = mandatory(p, "side")
        if side not in ("BUY", "SELL"):
            raise WireError(400, -1117, "Invalid side.")
        otype = mandatory(p, "type")
        if otype in CONDITIONAL_TYPES:
            raise WireError(
                400,
                -4120,
                "Order type not supported for this endpoint. Please use the Algo Order API "
                "endpoints instead.",
            )
        qty = number(p, "quantity")
        reduce_only = flag(p, "reduceOnly")
        cid = self._client_id(p, "newClientOrderId")
        if otype == "LIMIT":
            price = number(p, "price")
            tif = mandatory(p, "timeInForce")
            order = venue_call(
                lambda: self.venue.place_limit_postonly(
                    symbol=sym,
                    side=side,
                    qty=qty,
                    price=price,
                    tif=tif,
                    reduce_only=reduce_only,
                    client_order_id=cid,
                )
            )
        elif otype == "MARKET":
            order = venue_call(
                lambda: self.venue.place_market(
                    symbol=sym, side=side, qty=qty, reduce_only=reduce_only, client_order_id=cid
                )
            )
        else:
            raise WireError(400, -1116, "Invalid orderType.")
        return schemas.order_wire(order)

    def _order_ids(self, p: dict[str, str]) -> tuple[str | None, str | None]:
        oid = p.get("orderId") or None
        cid = p.get("origClientOrderId") or None
        if oid is None and cid is None:
            raise WireError(
                400,
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        return oid, cid

    def _get_order(self, p: dict[str, str]) -> dict[str, Any]:
        sym = self._known(p)
        oid, cid = self._order_ids(p)
        order = venue_call(
            lambda: self.venue.get_order(symbol=sym, order_id=oid, client_order_id=cid)
        )
        if order is None:
            raise WireError(400, -2013, "Order does not exist.")
        return schemas.order_wire(order)

    def _cancel_order(self, p: dict[str, str]) -> dict[str, Any]:
        sym = self._known(p)
        oid, cid = self._order_ids(p)
        result = venue_call(
            lambda: self.venue.cancel_order(symbol=sym, order_id=oid, client_order_id=cid)
        )
        if not result.get("canceled_now"):
            raise WireError(400, -2011, "Unknown order sent.")
        return schemas.order_wire(result)

    def _open_orders(self, p: dict[str, str]) -> list[dict[str, Any]]:
        syms = [self._known(p)] if p.get("symbol") else self.symbols
        out = []
        for sym in syms:
            orders = venue_call(partial(self.venue.get_open_orders, sym))
            out += [schemas.order_wire(o) for o in orders]
        return out

    # ---------------------------------------------------------------- algo orders

    def _new_algo(self, p: dict[str, str]) -> dict[str, Any]:
        if mandatory(p, "algoType") != "CONDITIONAL":
            raise WireError(400, -1102, "Parameter 'algoType' must be CONDITIONAL.")
        sym = self._known(p)
        side = mandatory(p, "side")
        if side not in ("BUY", "SELL"):
            raise WireError(400, -1117, "Invalid side.")
        otype = mandatory(p, "type")
        if otype not in CONDITIONAL_TYPES:
            raise WireError(400, -1116, "Invalid orderType.")
        if otype != "STOP_MARKET":
            raise WireError(400, -1116, f"The sim exchange supports STOP_MARKET only, not {otype}.")
        trigger = number(p, "triggerPrice")
        close_position = flag(p, "closePosition")
        if close_position and "reduceOnly" in p:
            raise WireError(400, -1106, "Parameter 'reduceonly' sent when not required.")
        if close_position and p.get("quantity"):
            raise WireError(400, -4137, "Quantity must be zero with closePosition equals true.")
        qty = 0.0 if close_position else number(p, "quantity")
        cid = self._client_id(p, "clientAlgoId")
        working = p.get("workingType") or "CONTRACT_PRICE"  # Binance's default
        algo = venue_call(
            lambda: self.venue.place_algo_stop(
                symbol=sym,
                side=side,
                qty=qty,
                stop_price=trigger,
                reduce_only=flag(p, "reduceOnly"),
                client_algo_id=cid,
                working_type=working,
                close_position=close_position,
            )
        )
        self._index_algo(str(algo["algo_id"]), str(algo["client_algo_id"]), sym)
        return schemas.algo_wire(algo)

    def _algo_ref(self, p: dict[str, str]) -> tuple[str, str | None, str | None]:
        aid = p.get("algoId") or None
        cid = p.get("clientAlgoId") or None
        if aid is None and cid is None:
            raise WireError(400, -1102, "Param 'algoId' or 'clientAlgoId' must be sent.")
        sym = (
            p.get("symbol")
            or (self._algo_symbols.get(f"id:{aid}") if aid else None)
            or (self._algo_symbols.get(f"cid:{cid}") if cid else None)
        )
        return sym or "", aid, cid

    def _get_algo(self, p: dict[str, str]) -> dict[str, Any]:
        sym, aid, cid = self._algo_ref(p)
        algo = (
            venue_call(
                lambda: self.venue.get_algo_order(symbol=sym, algo_id=aid, client_algo_id=cid)
            )
            if sym
            else None
        )
        if algo is None:
            raise WireError(400, -2013, "Order does not exist.")
        return schemas.algo_wire(algo)

    def _cancel_algo(self, p: dict[str, str]) -> dict[str, Any]:
        sym, aid, cid = self._algo_ref(p)
        if not sym:
            raise WireError(400, -2011, "Unknown order sent.")
        result = venue_call(
            lambda: self.venue.cancel_algo(symbol=sym, algo_id=aid, client_algo_id=cid)
        )
        if not result.get("canceled_now"):
            raise WireError(400, -2011, "Unknown order sent.")
        algo_id = str(result["algo_id"])
        return {
            "algoId": int(algo_id) if algo_id.isdigit() else algo_id,
            "clientAlgoId": result["client_algo_id"],
            "code": "200",
            "msg": "success",
        }

    def _open_algos(self, p: dict[str, str]) -> list[dict[str, Any]]:
        syms = [self._known(p)] if p.get("symbol") else self.symbols
        out = []
        for sym in syms:
            algos = venue_call(partial(self.venue.get_open_algo_orders, sym))
            out += [schemas.algo_wire(a) for a in algos]
        return out

    # ---------------------------------------------------------------- listen keys

    def _listen_key_new(self, p: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            live = [k for k, exp in self._listen_keys.items() if exp > now]
            key = live[0] if live else secrets.token_hex(32)
            self._listen_keys[key] = now + LISTEN_KEY_TTL_S
        return {"listenKey": key}

    def _listen_key_keepalive(self, p: dict[str, str]) -> dict[str, Any]:
        key = mandatory(p, "listenKey")
        with self._lock:
            if key not in self._listen_keys:
                raise WireError(400, -1125, "This listenKey does not exist.")
            self._listen_keys[key] = self._clock() + LISTEN_KEY_TTL_S
        return {"listenKey": key}

    def _listen_key_close(self, p: dict[str, str]) -> dict[str, Any]:
        key = mandatory(p, "listenKey")
        with self._lock:
            self._listen_keys.pop(key, None)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._close_key_conns, key)
        return {}
