"""Rolling quality measures: `exec_quality_roll` over the last 30 order outcomes and
`health_roll` over recent closed trades (contract §2.1), plus the B-tier health bound.

Order outcomes (``SymbolState.exec_window``) are small dicts::

    {"kind": "entry"|"tp"|"exit", "post_only": bool,
     "outcome": "filled"|"canceled"|"rejected", "slip_r": float, "spread_bps": float, "ts": int}

- ``fill_rate_30``: share of the post-only orders in the window that filled;
- ``cancel_rate_30``: share of them cancelled unfilled (expired entries, replaced exits);
- ``slippage_cost30_r``: total slippage of market fills in the window, in R (cost > 0);
- ``spread_p95``: 95th percentile of the spread (bps) seen when the orders were placed.

Closed trades (``SymbolState.trade_window``) carry ``r`` (net result in R), ``tier``,
``limit_exits`` (planned limit exits that filled or fell back) and ``fallbacks`` (those
that needed the market fallback).
"""

from __future__ import annotations

from typing import Any

from atlas_actors.domain.records import ExecQualityRoll, HealthRoll

EXEC_WINDOW = 30
TRADE_WINDOW = 50
PF_CAP = 100.0  # profit factor with no losing trade (kept finite for JSON and msgpack)


def push_exec(
    window: list[dict[str, Any]], outcome: dict[str, Any], now: int
) -> tuple[list[dict[str, Any]], ExecQualityRoll]:
    new = (window + [outcome])[-EXEC_WINDOW:]
    return new, exec_roll(new, now)


def exec_roll(window: list[dict[str, Any]], now: int) -> ExecQualityRoll:
    posted = [o for o in window if o.get("post_only")]
    n_post = len(posted)
    filled = sum(1 for o in posted if o.get("outcome") == "filled")
    canceled = sum(1 for o in posted if o.get("outcome") == "canceled")
    slip = sum(float(o.get("slip_r", 0.0)) for o in window if not o.get("post_only"))
    spreads = sorted(float(o.get("spread_bps", 0.0)) for o in window)
    p95 = 0.0
    if spreads:
        pos = 0.95 * (len(spreads) - 1)
        i = int(pos)
        j = min(i + 1, len(spreads) - 1)
        p95 = spreads[i] + (spreads[j] - spreads[i]) * (pos - i)
    return ExecQualityRoll(
        fill_rate_30=filled / n_post if n_post else 1.0,
        slippage_cost30_r=slip,
        cancel_rate_30=canceled / n_post if n_post else 0.0,
        spread_p95=p95,
        sample_n=len(window),
        last_update_ts=now,
    )


def push_trade(
    window: list[dict[str, Any]], trade: dict[str, Any], now: int
) -> tuple[list[dict[str, Any]], HealthRoll]:
    new = (window + [trade])[-TRADE_WINDOW:]
    return new, health_roll(new, now)


def health_roll(trades: list[dict[str, Any]], now: int) -> HealthRoll:
    n = len(trades)
    if n == 0:
        return HealthRoll(last_calib_ts=now)
    rs = [float(t.get("r", 0.0)) for t in trades]
    wins = [r for r in rs if r > 0]
    gross_win = sum(wins)
    gross_loss = -sum(r for r in rs if r < 0)
    if gross_loss > 0:
        pf = min(PF_CAP, gross_win / gross_loss)
    else:
        pf = PF_CAP if gross_win > 0 else 0.0
    peak = cum = max_dd = 0.0
    for r in rs:
        cum += r
        if cum > peak:
            peak = cum
        if peak - cum > max_dd:
            max_dd = peak - cum
    limit_exits = sum(int(t.get("limit_exits", 0)) for t in trades)
    fallbacks = sum(int(t.get("fallbacks", 0)) for t in trades)
    return HealthRoll(
        win_rate=len(wins) / n,
        avg_r=sum(rs) / n,
        max_dd=max_dd,
        profit_factor=pf,
        fallback_quality=1.0 - fallbacks / limit_exits if limit_exits else 1.0,
        trade_n=n,
        last_calib_ts=now,
    )


def tier_health(
    trades: list[dict[str, Any]], tier: str, last_n: int, since: int = 0
) -> tuple[int, float]:
    """(count, average R) of the last `last_n` trades of one tier closed after `since`."""
    rs = [
        float(t.get("r", 0.0))
        for t in trades
        if t.get("tier") == tier and int(t.get("closed_ts", 0)) > since
    ][-last_n:]
    return len(rs), (sum(rs) / len(rs) if rs else 0.0)
