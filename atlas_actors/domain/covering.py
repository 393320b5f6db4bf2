"""What protects a position: the ONE meaning of "covering stop", and of "a stop the venue removed".

A stop covers a position when it is on the position's closing side, is reduce-only or
closePosition, and (unless closePosition) its quantity is at least the open position, within
half a quantity step (a stop of 0.001 for a 1.0 position protects almost nothing). The Sentinel's
audit, the supervisor's periodic audit, `atlas audit` and `recover_protection` all use
`covers_position` / `covering_stop`, so they cannot disagree about whether a position is protected.

An algo stop the venue reports CANCELED, EXPIRED or REJECTED, or FINISHED with nothing executed
(its child order did not fill), is gone and the position is unprotected; only a FINISHED whose
child filled (or a stop still triggering) is a fired stop (`stop_removed`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from atlas_actors.domain.stops import closing_side

REMOVED_STATUSES = frozenset({"CANCELED", "EXPIRED", "REJECTED"})
FIRED_STATUSES = frozenset({"TRIGGERING", "TRIGGERED", "FINISHED"})
QTY_EPS = 1e-12


def covers_position(
    algo: Mapping[str, Any], position_side: str, position_qty: float, step_size: float
) -> bool:
    """Does the open algo `algo` protect the whole `position_qty` of a `position_side` position?"""
    if position_side not in ("LONG", "SHORT") or position_qty <= 0:
        return False
    if str(algo.get("side")) != closing_side(position_side):
        return False
    if bool(algo.get("close_position")):
        return True
    if not bool(algo.get("reduce_only")):
        return False
    tolerance = max(step_size * 0.5, QTY_EPS)
    return float(algo.get("qty") or 0.0) >= position_qty - tolerance


def covering_stop(
    algos: Iterable[Mapping[str, Any]], position_side: str, position_qty: float, step_size: float
) -> Mapping[str, Any] | None:
    """The first of `algos` (open algo orders) that covers the position, or None."""
    for algo in algos:
        if covers_position(algo, position_side, position_qty, step_size):
            return algo
    return None


def stop_removed(status: str, executed_qty: float | None) -> bool:
    """True when an algo stop in `status` (with `aq` = executed_qty) no longer protects and
    never closed the position: the venue cancelled, expired or rejected it, or it finished
    without its child order filling. None = the venue did not report aq (taken as fired)."""
    if status in REMOVED_STATUSES:
        return True
    return status == "FINISHED" and executed_qty is not None and executed_qty <= QTY_EPS


def stop_fired(status: str, executed_qty: float | None) -> bool:
    """True when the stop triggered and (as far as the venue says) its child order filled."""
    return status in FIRED_STATUSES and not stop_removed(status, executed_qty)
