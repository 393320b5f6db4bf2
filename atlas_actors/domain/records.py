"""Per-symbol state records (contract §2.1 and §3).

`SymbolState` and `PositionState` carry exactly the contract's fields and nesting, plus a
few Atlas extensions (documented inline) that the domain needs across bars and restarts.
Both convert losslessly to and from plain dicts (the form stored in LMDB as msgpack and
passed through `StateStore`). Loading a stored dict fills missing fields with defaults,
so an older shard still loads after a field is added; a value of the wrong type raises
`RecordError` naming the field path (e.g. ``position_state.sl_algo.algo_id``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar, Union, get_args, get_origin

SCHEMA_VERSION = 1


class RecordError(ValueError):
    """A stored record has a field of the wrong type; the message names the field path."""


class Side(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"
    NONE = "NONE"


class PositionStage(StrEnum):
    """§3 stages; NONE means flat (the contract's enum only covers open positions)."""

    NONE = "NONE"
    PRE_TP1 = "PRE_TP1"
    BETWEEN_TP1_TP2 = "BETWEEN_TP1_TP2"
    RUNNER_ONLY = "RUNNER_ONLY"


STAGE_ORDER: dict[str, int] = {
    PositionStage.NONE: 0,
    PositionStage.PRE_TP1: 1,
    PositionStage.BETWEEN_TP1_TP2: 2,
    PositionStage.RUNNER_ONLY: 3,
}


@dataclass
class CooldownUntil:
    loss: int = 0
    template: int = 0
    freeze: int = 0
    shock: int = 0


@dataclass
class ShockGuardState:
    q95_1m: float | None = None
    q95_3m: float | None = None
    recalib_ts: int = 0
    trigger_count_60m: int = 0


@dataclass
class ExecQualityRoll:
    fill_rate_30: float = 1.0
    slippage_cost30_r: float = 0.0
    cancel_rate_30: float = 0.0
    spread_p95: float = 0.0
    sample_n: int = 0
    last_update_ts: int = 0


@dataclass
class HealthRoll:
    win_rate: float = 0.0
    avg_r: float = 0.0
    max_dd: float = 0.0
    profit_factor: float = 0.0
    fallback_quality: float = 1.0
    trade_n: int = 0
    last_calib_ts: int = 0


@dataclass
class SlAlgo:
    algo_id: str | None = None
    client_algo_id: str | None = None
    working_type: str = "MARK_PRICE"


@dataclass
class OrderRef:
    order_id: str | None = None
    client_order_id: str | None = None


@dataclass
class AlgoRef:
    algo_id: str | None = None
    client_algo_id: str | None = None


@dataclass
class LastOrders:
    entry: OrderRef = field(default_factory=OrderRef)
    tp: list[OrderRef] = field(default_factory=list)
    sl: AlgoRef = field(default_factory=AlgoRef)


@dataclass
class PositionState:
    """§3 position state. `qty_total` is the quantity currently open."""

    side: str = Side.NONE
    entry_price: float = 0.0
    qty_total: float = 0.0
    qty_runner: float = 0.0
    sl_price: float = 0.0
    sl_algo: SlAlgo = field(default_factory=SlAlgo)
    tp1_done: bool = False
    tp2_done: bool = False
    peak_pnl_r: float = 0.0
    bars_after_tp2: int = 0
    last_orders: LastOrders = field(default_factory=LastOrders)
    # --- Atlas extensions ---
    position_stage: str = PositionStage.NONE
    initial_qty: float = 0.0  # quantity at entry fill; TP sizes are shares of it
    risk_per_unit: float = 0.0  # |entry - initial stop|: one R per unit of quantity
    tp1_price: float = 0.0
    tp2_price: float = 0.0
    template: str = ""
    tier: str = ""
    opened_ts: int = 0
    realized_pnl: float = 0.0  # price PnL realised so far in this trade (quote currency)
    fees: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PositionState:
        return _from_plain(cls, d, "position_state")


@dataclass
class SymbolState:
    """§2.1 per-symbol state (the content of one LMDB shard)."""

    last_regime: str = "RANGE"
    last_template: str = ""
    cooldown_until: CooldownUntil = field(default_factory=CooldownUntil)
    b_blacklist_until: int = 0
    shockguard: ShockGuardState = field(default_factory=ShockGuardState)
    exec_quality_roll: ExecQualityRoll = field(default_factory=ExecQualityRoll)
    health_roll: HealthRoll = field(default_factory=HealthRoll)
    position_state: PositionState = field(default_factory=PositionState)
    # --- Atlas extensions ---
    schema_version: int = SCHEMA_VERSION
    symbol: str = ""
    seq: int = 0  # last client-id sequence number handed out (write-ahead)
    bar_index: int = 0  # closed bars processed
    last_bar_close_time: int = 0  # ms, the last closed bar processed
    regime_state: dict[str, Any] = field(default_factory=dict)  # regime.py's indicator struct
    shock_state: dict[str, Any] = field(default_factory=dict)  # shockguard.py's rolling windows
    pending: dict[str, Any] = field(default_factory=dict)  # orders in flight (entry, runner exit)
    exec_window: list[dict[str, Any]] = field(default_factory=list)  # last 30 order outcomes
    trade_window: list[dict[str, Any]] = field(default_factory=list)  # recent closed trades

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SymbolState:
        return _from_plain(cls, d, "")

    @classmethod
    def fresh(cls, symbol: str = "") -> SymbolState:
        return cls(symbol=symbol)


def state_to_dict_reusing(
    state: SymbolState, prev: SymbolState | None, prev_dict: dict[str, Any] | None
) -> dict[str, Any]:
    """`state.to_dict()`, reusing the plain form of every top-level field that is the very
    same object as in `prev` (the domain never mutates a state it returned, so an unchanged
    field is shared). Makes per-bar persistence cheap: most bars change a few fields."""
    if prev is None or prev_dict is None:
        return state.to_dict()
    names = _FIELD_NAMES.get(SymbolState)
    if names is None:
        names = _FIELD_NAMES[SymbolState] = tuple(f.name for f in dataclasses.fields(SymbolState))
    out: dict[str, Any] = {}
    for n in names:
        v = getattr(state, n)
        out[n] = prev_dict[n] if getattr(prev, n) is v else _to_plain(v)
    return out


def default_symbol_state(symbol: str = "") -> dict[str, Any]:
    """The plain-dict form of a fresh symbol's state (what the store returns for unknowns)."""
    return SymbolState.fresh(symbol).to_dict()


# ---------------------------------------------------------------- conversion helpers

T = TypeVar("T")


_PRIMITIVE = frozenset({int, float, str, bool, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _to_plain(obj: Any) -> Any:
    # Hot path (every state write): exact-type checks first, the generic cases after.
    t = type(obj)
    if t in _PRIMITIVE:
        return obj
    if t is list:
        return [v if type(v) in _PRIMITIVE else _to_plain(v) for v in obj]
    if t is dict:
        return {str(k): v if type(v) in _PRIMITIVE else _to_plain(v) for k, v in obj.items()}
    names = _FIELD_NAMES.get(t)
    if names is None and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = _FIELD_NAMES[t] = tuple(f.name for f in dataclasses.fields(obj))
    if names is not None:
        return {n: _to_plain(getattr(obj, n)) for n in names}
    if isinstance(obj, StrEnum):
        return str(obj.value)
    if isinstance(obj, list | tuple):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    return obj


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    h = _HINTS.get(cls)
    if h is None:
        h = typing.get_type_hints(cls)
        _HINTS[cls] = h
    return h


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _from_plain(cls: type[T], d: Any, path: str) -> T:
    if isinstance(d, cls):
        return d
    if not isinstance(d, dict):
        raise RecordError(f"{path or cls.__name__}: expected a mapping, got {type(d).__name__}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in d:
            kwargs[f.name] = _coerce(hints[f.name], d[f.name], _join(path, f.name))
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, path)
            except RecordError as exc:
                errors.append(str(exc))
        raise RecordError(errors[0] if errors else f"{path}: unexpected value {value!r}")
    if dataclasses.is_dataclass(tp):
        return _from_plain(tp, value, path)  # type: ignore[arg-type]
    if origin is list:
        if not isinstance(value, list | tuple):
            raise RecordError(f"{path}: expected a list, got {type(value).__name__}")
        (item_tp,) = get_args(tp) or (Any,)
        return [_coerce(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{path}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise RecordError(f"{path}: expected bool, got {type(value).__name__} {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise RecordError(f"{path}: expected int, got {type(value).__name__} {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise RecordError(f"{path}: expected float, got {type(value).__name__} {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise RecordError(f"{path}: expected str, got {type(value).__name__} {value!r}")
    raise RecordError(f"{path}: unsupported field type {tp!r}")  # pragma: no cover
