"""Request priority: which venue requests go first when the request budget is short.

A call site says what its requests are for with `request_priority(...)`; the priority is a
context variable, so it follows the call down into the venue adapter without changing any
venue method's signature (the order gateway carries it over to its lane threads).

- PROTECTION: stop placement/replacement, the Sentinel's visibility checks (open algo
  queries), emergency and operator closes. They never wait behind anything else.
- TRADING: entries, exits, cancels and the reads a trading decision needs.
- BACKGROUND: market data, recovery/audit reads, status: they yield to everything else.

A request made outside any `request_priority` block gets the priority its adapter method has
by nature (market data BACKGROUND, everything else TRADING).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import IntEnum


class Priority(IntEnum):
    PROTECTION = 0
    TRADING = 1
    BACKGROUND = 2


_current: ContextVar[Priority | None] = ContextVar("atlas_request_priority", default=None)


def current_priority() -> Priority | None:
    """The priority the caller declared (None: none declared)."""
    return _current.get()


def effective_priority(by_nature: Priority = Priority.TRADING) -> Priority:
    """What a request counts as: the caller's declaration, else its nature."""
    declared = _current.get()
    return by_nature if declared is None else declared


@contextmanager
def request_priority(priority: Priority | None) -> Iterator[None]:
    """Requests made inside the block (on this thread or context) carry `priority`
    (None: back to each request's nature)."""
    token = _current.set(None if priority is None else Priority(priority))
    try:
        yield
    finally:
        _current.reset(token)
