"""The one Binance error-code table (venues/binance/codes.py): what each code maps to, for
the adapter's HTTP errors and for SimVenue's injected rejects alike."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from atlas_actors.venues.base import (
    AuthError,
    FilterError,
    InsufficientMargin,
    OrderRejected,
    RateLimited,
    UnknownOutcome,
    VenueError,
    VenueUnavailable,
    WouldTakeLiquidity,
)
from atlas_actors.venues.binance.codes import BINANCE_MESSAGES, classified, error_for_code
from atlas_actors.venues.faults import FaultPlan

# code -> (class on a write, class on a read); exact classes, not isinstance.
TABLE: dict[int, tuple[type[VenueError], type[VenueError]]] = {
    -1001: (VenueUnavailable, VenueUnavailable),  # DISCONNECTED: failed, safe to resend
    -1002: (AuthError, AuthError),  # UNAUTHORIZED
    -1003: (RateLimited, RateLimited),
    -1006: (UnknownOutcome, VenueUnavailable),  # UNEXPECTED_RESP: execution status unknown
    -1007: (UnknownOutcome, VenueUnavailable),  # TIMEOUT: execution status unknown
    -1008: (VenueUnavailable, VenueUnavailable),  # SERVER_BUSY: 100% failure
    -1013: (FilterError, FilterError),  # "Filter failure: ..."
    -1015: (RateLimited, RateLimited),
    -1021: (VenueError, VenueError),  # INVALID_TIMESTAMP: resync + retry, not an order reject
    -1022: (AuthError, AuthError),
    -1111: (FilterError, FilterError),
    -2010: (OrderRejected, VenueError),
    -2011: (OrderRejected, VenueError),
    -2013: (OrderRejected, VenueError),
    -2014: (AuthError, AuthError),
    -2015: (AuthError, AuthError),
    -2019: (InsufficientMargin, InsufficientMargin),
    -2021: (OrderRejected, VenueError),
    -2022: (OrderRejected, VenueError),
    -4003: (FilterError, FilterError),
    -4004: (FilterError, FilterError),
    -4005: (FilterError, FilterError),
    -4014: (FilterError, FilterError),
    -4023: (FilterError, FilterError),
    -4116: (OrderRejected, VenueError),
    -4164: (FilterError, FilterError),
    -5022: (WouldTakeLiquidity, WouldTakeLiquidity),
}


@pytest.mark.parametrize("code", sorted(TABLE))
def test_each_code_maps_to_one_class_for_writes_and_reads(code: int) -> None:
    on_write, on_read = TABLE[code]
    w = error_for_code(code, write=True)
    r = error_for_code(code, write=False)
    assert type(w) is on_write and w.code == code
    assert type(r) is on_read and r.code == code


def test_messages_and_retry_after_are_carried() -> None:
    e = error_for_code(-1003, retry_after=3.5)
    assert isinstance(e, RateLimited) and e.retry_after == 3.5
    assert str(error_for_code(-2019)) == BINANCE_MESSAGES[-2019]
    assert "custom text" in str(error_for_code(-2022, "custom text"))
    assert "Binance error -9999" in str(error_for_code(-9999))


def test_only_the_fallback_codes_are_left_to_the_http_status() -> None:
    assert not classified(None)
    assert not classified(-2010) and not classified(-2011) and not classified(-9999)
    for code, (on_write, _) in TABLE.items():
        assert classified(code) == (on_write is not OrderRejected), code


def _api_error(status: int, code: int | None) -> object:
    return SimpleNamespace(
        status_code=status,
        code=code,
        message="msg",
        response=SimpleNamespace(headers={"Retry-After": "2"}),
    )


def test_the_adapter_maps_http_errors_through_the_same_table() -> None:
    from atlas_actors.venues.binance.http import BinanceHttp

    http = BinanceHttp(
        "k",
        "s",
        rest_url="http://127.0.0.1:9",
        recv_window_ms=5000,
        request_timeout_s=1.0,
        weight_limit_share=0.8,
        clock=lambda: 1_700_000_000.0,
        sleep=lambda s: None,
        max_write_attempts=3,
        max_read_attempts=3,
        max_rate_limit_waits=2,
        max_rate_limit_wait_s=30.0,
    )
    try:
        for code, (on_write, on_read) in TABLE.items():
            status = 503 if code in (-1001, -1007, -1008) else 400
            assert type(http.map_api_error("op", _api_error(status, code), True)) is on_write
            assert type(http.map_api_error("op", _api_error(status, code), False)) is on_read
        # Statuses decide for codes the table leaves open.
        assert type(http.map_api_error("op", _api_error(503, None), True)) is UnknownOutcome
        assert type(http.map_api_error("op", _api_error(503, -1000), False)) is VenueUnavailable
        assert type(http.map_api_error("op", _api_error(408, None), True)) is UnknownOutcome
        assert type(http.map_api_error("op", _api_error(429, None), False)) is RateLimited
        assert type(http.map_api_error("op", _api_error(401, -2010), True)) is AuthError
    finally:
        http.close()


def test_a_tls_failure_or_reset_on_a_write_is_unknown_not_unsent() -> None:
    """An SSLError or a connection reset can come after the order left this host: on a
    write that is UnknownOutcome (resolve by client id), never "not sent" (resend)."""
    import requests

    from atlas_actors.venues.binance.http import BinanceHttp

    http = BinanceHttp(
        "k",
        "s",
        rest_url="http://127.0.0.1:9",
        recv_window_ms=5000,
        request_timeout_s=1.0,
        weight_limit_share=0.8,
        clock=lambda: 1_700_000_000.0,
        sleep=lambda s: None,
        max_write_attempts=3,
        max_read_attempts=1,
        max_rate_limit_waits=2,
        max_rate_limit_wait_s=30.0,
    )

    def failing(exc: Exception) -> object:
        def fn() -> None:
            raise exc

        return fn

    try:
        for exc in (
            requests.exceptions.SSLError("EOF occurred in violation of protocol"),
            requests.exceptions.ConnectionError(ConnectionResetError(104, "reset by peer")),
        ):
            with pytest.raises(UnknownOutcome):
                http.call("order", failing(exc), None, signed=False, write=True)
            with pytest.raises(VenueUnavailable):
                http.call("query", failing(exc), None, signed=False, write=False)
        with pytest.raises(VenueUnavailable):
            http.call(
                "order",
                failing(requests.exceptions.ConnectTimeout("connect timed out")),
                None,
                signed=False,
                write=True,
            )
    finally:
        http.close()


def test_sim_fault_injection_uses_the_table() -> None:
    for code, (on_write, on_read) in TABLE.items():
        w = FaultPlan("place_market", kind="reject", code=code).error()
        r = FaultPlan("get_order", kind="reject", code=code).error()
        assert type(w) is on_write and type(r) is on_read, code


def test_the_table_does_not_import_python_binance() -> None:
    # SimVenue (faults.py) imports the table: it must not drag in the adapter's client.
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, atlas_actors.venues.sim; "
            "print('binance' in sys.modules, 'atlas_actors.venues.binance.adapter' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["False", "False"]
