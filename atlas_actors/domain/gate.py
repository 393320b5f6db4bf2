"""§4 open gate: a new position may open only once every cooldown and the B blacklist have passed.

Allowed iff ``now >= max(cooldown_until.loss, .template, .freeze, .shock, b_blacklist_until)``.
A refusal names every lock that still holds and until when, so the §8 ``reject_reason`` says
exactly what to wait for (``cooldown.loss until 2026-01-01T10:30:00Z; b_blacklist until ...``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from atlas_actors.domain.records import RecordError, SymbolState

LOCK_NAMES: tuple[str, ...] = (
    "cooldown.loss",
    "cooldown.template",
    "cooldown.freeze",
    "cooldown.shock",
    "b_blacklist",
)

# Where each lock lives in the plain-dict form of SymbolState (for dict input and error paths).
_LOCK_PATHS: dict[str, tuple[str, ...]] = {
    "cooldown.loss": ("cooldown_until", "loss"),
    "cooldown.template": ("cooldown_until", "template"),
    "cooldown.freeze": ("cooldown_until", "freeze"),
    "cooldown.shock": ("cooldown_until", "shock"),
    "b_blacklist": ("b_blacklist_until",),
}


def lock_values(state: SymbolState | Mapping[str, Any]) -> list[tuple[str, int]]:
    """Every lock's until-time (epoch seconds), in `LOCK_NAMES` order."""
    if isinstance(state, SymbolState):
        cd = state.cooldown_until
        return list(
            zip(
                LOCK_NAMES,
                (cd.loss, cd.template, cd.freeze, cd.shock, state.b_blacklist_until),
                strict=True,
            )
        )
    if not isinstance(state, Mapping):
        raise RecordError(
            f"gate: expected a SymbolState or its dict form, got {type(state).__name__}"
        )
    return [(name, _read_epoch(state, _LOCK_PATHS[name])) for name in LOCK_NAMES]


def binding_locks(state: SymbolState | Mapping[str, Any], now: float) -> list[tuple[str, int]]:
    """The locks that still hold at `now` (until > now), in `LOCK_NAMES` order."""
    return [(name, until) for name, until in lock_values(state) if until > now]


def open_allowed(state: SymbolState | Mapping[str, Any], now: float) -> tuple[bool, str]:
    """(allowed, reject_reason); the reason is "" when allowed."""
    binding = binding_locks(state, now)
    if not binding:
        return True, ""
    return False, "; ".join(f"{name} until {format_epoch(until)}" for name, until in binding)


def format_epoch(ts: int) -> str:
    """ISO-8601 UTC with a Z suffix; values outside datetime's range fall back to raw seconds."""
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"epoch {ts}s"


def _read_epoch(state: Mapping[str, Any], keys: tuple[str, ...]) -> int:
    # Missing fields read as 0 (an unset lock), matching SymbolState's defaults.
    node: Any = state
    for depth, key in enumerate(keys):
        if not isinstance(node, Mapping):
            path = ".".join(keys[:depth])
            raise RecordError(f"{path}: expected a mapping, got {type(node).__name__}")
        if key not in node:
            return 0
        node = node[key]
    path = ".".join(keys)
    if isinstance(node, bool):
        raise RecordError(f"{path}: expected int epoch seconds, got bool {node!r}")
    if isinstance(node, int):
        return node
    if isinstance(node, float) and node.is_integer():
        return int(node)
    raise RecordError(f"{path}: expected int epoch seconds, got {type(node).__name__} {node!r}")
