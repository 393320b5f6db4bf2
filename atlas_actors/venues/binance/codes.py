"""Binance USDⓈ-M error codes -> the venue error hierarchy: the one table.

Used by `BinanceAdapter` (codes in HTTP error bodies), by SimVenue's fault injection
(`faults.py`) and by the sim exchange server (messages), so the simulators fail the way the
adapter reads a real failure. HTTP statuses without a code in this table (429/418/403, 401,
408, 5xx) are the adapter's business (`http.py`).

Per code (reference: Binance "Error Codes", `docs` §3 of the USDⓈ-M reference):
- rate limits (-1003 weight / IP ban, -1015 order count) -> RateLimited (back off);
- auth (-1002 UNAUTHORIZED, -1022 INVALID_SIGNATURE, -2014/-2015 API key) -> AuthError;
- -1021 INVALID_TIMESTAMP -> VenueError (rejected before execution: resync the clock, retry
  once; not an order reject, so nothing treats it as "this order can never be placed");
- filter failures (-1013 "Filter failure: ...", -1111 precision, -4003/-4004/-4005 quantity,
  -4014 tick, -4023 step, -4164 notional) -> FilterError (reload exchangeInfo);
- -2019 margin -> InsufficientMargin; -5022 post-only would take -> WouldTakeLiquidity;
- -1006 UNEXPECTED_RESP / -1007 TIMEOUT (execution status unknown) -> UnknownOutcome on a
  write (query by client id before any resend), VenueUnavailable on a read;
- -1001 DISCONNECTED / -1008 SERVER_BUSY (a failure: not executed, safe to resend with
  backoff) -> VenueUnavailable;
- anything else -> OrderRejected on a write, VenueError on a read.
"""

from __future__ import annotations

from atlas_actors.venues.base import (
    AuthError,
    FilterError,
    InsufficientMargin,
    OrderRejected,
    RateLimited,
    UnknownOutcome,
    VenueError,
    VenueUnavailable,
    WouldTakeLiquidity,
)

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

# Binance's messages for the codes the simulators produce or a test may inject.
BINANCE_MESSAGES: dict[int, str] = {
    -1001: "Internal error; unable to process your request. Please try again.",
    -1003: "Too many requests; current limit is 2400 requests per minute.",
    -1008: "Server is currently overloaded with other requests. Please try again in a few minutes.",
    -1015: "Too many new orders; current limit is 300 orders per TEN_SECONDS.",
    -1021: "Timestamp for this request is outside of the recvWindow.",
    -1022: "Signature for this request is not valid.",
    -1102: "A mandatory parameter was not sent, was empty/null, or malformed.",
    -1106: "Parameter 'reduceonly' sent when not required.",
    -1111: "Precision is over the maximum defined for this asset.",
    -1115: "Invalid timeInForce.",
    -1116: "Invalid orderType.",
    -1117: "Invalid side.",
    -2010: "NEW_ORDER_REJECTED",
    -2011: "Unknown order sent.",
    -2013: "Order does not exist.",
    -2014: "API-key format invalid.",
    -2015: "Invalid API-key, IP, or permissions for action.",
    -2019: "Margin is insufficient.",
    -2021: "Order would immediately trigger.",
    -2022: "ReduceOnly Order is rejected.",
    -4003: "Quantity less than or equal to zero.",
    -4004: "Quantity less than min qty.",
    -4005: "Quantity greater than max qty.",
    -4014: "Price not increased by tick size.",
    -4015: "Client order id is not valid.",
    -4023: "Qty not increased by step size.",
    -4028: "Leverage is not valid.",
    -4116: "ClientOrderId is duplicated.",
    -4164: "Order's notional must be no smaller than 5 (unless you choose reduce only).",
    -5022: "Due to the order could not be executed as maker, the Post Only order will be rejected.",
}


def classified(code: int | None) -> bool:
    """True when `code` has its own row in the table (else the HTTP status decides)."""
    return code is not None and (
        code in RATE_LIMIT_CODES
        or code in AUTH_CODES
        or code in FILTER_CODES
        or code in UNKNOWN_STATUS_CODES
        or code in SERVER_BUSY_CODES
        or code in (TIMESTAMP_CODE, MARGIN_CODE, POST_ONLY_CODE)
    )


def error_for_code(
    code: int, msg: str | None = None, *, write: bool = True, retry_after: float = 1.0
) -> VenueError:
    """The Atlas exception a Binance error code maps to (`write`: the request would have
    changed venue state; it decides the unknown-status codes and the fallback)."""
    text = msg or BINANCE_MESSAGES.get(code, f"Binance error {code}")
    if code in RATE_LIMIT_CODES:
        return RateLimited(retry_after, text, code=code)
    if code in AUTH_CODES:
        return AuthError(text, code=code)
    if code == TIMESTAMP_CODE:
        return VenueError(text, code=code)
    if code == MARGIN_CODE:
        return InsufficientMargin(code, text)
    if code == POST_ONLY_CODE:
        return WouldTakeLiquidity(code, text)
    if code in FILTER_CODES:
        return FilterError(text, code=code)
    if code in SERVER_BUSY_CODES:
        return VenueUnavailable(text, code=code)
    if code in UNKNOWN_STATUS_CODES:
        return UnknownOutcome(text, code=code) if write else VenueUnavailable(text, code=code)
    if write:
        return OrderRejected(code, text)
    return VenueError(text, code=code)
