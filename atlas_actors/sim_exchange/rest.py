"""The sim exchange's REST request path: request weight, injected HTTP faults, API-key and
HMAC signature checks, timestamps, and Binance error replies."""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
from collections.abc import Mapping
from hashlib import sha256
from urllib.parse import parse_qsl, unquote_plus

from aiohttp import web

from atlas_actors.sim_exchange.core import HttpFault, ServerCore
from atlas_actors.sim_exchange.routes import Route
from atlas_actors.sim_exchange.wire import (
    UNKNOWN_OUTCOME_MSG,
    WireError,
    WireRequest,
    mandatory,
)
from atlas_actors.venues.binance import schemas
from atlas_actors.venues.faults import BANNED_MSG, TOO_MANY_MSG

log = logging.getLogger("atlas_actors.sim_exchange")


class RestWire(ServerCore):
    """One REST request from the socket to a route handler and back."""

    def _charge_weight(self, weight: int) -> int:
        with self._lock:
            # the server's own minute (a skewed server clock rolls its window with it)
            minute = int((self._clock() + self.clock_skew_ms / 1000.0) // 60)
            if minute != self._weight_minute:
                self._weight_minute, self._weight_used = minute, 0
            self._weight_used += weight
            return self._weight_used

    def _take_http_fault(self, method: str, path: str) -> HttpFault | None:
        with self._lock:
            for f in self._http_faults:
                if f.path == path and f.method in (method, "*"):
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            self._http_faults.remove(f)
                    return f
        return None

    def _check_signature(self, raw_query: str, raw_body: str) -> bool:
        def strip(raw: str) -> tuple[str, str | None]:
            sig = None
            keep = []
            for part in raw.split("&") if raw else []:
                if part.startswith("signature="):
                    sig = part[len("signature=") :]
                else:
                    keep.append(part)
            return "&".join(keep), sig

        q, sig_q = strip(raw_query)
        b, sig_b = strip(raw_body)
        sig = sig_q or sig_b
        if not sig:
            return False
        # Binance signs the bytes as sent; python-binance signs before the body is
        # form-encoded, so the decoded form is accepted as well.
        for payload in (q + b, unquote_plus(q) + unquote_plus(b)):
            expected = hmac.new(self._secret, payload.encode(), sha256).hexdigest()
            if hmac.compare_digest(expected, sig.lower()):
                return True
        return False

    async def _rest(self, request: web.Request) -> web.Response:
        method = request.method
        path = request.path
        raw_query = request.rel_url.raw_query_string
        raw_body = await request.text() if request.can_read_body else ""
        params = dict(parse_qsl(raw_body, keep_blank_values=True))
        params.update(parse_qsl(raw_query, keep_blank_values=True))  # query wins on duplicates
        api_key = request.headers.get("X-MBX-APIKEY")
        route = self._routes.get((method, path))
        rec = WireRequest(
            method=method,
            path=path,
            params={k: v for k, v in params.items() if k != "signature"},
            api_key=api_key,
            signed=route is not None and route.security == "SIGNED",
            signature_valid=None,
            at=self._clock(),
        )
        self.requests.append(rec)
        used = self._charge_weight(route.weight(params) if route is not None else 1)
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        try:
            if route is None:
                raise WireError(404, -5000, f"Path {method} {path} not found")
            banned = self.venue.faults.refuse_banned()
            if banned is not None:
                raise self._ban_error(*banned)
            if used > self.weight_limit:
                retry = max(1, int(60 - self._clock() % 60) + 1)
                raise WireError(
                    429,
                    -1003,
                    f"Too many requests; current limit is {self.weight_limit} requests per minute.",
                    {"Retry-After": str(retry)},
                )
            self._authenticate(route, api_key, params, raw_query, raw_body, rec)
            fault = self._take_http_fault(method, path)
            if fault is not None and not fault.after_apply:
                raise self._fault_error(fault)
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(self._executor, route.fn, params)
            if fault is not None:
                raise self._fault_error(fault)
            rec.status = 200
            return web.json_response(body, headers=headers)
        except WireError as exc:
            rec.status, rec.code = exc.status, exc.code
            return web.json_response(
                schemas.error_wire(exc.code, exc.msg),
                status=exc.status,
                headers={**headers, **exc.headers},
            )
        except Exception:
            log.exception("sim exchange: %s %s failed", method, path)
            rec.status, rec.code = 500, -1000
            return web.json_response(
                schemas.error_wire(
                    -1000, "An unknown error occurred while processing the request."
                ),
                status=500,
                headers=headers,
            )

    def _ban_error(self, status: int, retry_after: float) -> WireError:
        """Binance's replies to a client that goes on during a ban: 429 first, then 418
        "banned until <ms>" (both with Retry-After in whole seconds)."""
        retry = str(max(1, math.ceil(retry_after)))
        if status == 418:
            until_ms = self._now_ms() + int(retry_after * 1000)
            return WireError(
                418, -1003, BANNED_MSG.format(until_ms=until_ms), {"Retry-After": retry}
            )
        return WireError(429, -1003, TOO_MANY_MSG, {"Retry-After": retry})

    @staticmethod
    def _fault_error(fault: HttpFault) -> WireError:
        extra = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
        msg = fault.msg or (UNKNOWN_OUTCOME_MSG if fault.code == -1007 else None)
        return WireError(fault.status, fault.code, msg, extra)

    def _authenticate(
        self,
        route: Route,
        api_key: str | None,
        params: Mapping[str, str],
        raw_query: str,
        raw_body: str,
        rec: WireRequest,
    ) -> None:
        if route.security == "NONE":
            return
        if not api_key:
            raise WireError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(api_key.encode(), self.api_key.encode()):
            raise WireError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if route.security != "SIGNED":
            return
        ok = self._check_signature(raw_query, raw_body)
        rec.signature_valid = ok
        if not ok:
            raise WireError(400, -1022, "Signature for this request is not valid.")
        ts_text = mandatory(params, "timestamp")
        try:
            ts = int(ts_text)
            window = int(params.get("recvWindow") or 5000)
        except ValueError:
            raise WireError(400, -1102, "Parameter 'timestamp' was malformed.") from None
        if not 0 < window <= 60_000:
            raise WireError(400, -1131, "recvWindow must be less than 60000")
        now = self._now_ms()
        if ts >= now + 1000:
            raise WireError(
                400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if now - ts > window:
            raise WireError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
