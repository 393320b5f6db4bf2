"""§4 gate: open allowed exactly when now >= max of the five locks; the reason names the binding ones."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlas_actors.domain.gate import LOCK_NAMES, binding_locks, format_epoch, open_allowed
from atlas_actors.domain.records import RecordError, SymbolState

NOW_BASE = 1_767_263_400  # 2026-01-01T10:30:00Z


def _state(locks: list[int]) -> SymbolState:
    s = SymbolState.fresh("BTCUSDC")
    cd = s.cooldown_until
    cd.loss, cd.template, cd.freeze, cd.shock, s.b_blacklist_until = locks
    return s


# Lock values and `now` cluster around one instant so equality (now == until) comes up often.
offsets = st.integers(min_value=-5, max_value=5) | st.integers(min_value=-(10**6), max_value=10**6)
locks = st.lists(st.just(0) | offsets.map(lambda o: NOW_BASE + o), min_size=5, max_size=5)
nows = offsets.map(lambda o: NOW_BASE + o) | offsets.map(lambda o: NOW_BASE + o + 0.5)


@given(locks, nows)
def test_allowed_exactly_when_now_reaches_the_max_lock(values: list[int], now: float) -> None:
    allowed, reason = open_allowed(_state(values), now)
    assert allowed == (now >= max(values))
    assert (reason == "") == allowed


@given(locks, nows)
def test_reason_names_every_binding_lock_and_only_those(values: list[int], now: float) -> None:
    allowed, reason = open_allowed(_state(values), now)
    binding = [(name, v) for name, v in zip(LOCK_NAMES, values, strict=True) if v > now]
    assert binding_locks(_state(values), now) == binding
    if allowed:
        assert binding == []
        return
    parts = reason.split("; ")
    assert parts == [f"{name} until {format_epoch(v)}" for name, v in binding]
    for name, v in zip(LOCK_NAMES, values, strict=True):
        assert (name in reason) == (v > now)


@given(locks, nows)
def test_dict_form_gives_the_same_answer(values: list[int], now: float) -> None:
    state = _state(values)
    assert open_allowed(state.to_dict(), now) == open_allowed(state, now)


def test_reason_format_example() -> None:
    until = calendar.timegm((2026, 1, 1, 10, 30, 0, 0, 0, 0))
    s = _state([until, 0, 0, 0, until + 3600])
    assert open_allowed(s, until - 1) == (
        False,
        "cooldown.loss until 2026-01-01T10:30:00Z; b_blacklist until 2026-01-01T11:30:00Z",
    )
    assert open_allowed(s, until) == (False, "b_blacklist until 2026-01-01T11:30:00Z")
    assert open_allowed(s, until + 3600) == (True, "")


def test_fresh_state_and_partial_dicts_are_open() -> None:
    assert open_allowed(SymbolState(), 0) == (True, "")
    assert open_allowed({}, NOW_BASE) == (True, "")
    assert open_allowed({"cooldown_until": {"freeze": NOW_BASE + 60}}, NOW_BASE) == (
        False,
        "cooldown.freeze until 2026-01-01T10:31:00Z",
    )


def test_bad_dict_values_name_the_field() -> None:
    with pytest.raises(RecordError, match=r"^cooldown_until\.shock: "):
        open_allowed({"cooldown_until": {"shock": "later"}}, NOW_BASE)
    with pytest.raises(RecordError, match=r"^b_blacklist_until: "):
        open_allowed({"b_blacklist_until": True}, NOW_BASE)
    with pytest.raises(RecordError, match=r"^cooldown_until: expected a mapping"):
        open_allowed({"cooldown_until": 5}, NOW_BASE)


def test_out_of_range_epoch_still_gives_a_reason() -> None:
    allowed, reason = open_allowed({"b_blacklist_until": 10**20}, NOW_BASE)
    assert not allowed
    assert reason == "b_blacklist until epoch 100000000000000000000s"
