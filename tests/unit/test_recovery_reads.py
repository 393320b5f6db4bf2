"""Recovery reads a refused read again at once (a 503 or a short rate limit applied nothing),
but never waits out a long Retry-After or a ban inside the actor."""

from __future__ import annotations

import pytest

from atlas_actors.engine.recovery import READ_TRIES, read_again
from atlas_actors.venues.base import AuthError, RateLimited, VenueUnavailable


def _flaky(errors: list[Exception]):
    calls = []

    def read() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "ok"

    return read, calls


def test_refused_reads_are_read_again():
    read, calls = _flaky([VenueUnavailable("503"), RateLimited(0.01)])
    slept: list[float] = []
    assert read_again(read, sleep=slept.append) == "ok"
    assert len(calls) == 3 and slept == [0.05, 0.01]


def test_gives_up_after_the_tries_and_never_waits_out_a_ban():
    read, calls = _flaky([VenueUnavailable("503")] * READ_TRIES)
    with pytest.raises(VenueUnavailable):
        read_again(read, sleep=lambda s: None)
    assert len(calls) == READ_TRIES
    read, calls = _flaky([RateLimited(120.0)])
    with pytest.raises(RateLimited):
        read_again(read, sleep=lambda s: None)
    assert len(calls) == 1


def test_other_errors_are_not_retried():
    read, calls = _flaky([AuthError("bad key")])
    with pytest.raises(AuthError):
        read_again(read, sleep=lambda s: None)
    assert len(calls) == 1
