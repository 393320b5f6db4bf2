"""Market regime of one symbol from closed bars: TREND_UP, TREND_DOWN, RANGE, CHOP, SHOCK.

Indicators are exponential averages updated in O(1) per bar (no windows to rescan):
EMA fast/slow of the close, Wilder ATR, a slow ATR baseline (volatility level), and an
exponential efficiency ratio ``|EMA(dclose)| / EMA(|dclose|)`` (1 = straight line, ~0.2 =
random walk). A bar whose close moves more than ``shock_atr_mult`` ATRs is a shock and
switches to SHOCK at once (and holds it ``shock_hold_bars``); every other change must persist
``regime_confirm_bars`` bars (hysteresis), and between the range and trend thresholds the
current regime is kept, so the regime does not flap bar to bar.

The state is a small flat dict of floats (``SymbolState.regime_state``), serialisable as is.
`update` returns a new dict and never mutates its input.
"""

from __future__ import annotations

from typing import Any

from atlas_actors.domain.params import StrategyParams

TREND_UP = "TREND_UP"
TREND_DOWN = "TREND_DOWN"
RANGE = "RANGE"
CHOP = "CHOP"
SHOCK = "SHOCK"
REGIMES = (TREND_UP, TREND_DOWN, RANGE, CHOP, SHOCK)


def update(
    rs: dict[str, Any],
    o: float,
    h: float,
    lo: float,
    c: float,
    gap: int,
    sp: StrategyParams,
) -> tuple[dict[str, Any], str]:
    """Fold one closed bar into the indicator state; returns (new state, regime)."""
    n = rs.get("n", 0)
    if n == 0:
        new = {
            "n": 1,
            "c": c,
            "pc": c,
            "h": h,
            "l": lo,
            "o": o,
            "ef": c,
            "es": c,
            "pef": c,
            "pes": c,
            "atr": h - lo,
            "atrb": h - lo,
            "dn": 0.0,
            "dd": 0.0,
            "er": 0.0,
            "chi": h,
            "clo": lo,
            "pchi": h,
            "pclo": lo,
            "reg": RANGE,
            "cand": RANGE,
            "cnt": 0,
            "shock": 0,
        }
        return new, RANGE
    pc = rs["c"]
    atr_prev = rs["atr"]
    tr = h - lo
    if abs(h - pc) > tr:
        tr = abs(h - pc)
    if abs(lo - pc) > tr:
        tr = abs(lo - pc)
    af = 2.0 / (sp.ema_fast + 1)
    aslow = 2.0 / (sp.ema_slow + 1)
    aer = 2.0 / (sp.er_len + 1)
    ef_prev = rs["ef"]
    es_prev = rs["es"]
    ef = ef_prev + af * (c - ef_prev)
    es = es_prev + aslow * (c - es_prev)
    atr = atr_prev + (tr - atr_prev) / sp.atr_len
    atrb = rs["atrb"] + (atr - rs["atrb"]) * (2.0 / (sp.vol_len + 1))
    d = c - pc
    dn = rs["dn"] + aer * (d - rs["dn"])
    dd = rs["dd"] + aer * (abs(d) - rs["dd"])
    er = abs(dn) / dd if dd > 0 else 0.0
    # A decaying price channel: follows new extremes at once, drifts back by ATR/10 a bar.
    decay = 0.1 * atr
    chi_prev = rs["chi"]
    clo_prev = rs["clo"]
    chi = h if h > chi_prev - decay else chi_prev - decay
    clo = lo if lo < clo_prev + decay else clo_prev + decay

    current = rs["reg"]
    shock_left = rs["shock"]
    # (the ATR needs atr_len bars of history before a move can be judged against it)
    if gap == 0 and n >= sp.atr_len and abs(d) > sp.shock_atr_mult * atr_prev:
        shock_left = sp.shock_hold_bars + 1
    n += 1
    if shock_left > 0:
        shock_left -= 1
        raw = SHOCK
    elif n < sp.warmup_bars:
        raw = RANGE
    elif er >= sp.trend_er and ef > es and dn > 0:
        raw = TREND_UP
    elif er >= sp.trend_er and ef < es and dn < 0:
        raw = TREND_DOWN
    elif er < sp.range_er:
        raw = CHOP if atrb > 0 and atr > sp.chop_vol_ratio * atrb else RANGE
    elif current == SHOCK:
        raw = RANGE
    else:
        raw = current  # between the thresholds: keep what we have (hysteresis band)

    cand = rs["cand"]
    cnt = rs["cnt"]
    if raw == current:
        cand, cnt = current, 0
    elif raw == SHOCK:
        current, cand, cnt = SHOCK, SHOCK, 0
    else:
        if raw == cand:
            cnt += 1
        else:
            cand, cnt = raw, 1
        if cnt >= sp.regime_confirm_bars:
            current, cnt = raw, 0
    new = {
        "n": n,
        "c": c,
        "pc": pc,
        "h": h,
        "l": lo,
        "o": o,
        "ef": ef,
        "es": es,
        "pef": ef_prev,
        "pes": es_prev,
        "atr": atr,
        "atrb": atrb,
        "dn": dn,
        "dd": dd,
        "er": er,
        "chi": chi,
        "clo": clo,
        "pchi": chi_prev,
        "pclo": clo_prev,
        "reg": current,
        "cand": cand,
        "cnt": cnt,
        "shock": shock_left,
    }
    return new, current
