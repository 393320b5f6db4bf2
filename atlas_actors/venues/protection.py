"""`recover_protection` (contract §1.5), written once for every venue.

Make the venue's protective stop match the desired one: CONFIRMED (an open stop already
matches: reads only), CREATED (none to adopt) or REPLACED. The existing stop is the open algo
with the desired client id, else one that covers the position (`domain.covering`), else any
reduce-only/closePosition algo on the closing side (it protects too little: replaced).
Deviates = `domain.stops.stop_deviates`.

Replacing: the new stop is placed first and the old ones are cancelled only once the new one
is listed in open algo orders; if it is not listed within `visible_within_s` the old ones stay
(they still protect) and the caller's visibility check decides (`kept` in the result), its
deadline starting at the new stop's acknowledgement (`acked_at`, time.monotonic). Every
superseded stop on the closing side is cancelled, not only the one adopted.

Each venue supplies its calls (`ProtectionCalls`); SimVenue and BinanceAdapter both delegate
here, so the rule cannot differ between the simulator and the live venue.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from atlas_actors.domain.covering import covers_position
from atlas_actors.domain.stops import StopSpec, stop_deviates

VISIBLE_WITHIN_S = 1.0  # the contract's deadline: how long a replacement may take to be listed
POLL_S = 0.02


@dataclass(frozen=True)
class ProtectionCalls:
    """What recover_protection needs from a venue, for one symbol."""

    open_algos: Callable[[], list[dict[str, Any]]]
    step_and_tick: Callable[[], tuple[float, float]]
    place: Callable[[StopSpec, str], dict[str, Any]]  # (spec, client id) -> algo dict
    cancel: Callable[[Mapping[str, Any]], Any]
    free_client_id: Callable[[str], str]
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


def _position_side(stop_side: str) -> str:
    return "LONG" if stop_side == "SELL" else "SHORT"


def _protective(algo: Mapping[str, Any], side: str) -> bool:
    return str(algo.get("side")) == side and bool(
        algo.get("reduce_only") or algo.get("close_position")
    )


def recover_protection(
    calls: ProtectionCalls,
    symbol: str,
    desired_sl: StopSpec | Mapping[str, Any],
    *,
    visible_within_s: float = VISIBLE_WITHIN_S,
) -> dict[str, Any]:
    spec = StopSpec.coerce(desired_sl)
    if not spec.client_algo_id:
        raise ValueError(f"{symbol}: desired_sl needs a client_algo_id")
    opens = calls.open_algos()
    step, tick = calls.step_and_tick()
    pos_side = _position_side(spec.side)
    candidates = [a for a in opens if _protective(a, spec.side)]
    existing = next((a for a in opens if a.get("client_algo_id") == spec.client_algo_id), None)
    if existing is None:
        existing = next(
            (a for a in candidates if covers_position(a, pos_side, spec.qty, step)), None
        )
    if existing is None and candidates:
        existing = candidates[0]
    if existing is not None and not stop_deviates(existing, spec, step_size=step, tick_size=tick):
        return {"action": "CONFIRMED", "algo": existing}
    algo = calls.place(spec, calls.free_client_id(spec.client_algo_id))
    acked_at = time.monotonic()  # where the new stop's 1 s visibility deadline starts
    new_cid = algo.get("client_algo_id")
    superseded = [a for a in candidates if a.get("client_algo_id") != new_cid]
    if existing is not None and existing not in superseded:
        superseded.append(existing)
    out: dict[str, Any] = {"action": "REPLACED" if existing is not None else "CREATED"}
    out["algo"] = algo
    out["acked_at"] = acked_at
    if existing is None and not superseded:
        return out
    if existing is not None:
        out["replaced"] = existing
    if not _listed(calls, str(algo.get("client_algo_id")), visible_within_s):
        out["kept"] = superseded  # still protecting: the visibility check decides
        return out
    for old in superseded:
        calls.cancel(old)
    return out


def _listed(calls: ProtectionCalls, client_algo_id: str, within_s: float) -> bool:
    """Polls open algo orders until the new stop is listed; bounded by the clock and by a
    number of polls (an injected clock that stands still must not make this endless)."""
    deadline = calls.clock() + within_s
    for _ in range(max(1, int(within_s / POLL_S)) + 1):
        if any(a.get("client_algo_id") == client_algo_id for a in calls.open_algos()):
            return True
        if calls.clock() >= deadline:
            return False
        calls.sleep(POLL_S)
    return False
