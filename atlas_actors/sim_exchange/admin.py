"""The sim exchange's admin side (tests, chaos; loopback only, no auth): the programmatic
switches and the `/admin/...` endpoints (faults, price, feed_bar, symbol, replay, snapshot,
requests)."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

from aiohttp import web

from atlas_actors.sim_exchange.core import HttpFault
from atlas_actors.sim_exchange.streams import StreamsWire
from atlas_actors.sim_exchange.wire import WireRequest
from atlas_actors.venues.base import VenueError


class AdminApi(StreamsWire):
    """Fault switches, recorded requests and the admin endpoint."""

    # ================================================================== programmatic

    def arm_http_fault(
        self,
        path: str,
        *,
        method: str = "POST",
        status: int = 503,
        code: int = -1007,
        msg: str | None = None,
        times: int | None = 1,
        after_apply: bool = False,
        retry_after: float | None = None,
    ) -> None:
        """The next `times` requests to `path` answer `status`/`code`; with after_apply the
        request is processed first (the reply is lost, the effect is not)."""
        with self._lock:
            self._http_faults.append(
                HttpFault(path, method.upper(), status, code, msg, times, after_apply, retry_after)
            )

    def clear_http_faults(self) -> None:
        with self._lock:
            self._http_faults.clear()

    def expire_listen_keys(self) -> None:
        """Expire every listenKey now (listenKeyExpired on their streams, then closed)."""
        loop = self._loop
        if loop is None:
            return
        done = threading.Event()

        def run() -> None:
            for key in list(self._listen_keys):
                self._expire_listen_key(key)
            done.set()

        loop.call_soon_threadsafe(run)
        done.wait(5.0)

    def drop_connections(self, kind: str = "all") -> None:
        """Close the stream connections of `kind` (market/user/all); clients may reconnect."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._close_conns, kind)

    def clear_requests(self) -> None:
        self.requests.clear()

    def recorded(self, path: str | None = None, method: str | None = None) -> list[WireRequest]:
        return [
            r
            for r in list(self.requests)
            if (path is None or r.path == path) and (method is None or r.method == method)
        ]

    def write_requests(self) -> list[WireRequest]:
        """Requests that can change the book (orders, cancels, algo orders, leverage, mode)."""
        return [r for r in list(self.requests) if self._is_write(r.method, r.path)]

    def _is_write(self, method: str, path: str) -> bool:
        route = self._routes.get((method, path))
        return route is not None and route.write

    # ================================================================== admin endpoint

    async def _admin(self, request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return web.json_response({"error": "admin body must be JSON"}, status=400)
        what = request.path[len("/admin/") :]
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(
                self._executor, self._admin_call, request.method, what, body
            )
        except (ValueError, KeyError, TypeError, VenueError) as exc:
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)
        return web.json_response(result)

    def _admin_call(self, method: str, what: str, body: dict[str, Any]) -> Any:
        if method == "GET" and what == "snapshot":
            return self.venue.snapshot()
        if method == "GET" and what == "requests":
            return [r.__dict__ for r in list(self.requests)[-1000:]]
        if method != "POST":
            raise ValueError(f"unknown admin call {method} /admin/{what}")
        if what == "faults":
            return self._admin_faults(body)
        if what == "price":
            sym = str(body["symbol"])
            if "price" in body:
                self.venue.set_price(sym, float(body["price"]))
            if "mark_price" in body:
                self.venue.set_mark_price(sym, float(body["mark_price"]))
            return {"ok": True}
        if what == "feed_bar":
            sym = str(body["symbol"])
            self.add_known_symbol(sym)
            self.venue.feed_bar(sym, body["bar"])
            self.publish_mark_price(sym, float(body["bar"]["close"]))
            return {"ok": True}
        if what == "replay":
            # {"stop": true}: the market stands still from now on (a frozen book to audit)
            if body.get("stop") and self._replay is not None:
                self._replay.stop()
            return {"ok": True, "cursor": self._replay.cursor() if self._replay else None}
        if what == "symbol":
            sym = str(body["symbol"])
            self.venue.add_symbol(
                sym,
                tick_size=float(body["tick_size"]),
                step_size=float(body["step_size"]),
                min_qty=float(body["min_qty"]),
                min_notional=float(body["min_notional"]),
                market_max_qty=float(body.get("market_max_qty", math.inf)),
            )
            self.add_known_symbol(sym)
            return {"ok": True}
        raise ValueError(f"unknown admin call POST /admin/{what}")

    def _admin_faults(self, body: dict[str, Any]) -> dict[str, Any]:
        faults = self.venue.faults
        if body.get("clear"):
            faults.clear()
            self.clear_http_faults()
            self.clock_skew_ms = 0
        if "arm" in body:
            a = dict(body["arm"])
            faults.arm(str(a.pop("method", "*")), kind=str(a.pop("kind")), **a)
        if "probability" in body:
            pr = dict(body["probability"])
            faults.set_probability(str(pr.pop("kind")), float(pr.pop("p")), **pr)
        if "exchange_cancels_algo" in body:
            # the venue removes an open stop by itself, now (issue 13 A3); `status` one of
            # CANCELED / EXPIRED / REJECTED / FINISHED (triggered, child unfilled: aq = 0)
            x = dict(body["exchange_cancels_algo"])
            removed = self.venue.exchange_cancels_algo(
                str(x["symbol"]), str(x["client_algo_id"]), str(x.get("status", "EXPIRED"))
            )
            if not removed:
                raise ValueError(f"no open algo order {x['client_algo_id']!r} on {x['symbol']}")
        if "visibility_lag_ms" in body:
            faults.visibility_lag_ms = float(body["visibility_lag_ms"])
        if "disconnect_stream" in body:
            faults.disconnect_stream(str(body["disconnect_stream"]))
        if "reconnect_stream" in body:
            faults.reconnect_stream(str(body["reconnect_stream"]))
        if "clock_skew_ms" in body:
            self.clock_skew_ms = int(body["clock_skew_ms"])
        if "weight_limit" in body:
            self.weight_limit = int(body["weight_limit"])
        if "http" in body:
            h = dict(body["http"])
            self.arm_http_fault(str(h.pop("path")), **h)
        if "symbol_status" in body:  # {"SYM": "SETTLING"}: delisted (or not yet trading)
            for sym, status in dict(body["symbol_status"]).items():
                self.venue.set_symbol_status(str(sym), str(status))
        if "wallet" in body:  # {"USDC": 1000, "BNB": 2}: rows of a multi-asset wallet
            for asset, amount in dict(body["wallet"]).items():
                self.venue.set_wallet(str(asset), float(amount))
        if "multi_assets_margin" in body:
            self.venue.set_multi_assets_margin(bool(body["multi_assets_margin"]))
        if "venue_close" in body:
            # {"symbol": .., "kind": "liquidation" | "adl" | "settlement", "fraction": ..}
            vc = dict(body["venue_close"])
            frac = vc.get("fraction")
            self.venue.venue_close(
                str(vc["symbol"]),
                str(vc["kind"]),
                fraction=float(frac) if frac is not None else None,
            )
        if body.get("expire_listen_keys"):
            for key in list(self._listen_keys):
                if self._loop is not None:
                    self._loop.call_soon_threadsafe(self._expire_listen_key, key)
        return {"ok": True, "injected": dict(faults.injected)}
