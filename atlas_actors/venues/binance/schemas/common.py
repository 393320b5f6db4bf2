"""Binance USDⓈ-M wire basics shared by the REST and stream schemas.

Venue enums are mapped once here (`ORDER_STATUS`); numbers arrive as decimal strings and go
through `Decimal` before becoming floats, and leave as plain decimal strings (never exponent
form); `req` names the missing field when a payload lacks one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

# Binance order statuses -> the contract's. NEW_ADL / NEW_INSURANCE are liquidation-engine
# executions reported in full in the same event; EXPIRED_IN_MATCH is an STP expiry.
ORDER_STATUS = {
    "NEW": "NEW",
    "PARTIALLY_FILLED": "PARTIALLY_FILLED",
    "FILLED": "FILLED",
    "CANCELED": "CANCELED",
    "EXPIRED": "EXPIRED",
    "EXPIRED_IN_MATCH": "EXPIRED",
    "REJECTED": "REJECTED",
    "NEW_ADL": "FILLED",
    "NEW_INSURANCE": "FILLED",
}
OPEN_ORDER_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
ALGO_STATUSES = ("NEW", "CANCELED", "TRIGGERING", "TRIGGERED", "FINISHED", "REJECTED", "EXPIRED")
OPEN_ALGO_STATUSES = frozenset({"NEW"})
CONDITIONAL_ORDER_TYPES = frozenset(
    {"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}
)


class SchemaError(ValueError):
    """A venue payload does not have the shape this module expects (names the field)."""


# ------------------------------------------------------------------ scalars


def dec(value: Any, field: str = "value") -> Decimal:
    """A venue number (usually a decimal string) as Decimal; '' and None count as 0."""
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, bool):
        raise SchemaError(f"{field}: expected a number, got a boolean")
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise SchemaError(f"{field}: not a number: {value!r}") from exc


def num(value: Any, field: str = "value") -> float:
    return float(dec(value, field))


def flag(value: Any) -> bool:
    """Binance booleans come as JSON booleans or as "true"/"false"/"TRUE" strings."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def id_str(value: Any) -> str:
    return "" if value is None else str(value)


def decimal_str(value: Decimal | float | int | str) -> str:
    """Plain decimal text for the wire: no exponent, no trailing zeros, never '-0'."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    if d == 0:
        return "0"
    text = format(d.normalize(), "f")
    return text


def wire_bool(value: bool) -> str:
    """python-binance str()s every parameter; Binance wants lowercase booleans."""
    return "true" if value else "false"


def req(payload: Mapping[str, Any], key: str, what: str) -> Any:
    try:
        return payload[key]
    except KeyError:
        raise SchemaError(f"{what}: missing field {key!r}") from None
    except TypeError:
        raise SchemaError(f"{what}: expected an object, got {type(payload).__name__}") from None


# ------------------------------------------------------------------ errors


def parse_error(text: str) -> tuple[int | None, str]:
    """`{"code": -2011, "msg": "Unknown order sent."}` -> (code, msg); non-JSON -> (None, text)."""
    try:
        body = json.loads(text)
    except (TypeError, ValueError):
        return None, text
    if not isinstance(body, dict):
        return None, text
    code = body.get("code")
    return (int(code) if code is not None else None), str(body.get("msg", ""))


def error_wire(code: int, msg: str) -> dict[str, Any]:
    return {"code": code, "msg": msg}


def side_of(amount: Decimal) -> str:
    if amount > 0:
        return "LONG"
    if amount < 0:
        return "SHORT"
    return "NONE"
