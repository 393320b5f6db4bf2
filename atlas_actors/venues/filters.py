"""Exchange filters of one symbol: tick size, step size, min qty, min notional.

The venue rounds nothing silently: callers round with these tools *before* sending, and
`SymbolFilters.check_order` says precisely why a value would be refused (Binance codes).
Rounding uses `Decimal` so a price like 0.00005288 on a 1e-8 tick stays exact.

Rounding directions:
- quantity: always down to the step (never more than the caller asked for);
- limit price: toward the passive side (BUY down, SELL up), so post-only orders do not cross;
- stop price: away from the market, never toward it (a SELL stop below a long rounds down,
  a BUY stop above a short rounds up) — a rounded stop never triggers earlier than asked.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any

from atlas_actors.venues.base import FilterError

# Binance error codes used for filter violations.
CODE_QTY_NOT_POSITIVE = -4003
CODE_QTY_BELOW_MIN = -4004
CODE_QTY_ABOVE_MAX = -4005
CODE_PRICE_NOT_POSITIVE = -4001
CODE_BAD_PRECISION = -1111
CODE_PRICE_NOT_ON_TICK = -4014
CODE_QTY_NOT_ON_STEP = -4023
CODE_MIN_NOTIONAL = -4164

# A float like 0.1 + 0.2 is 0.30000000000000004: values within this fraction of a step/tick of
# a multiple are float noise, not a precision error (the wire format would print them exactly).
_GRID_TOLERANCE = 1e-9


def _dec(x: float | str | Decimal) -> Decimal:
    if isinstance(x, Decimal):
        return x
    # repr() gives the shortest string that round-trips, so Decimal sees 0.1, not 0.1000000000000000055
    return Decimal(repr(x)) if isinstance(x, float) else Decimal(str(x))


def _quantize_to(value: float | Decimal, unit: Decimal, rounding: str) -> Decimal:
    v = _dec(value)
    n = (v / unit).to_integral_value(rounding=rounding)
    return (n * unit).normalize() if n else Decimal(0)


def on_grid(value: float, unit: float) -> bool:
    """True when `value` is a multiple of `unit` (up to float noise)."""
    if unit <= 0:
        return True
    n = value / unit
    # float noise grows with |n| (a few ulps of the division): large quantities on tiny steps
    # (524288.91489361 on 1e-8) are on the grid even when n is a few thousandths off an integer
    noise = 8 * sys.float_info.epsilon * abs(n)
    return (
        abs(n - round(n)) <= _GRID_TOLERANCE * math.sqrt(max(1.0, abs(n))) + _GRID_TOLERANCE + noise
    )


def snap(value: float, unit: float) -> float:
    """The exact grid value `value` denotes (only for values that pass `on_grid`)."""
    if unit <= 0:
        return value
    return float(_quantize_to(value, _dec(unit), ROUND_HALF_EVEN))


def decimals_of(unit: float) -> int:
    """Number of decimals needed to print multiples of `unit` (0.001 -> 3, 1e-08 -> 8)."""
    exp = _dec(unit).normalize().as_tuple().exponent
    return max(0, -int(exp))


def format_decimal(value: float, unit: float) -> str:
    """Wire format of a grid value: plain digits, no exponent, at most the unit's decimals."""
    d = _quantize_to(value, _dec(unit), ROUND_HALF_EVEN) if unit > 0 else _dec(value)
    return format(d, "f")


@dataclass(frozen=True)
class SymbolFilters:
    symbol: str
    tick_size: float
    step_size: float
    min_qty: float
    min_notional: float
    max_qty: float = math.inf
    # MARKET_LOT_SIZE.maxQty: MARKET orders have their own, often much smaller, size cap
    market_max_qty: float = math.inf

    def __post_init__(self) -> None:
        for name in ("tick_size", "step_size"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{self.symbol}: {name} must be a positive number, got {v!r}")
        for name in ("min_qty", "min_notional"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{self.symbol}: {name} must be >= 0, got {v!r}")

    # ---------------------------------------------------------------- rounding tools

    def round_qty(self, qty: float) -> float:
        """Quantity rounded down to the step (0.0 when below one step)."""
        return float(_quantize_to(qty, _dec(self.step_size), ROUND_FLOOR))

    def round_price(self, price: float, side: str | None = None) -> float:
        """Limit price on the tick: BUY rounds down, SELL rounds up (passive side), None nearest."""
        rounding = {"BUY": ROUND_FLOOR, "SELL": ROUND_CEILING}.get(side or "", ROUND_HALF_EVEN)
        return float(_quantize_to(price, _dec(self.tick_size), rounding))

    def round_stop_price(self, stop_price: float, side: str) -> float:
        """Stop price on the tick, away from the market: SELL stop down, BUY stop up."""
        if side == "SELL":
            return float(_quantize_to(stop_price, _dec(self.tick_size), ROUND_FLOOR))
        if side == "BUY":
            return float(_quantize_to(stop_price, _dec(self.tick_size), ROUND_CEILING))
        raise ValueError(f"{self.symbol}: stop side must be BUY or SELL, got {side!r}")

    def min_qty_for_notional(self, price: float) -> float:
        """Smallest valid quantity whose notional at `price` meets min notional and min qty."""
        if price <= 0:
            raise ValueError(f"{self.symbol}: price must be positive, got {price!r}")
        step = _dec(self.step_size)
        need = _dec(self.min_notional) / _dec(price)
        q = _quantize_to(need, step, ROUND_CEILING)
        q = max(q, _quantize_to(self.min_qty, step, ROUND_CEILING), step)
        return float(q)

    def format_qty(self, qty: float) -> str:
        return format_decimal(qty, self.step_size)

    def format_price(self, price: float) -> str:
        return format_decimal(price, self.tick_size)

    # ---------------------------------------------------------------- validation

    def check_qty(self, qty: float, *, what: str = "quantity") -> float:
        """Validate a quantity; returns its exact grid value. Raises FilterError with a Binance code."""
        if not (qty > 0) or not math.isfinite(qty):
            raise FilterError(
                f"{self.symbol}: {what} {qty!r} must be > 0", code=CODE_QTY_NOT_POSITIVE
            )
        if not on_grid(qty, self.step_size):
            raise FilterError(
                f"{self.symbol}: {what} {qty!r} is not a multiple of step size {self.step_size!r}"
                " (Precision is over the maximum defined for this asset.)",
                code=CODE_BAD_PRECISION,
            )
        q = snap(qty, self.step_size)
        if q < self.min_qty * (1 - _GRID_TOLERANCE):
            raise FilterError(
                f"{self.symbol}: {what} {qty!r} is below min qty {self.min_qty!r}",
                code=CODE_QTY_BELOW_MIN,
            )
        if q > self.max_qty:
            raise FilterError(
                f"{self.symbol}: {what} {qty!r} is above max qty {self.max_qty!r}",
                code=CODE_QTY_ABOVE_MAX,
            )
        return q

    def check_market_qty(self, qty: float) -> float:
        """A MARKET order's quantity against MARKET_LOT_SIZE.maxQty (-4005 above it)."""
        if qty > self.market_max_qty:
            raise FilterError(
                f"{self.symbol}: market order quantity {qty!r} is above the market max qty "
                f"{self.market_max_qty!r} (MARKET_LOT_SIZE; split it)",
                code=CODE_QTY_ABOVE_MAX,
            )
        return qty

    def check_price(self, price: float, *, what: str = "price") -> float:
        """Validate a price; returns its exact grid value."""
        if not (price > 0) or not math.isfinite(price):
            raise FilterError(
                f"{self.symbol}: {what} {price!r} must be > 0", code=CODE_PRICE_NOT_POSITIVE
            )
        if not on_grid(price, self.tick_size):
            raise FilterError(
                f"{self.symbol}: {what} {price!r} is not a multiple of tick size {self.tick_size!r}"
                " (Precision is over the maximum defined for this asset.)",
                code=CODE_BAD_PRECISION,
            )
        return snap(price, self.tick_size)

    def check_notional(self, qty: float, price: float, *, reduce_only: bool) -> None:
        """Min notional (Binance exempts reduce-only orders)."""
        if reduce_only:
            return
        notional = qty * price
        if notional < self.min_notional * (1 - _GRID_TOLERANCE):
            raise FilterError(
                f"{self.symbol}: Order's notional must be no smaller than {self.min_notional!r}"
                f" (unless you choose reduce only); got {qty!r} x {price!r} = {notional!r}",
                code=CODE_MIN_NOTIONAL,
            )

    def check_order(
        self, *, qty: float, price: float | None, reduce_only: bool, ref_price: float | None = None
    ) -> tuple[float, float | None]:
        """Validate a whole order; returns (qty, price) snapped to the grid.

        `price` is None for market orders; then min notional uses `ref_price` (last/mark) if known."""
        q = self.check_qty(qty)
        if price is None:
            self.check_market_qty(q)
        p = self.check_price(price) if price is not None else None
        px = p if p is not None else ref_price
        if px is not None and px > 0:
            self.check_notional(q, px, reduce_only=reduce_only)
        return q, p

    # ---------------------------------------------------------------- construction

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "symbol": self.symbol,
            "tick_size": self.tick_size,
            "step_size": self.step_size,
            "min_qty": self.min_qty,
            "min_notional": self.min_notional,
        }
        if math.isfinite(self.max_qty):
            d["max_qty"] = self.max_qty
        if math.isfinite(self.market_max_qty):
            d["market_max_qty"] = self.market_max_qty
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SymbolFilters:
        try:
            return cls(
                symbol=str(d["symbol"]),
                tick_size=float(d["tick_size"]),
                step_size=float(d["step_size"]),
                min_qty=float(d["min_qty"]),
                min_notional=float(d["min_notional"]),
                max_qty=float(d.get("max_qty", math.inf)),
                market_max_qty=float(d.get("market_max_qty", math.inf)),
            )
        except KeyError as e:
            raise ValueError(f"symbol filters are missing key {e.args[0]!r}: {dict(d)!r}") from None

    @classmethod
    def from_exchange_info(cls, info: Mapping[str, Any]) -> SymbolFilters:
        """Build from one `exchangeInfo.symbols[]` entry (Binance futures field names)."""
        symbol = str(info.get("symbol", "?"))
        by_type = {f.get("filterType"): f for f in info.get("filters", [])}
        try:
            price_f = by_type["PRICE_FILTER"]
            lot_f = by_type["LOT_SIZE"]
        except KeyError as e:
            raise ValueError(f"{symbol}: exchangeInfo lacks filter {e.args[0]}") from None
        notional_f = by_type.get("MIN_NOTIONAL", {})
        max_qty = float(lot_f.get("maxQty", 0) or 0) or math.inf
        market_f = by_type.get("MARKET_LOT_SIZE", {})
        market_max_qty = float(market_f.get("maxQty", 0) or 0) or max_qty
        return cls(
            symbol=symbol,
            tick_size=float(price_f["tickSize"]),
            step_size=float(lot_f["stepSize"]),
            min_qty=float(lot_f.get("minQty", 0) or 0),
            min_notional=float(notional_f.get("notional", notional_f.get("minNotional", 0)) or 0),
            max_qty=max_qty,
            market_max_qty=market_max_qty,
        )


# Binance USD-M values for the paper symbols (as published in exchangeInfo; they change rarely).
KNOWN_FILTERS: dict[str, tuple[float, float, float, float]] = {
    # symbol: (tick_size, step_size, min_qty, min_notional)
    "BTCUSDT": (0.1, 0.001, 0.001, 100.0),
    "BTCUSDC": (0.1, 0.001, 0.001, 5.0),
    "ETHUSDT": (0.01, 0.001, 0.001, 20.0),
    "XRPUSDT": (0.0001, 0.1, 0.1, 5.0),
}


def default_filters_for(symbol: str, price: float | None = None) -> SymbolFilters:
    """Plausible filters for a symbol the venue was not told about.

    Known paper symbols (`KNOWN_FILTERS`) get Binance's values; others are derived from a price.

    The tick keeps ~5 significant digits of the price (BTC 46000 -> 0.1, XRP 1.19 -> 1e-5,
    ADABTC 5.3e-5 -> 1e-9), so the small BTC-quoted spot prices still have fine ticks.
    Min notional: 5 quote units for USD-quoted symbols (Binance USD-M), 0.0001 for BTC-quoted.
    The step makes one step worth at most 1/100 of the min notional.
    """
    known = KNOWN_FILTERS.get(symbol.upper())
    if known is not None:
        return SymbolFilters(symbol, *known)
    btc_quoted = symbol.upper().endswith("BTC")
    min_notional = 0.0001 if btc_quoted else 5.0
    if price is None or not (price > 0) or not math.isfinite(price):
        return SymbolFilters(symbol, 1e-8 if btc_quoted else 0.01, 0.001, 0.001, min_notional)
    tick = 10.0 ** (math.floor(math.log10(price)) - 5)
    step_exp = math.floor(math.log10(min_notional / price / 100.0))
    step = 10.0 ** min(step_exp, 3)
    # Binance-style grid units are clean powers of ten; round away float noise in 10**k.
    tick = float(Decimal(repr(tick)).quantize(Decimal(1).scaleb(math.floor(math.log10(tick)))))
    step = float(Decimal(repr(step)).quantize(Decimal(1).scaleb(math.floor(math.log10(step)))))
    return SymbolFilters(symbol, tick, step, step, min_notional)
