"""Fault injection for SimVenue: make the simulated exchange fail the way Binance does.

Usage (every switch is on `venue.faults`):

    venue.faults.arm("place_algo_stop", kind="timeout_after_apply", times=1)
    venue.faults.arm("place_market", kind="reject", code=-2019)
    venue.faults.arm("*", kind="latency", latency_ms=200, times=3)
    venue.faults.set_probability("rate_limit", 0.05, methods=["place_market"], retry_after=2.0)
    venue.faults.visibility_lag_ms = 300          # new algo orders become visible 300 ms later
    venue.faults.disconnect_stream("user")        # stream events are lost until reconnect_stream()
    venue.faults.reconnect_stream("user")
    venue.faults.clear()                          # everything off (streams reconnected)
    venue.faults.injected                         # Counter: kind -> how many were injected

Kinds (what the caller sees, and whether the request was applied):
  latency               the call sleeps `latency_ms` (through the injectable `sleep`), then proceeds
  timeout_before_apply  UnknownOutcome; nothing was applied (a lost request)
  timeout_after_apply   the request IS applied (order placed / cancelled), then UnknownOutcome
                        (a lost reply: resolve by querying the client id, never resend blindly)
  reject                the exception Binance's `code` maps to (`binance/codes.py`, the table the
                        adapter uses too: OrderRejected or a subclass for most codes); not applied
  rate_limit            RateLimited(retry_after) code -1003; not applied
  unavailable           VenueUnavailable (HTTP 503 "Service Unavailable."); not applied
  invisible_algo        place_algo_stop answers NEW with an id, but the exchange lost it: it never
                        appears in get_open_algo_orders / get_algo_order and never triggers
  late_landing          an order placement answers UnknownOutcome (Binance's 503 / -1007) with
                        nothing applied yet - a query by client id says "not found" (-2013) - and
                        the venue executes it `land_after_ms` later (drawn within 0.2-2 s when not
                        given): "not found" once is no proof that it was never placed
  exchange_cancels_algo place_algo_stop works and the stop is listed, then the venue removes it
                        by itself (at the next open-algo read or bar after it was listed):
                        CANCELED, EXPIRED, REJECTED or FINISHED with aq = 0 (triggered, child
                        unfilled), with the ALGO_UPDATEs; `msg` picks one, else they take turns.
                        `SimVenue.exchange_cancels_algo(symbol, cid, status)` does it at once.
  liquidation, adl,     the exchange closes a position by itself (`SimVenue.venue_close`) at the
  settlement            next matching call made while some symbol holds a position (the call
                        itself then proceeds cleanly): liquidation and settlement close all of it,
                        ADL half; only `arm`, and only consumed when it acted
  ban                   Binance's IP ban (method "*" only): the next call is refused with 429
                        (RateLimited, retry_after); a call before that has passed earns a 418
                        "banned until" for `ban_s`, and every call during the ban extends it,
                        doubling up to `max_ban_s`. The first call after it ends goes through
                        and the fault is spent. Not applied.
  slow_reply            the call is applied, but its reply takes `reply_s` (uniform, default
                        2-12 s: longer than the gateway's and the supervisor's timeouts)

`arm` consumes one armed fault per matching call (`times` calls; times=None = forever).
`set_probability` draws from `random.Random(seed)` of the venue, so runs are reproducible.
Latency is added to whatever else happens on the call; other kinds are mutually exclusive per call
(armed faults win over probabilistic ones).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from atlas_actors.venues.base import (
    RateLimited,
    UnknownOutcome,
    VenueError,
    VenueUnavailable,
)
from atlas_actors.venues.binance.codes import BINANCE_MESSAGES, error_for_code

__all__ = [
    "ALL_METHODS",
    "BINANCE_MESSAGES",
    "FAULT_KINDS",
    "LATE_LANDING_METHODS",
    "VENUE_CLOSE_FAULTS",
    "READ_METHODS",
    "STREAMS",
    "WRITE_METHODS",
    "FaultPlan",
    "Faults",
    "error_for_code",
]

FAULT_KINDS = (
    "latency",
    "timeout_before_apply",
    "timeout_after_apply",
    "reject",
    "rate_limit",
    "unavailable",
    "invisible_algo",
    "exchange_cancels_algo",
    "liquidation",
    "adl",
    "settlement",
    "ban",
    "slow_reply",
    "late_landing",
)
# The placements the venue can execute after it answered "unknown" (late_landing).
LATE_LANDING_METHODS = ("place_limit_postonly", "place_market")
LATE_LANDING_MS = (200.0, 2000.0)
# Kinds that are something the venue does, not what happens to the call they ride on.
VENUE_CLOSE_FAULTS = ("liquidation", "adl", "settlement")

# Requests that change venue state (what `write_count` counts and what rejects/timeouts target).
WRITE_METHODS = (
    "place_limit_postonly",
    "place_market",
    "cancel_order",
    "place_algo_stop",
    "cancel_algo",
    "set_leverage",
    "set_position_mode_one_way",
)
READ_METHODS = (
    "get_kline",
    "get_mark_price",
    "get_last_price",
    "get_funding_rate",
    "get_open_interest",
    "get_balances",
    "get_positions",
    "get_open_orders",
    "get_order",
    "get_open_algo_orders",
    "get_algo_order",
)
ALL_METHODS = WRITE_METHODS + READ_METHODS
ALGO_ONLY_KINDS = ("invisible_algo", "exchange_cancels_algo")  # faults of place_algo_stop only
STREAMS = ("market", "user")


BANNED_MSG = (
    "Way too many requests; IP(127.0.0.1) banned until {until_ms}. "
    "Please use the websocket for live updates to avoid bans."
)
TOO_MANY_MSG = (
    "Too many requests; current limit of IP(127.0.0.1) is 2400 requests per minute. "
    "Please use the websocket for live updates to avoid being banned."
)


@dataclass
class VenueBan:
    """Binance's escalating ban (see the `ban` kind): `refuse(now)` -> (HTTP status,
    retry_after seconds) for a refused request, None once the ban is over."""

    warn_s: float
    ban_s: float
    max_ban_s: float
    warn_until: float | None = None
    banned_until: float = 0.0
    level: int = 0

    def refuse(self, now: float) -> tuple[int, float] | None:
        if self.warn_until is None:
            self.warn_until = now + self.warn_s
            return 429, self.warn_s
        if now < self.warn_until or now < self.banned_until:
            length = min(self.ban_s * 2**self.level, self.max_ban_s)
            self.level += 1
            self.banned_until = max(self.banned_until, now + length)
            return 418, self.banned_until - now
        return None


@dataclass
class _Armed:
    method: str  # a method name or "*"
    kind: str
    remaining: int | None  # None = forever
    code: int
    msg: str | None
    retry_after: float
    latency_ms: float
    land_after_ms: float | None = None


@dataclass
class _Chance:
    p: float
    methods: frozenset[str]
    code: int
    msg: str | None
    retry_after: float
    latency_ms: float
    land_after_ms: float | None = None


@dataclass(frozen=True)
class FaultPlan:
    """What happens to one call: optional latency plus at most one outcome fault."""

    method: str
    latency_ms: float = 0.0
    kind: str | None = None
    code: int = -2010
    msg: str | None = None
    retry_after: float = 1.0
    land_after_ms: float = 0.0  # late_landing: when the venue executes it after answering
    reply_delay_ms: float = 0.0  # slow_reply: after the call was applied

    def error(self) -> VenueError:
        if self.kind == "ban":
            return RateLimited(self.retry_after, self.msg or TOO_MANY_MSG, code=-1003)
        if self.kind == "rate_limit":
            return RateLimited(
                self.retry_after,
                self.msg or BINANCE_MESSAGES[-1003] + f" (retry after {self.retry_after:g} s)",
                code=-1003,
            )
        if self.kind == "unavailable":
            return VenueUnavailable(self.msg or "Service Unavailable.", code=-1001)
        if self.kind in ("timeout_before_apply", "timeout_after_apply"):
            return UnknownOutcome(
                self.msg or f"{self.method}: timed out waiting for the venue (injected)", code=None
            )
        if self.kind == "late_landing":
            return UnknownOutcome(
                self.msg or f"{self.method}: Unknown error, please check your request (injected)",
                code=-1007,
            )
        return error_for_code(
            self.code,
            self.msg,
            write=self.method in WRITE_METHODS,
            retry_after=self.retry_after,
        )

    @property
    def raises_before(self) -> bool:
        return self.kind in ("timeout_before_apply", "reject", "rate_limit", "unavailable", "ban")


def _default_methods(kind: str) -> frozenset[str]:
    if kind in ALGO_ONLY_KINDS:
        return frozenset({"place_algo_stop"})
    if kind == "late_landing":
        return frozenset(LATE_LANDING_METHODS)
    if kind in ("timeout_before_apply", "timeout_after_apply", "reject"):
        return frozenset(WRITE_METHODS)
    return frozenset(ALL_METHODS)


class Faults:
    """The fault switches of one SimVenue (see the module docstring)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        sleep: Callable[[float], None] = time.sleep,
        lag_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sleep = sleep
        # Visibility lag is measured on this clock (seconds); tests inject one they control.
        self.lag_clock = lag_clock
        self.visibility_lag_ms = 0.0
        self.injected: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []
        self._chances: dict[str, _Chance] = {}
        self._streams_down: set[str] = set()
        self._stream_hook: Callable[[str, str], None] | None = None
        self.ban: VenueBan | None = None
        self.reply_s = (2.0, 12.0)  # slow_reply's range

    # ---------------------------------------------------------------- switches

    def arm(
        self,
        method: str,
        *,
        kind: str,
        times: int | None = 1,
        code: int = -2010,
        msg: str | None = None,
        retry_after: float = 1.0,
        latency_ms: float = 0.0,
        land_after_ms: float | None = None,
        ban_s: float = 120.0,
        max_ban_s: float = 3 * 24 * 3600.0,
        reply_s: tuple[float, float] | list[float] | None = None,
    ) -> None:
        """Inject `kind` into the next `times` calls of `method` ("*" = any venue method).
        `ban`: one ban episode (retry_after = the 429's Retry-After, then `ban_s` doubling
        up to `max_ban_s`); `slow_reply`: replies take `reply_s` (lo, hi) seconds."""
        self._check_kind(kind)
        if kind == "ban":
            if method != "*":
                raise ValueError("a ban applies to every request: arm it on method '*'")
            if not (retry_after > 0 and 0 < ban_s <= max_ban_s):
                raise ValueError(
                    f"ban needs retry_after > 0 and 0 < ban_s <= max_ban_s, got "
                    f"{retry_after!r}, {ban_s!r}, {max_ban_s!r}"
                )
            with self._lock:
                self.ban = VenueBan(float(retry_after), float(ban_s), float(max_ban_s))
            return
        if reply_s is not None:
            lo, hi = (float(x) for x in reply_s)
            if not 0 <= lo <= hi:
                raise ValueError(f"reply_s must be (lo, hi) with 0 <= lo <= hi, got {reply_s!r}")
            self.reply_s = (lo, hi)
        if method != "*" and method not in ALL_METHODS:
            raise ValueError(f"unknown venue method {method!r}; one of {', '.join(ALL_METHODS)}")
        if kind in ALGO_ONLY_KINDS and method not in ("place_algo_stop", "*"):
            raise ValueError(f"{kind} only applies to place_algo_stop")
        if kind == "late_landing" and method not in (*LATE_LANDING_METHODS, "*"):
            raise ValueError(f"late_landing only applies to {', '.join(LATE_LANDING_METHODS)}")
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None, got {times!r}")
        _check_land_after(land_after_ms)
        with self._lock:
            self._armed.append(
                _Armed(method, kind, times, code, msg, retry_after, latency_ms, land_after_ms)
            )

    def set_probability(
        self,
        kind: str,
        p: float,
        *,
        methods: Iterable[str] | None = None,
        code: int = -2010,
        msg: str | None = None,
        retry_after: float = 1.0,
        latency_ms: float = 50.0,
        land_after_ms: float | None = None,
        reply_s: tuple[float, float] | list[float] | None = None,
    ) -> None:
        """Inject `kind` into each call of `methods` with probability `p` (0 switches it off)."""
        self._check_kind(kind)
        _check_land_after(land_after_ms)
        if kind in VENUE_CLOSE_FAULTS:
            raise ValueError(f"{kind} is a venue action: arm it (faults.arm), no probability")

        if kind == "ban":
            raise ValueError("a ban is armed (arm('*', kind='ban', ...)), not drawn by chance")
        if reply_s is not None:
            lo, hi = (float(x) for x in reply_s)
            if not 0 <= lo <= hi:
                raise ValueError(f"reply_s must be (lo, hi) with 0 <= lo <= hi, got {reply_s!r}")
            self.reply_s = (lo, hi)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probability must be within [0, 1], got {p!r}")
        ms = frozenset(methods) if methods is not None else _default_methods(kind)
        unknown = sorted(ms - set(ALL_METHODS))
        if unknown:
            raise ValueError(f"unknown venue methods {unknown}")
        with self._lock:
            if p == 0.0:
                self._chances.pop(kind, None)
            else:
                self._chances[kind] = _Chance(
                    p, ms, code, msg, retry_after, latency_ms, land_after_ms
                )

    def clear(self) -> None:
        """Switch every fault off, zero the lag and reconnect any disconnected stream."""
        with self._lock:
            self._armed.clear()
            self._chances.clear()
            self.visibility_lag_ms = 0.0
            self.ban = None
        for stream in sorted(self._streams_down):
            self.reconnect_stream(stream)

    def disconnect_stream(self, stream: str = "all") -> None:
        """Drop the market and/or user stream: events are lost until `reconnect_stream`."""
        for s in self._streams(stream):
            if s not in self._streams_down:
                self._streams_down.add(s)
                self.injected["stream_disconnect"] += 1
                if self._stream_hook is not None:
                    self._stream_hook(s, "DISCONNECTED")

    def reconnect_stream(self, stream: str = "all") -> None:
        for s in self._streams(stream):
            if s in self._streams_down:
                self._streams_down.discard(s)
                if self._stream_hook is not None:
                    self._stream_hook(s, "CONNECTED")

    def stream_up(self, stream: str) -> bool:
        return stream not in self._streams_down

    @property
    def injected_total(self) -> int:
        return sum(self.injected.values())

    @property
    def active(self) -> bool:
        return bool(self._armed or self._chances or self.ban)

    def refuse_banned(self) -> tuple[int, float] | None:
        """A request arrives: (HTTP status 429/418, retry_after) while the armed ban refuses
        it (and is extended by it), None when no ban is on (the sim exchange asks this for
        every route, SimVenue for every method)."""
        if self.ban is None:
            return None
        with self._lock:
            ban = self.ban
            if ban is None:
                return None
            refused = ban.refuse(self.lag_clock())
            if refused is None:
                self.ban = None
            else:
                self.injected["ban"] += 1
            return refused

    # ---------------------------------------------------------------- used by the venue

    def draw(self, method: str) -> FaultPlan | None:
        """Decide the faults of one call of `method` (None = a clean call)."""
        banned = self.refuse_banned()
        if banned is not None:
            status, retry = banned
            msg = None
            if status == 418:
                until_ms = int((self.lag_clock() + retry) * 1000)
                msg = BANNED_MSG.format(until_ms=until_ms)
            return FaultPlan(method, kind="ban", code=-1003, msg=msg, retry_after=retry)
        if not (self._armed or self._chances):
            return None
        latency = 0.0
        slow = 0.0
        chosen: _Armed | _Chance | None = None
        chosen_kind: str | None = None
        with self._lock:
            for a in list(self._armed):
                if a.method not in ("*", method):
                    continue
                if a.kind in ALGO_ONLY_KINDS and method != "place_algo_stop":
                    continue
                if a.kind == "late_landing" and method not in LATE_LANDING_METHODS:
                    continue
                if a.kind in VENUE_CLOSE_FAULTS:
                    continue  # taken by `take_venue_close`, not an outcome of this call
                if a.kind == "latency":
                    latency += a.latency_ms
                elif a.kind == "slow_reply":
                    slow += self._rng.uniform(*self.reply_s) * 1000.0
                elif chosen is None:
                    chosen, chosen_kind = a, a.kind
                else:
                    continue
                self.injected[a.kind] += 1
                if a.remaining is not None:
                    a.remaining -= 1
                    if a.remaining <= 0:
                        self._armed.remove(a)
            for kind in FAULT_KINDS:
                c = self._chances.get(kind)
                if c is None or method not in c.methods:
                    continue
                if kind == "late_landing" and method not in LATE_LANDING_METHODS:
                    continue
                if kind not in ("latency", "slow_reply") and chosen is not None:
                    continue
                if self._rng.random() >= c.p:
                    continue
                self.injected[kind] += 1
                if kind == "latency":
                    latency += c.latency_ms
                elif kind == "slow_reply":
                    slow += self._rng.uniform(*self.reply_s) * 1000.0
                else:
                    chosen, chosen_kind = c, kind
        if chosen is None and latency == 0.0 and slow == 0.0:
            return None
        if chosen is None:
            return FaultPlan(method, latency_ms=latency, reply_delay_ms=slow)
        land_after = 0.0
        if chosen_kind == "late_landing":
            land_after = chosen.land_after_ms
            if land_after is None:
                with self._lock:
                    land_after = self._rng.uniform(*LATE_LANDING_MS)
        return FaultPlan(
            method,
            latency_ms=latency,
            reply_delay_ms=slow,
            kind=chosen_kind,
            code=chosen.code,
            msg=chosen.msg,
            retry_after=chosen.retry_after,
            land_after_ms=land_after,
        )

    def venue_close_armed(self) -> bool:
        return any(a.kind in VENUE_CLOSE_FAULTS for a in self._armed)

    def take_venue_close(self, method: str) -> str | None:
        """The armed venue close that applies to a call of `method` (consumed), if any. The
        caller asks only when there is a position to close."""
        with self._lock:
            for a in self._armed:
                if a.kind not in VENUE_CLOSE_FAULTS or a.method not in ("*", method):
                    continue
                self.injected[a.kind] += 1
                if a.remaining is not None:
                    a.remaining -= 1
                    if a.remaining <= 0:
                        self._armed.remove(a)
                return a.kind
        return None

    def lag_visible_at(self) -> float:
        """The lag-clock time (s) from which an algo placed now becomes visible."""
        lag = self.visibility_lag_ms
        return self.lag_clock() + lag / 1000.0 if lag > 0 else 0.0

    def is_visible(self, visible_at: float) -> bool:
        return visible_at <= 0.0 or self.lag_clock() >= visible_at

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")

    @staticmethod
    def _streams(stream: str) -> tuple[str, ...]:
        if stream == "all":
            return STREAMS
        if stream not in STREAMS:
            raise ValueError(f"stream must be 'market', 'user' or 'all', got {stream!r}")
        return (stream,)


def _check_land_after(land_after_ms: float | None) -> None:
    if land_after_ms is not None and not 0.0 <= float(land_after_ms) <= 60_000.0:
        raise ValueError(f"land_after_ms must be within [0, 60000], got {land_after_ms!r}")
