"""The state table, checked exhaustively against arrows written out independently here."""

from __future__ import annotations

import inspect
import itertools
import re
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobdb import states
from jobdb.states import (
    ACTIVE,
    CANCELLABLE,
    FAILURES,
    FINISHED,
    RESETTABLE,
    TRANSITIONS,
    UNFINISHED,
    IllegalTransition,
    State,
    can_transition,
    check_transition,
    parse_states,
    sources,
)

# The arrows of the states.py docstring, one line each, spelled as plain strings.
DOCSTRING_ARROWS = """
waiting -> ready
ready -> queued
waiting -> queued
queued -> running
ready -> running
queued -> ready
queued -> waiting
queued -> blocked
running -> done
running -> failed
queued -> crashed
running -> crashed
failed -> ready
crashed -> ready
waiting -> cancelled
ready -> cancelled
queued -> cancelled
running -> cancelled
blocked -> cancelled
waiting -> blocked
ready -> waiting
done -> ready
done -> waiting
failed -> waiting
crashed -> waiting
cancelled -> ready
cancelled -> waiting
blocked -> ready
blocked -> waiting
"""
# Not arrows: "reset ready --> ready" is a no-op; queued/running are never reset directly.

EXPECTED: frozenset[tuple[str, str]] = frozenset(
    (line.split(" -> ")[0], line.split(" -> ")[1]) for line in DOCSTRING_ARROWS.strip().splitlines()
)

STATE_NAMES = [
    "waiting",
    "ready",
    "queued",
    "running",
    "done",
    "failed",
    "crashed",
    "cancelled",
    "blocked",
]
ALL_PAIRS = list(itertools.product(STATE_NAMES, repeat=2))


def test_the_states_are_exactly_the_documented_ones() -> None:
    assert [s.value for s in State] == STATE_NAMES
    assert set(TRANSITIONS) == set(State)


def test_expected_table_has_every_docstring_arrow() -> None:
    assert len(EXPECTED) == 29
    assert {a for a, _ in EXPECTED} | {b for _, b in EXPECTED} == set(STATE_NAMES)


@pytest.mark.parametrize(("source", "target"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_every_pair_matches_the_table(source: str, target: str) -> None:
    allowed = (source, target) in EXPECTED
    assert can_transition(source, target) is allowed
    assert can_transition(State(source), State(target)) is allowed
    assert (State(target) in TRANSITIONS[State(source)]) is allowed
    assert (State(source) in sources(target)) is allowed
    if allowed:
        check_transition(source, target)
        assert sources(target, among=[source]) == (State(source),)
    else:
        with pytest.raises(IllegalTransition) as info:
            check_transition(source, target)
        assert info.value.source == State(source)
        assert info.value.target == State(target)
        assert f"a {source} job cannot become {target}" in str(info.value)
        with pytest.raises(IllegalTransition):
            sources(target, among=[source])


def test_transitions_equal_the_expected_table() -> None:
    actual = {(a.value, b.value) for a, targets in TRANSITIONS.items() for b in targets}
    assert actual == EXPECTED


def test_illegal_transition_names_the_allowed_targets() -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(State.DONE, State.FAILED)
    assert isinstance(info.value, ValueError)
    assert str(info.value) == "a done job cannot become failed (it may become: ready, waiting)"
    with pytest.raises(
        IllegalTransition, match=r"may become: blocked, cancelled, crashed, ready, running, waiting"
    ):
        check_transition(State.QUEUED, State.DONE)


def test_only_a_job_that_never_started_goes_back_to_waiting_or_blocked() -> None:
    assert set(sources(State.BLOCKED)) == {State.WAITING, State.QUEUED}
    assert State.RUNNING not in sources(State.WAITING)
    assert State.RUNNING not in sources(State.BLOCKED)


@pytest.mark.parametrize("target", list(State), ids=str)
def test_sources_are_sorted_and_consistent(target: State) -> None:
    expected = sorted(State(a) for a, b in EXPECTED if b == target.value)
    assert sources(target) == tuple(expected)
    assert sources(target.value) == tuple(expected)
    assert sources(target, among=None) == tuple(expected)
    assert sources(target, among=expected) == tuple(expected)
    assert sources(target, among=[]) == ()
    assert list(sources(target)) == sorted(sources(target))


def test_sources_narrowed_to_a_state_with_no_arrow_raises() -> None:
    # queued has an arrow to running, done has none: a guard must never widen.
    with pytest.raises(IllegalTransition) as info:
        sources(State.RUNNING, among=[State.QUEUED, State.DONE])
    assert (info.value.source, info.value.target) == (State.DONE, State.RUNNING)


@given(
    target=st.sampled_from(list(State)),
    among=st.sets(st.sampled_from(list(State))),
)
def test_sources_narrowing_is_an_intersection_or_an_error(target: State, among: set[State]) -> None:
    allowed = {State(a) for a, b in EXPECTED if b == target.value}
    if among <= allowed:
        assert sources(target, among=among) == tuple(sorted(among))
        assert sources(target, among=[s.value for s in among]) == tuple(sorted(among))
    else:
        with pytest.raises(IllegalTransition) as info:
            sources(target, among=among)
        assert info.value.source in among - allowed
        assert info.value.target == target


@given(st.lists(st.sampled_from(list(State)), min_size=1, max_size=40))
def test_a_walk_is_legal_exactly_when_every_step_is_an_arrow(walk: list[State]) -> None:
    legal = all((a.value, b.value) in EXPECTED for a, b in itertools.pairwise(walk))
    try:
        for a, b in itertools.pairwise(walk):
            check_transition(a, b)
    except IllegalTransition:
        assert not legal
    else:
        assert legal


def test_unknown_state_names_raise_value_error() -> None:
    with pytest.raises(ValueError):
        can_transition("waiting", "paused")
    with pytest.raises(ValueError):
        sources("paused")


# --------------------------------------------------------------------------
# parse_states


def test_parse_states_accepts_case_and_spaces() -> None:
    assert parse_states([" Ready", "DONE ", "failed"]) == [State.READY, State.DONE, State.FAILED]
    assert parse_states([]) == []
    assert parse_states(STATE_NAMES) == list(State)


@given(st.text(max_size=20).filter(lambda s: s.strip().lower() not in STATE_NAMES))
def test_parse_states_error_lists_the_valid_states(name: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_states(["ready", name])
    message = str(info.value)
    assert f"unknown state {name!r}" in message
    listed = re.search(r"expected one of: (.*)\)$", message)
    assert listed is not None
    assert listed.group(1).split(", ") == STATE_NAMES


# --------------------------------------------------------------------------
# derived sets and graph properties


def _reachable(start: State) -> set[State]:
    seen = {start}
    todo = deque([start])
    while todo:
        for nxt in TRANSITIONS[todo.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_state_is_a_dead_end_and_none_loops_to_itself() -> None:
    for state in State:
        assert TRANSITIONS[state], f"{state} has no way out"
        assert state not in TRANSITIONS[state]


def test_every_state_is_reachable_from_waiting_and_leads_back_to_it() -> None:
    assert _reachable(State.WAITING) == set(State)
    for state in State:
        assert State.WAITING in _reachable(state)


def test_done_only_from_running_and_running_only_from_queued_or_ready() -> None:
    assert sources(State.DONE) == (State.RUNNING,)
    assert sources(State.FAILED) == (State.RUNNING,)
    assert set(sources(State.RUNNING)) == {State.QUEUED, State.READY}
    # waiting → queued only behind parents' Slurm jobs (--slurm-dependencies)
    assert set(sources(State.QUEUED)) == {State.READY, State.WAITING}
    assert set(sources(State.CRASHED)) == ACTIVE


def test_named_sets() -> None:
    assert ACTIVE == {State.QUEUED, State.RUNNING}
    assert FINISHED == {State.DONE, State.FAILED, State.CRASHED, State.CANCELLED}
    assert UNFINISHED == {State.WAITING, State.READY, State.QUEUED, State.RUNNING}
    assert FAILURES == FINISHED - {State.DONE}
    assert UNFINISHED | FINISHED | {State.BLOCKED} == set(State)
    assert not UNFINISHED & FINISHED


def test_resettable_states_are_never_active_and_can_go_back_to_waiting() -> None:
    # queued → waiting is not a reset: a Slurm dependent that never started goes back.
    assert RESETTABLE == {s for s in State if (s.value, "waiting") in EXPECTED} - ACTIVE
    assert RESETTABLE == set(sources(State.WAITING)) - {State.QUEUED}
    assert not RESETTABLE & ACTIVE
    for state in RESETTABLE - {State.READY}:
        assert can_transition(state, State.READY)


def test_cancellable_states_are_the_unfinished_and_blocked_ones() -> None:
    assert CANCELLABLE == {s for s in State if (s.value, "cancelled") in EXPECTED}
    assert CANCELLABLE == UNFINISHED | {State.BLOCKED}
    assert not CANCELLABLE & FINISHED


def test_finished_states_only_go_back_to_ready_or_waiting() -> None:
    for state in FINISHED:
        assert TRANSITIONS[state] == {State.READY, State.WAITING}


def test_module_is_pure() -> None:
    source = inspect.getsource(states)
    imported = set(re.findall(r"^(?:from|import) (\w+)", source, flags=re.M))
    assert imported <= {"__future__", "enum", "collections"}
