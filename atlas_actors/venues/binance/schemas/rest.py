"""Binance USDⓈ-M REST shapes <-> Atlas's normalised dicts: exchangeInfo, market data,
account and positions (orders and algo orders are in `orders.py`).

`parse_*` reads a response once, at the edge, into the snake_case dicts documented in
`venues/base.py`; the encoders (`*_wire`) go the other way for the sim exchange, so both ends
of the loopback share one definition of the format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from atlas_actors.venues.binance.schemas.common import (
    SchemaError,
    dec,
    decimal_str,
    flag,
    num,
    req,
    side_of,
)

# ------------------------------------------------------------------ exchangeInfo


def parse_symbol_filters(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One `exchangeInfo.symbols[]` entry -> the filter values an order must respect."""
    symbol = str(req(entry, "symbol", "exchangeInfo symbol"))
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
    for entry in req(payload, "symbols", "exchangeInfo"):
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
    market_max_qty: str | None = None,
    quote_asset: str | None = None,
    status: str = "TRADING",
) -> dict[str, Any]:
    quote = quote_asset or _quote_of(symbol)
    return {
        "symbol": symbol,
        "pair": symbol,
        "contractType": "PERPETUAL",
        "status": status,
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
                "maxQty": market_max_qty or max_qty,
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
        "symbol": str(req(payload, "symbol", "premiumIndex")),
        "mark_price": num(req(payload, "markPrice", "premiumIndex"), "premiumIndex.markPrice"),
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
    return num(req(payload, "price", "ticker/price"), "ticker.price")


def parse_open_interest(payload: Mapping[str, Any]) -> float:
    return num(req(payload, "openInterest", "openInterest"), "openInterest")


def parse_funding_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "symbol": str(r.get("symbol", "")),
            "funding_rate": num(req(r, "fundingRate", "fundingRate"), "fundingRate"),
            "funding_time": int(r.get("fundingTime") or 0),
        }
        for r in rows
    ]


# ------------------------------------------------------------------ account and positions


def parse_account(payload: Mapping[str, Any], margin_asset: str = "USDT") -> dict[str, Any]:
    """GET /fapi/v2/account -> total_equity, available_balance, margin_used (+ per asset) of
    the pool that margins `margin_asset`'s symbols.

    Single-asset mode: every margin asset (USDT, USDC, ...) is its own pool and the top-level
    totals are documented as "only for USDT asset", so the pool is the `assets[]` row of
    `margin_asset` (never a sum of rows: 1000 USDC + 5000 USDT + 2 BNB is not 6002 of
    anything). Multi-Assets mode (`multiAssetsMargin`): one pool of all collateral, and the
    top-level totals are its USD value."""
    assets: dict[str, dict[str, float]] = {}
    for row in payload.get("assets", []):
        asset = str(req(row, "asset", "account.assets[]"))
        assets[asset] = {
            "wallet_balance": num(row.get("walletBalance"), f"{asset}.walletBalance"),
            "unrealized_pnl": num(row.get("unrealizedProfit"), f"{asset}.unrealizedProfit"),
            "margin_balance": num(row.get("marginBalance"), f"{asset}.marginBalance"),
            "available_balance": num(row.get("availableBalance"), f"{asset}.availableBalance"),
            "initial_margin": num(row.get("initialMargin"), f"{asset}.initialMargin"),
            "maint_margin": num(row.get("maintMargin"), f"{asset}.maintMargin"),
        }
    multi = flag(payload.get("multiAssetsMargin"))
    if multi or (not assets and margin_asset == "USDT"):
        total = num(payload.get("totalMarginBalance"), "totalMarginBalance")
        available = num(payload.get("availableBalance"), "availableBalance")
        used = num(payload.get("totalInitialMargin"), "totalInitialMargin")
        wallet = num(payload.get("totalWalletBalance"), "totalWalletBalance")
        upnl = num(payload.get("totalUnrealizedProfit"), "totalUnrealizedProfit")
    else:
        pool = assets.get(margin_asset) or dict.fromkeys(
            ("margin_balance", "available_balance", "initial_margin", "wallet_balance"), 0.0
        )
        total = pool["margin_balance"]
        available = pool["available_balance"]
        used = pool["initial_margin"]
        wallet = pool["wallet_balance"]
        upnl = pool.get("unrealized_pnl", 0.0)
    return {
        "asset": "USD" if multi else margin_asset,
        "multi_assets_margin": multi,
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
        asset = str(req(row, "asset", "balance[]"))
        out[asset] = {
            "wallet_balance": num(row.get("balance"), f"{asset}.balance"),
            "cross_wallet_balance": num(row.get("crossWalletBalance"), f"{asset}.cross"),
            "unrealized_pnl": num(row.get("crossUnPnl"), f"{asset}.crossUnPnl"),
            "available_balance": num(row.get("availableBalance"), f"{asset}.availableBalance"),
        }
    return out


def _asset_rows(balances: Mapping[str, Any], asset: str) -> dict[str, dict[str, Decimal]]:
    """asset -> wallet/upnl/margin/available/initial of an Atlas balances dict: its `assets`
    rows when it has them (a multi-asset wallet), else the one pool of `asset`."""
    rows = balances.get("assets") or {}
    if not rows:
        total = Decimal(str(balances.get("total_equity", 0.0)))
        upnl = Decimal(str(balances.get("unrealized_pnl", 0.0)))
        rows = {
            asset: {
                "wallet_balance": balances.get("wallet_balance", float(total - upnl)),
                "unrealized_pnl": upnl,
                "margin_balance": total,
                "available_balance": balances.get("available_balance", 0.0),
                "initial_margin": balances.get("margin_used", 0.0),
            }
        }
    keys = ("wallet_balance", "unrealized_pnl", "margin_balance", "available_balance")
    return {
        a: {k: Decimal(str(r.get(k, 0.0))) for k in (*keys, "initial_margin")}
        for a, r in rows.items()
    }


def account_wire(balances: Mapping[str, Any], asset: str, update_time: int) -> dict[str, Any]:
    """An Atlas balances dict -> the /fapi/v2/account shape: one `assets[]` row per wallet
    asset; the top-level totals are the USDT row's in single-asset mode (as Binance documents
    them) and the balances' USD totals in Multi-Assets mode."""
    rows = _asset_rows(balances, asset)
    multi = bool(balances.get("multi_assets_margin"))
    wire_rows = []
    for name, r in rows.items():
        wire_rows.append(
            {
                "asset": name,
                "walletBalance": decimal_str(r["wallet_balance"]),
                "unrealizedProfit": decimal_str(r["unrealized_pnl"]),
                "marginBalance": decimal_str(r["margin_balance"]),
                "maintMargin": "0",
                "initialMargin": decimal_str(r["initial_margin"]),
                "positionInitialMargin": decimal_str(r["initial_margin"]),
                "openOrderInitialMargin": "0",
                "crossWalletBalance": decimal_str(r["wallet_balance"]),
                "crossUnPnl": decimal_str(r["unrealized_pnl"]),
                "availableBalance": decimal_str(r["available_balance"]),
                "maxWithdrawAmount": decimal_str(r["available_balance"]),
                "marginAvailable": True,
                "updateTime": update_time,
            }
        )
    if multi:
        total = Decimal(str(balances.get("total_equity", 0.0)))
        upnl = Decimal(str(balances.get("unrealized_pnl", 0.0)))
        top = {
            "wallet_balance": Decimal(str(balances.get("wallet_balance", float(total - upnl)))),
            "unrealized_pnl": upnl,
            "margin_balance": total,
            "available_balance": Decimal(str(balances.get("available_balance", 0.0))),
            "initial_margin": Decimal(str(balances.get("margin_used", 0.0))),
        }
    else:
        zero = Decimal(0)
        top = rows.get("USDT") or dict.fromkeys(
            ("wallet_balance", "unrealized_pnl", "margin_balance", "available_balance"), zero
        ) | {"initial_margin": zero}
    return {
        "feeTier": 0,
        "canTrade": True,
        "canDeposit": True,
        "canWithdraw": True,
        "updateTime": 0,
        "multiAssetsMargin": multi,
        "totalInitialMargin": decimal_str(top["initial_margin"]),
        "totalMaintMargin": "0",
        "totalWalletBalance": decimal_str(top["wallet_balance"]),
        "totalUnrealizedProfit": decimal_str(top["unrealized_pnl"]),
        "totalMarginBalance": decimal_str(top["margin_balance"]),
        "totalPositionInitialMargin": decimal_str(top["initial_margin"]),
        "totalOpenOrderInitialMargin": "0",
        "totalCrossWalletBalance": decimal_str(top["wallet_balance"]),
        "totalCrossUnPnl": decimal_str(top["unrealized_pnl"]),
        "availableBalance": decimal_str(top["available_balance"]),
        "maxWithdrawAmount": decimal_str(top["available_balance"]),
        "assets": wire_rows,
        "positions": [],
    }


def balance_rows_wire(
    balances: Mapping[str, Any], asset: str, update_time: int
) -> list[dict[str, Any]]:
    """GET /fapi/v2|v3/balance: one row per wallet asset."""
    return [
        {
            "accountAlias": "SimX",
            "asset": name,
            "balance": decimal_str(r["wallet_balance"]),
            "crossWalletBalance": decimal_str(r["wallet_balance"]),
            "crossUnPnl": decimal_str(r["unrealized_pnl"]),
            "availableBalance": decimal_str(r["available_balance"]),
            "maxWithdrawAmount": decimal_str(r["available_balance"]),
            "marginAvailable": True,
            "updateTime": update_time,
        }
        for name, r in _asset_rows(balances, asset).items()
    ]


def parse_position_row(row: Mapping[str, Any]) -> dict[str, Any]:
    symbol = str(req(row, "symbol", "positionRisk[]"))
    amount = dec(row.get("positionAmt"), f"{symbol}.positionAmt")
    leverage = row.get("leverage")
    return {
        "symbol": symbol,
        "side": side_of(amount),
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
