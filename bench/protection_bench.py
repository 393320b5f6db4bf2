"""Protection under load: how long an emergency close and a Sentinel visibility check wait
when 16 symbols keep the request-weight governor at its limit, with request priorities and
without (the baseline, measured in the same run).

The real BinanceAdapter talks to the sim exchange on loopback. Weight windows are a minute
long, so both clocks (adapter and sim exchange) run `SPEED` times faster than real time: a
venue minute lasts 60/SPEED real seconds, and every figure is given in venue seconds (real
seconds x SPEED), i.e. what the wait would be against Binance. The load: one thread per
symbol reading market data (klines, BACKGROUND) and recovery state (positions, open orders,
open algos) as fast as the governor lets it. The measured requests: a visibility check
(open algo orders of one symbol, PROTECTION) and an emergency close (positions read +
reduce-only MARKET through `close_at_market`, PROTECTION) every PACE_S venue seconds.
Host stalls are magnified SPEED times: a p99 is partly the machine's, not the governor's.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from atlas_actors.engine import close_at_market
from atlas_actors.sim_exchange import SimExchangeServer
from atlas_actors.venues.base import VenueError
from atlas_actors.venues.binance import BinanceAdapter
from atlas_actors.venues.priority import Priority, request_priority
from atlas_actors.venues.sim import SimVenue

SPEED = 10.0  # venue seconds per real second (stalls of the host are magnified by it)
WEIGHT_LIMIT = 600  # per venue minute: small, so 16 symbols reach it at once
# One visibility check + one emergency close (weight 1 + 5) every PACE_S venue seconds: far
# more protection than a real minute has, and still within its reserve of the budget.
PACE_S = 4.0


def _symbols(n: int) -> list[str]:
    return [f"S{i:02d}USDT" for i in range(n)]


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))]


def _run(
    sim: SimVenue,
    server: SimExchangeServer,
    symbols: list[str],
    *,
    priorities: bool,
    venue_seconds: float,
) -> dict[str, Any]:
    t0 = time.time()

    def clock() -> float:
        return t0 + (time.time() - t0) * SPEED

    server._clock = clock
    adapter = BinanceAdapter(
        "paper",
        "paper",
        rest_url=server.rest_url,
        symbols=symbols,
        clock=clock,
        sleep=lambda s: time.sleep(s / SPEED),
        recv_window_ms=60_000,
        weight_limit_share=0.8,
    )
    adapter.governor.priorities = priorities
    adapter.load_exchange_info()
    adapter.sync_time()
    stop = threading.Event()

    def load(sym: str) -> None:
        while not stop.is_set():
            try:
                adapter.get_kline(sym, "1m", 100)
                with request_priority(Priority.BACKGROUND):
                    adapter.get_positions()
                    adapter.get_open_orders(sym)
                    adapter.get_open_algo_orders(sym)
            except VenueError:
                time.sleep(0.01)

    threads = [threading.Thread(target=load, args=(s,), daemon=True) for s in symbols]
    for t in threads:
        t.start()
    time.sleep(60.0 / SPEED)  # one venue minute: the governor is at its limit now
    checks: list[float] = []
    closes: list[float] = []
    end = time.time() + venue_seconds / SPEED

    def check_loop() -> None:  # the Sentinel's visibility checks
        n = 0
        while time.time() < end:
            time.sleep(PACE_S / SPEED)
            n += 1
            with request_priority(Priority.PROTECTION):
                a = time.time()
                adapter.get_open_algo_orders(symbols[n % len(symbols)])
                checks.append((time.time() - a) * SPEED)

    def close_loop() -> None:  # emergency closes (close_at_market says PROTECTION itself)
        n = 0
        while time.time() < end:
            time.sleep(PACE_S / SPEED)
            n += 1
            sym = symbols[n % len(symbols)]
            sim.place_market(
                symbol=sym,
                side="BUY",
                qty=0.01,
                reduce_only=False,
                client_order_id=f"b{n}{priorities}",
            )
            a = time.time()
            close_at_market(adapter, sym, f"atl-{sym}-{n}{int(priorities)}-fx")
            closes.append((time.time() - a) * SPEED)

    measured = [threading.Thread(target=f, daemon=True) for f in (check_loop, close_loop)]
    for t in measured:
        t.start()
    for t in measured:
        t.join()
    stop.set()
    for t in threads:
        t.join(5.0)
    adapter.close()
    return {
        "visibility_check_p50_s": _pct(checks, 0.5),
        "visibility_check_p99_s": _pct(checks, 0.99),
        "visibility_check_max_s": max(checks, default=float("nan")),
        "emergency_close_p50_s": _pct(closes, 0.5),
        "emergency_close_p99_s": _pct(closes, 0.99),
        "emergency_close_max_s": max(closes, default=float("nan")),
        "n": len(checks),
        "n_closes": len(closes),
        "governor_waits": len(adapter.governor.waits),
        "bans": adapter.governor.bans,
        "protection_waits_s": [w * 1.0 for w in adapter.governor.waited[Priority.PROTECTION] if w],
        "mean_check_s": statistics.fmean(checks) if checks else float("nan"),
    }


def main(quick: bool = False) -> dict[str, Any]:
    symbols = _symbols(16)
    venue_seconds = 120.0 if quick else 300.0
    sim = SimVenue(seed=1, starting_balance=10_000_000.0)
    for s in symbols:
        sim.add_symbol(s, tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=5.0)
        sim.set_price(s, 1_000.0)
    with SimExchangeServer(sim, symbols=symbols, weight_limit=WEIGHT_LIMIT) as server:
        with_p = _run(sim, server, symbols, priorities=True, venue_seconds=venue_seconds)
        without = _run(sim, server, symbols, priorities=False, venue_seconds=venue_seconds)
    table = []
    for what, key in (
        ("visibility check", "visibility_check"),
        ("emergency close", "emergency_close"),
    ):
        table.append(
            {
                "figure": f"16 sym at weight limit: {what} p50/p99 (venue s)",
                "value": with_p[f"{key}_p99_s"],
                "value_text": f"{with_p[f'{key}_p50_s']:.2f} / {with_p[f'{key}_p99_s']:.2f} "
                f"(n={with_p['n' if key == 'visibility_check' else 'n_closes']})",
                "unit": "s",
                "baseline": without[f"{key}_p99_s"],
                "baseline_label": f"no priorities: {without[f'{key}_p50_s']:.2f} / "
                f"{without[f'{key}_p99_s']:.2f} "
                f"(n={without['n' if key == 'visibility_check' else 'n_closes']})",
                "goal": "< 1 s",
                "met": with_p[f"{key}_p99_s"] < 1.0,
            }
        )
    return {"with_priorities": with_p, "without_priorities": without, "table": table}


if __name__ == "__main__":
    import json

    print(json.dumps(main(quick=True), indent=2))
