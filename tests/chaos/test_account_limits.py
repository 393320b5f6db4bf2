"""Account limits still hold after a trade ended on its stop: the shard keeps bookkeeping of
the triggered stop (`pending.stop_children`) while flat, which once made every later open
skip the account-level checks (max positions, margin share, daily-loss halt)."""

from __future__ import annotations

from dataclasses import replace

from atlas_actors.account import AccountView
from atlas_actors.account_guard import AccountGuard
from atlas_actors.domain.params import default_params
from atlas_actors.engine import SymbolEngine
from atlas_actors.venues.sim import SimVenue


def test_account_limits_apply_to_a_flat_symbol_after_its_stop_fired():
    venue = SimVenue(starting_balance=100_000.0)
    for sym in ("AAAUSDT", "BBBUSDT"):
        venue.add_symbol(sym, tick_size=0.01, step_size=0.001, min_qty=0.001, min_notional=5.0)
        venue.set_price(sym, 100.0)
    venue.place_market(
        symbol="BBBUSDT", side="BUY", qty=1.0, reduce_only=False, client_order_id="x-1"
    )
    guard = AccountGuard(
        AccountView(venue, max_age_s=0.0),
        max_concurrent_positions=1,
        max_margin_share=0.9,
        daily_loss_halt_pct=0.0,
    )
    engine = SymbolEngine("AAAUSDT", venue=venue, params=default_params(), clock=lambda: 1e9)
    engine.state = replace(engine.state, pending={"stop_children": ["5000001"]})
    assert guard.block_reason("AAAUSDT", engine) == ("account: max concurrent positions 1 reached")
    # an entry in flight is position management, never blocked here
    engine.state = replace(engine.state, pending={"entry": {"cid": "atl-AAAUSDT-1-e"}})
    assert guard.block_reason("AAAUSDT", engine) is None
