"""§3 position lifecycle: entry -> PRE_TP1 -> BETWEEN_TP1_TP2 -> RUNNER_ONLY -> flat.

- Sizing by risk: ``qty = equity * risk_share(tier) / R`` with ``R = |entry - SL|``, capped by
  what the available balance (and ``risk.max_margin_share`` of equity) can margin at the
  tier's leverage, rounded DOWN to the step
  size; prices are rounded to the tick (entries and targets away from the market, stops away
  from the market too, i.e. never tighter than planned).
- An entry fill (partial or full) opens or grows the position and immediately places (or
  replaces) the reduce-only MARK_PRICE Algo stop for the whole open quantity; when the entry
  completes, the TP1/TP2 reduce-only post-only limits are placed.
- TP1 filled -> BETWEEN_TP1_TP2 and the stop moves to break-even; TP2 filled -> RUNNER_ONLY,
  ``qty_runner`` = what is left and the stop moves to the profit lock (entry + lock_r * R).
  A stop is only ever tightened, and a replacement is ``PlaceAlgoStop(replaces=old id)``:
  the engine cancels the old stop once the new one is visible (never a gap).
- The last reducing fill closes the trade: leftover orders cancelled, the trade goes to
  ``trade_window`` and the rolls, template cooldown always, loss cooldown after a loss.

Everything here edits a `Txn` (copy-on-write) and never the caller's state.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from atlas_actors.domain import rolls
from atlas_actors.domain.commands import (
    CancelAlgo,
    CancelOrder,
    PlaceAlgoStop,
    PlaceLimit,
    PlaceMarket,
    SetCooldown,
    risk_record,
)
from atlas_actors.domain.gate import format_epoch
from atlas_actors.domain.params import Params
from atlas_actors.domain.records import (
    STAGE_ORDER,
    AlgoRef,
    LastOrders,
    OrderRef,
    PositionStage,
    PositionState,
    SlAlgo,
)
from atlas_actors.domain.txn import Txn

LONG = "LONG"
SHORT = "SHORT"
NONE = "NONE"
MARK_PRICE = "MARK_PRICE"
QTY_EPS = 1e-12

# client-id role codes (Binance ids are <= 36 chars, so roles are short)
R_ENTRY, R_TP1, R_TP2, R_SL = "e", "t1", "t2", "sl"
R_RUNNER_LIMIT, R_RUNNER_MKT, R_EXIT, R_DERISK, R_FLAT = "rx", "rm", "x", "dr", "fx"
# command roles (PlaceLimit.role / PlaceMarket.role) by role code
COMMAND_ROLE = {
    R_ENTRY: "entry",
    R_TP1: "tp1",
    R_TP2: "tp2",
    R_RUNNER_LIMIT: "runner_exit",
    R_RUNNER_MKT: "runner_exit",
    R_EXIT: "exit",
    R_DERISK: "derisk",
}


def direction(side: str) -> int:
    return 1 if side == LONG else -1


def order_side(side: str, opening: bool) -> str:
    """BUY/SELL of an order that opens (or closes) a position of `side`."""
    return ("BUY" if side == LONG else "SELL") if opening else ("SELL" if side == LONG else "BUY")


# ------------------------------------------------------------------ rounding


@lru_cache(maxsize=256)
def _decimals(step: float) -> int:
    s = f"{step:.12f}".rstrip("0")
    return len(s.split(".")[1]) if "." in s else 0


def floor_to(x: float, step: float) -> float:
    if step <= 0:
        return x
    return round(math.floor(x / step + 1e-9) * step, _decimals(step))


def ceil_to(x: float, step: float) -> float:
    if step <= 0:
        return x
    return round(math.ceil(x / step - 1e-9) * step, _decimals(step))


def clean_qty(q: float, step: float) -> float:
    """A remaining quantity snapped to the step grid (venue quantities are multiples of it)."""
    if step > 0:
        n = round(q / step)
        return round(n * step, _decimals(step)) if n > 0 else 0.0
    return q if q > QTY_EPS else 0.0


def price_away(price: float, below: bool, tick: float) -> float:
    """Round a price to the tick, away from the market: down when it sits below it."""
    return floor_to(price, tick) if below else ceil_to(price, tick)


def adverse_price(pos_side: str, price: float, mark: float | None) -> float:
    """The price a stop must stay protective against: the worse of the trade price and the
    mark (working_type MARK_PRICE stops trigger on the mark)."""
    if mark is None or mark <= 0:
        return price
    return min(price, mark) if pos_side == LONG else max(price, mark)


def passive_price(price: float, side: str, tick: float) -> float:
    """A post-only price strictly on the passive side of `price` (BUY below, SELL above)."""
    gap = tick if tick > 0 else abs(price) * 1e-5
    return floor_to(price - gap, tick) if side == "BUY" else ceil_to(price + gap, tick)


def stop_round(price: float, pos_side: str, tick: float) -> float:
    """A stop sits below a LONG (round down) and above a SHORT (round up)."""
    return floor_to(price, tick) if pos_side == LONG else ceil_to(price, tick)


# ------------------------------------------------------------------ sizing


def size_entry(
    entry: float,
    sl: float,
    risk_share: float,
    leverage: int,
    equity: float,
    available: float,
    step: float,
    min_qty: float,
    min_notional: float,
    margin_used: float = 0.0,
    max_margin_share: float = 1.0,
) -> tuple[float, str, str]:
    """(qty, failing gate or "", reason). Gates: "stop", "margin", "size".

    The margin the new position needs (notional / leverage) must fit both the available
    balance and the room left under ``max_margin_share`` of equity; the quantity is capped
    to fit (smaller risk), and rejected when even that is below the venue's minimums."""
    r = abs(entry - sl)
    if not (r > 0 and entry > 0 and math.isfinite(r)):
        return 0.0, "stop", f"invalid stop: entry {entry} stop {sl} gives R = {r}"
    room = min(available, max_margin_share * equity - margin_used)
    if room <= 0 or equity <= 0:
        return (
            0.0,
            "margin",
            f"insufficient margin: available {available:.2f}, margin used {margin_used:.2f} "
            f"of max {max_margin_share:g} x equity {equity:.2f}",
        )
    qty = equity * risk_share / r
    cap = room * leverage / entry
    capped = qty > cap
    if capped:
        qty = cap
    qty = floor_to(qty, step)
    if qty <= 0 or qty < min_qty or qty * entry < min_notional:
        why = (
            f"below min qty/notional (qty {qty:g} at {entry:g}: min_qty {min_qty:g}, "
            f"min_notional {min_notional:g}"
            + (f"; capped by margin room {room:.2f} x{leverage}" if capped else "")
            + ")"
        )
        return qty, "size", why
    return qty, "", f"qty {qty:g} risks {qty * r:.2f} ({qty * r / equity:.4%} of equity)"


# ------------------------------------------------------------------ stops


def place_stop(tx: Txn, price: float, qty: float, prefix: str) -> PlaceAlgoStop:
    """Place (or replace) the protective stop at `price` for `qty`; returns the command."""
    pos = tx.pos()
    old = pos.sl_algo.client_algo_id
    old_price = pos.sl_price
    cid = tx.cid(R_SL, prefix)
    cmd = PlaceAlgoStop(
        symbol=tx.st.symbol,
        side=order_side(pos.side, opening=False),
        qty=qty,
        stop_price=price,
        working_type=MARK_PRICE,
        client_algo_id=cid,
        close_position=False,
        replaces=old,
    )
    pos.sl_price = price
    pos.sl_algo = SlAlgo(algo_id=None, client_algo_id=cid, working_type=MARK_PRICE)
    lo = pos.last_orders
    pos.last_orders = LastOrders(entry=lo.entry, tp=lo.tp, sl=AlgoRef(None, cid))
    pend = tx.pending()
    if old:
        pend["old_stops"] = (pend.get("old_stops", []) + [old])[-8:]
        # the replaced stop stays live until the new one is visible: if the new one is
        # refused, this is the protection still in force
        pend["prev_stop"] = {"cid": old, "price": old_price}
    else:
        pend.pop("prev_stop", None)
    tx.emit(cmd)
    return cmd


def tighten_stop(tx: Txn, target: float, ref_price: float, tick: float, prefix: str) -> bool:
    """Move the stop to `target` if that tightens it and keeps it on the protective side of
    `ref_price` (the market); returns whether a replacement was emitted."""
    pos = tx.st.position_state
    d = direction(pos.side)
    target = stop_round(target, pos.side, tick)
    gap = tick if tick > 0 else abs(ref_price) * 1e-6
    limit = ref_price - d * gap  # the tightest protective level
    if (target - limit) * d > 0:
        target = stop_round(limit, pos.side, tick)
    if (target - pos.sl_price) * d <= 0:
        return False
    place_stop(tx, target, pos.qty_total, prefix)
    return True


# ------------------------------------------------------------------ entry


def new_trade_info() -> dict[str, Any]:
    return {"exits": [], "limit_exits": 0, "fallbacks": 0, "derisked": False, "sl_recoveries": 0}


def apply_entry_fill(
    tx: Txn,
    plan: dict[str, Any],
    order_id: str,
    fill_qty: float,
    fill_price: float,
    commission: float,
    complete: bool,
    params: Params,
    prefix: str,
    tick: float,
    step: float,
    min_qty: float,
    min_notional: float,
    spread_bps: float,
    now: int,
    mark: float | None = None,
) -> None:
    pend = tx.pending()
    side = str(plan["side"])
    d = direction(side)
    cur = tx.st.position_state
    if fill_qty > 0:
        if cur.side == NONE or cur.qty_total <= QTY_EPS:
            pos = PositionState(
                side=side,
                entry_price=fill_price,
                qty_total=fill_qty,
                qty_runner=0.0,
                sl_price=float(plan["sl"]),
                position_stage=PositionStage.PRE_TP1,
                initial_qty=fill_qty,
                template=str(plan["template"]),
                tier=str(plan["tier"]),
                opened_ts=now,
                fees=commission,
                last_orders=LastOrders(entry=OrderRef(order_id or None, str(plan["cid"]))),
            )
            tx.set_pos(pos)
            pend["trade"] = {**new_trade_info(), "targets": bool(plan.get("targets", True))}
        else:
            pos = tx.pos()
            total = pos.qty_total + fill_qty
            pos.entry_price = (pos.entry_price * pos.qty_total + fill_price * fill_qty) / total
            pos.qty_total = total
            pos.initial_qty += fill_qty
            pos.fees += commission
            pos.last_orders = LastOrders(
                entry=OrderRef(order_id or None, str(plan["cid"])),
                tp=pos.last_orders.tp,
                sl=pos.last_orders.sl,
            )
        pos = tx.pos()
        sl = float(plan["sl"])
        planned_r = abs(float(plan["price"]) - sl)
        # the market (fill or mark) already beyond the planned stop: a stop there would be
        # refused as "would immediately trigger"; keep the planned R from that price instead
        ref = adverse_price(side, fill_price, mark)
        gap = tick if tick > 0 else abs(ref) * 1e-6
        if (ref - sl) * d <= gap:
            sl = stop_round(ref - d * planned_r, side, tick)
        pos.risk_per_unit = abs(pos.entry_price - sl)
        place_stop(tx, sl, pos.qty_total, prefix)
        plan = {**plan, "filled": float(plan.get("filled", 0.0)) + fill_qty}
        pend["entry"] = plan
    if complete:
        finish_entry(tx, plan, params, prefix, tick, step, min_qty, min_notional, spread_bps, now)


def finish_entry(
    tx: Txn,
    plan: dict[str, Any],
    params: Params,
    prefix: str,
    tick: float,
    step: float,
    min_qty: float,
    min_notional: float,
    spread_bps: float,
    now: int,
    outcome: str = "filled",
) -> None:
    """The entry order is done (filled, or cancelled/expired/rejected with whatever filled)."""
    pend = tx.pending()
    pend.pop("entry", None)
    filled = float(plan.get("filled", 0.0))
    pos = tx.st.position_state
    slip_r = 0.0
    if plan.get("kind") == "market" and filled > 0 and pos.risk_per_unit > 0:
        d = direction(str(plan["side"]))
        slip_r = (pos.entry_price - float(plan["price"])) * d / pos.risk_per_unit
    record_exec(
        tx,
        "entry",
        plan.get("kind") == "limit",
        "filled" if filled > 0 else outcome,
        slip_r,
        float(plan.get("spread_bps", spread_bps)),
        now,
    )
    if filled > 0 and pos.qty_total > QTY_EPS and plan.get("targets", True):
        place_targets(tx, params, prefix, tick, step, min_qty, min_notional)


def place_targets(
    tx: Txn,
    params: Params,
    prefix: str,
    tick: float,
    step: float,
    min_qty: float,
    min_notional: float,
) -> None:
    pos = tx.pos()
    tp = params.tier(pos.tier)
    d = direction(pos.side)
    r = pos.risk_per_unit
    above = pos.side == LONG
    pos.tp1_price = price_away(pos.entry_price + d * tp.tp1_r * r, not above, tick)
    pos.tp2_price = price_away(pos.entry_price + d * tp.tp2_r * r, not above, tick)
    q1 = floor_to(pos.initial_qty * tp.tp1_share, step)
    q2 = floor_to(pos.initial_qty * tp.tp2_share, step)
    q1 = min(q1, pos.qty_total)
    q2 = min(q2, floor_to(pos.qty_total - q1, step))
    refs: list[OrderRef] = []
    pend = tx.pending()
    orders = dict(pend.get("orders", {}))
    for code, qty, price in ((R_TP1, q1, pos.tp1_price), (R_TP2, q2, pos.tp2_price)):
        if qty <= 0 or qty < min_qty or qty * price < min_notional:
            continue
        cid = tx.cid(code, prefix)
        tx.emit(
            PlaceLimit(
                symbol=tx.st.symbol,
                side=order_side(pos.side, opening=False),
                qty=qty,
                price=price,
                reduce_only=True,
                client_order_id=cid,
                role=COMMAND_ROLE[code],
            )
        )
        refs.append(OrderRef(None, cid))
        orders[cid] = {
            "role": code,
            "tag": "tp1" if code == R_TP1 else "tp2",
            "kind": "limit",
            "qty": qty,
            "ref": price,
        }
    pend["orders"] = orders
    lo = pos.last_orders
    pos.last_orders = LastOrders(entry=lo.entry, tp=lo.tp + refs, sl=lo.sl)


# ------------------------------------------------------------------ exits


def issue_exit(
    tx: Txn,
    code: str,
    kind: str,
    qty: float,
    price: float,
    tag: str,
    prefix: str,
    bar_index: int,
    spread_bps: float,
) -> str:
    """Place a reduce-only exit (post-only limit or market) and remember it as pending."""
    pos = tx.st.position_state
    cid = tx.cid(code, prefix)
    side = order_side(pos.side, opening=False)
    if kind == "limit":
        tx.emit(PlaceLimit(tx.st.symbol, side, qty, price, True, cid, COMMAND_ROLE[code]))
    else:
        tx.emit(PlaceMarket(tx.st.symbol, side, qty, True, cid, COMMAND_ROLE[code]))
    pend = tx.pending()
    orders = dict(pend.get("orders", {}))
    orders[cid] = {"role": code, "tag": tag, "kind": kind, "ref": price, "spread_bps": spread_bps}
    pend["orders"] = orders
    if code != R_DERISK:
        pend["exit"] = {"cid": cid, "kind": kind, "placed_bar": bar_index, "tag": tag, "qty": qty}
    return cid


def apply_reduce_fill(
    tx: Txn,
    info: dict[str, Any],
    fill_qty: float,
    fill_price: float,
    commission: float,
    complete: bool,
    params: Params,
    prefix: str,
    tick: float,
    step: float,
    now: int,
    mark: float | None = None,
) -> None:
    """A fill that reduces the position (TP, runner exit, de-risk, template exit, stop child)."""
    pos = tx.pos()
    if pos.side == NONE or pos.qty_total <= QTY_EPS:
        return
    q = min(fill_qty, pos.qty_total)
    if q <= 0:
        return
    d = direction(pos.side)
    pos.realized_pnl += (fill_price - pos.entry_price) * d * q
    pos.fees += commission
    pos.qty_total = clean_qty(pos.qty_total - q, step)
    if pos.risk_per_unit > 0:
        fill_r = (fill_price - pos.entry_price) * d / pos.risk_per_unit
        if fill_r > pos.peak_pnl_r:
            pos.peak_pnl_r = fill_r
    role = str(info.get("role", ""))
    tag = str(info.get("tag", role))
    pend = tx.pending()
    trade = dict(pend.get("trade") or new_trade_info())
    if complete or pos.qty_total <= QTY_EPS:
        trade["exits"] = trade["exits"] + [tag]
    pend["trade"] = trade
    if complete:
        _forget_order(tx, info)
        if info.get("kind") == "limit" and role in (R_TP1, R_TP2, R_RUNNER_LIMIT):
            trade["limit_exits"] += 1
            record_exec(
                tx,
                "tp" if role != R_RUNNER_LIMIT else "exit",
                True,
                "filled",
                0.0,
                float(info.get("spread_bps", 0.0)),
                now,
            )
        elif info.get("kind") == "market" and pos.risk_per_unit > 0:
            ref = float(info.get("ref", fill_price))
            slip = (ref - fill_price) * d / pos.risk_per_unit
            record_exec(tx, "exit", False, "filled", slip, float(info.get("spread_bps", 0.0)), now)
    if pos.qty_total <= QTY_EPS:
        close_trade(tx, tag, fill_price, params, now)
        return
    stage_before = pos.position_stage
    if complete and role == R_TP1:
        pos.tp1_done = True
    if complete and role == R_TP2:
        pos.tp2_done = True
    if complete and role in (R_TP1, R_TP2):
        if pos.tp1_done and pos.tp2_done:
            new_stage = PositionStage.RUNNER_ONLY
        else:
            new_stage = PositionStage.BETWEEN_TP1_TP2
        if STAGE_ORDER[new_stage] > STAGE_ORDER[stage_before]:
            pos.position_stage = new_stage
        tier = params.tier(pos.tier)
        if pos.tp2_done:
            target = pos.entry_price + d * tier.lock_r * pos.risk_per_unit
        else:
            target = pos.entry_price
        ref = adverse_price(pos.side, fill_price, mark)
        if not tighten_stop(tx, target, ref, tick, prefix):
            place_stop(tx, pos.sl_price, pos.qty_total, prefix)
    elif complete:
        # a partial reduce (de-risk, partially filled exit): the stop follows the quantity
        place_stop(tx, pos.sl_price, pos.qty_total, prefix)
    pos = tx.pos()
    pos.qty_runner = pos.qty_total if pos.position_stage == PositionStage.RUNNER_ONLY else 0.0
    if complete and tx.st.pending.get("exit", {}).get("cid") == info.get("cid"):
        tx.pending().pop("exit", None)


def _forget_order(tx: Txn, info: dict[str, Any]) -> None:
    cid = info.get("cid")
    pend = tx.pending()
    orders = pend.get("orders")
    if cid and orders and cid in orders:
        orders = dict(orders)
        del orders[cid]
        pend["orders"] = orders


def record_exec(
    tx: Txn, kind: str, post_only: bool, outcome: str, slip_r: float, spread_bps: float, now: int
) -> None:
    st = tx.st
    st.exec_window, st.exec_quality_roll = rolls.push_exec(
        st.exec_window,
        {
            "kind": kind,
            "post_only": post_only,
            "outcome": outcome,
            "slip_r": slip_r,
            "spread_bps": spread_bps,
            "ts": now,
        },
        now,
    )


def close_trade(tx: Txn, tag: str, price: float, params: Params, now: int) -> None:
    """The position is flat: clean up, book the trade, set cooldowns."""
    st = tx.st
    pos = st.position_state
    sym = st.symbol
    pend = tx.pending()
    for cid, info in sorted((pend.get("orders") or {}).items()):
        if info.get("kind") == "limit":
            tx.emit(CancelOrder(sym, None, cid))
    entry = pend.get("entry")
    if entry:
        tx.emit(CancelOrder(sym, None, str(entry["cid"])))
    if tag != "stop":
        if pos.sl_algo.client_algo_id:
            tx.emit(CancelAlgo(sym, pos.sl_algo.algo_id, pos.sl_algo.client_algo_id))
        for old in pend.get("old_stops", []):
            tx.emit(CancelAlgo(sym, None, old))
    trade_info = pend.get("trade") or new_trade_info()
    risk = pos.risk_per_unit * pos.initial_qty
    net = pos.realized_pnl - pos.fees
    r = net / risk if risk > 0 else 0.0
    trade = {
        "template": pos.template,
        "tier": pos.tier,
        "side": pos.side,
        "entry_price": pos.entry_price,
        "exit_price": price,
        "qty": pos.initial_qty,
        "pnl": net,
        "r": r,
        "opened_ts": pos.opened_ts,
        "closed_ts": now,
        "exit_reason": tag,
        "exits": list(trade_info.get("exits", [])),
        "stage": pos.position_stage,
        "limit_exits": int(trade_info.get("limit_exits", 0)),
        "fallbacks": int(trade_info.get("fallbacks", 0)),
    }
    st.trade_window, st.health_roll = rolls.push_trade(st.trade_window, trade, now)
    cd = tx.cd()
    until = now + params.cooldown.template_s
    if until > cd.template:
        cd.template = until
        tx.emit(SetCooldown(sym, "template", until))
    if net < 0:
        until = now + params.cooldown.loss_s
        if until > cd.loss:
            cd.loss = until
            tx.emit(SetCooldown(sym, "loss", until))
        tx.record(
            risk_record(
                event_type="LOSS_COOLDOWN",
                symbol=sym,
                side=pos.side,
                qty=pos.initial_qty,
                price=price,
                order_ids=[],
                client_ids=[c for c in (pos.sl_algo.client_algo_id,) if c],
                reason=(
                    f"{pos.template} trade lost {r:.2f}R ({tag}); no opens until "
                    f"{format_epoch(cd.loss)}"
                ),
                ts=now,
            )
        )
    if pos.tier == "B":
        _b_blacklist(tx, params, now)
    tx.set_pos(PositionState())
    for key in (
        "exit",
        "orders",
        "trade",
        "old_stops",
        "prev_stop",
        "stop_children",
        "orphan_fills",
        "entry",
    ):
        pend.pop(key, None)


def _b_blacklist(tx: Txn, params: Params, now: int) -> None:
    tb = params.tier_b
    # only B trades closed after the last blacklist started count (a fresh start after it)
    since = tx.st.b_blacklist_until - tb.blacklist_s if tx.st.b_blacklist_until else 0
    n, avg_r = rolls.tier_health(tx.st.trade_window, "B", tb.blacklist_min_trades, since)
    if n >= tb.blacklist_min_trades and avg_r <= tb.blacklist_max_avg_r:
        until = now + tb.blacklist_s
        if until > tx.st.b_blacklist_until:
            tx.st.b_blacklist_until = until


def track(tx: Txn, close: float) -> None:
    """Per closed bar with a position: peak_pnl_r and bars_after_tp2."""
    pos0 = tx.st.position_state
    if pos0.risk_per_unit <= 0:
        return
    cur_r = (close - pos0.entry_price) * direction(pos0.side) / pos0.risk_per_unit
    if cur_r > pos0.peak_pnl_r or pos0.tp2_done:
        pos = tx.pos()
        if cur_r > pos.peak_pnl_r:
            pos.peak_pnl_r = cur_r
        if pos.tp2_done:
            pos.bars_after_tp2 += 1


def current_r(pos: PositionState, price: float) -> float:
    if pos.risk_per_unit <= 0:
        return 0.0
    return (price - pos.entry_price) * direction(pos.side) / pos.risk_per_unit
