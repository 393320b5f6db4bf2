"""Binance's wire conventions as the sim exchange speaks them: error replies, parameter
parsing, the recorded request, and SimVenue exceptions translated into Binance replies."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from atlas_actors.venues.base import (
    AuthError,
    OrderRejected,
    RateLimited,
    UnknownOutcome,
    VenueError,
    VenueUnavailable,
)
from atlas_actors.venues.binance import schemas
from atlas_actors.venues.binance.codes import BINANCE_MESSAGES

UNKNOWN_OUTCOME_MSG = (
    "Timeout waiting for response from backend server. Send status unknown; "
    "execution status unknown."
)
CONDITIONAL_TYPES = schemas.CONDITIONAL_ORDER_TYPES


class WireError(Exception):
    """A Binance-style error reply: HTTP status + {"code", "msg"} (+ optional headers)."""

    def __init__(
        self, status: int, code: int, msg: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(msg or BINANCE_MESSAGES.get(code, "error"))
        self.status = status
        self.code = code
        self.msg = msg or BINANCE_MESSAGES.get(code, "error")
        self.headers = headers or {}


def mandatory(params: Mapping[str, str], key: str) -> str:
    value = params.get(key)
    if value is None or value == "":
        raise WireError(
            400,
            -1102,
            f"Mandatory parameter '{key}' was not sent, was empty/null, or malformed.",
        )
    return value


def number(params: Mapping[str, str], key: str) -> float:
    text = mandatory(params, key)
    try:
        return float(text)
    except ValueError:
        raise WireError(400, -1102, f"Parameter '{key}' was malformed: {text!r}.") from None


def flag(params: Mapping[str, str], key: str) -> bool:
    return str(params.get(key, "false")).strip().lower() == "true"


@dataclass
class WireRequest:
    """One request as the server saw it (tests assert on these)."""

    method: str
    path: str
    params: dict[str, str]
    api_key: str | None
    signed: bool
    signature_valid: bool | None
    status: int = 0
    code: int | None = None
    at: float = 0.0


def venue_call(fn: Callable[[], Any]) -> Any:
    """Run one SimVenue call, translating its exceptions into Binance replies."""
    try:
        return fn()
    except RateLimited as exc:
        retry = max(1, int(round(exc.retry_after)))
        raise WireError(429, exc.code or -1003, exc.msg, {"Retry-After": str(retry)}) from None
    except UnknownOutcome:
        raise WireError(503, -1007, UNKNOWN_OUTCOME_MSG) from None
    except VenueUnavailable as exc:
        raise WireError(503, exc.code or -1001, exc.msg or "Service Unavailable.") from None
    except AuthError as exc:
        raise WireError(401, exc.code or -2015, exc.msg) from None
    except OrderRejected as exc:
        raise WireError(400, exc.code if exc.code is not None else -2010, exc.msg) from None
    except VenueError as exc:
        raise WireError(400, exc.code if exc.code is not None else -1000, exc.msg) from None
    except ValueError as exc:
        raise WireError(400, -1102, str(exc)) from None
