"""Jobs claimed behind their parents' Slurm jobs, and given back (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import update

from jobdb import queries
from jobdb.queries import slurmdeps
from jobdb.queries.holders import record_submission
from jobdb.states import State
from jobdb.store import Store
from tests.factories import (
    attempts_of,
    events_of,
    jobs,
    make_edges,
    make_jobs,
    states_of,
)

ACTOR = "tester"


def submitted(store: Store, job_ids: list[int], slurm_ids: list[str]) -> None:
    """Claim ready jobs for Slurm and record their Slurm ids (single jobs)."""
    with store.write() as conn:
        claimed = queries.claim(conn, len(job_ids), actor=ACTOR, executor="slurm", job_ids=job_ids)
        for job, slurm_id in zip(sorted(claimed, key=lambda j: j.id), slurm_ids, strict=True):
            record_submission(conn, job.id, job.attempt, external_id=slurm_id)


def chain(store: Store, phase_id: int, length: int) -> list[int]:
    """A chain of jobs, the first ready, the others waiting."""
    with store.write() as conn:
        first = make_jobs(conn, phase_id, 1)
        rest = make_jobs(conn, phase_id, length - 1, state=State.WAITING)
        ids = first + rest
        make_edges(conn, itertools.pairwise(ids))
    return ids


def claim(store: Store) -> list[slurmdeps.Dependent]:
    with store.write() as conn:
        return slurmdeps.claim_dependents(conn, 100, actor=ACTOR, worker="w")


def test_a_chain_is_claimed_round_by_round_behind_recorded_slurm_jobs(
    store: Store, phase_id: int
) -> None:
    a, b, c = chain(store, phase_id, 3)
    assert claim(store) == []  # a is ready, not yet a Slurm job: nothing to wait on
    submitted(store, [a], ["101"])
    (got,) = claim(store)
    assert (got.job.id, got.job.attempt, got.after) == (b, 1, ("101",))
    assert claim(store) == []  # c waits for b, which has no Slurm id yet
    with store.write() as conn:
        record_submission(conn, b, 1, external_id="102")
    (got,) = claim(store)
    assert (got.job.id, got.after) == (c, ("102",))
    with store.read() as conn:
        assert states_of(conn, [a, b, c]) == {a: "queued", b: "queued", c: "queued"}
        assert events_of(conn, b)[-1]["reason"] == "claimed behind Slurm job(s) 101"
        assert [r["state"] for r in attempts_of(conn, b)] == ["queued"]


def test_parents_in_arrays_or_not_at_slurm_are_not_waited_on(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        parents = make_jobs(conn, phase_id, 3)
        children = make_jobs(conn, phase_id, 3, state=State.WAITING)
        make_edges(conn, zip(parents, children, strict=True))
        claimed = queries.claim(conn, 3, actor=ACTOR, executor="slurm", job_ids=parents)
        by_id = {j.id: j for j in claimed}
        # an array member, a local job, a Slurm job of its own
        record_submission(conn, parents[0], 1, external_id="7", array_id="7")
        conn.execute(update(jobs).where(jobs.c.id == parents[1]).values(executor="local"))
        record_submission(conn, parents[2], by_id[parents[2]].attempt, external_id="9")
    assert [(d.job.id, d.after) for d in claim(store)] == [(children[2], ("9",))]


def test_two_parents_and_a_done_one(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        p1, p2, p3 = make_jobs(conn, phase_id, 3)
        (child,) = make_jobs(conn, phase_id, 1, state=State.WAITING)
        make_edges(conn, [(p1, child), (p2, child), (p3, child)])
        conn.execute(update(jobs).where(jobs.c.id == p3).values(state=State.DONE.value))
    submitted(store, [p1, p2], ["12", "11"])
    (got,) = claim(store)
    assert got.after == ("11", "12")


@pytest.mark.parametrize(
    ("parent_states", "expected"),
    [
        ([], State.READY),
        ([State.RUNNING], State.WAITING),
        ([State.READY, State.QUEUED], State.WAITING),
        ([State.CRASHED], State.BLOCKED),
        ([State.READY, State.FAILED], State.BLOCKED),
        ([State.BLOCKED], State.BLOCKED),
        ([State.CANCELLED], State.BLOCKED),
    ],
)
def test_destination_follows_the_parents(parent_states: list[State], expected: State) -> None:
    assert slurmdeps.destination(parent_states) == expected


def test_give_back_to_where_the_parents_say(store: Store, phase_id: int) -> None:
    a, b, c = chain(store, phase_id, 3)
    submitted(store, [a], ["101"])
    assert len(claim(store)) == 1
    with store.write() as conn:
        record_submission(conn, b, 1, external_id="102")
    assert len(claim(store)) == 1
    # a crashed and is retried: b and c go back to waiting (c after b, or before).
    with store.write() as conn:
        queries.start(conn, a, actor=ACTOR)
        queries.finish(conn, a, 1, State.CRASHED, actor=ACTOR, reason="node failure", retry=True)
        moved = slurmdeps.give_back(conn, {c: 1, b: 1}, actor=ACTOR, reason="dep")
    assert moved == {b: State.WAITING, c: State.WAITING}
    with store.read() as conn:
        assert states_of(conn, [a, b, c]) == {a: "ready", b: "waiting", c: "waiting"}
        assert [(r["state"], r["reason"]) for r in attempts_of(conn, b)] == [
            ("released", f"dep (parent {a} ready)")
        ]


def test_a_parent_failed_for_good_blocks_the_chain(store: Store, phase_id: int) -> None:
    a, b, c, d = chain(store, phase_id, 4)
    submitted(store, [a], ["101"])
    claim(store)
    with store.write() as conn:
        record_submission(conn, b, 1, external_id="102")
    claim(store)  # c is queued behind b; d still waits
    with store.write() as conn:
        queries.start(conn, a, actor=ACTOR)
        queries.finish(conn, a, 1, State.FAILED, actor=ACTOR, reason="exit 1")
        # c first: its parent b is still queued, so waiting, then blocked with b's subtree.
        moved = slurmdeps.give_back(conn, {c: 1}, actor=ACTOR, reason="dep")
        assert moved == {c: State.WAITING}
        moved = slurmdeps.give_back(conn, {b: 1}, actor=ACTOR, reason="dep")
        assert moved == {b: State.BLOCKED}
        assert states_of(conn, [a, b, c, d]) == {
            a: "failed", b: "blocked", c: "blocked", d: "blocked",
        }  # fmt: skip


def test_a_whole_chain_given_back_at_once_is_blocked(store: Store, phase_id: int) -> None:
    a, b, c = chain(store, phase_id, 3)
    submitted(store, [a], ["101"])
    claim(store)
    with store.write() as conn:
        record_submission(conn, b, 1, external_id="102")
    claim(store)
    with store.write() as conn:
        queries.finish(conn, a, 1, State.CRASHED, actor=ACTOR, reason="lost", retry=False)
        moved = slurmdeps.give_back(conn, {b: 1, c: 1}, actor=ACTOR, reason="dep")
    assert moved == {b: State.BLOCKED, c: State.BLOCKED}


def test_give_back_is_guarded_by_state_and_attempt(store: Store, phase_id: int) -> None:
    a, b = chain(store, phase_id, 2)
    submitted(store, [a], ["101"])
    claim(store)
    with store.write() as conn:
        assert slurmdeps.give_back(conn, {b: 2}, actor=ACTOR, reason="dep") == {}
        record_submission(conn, b, 1, external_id="102")
        queries.finish(conn, a, 1, State.CRASHED, actor=ACTOR, reason="lost", retry=False)
        assert states_of(conn, [b]) == {b: "queued"}  # queued dependents are not blocked here
        conn.execute(update(jobs).where(jobs.c.id == b).values(state=State.RUNNING.value))
        assert slurmdeps.give_back(conn, {b: 1}, actor=ACTOR, reason="dep") == {}


def test_waiting_on_parents(store: Store, phase_id: int) -> None:
    a, b, c = chain(store, phase_id, 3)
    with store.write() as conn:
        conn.execute(update(jobs).where(jobs.c.id == a).values(state=State.DONE.value))
    with store.read() as conn:
        assert slurmdeps.waiting_on_parents(conn, [a, b, c]) == {c}
        assert slurmdeps.waiting_on_parents(conn, []) == set()
