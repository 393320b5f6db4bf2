"""Binance USDⓈ-M futures venue: `BinanceAdapter` (contract §1 on python-binance) and its parts.

- `adapter`: the `BinanceAdapter` facade, grouped by resource like the venue's API;
- `http`: transport (signing, retries, error mapping, the request-weight governor);
- `codes`: the Binance error code -> exception table (also used by the simulators);
- `market`, `account`, `orders`, `algos`: REST by resource;
- `session`, `streams`: the market and user-data streams;
- `tracking`: what the adapter believes is open at the venue;
- `schemas/`: Binance wire shapes <-> Atlas dicts and events.

The public names below are loaded on first use, so the simulators can import `codes` and
`schemas` without pulling in python-binance (and the adapter) with them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atlas_actors.venues.binance.adapter import (
        PROD_REST_URL,
        PROD_WS_URL,
        TESTNET_REST_URL,
        TESTNET_WS_URL,
        BinanceAdapter,
    )
    from atlas_actors.venues.binance.http import BinanceHttp, WeightGovernor
    from atlas_actors.venues.binance.streams import StreamWorker

_EXPORTS = {
    "BinanceAdapter": "adapter",
    "PROD_REST_URL": "adapter",
    "PROD_WS_URL": "adapter",
    "TESTNET_REST_URL": "adapter",
    "TESTNET_WS_URL": "adapter",
    "BinanceHttp": "http",
    "WeightGovernor": "http",
    "StreamWorker": "streams",
}

__all__ = [
    "PROD_REST_URL",
    "PROD_WS_URL",
    "TESTNET_REST_URL",
    "TESTNET_WS_URL",
    "BinanceAdapter",
    "BinanceHttp",
    "StreamWorker",
    "WeightGovernor",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
