"""BinanceAdapter's own overhead per call over loopback, next to a raw `requests` call.

Both talk to the same `SimExchangeServer` (in this process, 127.0.0.1) in the same run, calls
interleaved so server and scheduler noise hit both alike. Cases:

* ``premiumIndex``  - public GET: `get_mark_price` vs `session.get(...).json()`
* ``openOrders``    - signed GET: `get_open_orders` vs a hand-signed HMAC request
* ``order``         - signed POST of a resting GTX limit: `place_limit_postonly` vs a
                      hand-signed POST with the same parameters

Reported in microseconds: p50/p99 of each side and the adapter's overhead (adapter - raw)
at p50 and p99: what python-binance, the weight governor, error mapping, filter rounding and
schema parsing add on top of the HTTP round trip itself.

Run: ``python -m bench.binance_bench [--quick]``; `main(quick)` returns the figures as a dict.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import statistics
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import requests

from atlas_actors.sim_exchange import SimExchangeServer
from atlas_actors.venues.binance import BinanceAdapter
from atlas_actors.venues.sim import SimVenue

SYMBOL = "BTCUSDT"
KEY = SECRET = "paper"


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def _signed(params: dict[str, Any]) -> str:
    params = {**params, "recvWindow": 5000, "timestamp": int(time.time() * 1000)}
    query = urlencode(params)
    sig = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={sig}"


def _measure(
    n: int, adapter_call: Callable[[int], Any], raw_call: Callable[[int], Any]
) -> dict[str, float]:
    ours: list[float] = []
    raw: list[float] = []
    clock = time.perf_counter
    for i in range(n):
        t = clock()
        adapter_call(i)
        ours.append((clock() - t) * 1e6)
        t = clock()
        raw_call(i)
        raw.append((clock() - t) * 1e6)
    a50, a99 = statistics.median(ours), _pct(ours, 0.99)
    r50, r99 = statistics.median(raw), _pct(raw, 0.99)
    return {
        "adapter_p50_us": round(a50, 1),
        "adapter_p99_us": round(a99, 1),
        "raw_p50_us": round(r50, 1),
        "raw_p99_us": round(r99, 1),
        "overhead_p50_us": round(a50 - r50, 1),
        "overhead_p99_us": round(a99 - r99, 1),
    }


def main(quick: bool = False) -> dict[str, Any]:
    n = 150 if quick else 1500
    n_orders = 60 if quick else 400
    sim = SimVenue(seed=1, starting_balance=10_000_000.0)  # room for every resting bench order
    sim.add_symbol(SYMBOL, tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100.0)
    sim.set_price(SYMBOL, 50_000.0)
    results: dict[str, Any] = {}
    with SimExchangeServer(sim, symbols=[SYMBOL]) as server:
        url = server.rest_url
        adapter = BinanceAdapter(KEY, SECRET, rest_url=url, symbols=[SYMBOL])
        session = requests.Session()
        session.headers["X-MBX-APIKEY"] = KEY
        # Warm both connections, the filters and the clock offset.
        adapter.get_symbol_filters(SYMBOL)
        adapter.sync_time()
        session.get(f"{url}/fapi/v1/time", timeout=5).json()

        results["premiumIndex"] = _measure(
            n,
            lambda i: adapter.get_mark_price(SYMBOL),
            lambda i: session.get(
                f"{url}/fapi/v1/premiumIndex", params={"symbol": SYMBOL}, timeout=5
            ).json(),
        )
        results["openOrders"] = _measure(
            n,
            lambda i: adapter.get_open_orders(SYMBOL),
            lambda i: session.get(
                f"{url}/fapi/v1/openOrders?{_signed({'symbol': SYMBOL})}", timeout=5
            ).json(),
        )

        def ours(i: int) -> Any:
            return adapter.place_limit_postonly(
                symbol=SYMBOL,
                side="BUY",
                qty=0.01,
                price=40_000 - i * 0.1,
                tif="GTX",
                reduce_only=False,
                client_order_id=f"bench-a-{i}",
            )

        def theirs(i: int) -> Any:
            body = _signed(
                {
                    "symbol": SYMBOL,
                    "side": "BUY",
                    "type": "LIMIT",
                    "timeInForce": "GTX",
                    "quantity": "0.01",
                    "price": f"{40_000 - i * 0.1:.1f}",
                    "newClientOrderId": f"bench-r-{i}",
                }
            )
            return session.post(
                f"{url}/fapi/v1/order",
                data=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=5,
            ).json()

        results["order"] = _measure(n_orders, ours, theirs)
        errors = [r for r in server.recorded() if r.status != 200]
        results["errors"] = len(errors)
        adapter.close()
        session.close()
    results["calls"] = {"reads": n, "orders": n_orders}
    print(f"{'case':<14}{'adapter p50/p99 us':>22}{'raw p50/p99 us':>20}{'overhead p50/p99':>20}")
    for case in ("premiumIndex", "openOrders", "order"):
        r = results[case]
        print(
            f"{case:<14}{r['adapter_p50_us']:>11.0f} /{r['adapter_p99_us']:>8.0f}"
            f"{r['raw_p50_us']:>11.0f} /{r['raw_p99_us']:>6.0f}"
            f"{r['overhead_p50_us']:>11.0f} /{r['overhead_p99_us']:>6.0f}"
        )
    print(f"(loopback, sim exchange in-process; {results['errors']} error replies)")
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls (CI smoke)")
    main(quick=ap.parse_args().quick)
