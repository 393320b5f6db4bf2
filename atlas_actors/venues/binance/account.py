"""Binance USDⓈ-M account and position settings (contract §1.2): balances, positions,
leverage and the position mode."""

from __future__ import annotations

from typing import Any

from atlas_actors.venues.base import OrderRejected, UnknownOutcome
from atlas_actors.venues.binance import schemas
from atlas_actors.venues.binance.codes import ALREADY_ONE_WAY_CODE
from atlas_actors.venues.binance.http import BinanceHttp

# Quote assets of USDⓈ-M contracts that margin in their own pool (single-asset mode).
MARGIN_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD")


class MarginAssetMix(ValueError):
    """One instance was configured with symbols of different margin assets."""


def margin_asset_of_symbols(symbols: tuple[str, ...], default: str = "USDT") -> str:
    """The margin asset every configured symbol settles in (its quote asset: BTCUSDC ->
    USDC). Sizing reads that asset's pool, so symbols of two pools in one instance are refused
    (MarginAssetMix naming them): run one instance per margin asset."""
    by_asset: dict[str, list[str]] = {}
    for sym in symbols:
        quote = next((q for q in MARGIN_QUOTES if sym.endswith(q)), None)
        if quote is not None:
            by_asset.setdefault(quote, []).append(sym)
    if len(by_asset) > 1:
        mix = "; ".join(f"{a}: {', '.join(s)}" for a, s in sorted(by_asset.items()))
        raise MarginAssetMix(
            f"symbols of different margin assets in one instance ({mix}): each margin asset "
            "is its own pool; run one instance (own client_id_prefix) per margin asset"
        )
    return next(iter(by_asset), default)


class Account:
    def __init__(
        self, http: BinanceHttp, symbols: tuple[str, ...], margin_asset: str = "USDT"
    ) -> None:
        self._http = http
        self.symbols = symbols
        self.margin_asset = margin_asset

    def get_balances(self) -> dict[str, Any]:
        """The pool of `margin_asset` (single-asset mode) or the USD totals (Multi-Assets)."""
        body = self._http.call("account", self._http.client.futures_account, {}, weight=5)
        return schemas.parse_account(body, self.margin_asset)

    def get_positions(self) -> dict[str, dict[str, Any]]:
        """Configured symbols (flat ones as side NONE) plus every symbol with a position.
        Uses positionRisk v2, which carries leverage (v3 does not)."""
        rows = self._http.call(
            "positionRisk", self._http.client.futures_position_information, {"version": 2}, weight=5
        )
        parsed = schemas.parse_positions(rows)
        out = {s: p for s, p in parsed.items() if p["side"] != "NONE" or s in self.symbols}
        for sym in self.symbols:
            out.setdefault(
                sym,
                {
                    "symbol": sym,
                    "side": "NONE",
                    "qty": 0.0,
                    "entry_price": 0.0,
                    "unrealized_pnl": 0.0,
                    "leverage": 0,
                },
            )
        return out

    def set_leverage(self, symbol: str, leverage: int) -> None:
        if isinstance(leverage, bool) or not isinstance(leverage, int) or leverage < 1:
            raise ValueError(f"{symbol}: leverage must be a positive int, got {leverage!r}")
        params = {"symbol": symbol, "leverage": leverage}
        for attempt in range(1, self._http.max_write_attempts + 1):
            try:
                self._http.call(
                    "leverage",
                    self._http.client.futures_change_leverage,
                    params,
                    weight=1,
                    write=True,
                )
                return
            except UnknownOutcome:
                if attempt >= self._http.max_write_attempts:
                    raise
                self._http.sleep(0.2 * attempt)  # idempotent: setting it again is harmless

    def set_position_mode_one_way(self) -> None:
        for attempt in range(1, self._http.max_write_attempts + 1):
            try:
                self._http.call(
                    "positionSide/dual",
                    self._http.client.futures_change_position_mode,
                    {"dualSidePosition": "false"},
                    weight=1,
                    write=True,
                )
                return
            except OrderRejected as exc:
                if exc.code == ALREADY_ONE_WAY_CODE:
                    return  # "No need to change position side": already one-way
                raise
            except UnknownOutcome:
                if attempt >= self._http.max_write_attempts:
                    raise
                self._http.sleep(0.2 * attempt)

    def get_position_mode(self) -> str:
        """ "ONE_WAY" or "HEDGE" (GET /fapi/v1/positionSide/dual)."""
        body = self._http.call(
            "positionSide/dual", self._http.client.futures_get_position_mode, {}, weight=30
        )
        return "HEDGE" if schemas.flag(body.get("dualSidePosition")) else "ONE_WAY"
