"""ShockGuard: per-symbol calibration of "normal" absolute 1 m and 3 m returns, and the margin de-risk rule.

Calibration: every closed bar adds its absolute return to the current calibration period;
every ``recalib_every_s`` seconds the period is closed, only the periods inside the rolling
``window_s`` are kept, and ``q95_1m`` / ``q95_3m`` are recomputed over them (``recalib_ts``
records when). On 1 m bars, ``q95_1m`` comes from 1-bar returns and ``q95_3m`` from 3-bar
returns. On bars coarser than 1 m (or 3 m) the matching q95 stays ``None`` (the contract
allows it) and the guard calibrates on the bar interval's own returns instead (kept in the
guard's private state as ``q95_bar``). A return spanning a data gap is not a sample.

Trigger: the current move exceeds ``trigger_mult`` times its q95. A trigger sets
``cooldown_until.shock = now + cooldown_s`` (never shortening it) and counts in
``trigger_count_60m`` (triggers during the last 60 minutes).

Margin de-risk: `margin_derisk_qty` says how much of a position to close (reduce-only) when
the account's margin use exceeds ``margin_derisk_share`` of equity.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any

from atlas_actors.domain.params import RiskParams, ShockGuardParams
from atlas_actors.domain.records import CooldownUntil, ShockGuardState

TRIGGER_WINDOW_S = 3600


def q95(values: list[float]) -> float:
    """The 95th percentile (linear interpolation between order statistics)."""
    s = sorted(values)
    pos = 0.95 * (len(s) - 1)
    i = int(pos)
    if i + 1 >= len(s):
        return s[-1]
    return s[i] + (s[i + 1] - s[i]) * (pos - i)


def update(
    ss: dict[str, Any],
    sg: ShockGuardState,
    cd: CooldownUntil,
    close: float,
    interval_s: int,
    gap: int,
    p: ShockGuardParams,
    now: int,
) -> tuple[dict[str, Any], ShockGuardState, CooldownUntil, bool]:
    """Fold one closed bar in; returns (shock_state, shockguard, cooldown_until, triggered).

    Inputs are never mutated; unchanged parts are returned as the same objects.
    ``shock_state`` keys: c (last closes), a / b (this period's samples of the 1 m (or
    own-interval) and 3 m series), ps (period start), pa / pb (closed periods, sorted),
    qb (q95 of the own-interval series), tr (trigger times of the last 60 min)."""
    closes: Any  # the last <= 3 closes (a tuple; a list once it went through msgpack)
    if ss:
        closes = () if gap else ss["c"]
        cur_a: list[float] = ss["a"]
        cur_b: list[float] = ss["b"]
        start: int = ss["ps"]
        per_a: list[list[float]] = ss["pa"]
        per_b: list[list[float]] = ss["pb"]
        qbar: float | None = ss["qb"]
        triggers: list[int] = ss["tr"]
    else:
        closes, cur_a, cur_b, start, per_a, per_b, qbar, triggers = (), [], [], 0, [], [], None, []
    r1 = r3 = -1.0
    n = len(closes)
    if n:
        prev = closes[-1]
        if prev > 0:
            r1 = abs(close / prev - 1.0)
        if n >= 3 and closes[-3] > 0:
            r3 = abs(close / closes[-3] - 1.0)
        closes = (closes[-2], prev, close) if n >= 2 else (prev, close)
    else:
        closes = (close,)
    # 1 m bars feed both series; 3 m bars feed only the 3 m series (their own returns);
    # coarser bars feed their own series (kept in "a", q95 in "qb"), both q95s stay None.
    if interval_s <= 60:
        s_a, s_b = r1, r3
    elif interval_s <= 180:
        s_a, s_b = -1.0, r1
    else:
        s_a, s_b = r1, -1.0
    if s_a >= 0:
        cur_a = cur_a + [s_a]
    if s_b >= 0:
        cur_b = cur_b + [s_b]
    new_sg = sg
    if start == 0:
        start = now
    elif now - start >= p.recalib_every_s:
        keep = max(1, math.ceil(p.window_s / p.recalib_every_s))
        per_a = (per_a + [sorted(cur_a)])[-keep:]
        per_b = (per_b + [sorted(cur_b)])[-keep:]
        cur_a, cur_b, start = [], [], now
        qa = q95_of_periods(per_a, p.min_samples, qbar if interval_s > 180 else sg.q95_1m)
        qb = q95_of_periods(per_b, p.min_samples, sg.q95_3m)
        if interval_s <= 60:
            new_sg = _sg(sg, q95_1m=qa, q95_3m=qb, recalib_ts=now)
            qbar = None
        elif interval_s <= 180:
            new_sg = _sg(sg, q95_1m=None, q95_3m=qb, recalib_ts=now)
            qbar = None
        else:
            new_sg = _sg(sg, q95_1m=None, q95_3m=None, recalib_ts=now)
            qbar = qa
    qa_now = qbar if interval_s > 180 else new_sg.q95_1m
    qb_now = new_sg.q95_3m
    hit = (qa_now is not None and s_a > p.trigger_mult * qa_now) or (
        qb_now is not None and s_b > p.trigger_mult * qb_now
    )
    if triggers and now - triggers[0] >= TRIGGER_WINDOW_S:
        triggers = [t for t in triggers if now - t < TRIGGER_WINDOW_S]
    if hit:
        triggers = triggers + [now]
    new_cd = cd
    if hit and now + p.cooldown_s > cd.shock:
        new_cd = CooldownUntil(cd.loss, cd.template, cd.freeze, now + p.cooldown_s)
    if len(triggers) != new_sg.trigger_count_60m:
        new_sg = _sg(new_sg, trigger_count_60m=len(triggers))
    new_ss = {
        "c": closes,
        "a": cur_a,
        "b": cur_b,
        "ps": start,
        "pa": per_a,
        "pb": per_b,
        "qb": qbar,
        "tr": triggers,
    }
    return new_ss, new_sg, new_cd, hit


def q95_of_periods(
    periods: list[list[float]], min_samples: int, hint: float | None
) -> float | None:
    """Exact q95 of the union of sorted periods. Only the top ~5 % matters, so with a hint
    (the previous q95) only the values above 0.7 x hint are gathered (a bisect per period)
    and sorted; without one, or when too few lie above it, everything is sorted."""
    total = 0
    for x in periods:
        total += len(x)
    if total < min_samples:
        return None
    pos = 0.95 * (total - 1)
    i = int(pos)
    frac = pos - i
    need = total - i  # values at or above ascending rank i
    if hint is not None and hint > 0:
        pivot = 0.7 * hint
        top: list[float] = []
        for x in periods:
            top.extend(x[bisect_left(x, pivot) :])
        if len(top) >= need:
            top.sort()
            j = len(top) - need  # ascending rank i within `top`
            if j + 1 >= len(top):
                return top[j]
            return top[j] + (top[j + 1] - top[j]) * frac
    merged: list[float] = []
    for x in periods:
        merged.extend(x)
    return q95(merged)


def _sg(sg: ShockGuardState, **kw: Any) -> ShockGuardState:
    return ShockGuardState(
        q95_1m=kw.get("q95_1m", sg.q95_1m),
        q95_3m=kw.get("q95_3m", sg.q95_3m),
        recalib_ts=kw.get("recalib_ts", sg.recalib_ts),
        trigger_count_60m=kw.get("trigger_count_60m", sg.trigger_count_60m),
    )


def margin_derisk_qty(
    qty_total: float, margin_used: float, equity: float, rp: RiskParams, step_size: float
) -> float:
    """Quantity to close when margin use exceeds the configured share of equity (0 = none)."""
    if qty_total <= 0 or equity <= 0 or margin_used <= rp.margin_derisk_share * equity:
        return 0.0
    q = qty_total * rp.margin_derisk_reduce
    if step_size > 0:
        q = math.floor(q / step_size + 1e-9) * step_size
    return min(q, qty_total)
