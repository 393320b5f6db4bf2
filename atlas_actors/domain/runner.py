"""§5 runner management: when does the runner (what is left after TP2) leave?

`manage_runner(symbol, pos_state, now_bar_index, ctx) -> dict` is a pure decision:

- regime exit: the market is in SHOCK or CHOP -> close now with a reduce-only MARKET order
  (the contract says immediately, so no limit attempt);
- time exit: ``bars_after_tp2 >= RUNNER_MAX_BARS_AFTER_TP2`` -> reduce-only post-only limit;
- give-back exit: ``peak_pnl_r >= RUNNER_MIN_PEAK_R`` and the current ``pnl_r <=
  peak_pnl_r * (1 - RUNNER_GIVEBACK)`` -> reduce-only post-only limit;
- market fallback: a limit exit placed on an earlier bar that is still not filled -> cancel it
  and close with a reduce-only MARKET order.

``ctx`` keys: ``regime`` (str), ``price`` (the closed bar's close), ``params`` (RunnerParams or
the whole Params; absent: the defaults), ``exit`` (the pending exit dict ``{"cid", "kind",
"placed_bar", "tag"}`` or None), ``risk_per_unit`` (optional, see below).
``pos_state`` is a PositionState or the contract's §3 dict: without ``position_stage`` the stage
follows ``tp1_done`` / ``tp2_done``; without ``risk_per_unit`` (not a §3 field) ``ctx`` gives
it, else the entry-to-stop distance stands in.
The result: ``{"action": "HOLD"|"EXIT_LIMIT"|"EXIT_MARKET", "rule": ""|"regime"|"time"|
"giveback"|"fallback", "reason": str, "qty": float, "price": float, "pnl_r": float}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from atlas_actors.domain import lifecycle
from atlas_actors.domain.commands import CancelOrder, risk_record
from atlas_actors.domain.params import RunnerParams
from atlas_actors.domain.records import PositionStage, PositionState
from atlas_actors.domain.txn import Txn

HOLD = "HOLD"
EXIT_LIMIT = "EXIT_LIMIT"
EXIT_MARKET = "EXIT_MARKET"
EXIT_REGIMES = ("SHOCK", "CHOP")


def _get(pos: PositionState | Mapping[str, Any], name: str) -> Any:
    return pos[name] if isinstance(pos, Mapping) else getattr(pos, name)


def _stage(pos: PositionState | Mapping[str, Any]) -> str:
    if not isinstance(pos, Mapping) or "position_stage" in pos:
        return str(_get(pos, "position_stage"))
    if pos.get("tp2_done"):
        return PositionStage.RUNNER_ONLY
    return PositionStage.BETWEEN_TP1_TP2 if pos.get("tp1_done") else PositionStage.PRE_TP1


def _risk_per_unit(pos: PositionState | Mapping[str, Any], ctx: Mapping[str, Any]) -> float:
    if not isinstance(pos, Mapping) or "risk_per_unit" in pos:
        return float(_get(pos, "risk_per_unit"))
    if "risk_per_unit" in ctx:
        return float(ctx["risk_per_unit"])
    return abs(float(pos.get("entry_price", 0.0)) - float(pos.get("sl_price", 0.0)))


def _runner_params(ctx: Mapping[str, Any]) -> RunnerParams:
    p = ctx.get("params")
    if p is None:
        return RunnerParams()
    return p if isinstance(p, RunnerParams) else p.runner


def manage_runner(
    symbol: str,
    pos_state: PositionState | Mapping[str, Any],
    now_bar_index: int,
    ctx: Mapping[str, Any],
) -> dict[str, Any]:
    del symbol  # the decision depends only on the position and the market
    rp = _runner_params(ctx)
    price = float(ctx["price"])
    qty = float(_get(pos_state, "qty_runner"))
    stage = _stage(pos_state)
    side = _get(pos_state, "side")
    r_unit = _risk_per_unit(pos_state, ctx)
    entry = float(_get(pos_state, "entry_price"))
    pnl_r = (price - entry) * (1 if side == "LONG" else -1) / r_unit if r_unit > 0 else 0.0

    def out(action: str, rule: str, reason: str) -> dict[str, Any]:
        return {
            "action": action,
            "rule": rule,
            "reason": reason,
            "qty": qty,
            "price": price,
            "pnl_r": pnl_r,
        }

    if stage != PositionStage.RUNNER_ONLY or qty <= 0:
        return out(HOLD, "", "no runner")
    pending = ctx.get("exit")
    if pending:
        if pending.get("kind") == "limit" and int(pending.get("placed_bar", 0)) < now_bar_index:
            return out(
                EXIT_MARKET,
                "fallback",
                f"{pending.get('tag', 'runner')} limit exit not filled since bar "
                f"{pending.get('placed_bar')}: market fallback",
            )
        return out(HOLD, "", "exit in flight")
    regime = str(ctx.get("regime", ""))
    if regime in EXIT_REGIMES:
        return out(EXIT_MARKET, "regime", f"regime {regime}: runner closed immediately")
    bars = int(_get(pos_state, "bars_after_tp2"))
    if bars >= rp.RUNNER_MAX_BARS_AFTER_TP2:
        return out(
            EXIT_LIMIT,
            "time",
            f"time: bars_after_tp2 {bars} >= RUNNER_MAX_BARS_AFTER_TP2 "
            f"{rp.RUNNER_MAX_BARS_AFTER_TP2}",
        )
    peak = float(_get(pos_state, "peak_pnl_r"))
    floor = peak * (1.0 - rp.RUNNER_GIVEBACK)
    if peak >= rp.RUNNER_MIN_PEAK_R and pnl_r <= floor:
        return out(
            EXIT_LIMIT,
            "giveback",
            f"giveback: pnl {pnl_r:.3f}R <= peak {peak:.3f}R * (1 - RUNNER_GIVEBACK "
            f"{rp.RUNNER_GIVEBACK}) = {floor:.3f}R",
        )
    return out(HOLD, "", "runner kept")


def exit_runner(
    tx: Txn,
    decision: Mapping[str, Any],
    *,
    prefix: str,
    tick: float,
    spread_bps: float,
    bar_index: int,
    now: int,
) -> None:
    """Carry out an EXIT_LIMIT / EXIT_MARKET decision: orders, pending exit, RUNNER_EXIT record."""
    action = decision["action"]
    if action == HOLD:
        return
    pos = tx.st.position_state
    rule = str(decision["rule"])
    price = float(decision["price"])
    pend = tx.pending()
    client_ids: list[str] = []
    prev = pend.get("exit")
    if prev and prev.get("kind") == "limit":
        # a limit exit is still working: cancel it (if it fills anyway, reduce-only caps it)
        tx.emit(CancelOrder(tx.st.symbol, None, str(prev["cid"])))
        client_ids.append(str(prev["cid"]))
        trade = dict(pend.get("trade") or lifecycle.new_trade_info())
        trade["limit_exits"] += 1
        if rule == "fallback":
            trade["fallbacks"] += 1
        pend["trade"] = trade
        lifecycle.record_exec(tx, "exit", True, "canceled", 0.0, spread_bps, now)
    tag = (
        f"{prev.get('tag', 'runner')}_fallback" if rule == "fallback" and prev else f"runner_{rule}"
    )
    qty = pos.qty_total
    if action == EXIT_LIMIT:
        # strictly passive: a post-only exit at the close itself could take and be refused
        px = lifecycle.passive_price(price, lifecycle.order_side(pos.side, opening=False), tick)
        cid = lifecycle.issue_exit(
            tx, lifecycle.R_RUNNER_LIMIT, "limit", qty, px, tag, prefix, bar_index, spread_bps
        )
    else:
        cid = lifecycle.issue_exit(
            tx, lifecycle.R_RUNNER_MKT, "market", qty, price, tag, prefix, bar_index, spread_bps
        )
    client_ids.append(cid)
    tx.record(
        risk_record(
            event_type="RUNNER_EXIT",
            symbol=tx.st.symbol,
            side=pos.side,
            qty=qty,
            price=price,
            order_ids=[],
            client_ids=client_ids,
            reason=str(decision["reason"]),
            ts=now,
        )
    )
