"""The domain's entry points: what the engine (SymbolEngine) calls for each event.

Every function is pure: ``(state, event, ctx, params, now) -> Step(new state, commands,
§8 records)``. The input state is never mutated (copy-on-write through `Txn`); ``now`` is
epoch seconds supplied by the caller; nothing here reads a clock, does I/O or draws random
numbers, so identical inputs always give identical outputs.

Order of work on a closed bar (`on_bar`): bar_index++, regime update, ShockGuard update,
position tracking (``peak_pnl_r``, ``bars_after_tp2``), the §6 playbook when the regime
changed (else the per-bar de-risk rule), the template's own exit (ema_cross), §5 runner
management in RUNNER_ONLY, expiry of an unfilled post-only entry, then at most ONE candidate
evaluation when flat with nothing pending; every evaluation yields exactly one §8 candidate
record (OPEN or REJECT).

Fills are matched by our client ids (entry, TP, exits) and, for a triggered stop, by the
child order id the ALGO_UPDATE reported, never by time windows. A fill that arrives before
the ALGO_UPDATE naming its order is parked and applied when the update arrives.

A refused protective stop: with no live predecessor the position is unprotected, so an
EmergencyFlatten (P0); a refused *replacement* (break-even, profit lock) leaves the stop it
replaces live, so that one stays current and the position is closed at market instead.

`reconcile` (after a restart) makes the shard agree with the venue, which is the truth;
`desired_stop` is the stop the shell then makes real with ``recover_protection``.
"""

from atlas_actors.domain.core.bars import on_bar
from atlas_actors.domain.core.ctx import (
    NO_FILTERS,
    POST_ONLY_REJECT_CODE,
    STOP_FIRED,
    STOP_LOST,
    TERMINAL,
    MarketCtx,
    Step,
    SymbolFilters,
)
from atlas_actors.domain.core.fills import on_order_update
from atlas_actors.domain.core.protection import on_algo_update, on_emergency_flat, on_order_rejected
from atlas_actors.domain.core.recovery import desired_stop, next_client_id, reconcile

__all__ = [
    "NO_FILTERS",
    "POST_ONLY_REJECT_CODE",
    "STOP_FIRED",
    "STOP_LOST",
    "TERMINAL",
    "MarketCtx",
    "Step",
    "SymbolFilters",
    "desired_stop",
    "next_client_id",
    "on_algo_update",
    "on_bar",
    "on_emergency_flat",
    "on_order_rejected",
    "on_order_update",
    "reconcile",
]
