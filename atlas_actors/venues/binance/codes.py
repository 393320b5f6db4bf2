"""Binance USDⓈ-M error codes the adapter acts on (moved from binance.py)."""

from __future__ import annotations

# Codes the adapter acts on by value (not through the exception class).
NOT_FOUND_CODES = frozenset({-2011, -2013})
DUPLICATE_CODE = -4116
TRIGGERING_CODE = -4117
ALREADY_ONE_WAY_CODE = -4059
INVALID_LISTEN_KEY_CODE = -1125
TIMESTAMP_CODE = -1021
MARGIN_CODE = -2019
POST_ONLY_CODE = -5022

# Code -> exception class families.
RATE_LIMIT_CODES = frozenset({-1003, -1015})
AUTH_CODES = frozenset({-1002, -1022, -2014, -2015})
FILTER_CODES = frozenset({-1013, -1111, -4003, -4004, -4005, -4014, -4023, -4164})
UNKNOWN_STATUS_CODES = frozenset({-1006, -1007})
SERVER_BUSY_CODES = frozenset({-1001, -1008})
