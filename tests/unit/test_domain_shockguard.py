"""ShockGuard: rolling q95 calibration, coarse bars, triggers, cooldown; margin de-risk rule."""

from __future__ import annotations

import dataclasses

import pytest

from atlas_actors.domain import shockguard
from atlas_actors.domain.params import default_params
from atlas_actors.domain.records import CooldownUntil, ShockGuardState

P = dataclasses.replace(default_params().shockguard, min_samples=30, recalib_every_s=600)
RISK = default_params().risk


def feed(
    closes: list[float], interval_s: int = 60, start: int = 1_000_000, ss=None, sg=None, cd=None
):  # type: ignore[no-untyped-def]
    ss = ss if ss is not None else {}
    sg = sg or ShockGuardState()
    cd = cd or CooldownUntil()
    hits = []
    now = start
    for c in closes:
        now += interval_s
        ss, sg, cd, hit = shockguard.update(ss, sg, cd, c, interval_s, 0, P, now)
        hits.append(hit)
    return ss, sg, cd, hits, now


def zigzag(n: int, step: float = 0.001, base: float = 100.0) -> list[float]:
    """Closes whose 1-bar moves are all exactly `step` (0.1 %)."""
    out, c = [], base
    for i in range(n):
        c *= 1 + (step if i % 2 else -step)
        out.append(c)
    return out


def test_q95_is_none_until_enough_samples_then_calibrated() -> None:
    _, sg, _, _, _ = feed(zigzag(20))
    assert sg.q95_1m is None and sg.q95_3m is None
    _, sg, _, hits, now = feed(zigzag(60))
    assert sg.q95_1m == pytest.approx(0.001, rel=1e-3)
    assert sg.q95_3m is not None and sg.q95_3m == pytest.approx(0.001, rel=1e-2)
    assert sg.recalib_ts > 0 and not any(hits)


def test_recalibration_follows_the_schedule() -> None:
    ss, sg, cd, _, now = feed(zigzag(60))
    first = sg.recalib_ts
    price = ss["c"][-1]
    seen = []
    for _ in range(12):
        now += 60
        price *= 1.0005
        ss, sg, cd, _ = shockguard.update(ss, sg, cd, price, 60, 0, P, now)
        seen.append((now - first, sg.recalib_ts))
    # recalibrated exactly every 600 s of bar time, never in between
    assert [ts for _, ts in seen] == [first + 600 * (dt // 600) for dt, _ in seen]
    assert len({ts for _, ts in seen}) >= 2


def test_trigger_sets_shock_cooldown_and_counts_in_the_last_hour() -> None:
    ss, sg, cd, _, now = feed(zigzag(60))
    last = zigzag(60)[-1]
    ss, sg, cd, hits, now = feed([last * 1.004], start=now, ss=ss, sg=sg, cd=cd)  # 4x q95
    assert hits == [True]
    assert cd.shock == now + P.cooldown_s
    assert sg.trigger_count_60m == 1
    # the 3-bar return still spans the spike on the next bar (a second trigger); once an hour
    # has passed without triggers the count is back to 0
    calm = zigzag(3 + 60, step=0.0005, base=last * 1.004)
    ss, sg, cd, hits, now = feed(calm, start=now, ss=ss, sg=sg, cd=cd)
    assert not any(hits[3:])
    assert sg.trigger_count_60m == 0


def test_move_at_exactly_the_multiple_does_not_trigger() -> None:
    ss, sg, cd, _, now = feed(zigzag(60))
    q = sg.q95_1m
    assert q is not None
    prev = ss["c"][-1]
    _, _, _, hits, _ = feed(
        [prev * (1 - P.trigger_mult * q * 0.999)], start=now, ss=ss, sg=sg, cd=cd
    )
    assert hits == [False]


def test_coarse_bars_leave_the_contract_q95s_none() -> None:
    _, sg, _, _, _ = feed(zigzag(80), interval_s=300)
    assert sg.q95_1m is None and sg.q95_3m is None and sg.recalib_ts > 0
    ss, sg, cd, _, now = feed(zigzag(80), interval_s=300)
    assert ss["qb"] == pytest.approx(0.001, rel=1e-3)
    _, _, cd, hits, _ = feed([ss["c"][-1] * 1.004], interval_s=300, start=now, ss=ss, sg=sg, cd=cd)
    assert hits == [True] and cd.shock > 0


def test_three_minute_bars_set_only_q95_3m() -> None:
    _, sg, _, _, _ = feed(zigzag(80), interval_s=180)
    assert sg.q95_1m is None
    assert sg.q95_3m == pytest.approx(0.001, rel=1e-3)


def test_gap_resets_the_return_series() -> None:
    ss, sg, cd, _, now = feed(zigzag(60))
    ss2, _, _, hit = shockguard.update(ss, sg, cd, 150.0, 60, 3, P, now + 240)
    assert hit is False  # a 50 % jump across missing bars is not a 1m return
    assert list(ss2["c"]) == [150.0]
    ss3, _, _, hit = shockguard.update(ss2, sg, cd, 150.1, 60, 0, P, now + 300)
    assert hit is False and len(ss3["a"]) >= 1


def test_update_never_mutates_inputs() -> None:
    ss, sg, cd, _, now = feed(zigzag(60))
    snap = {k: (list(v) if isinstance(v, list) else v) for k, v in ss.items()}
    shockguard.update(ss, sg, cd, ss["c"][-1] * 1.01, 60, 0, P, now + 60)
    assert {k: (list(v) if isinstance(v, list) else v) for k, v in ss.items()} == snap


@pytest.mark.parametrize(
    ("margin", "expected"),
    [(6_999.0, 0.0), (7_000.0, 0.0), (7_000.01, 0.5)],
)
def test_margin_derisk_boundary(margin: float, expected: float) -> None:
    # share 0.7 of equity 10,000: strictly above 7,000 de-risks half of the position
    assert shockguard.margin_derisk_qty(1.0, margin, 10_000.0, RISK, 0.001) == expected


def test_margin_derisk_rounds_down_to_step() -> None:
    assert shockguard.margin_derisk_qty(0.0123, 9_000.0, 10_000.0, RISK, 0.001) == pytest.approx(
        0.006
    )
    assert shockguard.margin_derisk_qty(0.0, 9_000.0, 10_000.0, RISK, 0.001) == 0.0


def test_q95_interpolates() -> None:
    assert shockguard.q95(list(range(101))) == 95
    assert shockguard.q95([1.0]) == 1.0


def test_q95_of_periods_is_exact_whatever_the_hint() -> None:
    import random

    rnd = random.Random(7)
    for _ in range(200):
        periods = [
            sorted(rnd.expovariate(1.0) for _ in range(rnd.randint(0, 70)))
            for _ in range(rnd.randint(1, 30))
        ]
        values = [v for p in periods for v in p]
        if len(values) < 5:
            continue
        exact = shockguard.q95(values)
        for hint in (None, exact, exact * 0.5, exact * 3.0, 1e-6):
            assert shockguard.q95_of_periods(periods, 5, hint) == pytest.approx(exact, abs=1e-12)
    assert shockguard.q95_of_periods([[1.0, 2.0]], 5, None) is None


def test_real_5m_bars_through_on_bar_keep_the_1m_and_3m_q95_unset() -> None:
    from atlas_actors.domain import core
    from atlas_actors.domain.records import SymbolState
    from atlas_actors.venues.replay import bundled_path, load_klines

    bars = list(load_klines(bundled_path("XRPUSDT-5m-2021-11")))
    params = default_params()
    st = SymbolState.fresh("XRPUSDT")
    ctx = core.MarketCtx(filters=core.SymbolFilters(tick_size=0.0001, step_size=0.1, min_qty=0.1))
    for b in bars:
        st = core.on_bar(st, b, ctx, params, int(b["close_time"]) // 1000 + 1).state
    assert st.shockguard.q95_1m is None and st.shockguard.q95_3m is None
    assert st.shockguard.recalib_ts > 0 and st.shock_state["qb"] is not None
    assert st.bar_index == len(bars)
