"""Binance USDⓈ-M REST transport on python-binance's `Client`: signing clock, error mapping,
retries and the request-weight governor.

- every request goes through `BinanceHttp.call`: it waits for the weight governor, signs with
  the injected clock plus the measured server offset, maps Binance errors onto the venue
  error hierarchy (`codes.py`, the Binance code kept) and applies one policy per failure:
  -1021 resyncs the clock and retries once, 429/418/-1003 back off, reads retry timeouts and
  5xx, writes that may have been applied raise UnknownOutcome;
- `BinanceHttp.write` resolves an UnknownOutcome by querying the client id before any resend;
- `WeightGovernor` (governor.py) reads `X-MBX-USED-WEIGHT-1M`, stays below a share of the
  limit per server minute, lets protection go first and keeps every request in the process
  during a venue ban (429/418).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
import urllib3
from binance.client import Client  # type: ignore[import-untyped]
from binance.exceptions import (  # type: ignore[import-untyped]
    BinanceAPIException,
    BinanceRequestException,
)

from atlas_actors.venues.base import (
    AuthError,
    OrderRejected,
    RateLimited,
    UnknownOutcome,
    VenueError,
    VenueUnavailable,
)
from atlas_actors.venues.binance.codes import (
    DUPLICATE_CODE,
    RATE_LIMIT_CODES,
    TIMESTAMP_CODE,
    classified,
    error_for_code,
)
from atlas_actors.venues.binance.governor import WeightGovernor
from atlas_actors.venues.priority import Priority, effective_priority

__all__ = ["BinanceHttp", "WeightGovernor"]

log = logging.getLogger(__name__)

TIME_RESYNC_S = 30 * 60.0


def _never_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection itself failed (DNS, refused, connect timeout): nothing left
    this host, so a write cannot have been applied."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(
        reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
    )


class BinanceHttp:
    """The signed REST session of one BinanceAdapter (see the module docstring)."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        rest_url: str,
        recv_window_ms: int,
        request_timeout_s: float,
        weight_limit_share: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        max_write_attempts: int,
        max_read_attempts: int,
        max_rate_limit_waits: int,
        max_rate_limit_wait_s: float,
    ) -> None:
        self.rest_url = rest_url
        self.clock = clock
        self.sleep = sleep
        self.max_write_attempts = max(1, int(max_write_attempts))
        self.max_read_attempts = max(1, int(max_read_attempts))
        self.max_rate_limit_waits = int(max_rate_limit_waits)
        self.max_rate_limit_wait_s = float(max_rate_limit_wait_s)

        # ping=False: the default ping hits *spot* /api/v3/ping at construction.
        self.client = Client(api_key, api_secret, ping=False)
        self.client.FUTURES_URL = self.rest_url + "/fapi"
        self.client.REQUEST_RECVWINDOW = int(recv_window_ms)
        self.client.REQUEST_TIMEOUT = float(request_timeout_s)
        self.client.session.hooks["response"].append(self._on_http_response)

        self.governor = WeightGovernor(share=weight_limit_share, clock=clock, sleep=sleep)
        self._offset_ms = 0.0
        self._last_time_sync: float | None = None
        self._time_lock = threading.Lock()

    def close(self) -> None:
        self.client.session.close()

    def _on_http_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        used = response.headers.get("X-MBX-USED-WEIGHT-1M")
        if used and used.isdigit():
            self.governor.observe(int(used))

    def _apply_signing_clock(self) -> None:
        # python-binance stamps `time.time()*1000 + timestamp_offset`; make that equal to the
        # injected clock plus the measured server offset.
        self.client.timestamp_offset = (self.clock() - time.time()) * 1000.0 + self._offset_ms

    def sync_time(self) -> float:
        """Measure the server clock offset (GET /fapi/v1/time); returns it in ms."""
        t0 = self.clock()
        body = self.call("time", self.client.futures_time, None, weight=1, signed=False)
        t1 = self.clock()
        server_ms = int(body["serverTime"])
        with self._time_lock:
            self._offset_ms = server_ms - (t0 + t1) / 2.0 * 1000.0
            self._last_time_sync = t1
        self.governor.server_offset_s = self._offset_ms / 1000.0  # windows are server minutes
        return self._offset_ms

    @property
    def time_offset_ms(self) -> float:
        return self._offset_ms

    def now_ms(self) -> int:
        return int(self.clock() * 1000.0 + self._offset_ms)

    def time_sync_due(self) -> bool:
        last = self._last_time_sync
        return last is None or self.clock() - last >= TIME_RESYNC_S

    def _unreachable(self, op: str, exc: BaseException) -> str:
        cause: BaseException = exc
        while cause.__cause__ is not None or cause.__context__ is not None:
            nxt = cause.__cause__ or cause.__context__
            assert nxt is not None
            cause = nxt
        # The exception text may carry the signed query string: report only the kind.
        return f"{op}: cannot reach {self.rest_url} ({type(exc).__name__}: {type(cause).__name__})"

    def map_api_error(self, op: str, exc: BinanceAPIException, write: bool) -> VenueError:
        status = int(exc.status_code)
        code = int(exc.code) if exc.code else None
        text = f"{op}: {exc.message} (HTTP {status}, code {code})"
        if status in (429, 418) or code in RATE_LIMIT_CODES or status == 403:
            return RateLimited(self._retry_after(exc, status), text, code=code)
        if status == 401:
            return AuthError(text, code=code)
        if code is not None and classified(code):
            # One table for the adapter and the simulators (codes.py).
            return error_for_code(code, text, write=write)
        if status >= 500 or status == 408:
            return UnknownOutcome(text, code=code) if write else VenueUnavailable(text, code=code)
        if write:
            return OrderRejected(code, text)
        return VenueError(text, code=code)

    def _retry_after(self, exc: BinanceAPIException, status: int) -> float:
        header = exc.response.headers.get("Retry-After") if exc.response is not None else None
        if header:
            try:
                return max(0.0, float(header))
            except ValueError:
                pass
        banned = re.search(r"banned until (\d{13})", exc.message or "")
        if banned:  # the venue's clock
            return max(0.0, (int(banned.group(1)) - self.now_ms()) / 1000.0)
        if status == 418:
            return 120.0
        return max(1.0, 60.0 - self.clock() % 60.0)  # the weight window rolls each minute

    def call(
        self,
        op: str,
        fn: Callable[..., Any],
        params: Mapping[str, Any] | None,
        *,
        weight: int = 1,
        signed: bool = True,
        write: bool = False,
        read_attempts_max: int | None = None,
        priority: Priority = Priority.TRADING,
    ) -> Any:
        """One REST request with the read/transport policies applied.

        `priority` is the request's nature; a caller's `request_priority` block overrides it.
        Raises UnknownOutcome (writes only) for anything that may have been applied; the
        caller (`_write`) resolves it. Reads retry timeouts/5xx, then VenueUnavailable.
        During a venue ban nothing is sent: RateLimited at once (or after a short wait)."""
        prio = effective_priority(priority)
        if signed and self.time_sync_due():
            try:
                self.sync_time()
            except VenueError:
                log.warning("time sync failed; signing with the previous offset", exc_info=True)
        time_resynced = False
        rate_waits = 0
        read_attempts = 0
        while True:
            # A retry after a 429 waits out its Retry-After here; anyone else waits only for
            # a ban that ends within the same bound, and is refused without sending otherwise.
            self.governor.acquire(weight, prio, max_ban_wait_s=self.max_rate_limit_wait_s)
            if signed:
                self._apply_signing_clock()
            try:
                return fn(**params) if params is not None else fn()
            except BinanceAPIException as exc:
                err = self.map_api_error(op, exc, write)
            except BinanceRequestException as exc:
                text = f"{op}: malformed reply ({exc.message[:120]})"
                err = UnknownOutcome(text) if write else VenueUnavailable(text)
            except requests.exceptions.ConnectTimeout as exc:
                err = VenueUnavailable(self._unreachable(op, exc))
            except requests.exceptions.SSLError as exc:
                # A TLS failure or reset can come after the request left: unknown, not unsent.
                text = self._unreachable(op, exc)
                err = UnknownOutcome(text) if write else VenueUnavailable(text)
            except requests.exceptions.ConnectionError as exc:
                text = self._unreachable(op, exc)
                err = (
                    UnknownOutcome(text)
                    if write and not _never_sent(exc)
                    else VenueUnavailable(text)
                )
            except requests.exceptions.RequestException as exc:
                text = self._unreachable(op, exc)
                err = UnknownOutcome(text) if write else VenueUnavailable(text)
            if err.code == TIMESTAMP_CODE and not time_resynced:
                # Rejected before execution, so retrying once after a resync is safe.
                time_resynced = True
                self.sync_time()
                continue
            if isinstance(err, RateLimited):
                # Every request during a ban extends it: the whole process stops sending
                # until it ends, whether or not this caller waits for it.
                self.governor.ban(err.retry_after, err.msg)
                if (
                    rate_waits < self.max_rate_limit_waits
                    and err.retry_after <= self.max_rate_limit_wait_s
                ):
                    rate_waits += 1
                    log.warning("%s: rate limited, waiting %.2f s", op, err.retry_after)
                    continue
            if isinstance(err, VenueUnavailable) and not write:
                read_attempts += 1
                if read_attempts < (read_attempts_max or self.max_read_attempts):
                    self.sleep(min(2.0, 0.1 * 2**read_attempts))
                    continue
            raise err

    def write(
        self,
        op: str,
        send: Callable[[], dict[str, Any]],
        lookup: Callable[[], dict[str, Any] | None],
        *,
        resend_when_absent: bool = True,
    ) -> dict[str, Any]:
        """Send a create request; resolve an unknown outcome by client id before any retry.

        A duplicate id reply (-4116) means an earlier attempt landed, so the existing order is
        returned. After an unknown outcome one "not found" proves nothing (the request can land
        later, and a filled order's id executes again): without `resend_when_absent` (orders
        that open) the UnknownOutcome is raised for the caller to keep resolving; with it the
        same client id is resent after a query found nothing."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return send()
            except UnknownOutcome as exc:
                found = self.lookup_after(op, lookup, exc)
                if found is not None:
                    log.info("%s: unknown outcome resolved: it was applied", op)
                    return found
                if not resend_when_absent:
                    raise UnknownOutcome(
                        f"{exc.msg}; not found by client id yet (never resent: it may land later)",
                        code=exc.code,
                    ) from exc
                if attempt >= self.max_write_attempts:
                    raise
                log.info("%s: unknown outcome resolved: absent; resending same client id", op)
                self.sleep(min(2.0, 0.2 * 2 ** (attempt - 1)))
            except OrderRejected as exc:
                if exc.code != DUPLICATE_CODE and "duplicate" not in exc.msg.lower():
                    raise
                # The earlier attempt landed; a query may lag behind it for a moment.
                for wait in (0.0, 0.2, 0.4):
                    if wait:
                        self.sleep(wait)
                    found = self.lookup_after(op, lookup, UnknownOutcome(exc.msg, code=exc.code))
                    if found is not None:
                        return found
                raise UnknownOutcome(f"{op}: duplicate id but not found: {exc.msg}") from exc

    def lookup_after(
        self, op: str, lookup: Callable[[], dict[str, Any] | None], cause: UnknownOutcome
    ) -> dict[str, Any] | None:
        try:
            return lookup()
        except VenueError as exc:
            raise UnknownOutcome(
                f"{op}: outcome unknown and the query by client id failed: {exc}", code=cause.code
            ) from exc
