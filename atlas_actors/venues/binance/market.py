"""Binance USDⓈ-M market data and exchangeInfo (contract §1.1): klines, mark price, last
price, funding rate, open interest, and the symbol filters every order is rounded with
(cached, reloaded once on a filter reject)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from atlas_actors.venues.base import FilterError, VenueError
from atlas_actors.venues.binance import schemas
from atlas_actors.venues.binance.http import BinanceHttp
from atlas_actors.venues.filters import SymbolFilters
from atlas_actors.venues.priority import Priority

log = logging.getLogger(__name__)


def _kline_weight(limit: int) -> int:
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


class MarketData:
    def __init__(self, http: BinanceHttp) -> None:
        self._http = http
        self._filters: dict[str, SymbolFilters] = {}
        self._margin_assets: dict[str, str] = {}
        self._statuses: dict[str, str] = {}
        self._filters_lock = threading.Lock()

    # ------------------------------------------------------------------ exchangeInfo

    def load_exchange_info(self) -> None:
        """(Re)load symbol filters and the request-weight limit from exchangeInfo."""
        body = self._http.call(
            "exchangeInfo", self._http.client.futures_exchange_info, None, weight=1, signed=False
        )
        parsed = schemas.parse_exchange_info(body)
        filters = {}
        for sym, entry in parsed["symbols"].items():
            filters[sym] = SymbolFilters(
                sym,
                float(entry["tick_size"]),
                float(entry["step_size"]),
                float(entry["min_qty"]),
                float(entry["min_notional"]),
                float(entry["max_qty"]) if entry["max_qty"] > 0 else float("inf"),
                float(entry["market_max_qty"]) if entry["market_max_qty"] > 0 else float("inf"),
            )
        with self._filters_lock:
            self._filters = filters
            self._margin_assets = {s: e["margin_asset"] for s, e in parsed["symbols"].items()}
            self._statuses = {s: e["status"] for s, e in parsed["symbols"].items()}
        self._http.governor.limit = int(parsed["request_weight_limit"])

    def filters_for(self, symbol: str) -> SymbolFilters:
        f = self._filters.get(symbol)
        if f is None:
            self.load_exchange_info()
            f = self._filters.get(symbol)
        if f is None:
            raise VenueError(f"{symbol}: unknown symbol (not in exchangeInfo)", code=-1121)
        return f

    def get_symbol_filters(self, symbol: str) -> dict[str, float]:
        """tick_size, step_size, min_qty, min_notional of `symbol` (selfcheck uses this)."""
        f = self.filters_for(symbol)
        return {
            "tick_size": f.tick_size,
            "step_size": f.step_size,
            "min_qty": f.min_qty,
            "min_notional": f.min_notional,
        }

    def symbol_status(self, symbol: str) -> str:
        """exchangeInfo `status` (TRADING, SETTLING, CLOSE, ...); -1121 when not listed."""
        self.filters_for(symbol)
        return self._statuses.get(symbol, "TRADING")

    def margin_asset(self, symbol: str) -> str:
        self.filters_for(symbol)
        return self._margin_assets.get(symbol, "USDT")

    def with_filter_refresh(
        self, symbol: str, build: Callable[[], Mapping[str, Any]], place: Callable[[Any], Any]
    ) -> Any:
        """Place with the cached filters; on a filter reject reload exchangeInfo once and retry
        only if the reloaded filters change the request (else the reject stands)."""
        params = build()
        try:
            return place(params)
        except FilterError:
            self.load_exchange_info()
            fresh = build()
            if fresh == params:
                raise
            log.info("%s: filters changed on exchangeInfo reload; resending", symbol)
            return place(fresh)

    # ------------------------------------------------------------------ market data

    def get_kline(self, symbol: str, interval: str, limit: int) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        ask = min(int(limit) + 1, 1500)  # the last row is usually the still-open kline
        rows = self._http.call(
            "klines",
            self._http.client.futures_klines,
            {"symbol": symbol, "interval": interval, "limit": ask},
            weight=_kline_weight(ask),
            signed=False,
            priority=Priority.BACKGROUND,
        )
        now_ms = self._http.clock() * 1000.0 + self._http.time_offset_ms
        bars = [schemas.parse_kline_row(r) for r in rows]
        return [b for b in bars if b["close_time"] < now_ms][-int(limit) :]

    def _premium_index(self, symbol: str) -> dict[str, Any]:
        body = self._http.call(
            "premiumIndex",
            self._http.client.futures_mark_price,
            {"symbol": symbol},
            weight=1,
            signed=False,
            priority=Priority.BACKGROUND,
        )
        return schemas.parse_premium_index(body)

    def get_mark_price(self, symbol: str) -> float:
        return float(self._premium_index(symbol)["mark_price"])

    def get_last_price(self, symbol: str) -> float:
        """The last traded contract price (GET /fapi/v2/ticker/price)."""
        body = self._http.call(
            "ticker/price",
            self._http.client.futures_symbol_ticker,
            {"symbol": symbol},
            weight=1,
            signed=False,
            priority=Priority.BACKGROUND,
        )
        return schemas.parse_ticker_price(body)

    def get_funding_rate(self, symbol: str) -> float:
        """The current (next settlement's) funding rate: premiumIndex.lastFundingRate."""
        return float(self._premium_index(symbol)["funding_rate"])

    def get_open_interest(self, symbol: str) -> float:
        body = self._http.call(
            "openInterest",
            self._http.client.futures_open_interest,
            {"symbol": symbol},
            weight=1,
            signed=False,
            priority=Priority.BACKGROUND,
        )
        return schemas.parse_open_interest(body)
