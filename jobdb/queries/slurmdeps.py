"""Jobs submitted to Slurm behind their parents' Slurm jobs (``--slurm-dependencies``).

A waiting job whose parents are each done, or queued or running as a
Slurm job of their own with a recorded id, can be submitted at once with
``--dependency=afterok:<the parents' ids>``: Slurm starts it when they all
ended well. jobdb claims it waiting → queued (:func:`claim_dependents`);
its ``jobdb run`` then moves it to running like any queued job. A parent
in a job array is never waited on this way: an array task ends well even
when a job it ran failed, so ``afterok`` would say nothing.

``jobdb run`` exits 0 only when it recorded the job done, so ``afterok``
holds exactly when each parent is done in the database. When a parent does
not end well, Slurm cancels the dependent (``DependencyNeverSatisfied``,
``--kill-on-invalid-dep=yes``) without ever starting it, and the watcher
gives it back (:func:`give_back`) to where its parents put it now: ready
when they are all done after all, blocked when one ended for good, waiting
while one is being retried (the next dispatch submits it again behind the
retry).

Both statements lock the parents' rows (``FOR SHARE`` on PostgreSQL; SQLite
serialises writers): a parent cannot finish between the moment its state
is read and the moment the dependent's new state is written, so a
dependent never goes back to waiting just after its last parent's promotion
looked for waiting children.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Update,
    and_,
    bindparam,
    exists,
    or_,
    select,
    update,
)

from jobdb.queries.claims import (
    ClaimedJob,
    _claimed_columns,
    _fresh_attempt_values,
    _insert_attempts,
    attempt_rows_by_trigger,
)
from jobdb.queries.core import attempts, edges, jobs, transition
from jobdb.queries.graph import block_descendants
from jobdb.sqltypes import db_now
from jobdb.states import FAILURES, State

_parent = jobs.alias("dep_parent")
_parent_attempt = attempts.alias("dep_parent_attempt")

#: A parent in one of these states will not finish without a reset.
ENDED_FOR_GOOD = frozenset(FAILURES | {State.BLOCKED})


@dataclass(frozen=True)
class Dependent:
    """A job claimed behind its parents' Slurm jobs."""

    job: ClaimedJob
    #: The Slurm ids it waits for (afterok); empty when its parents are all done.
    after: tuple[str, ...]


def _chainable_parent() -> ColumnElement[bool]:
    """The parent (``dep_parent``) is done, or a Slurm job of its own with a recorded id."""
    in_array = exists().where(
        _parent_attempt.c.job_id == _parent.c.id,
        _parent_attempt.c.number == _parent.c.attempt,
        _parent_attempt.c.array_id.is_not(None),
    )
    live_slurm_job = and_(
        _parent.c.state.in_([State.QUEUED.value, State.RUNNING.value]),
        _parent.c.executor == "slurm",
        _parent.c.external_id.is_not(None),
        ~in_array,
    )
    return or_(_parent.c.state == State.DONE.value, live_slurm_job)


def _all_parents_chainable() -> ColumnElement[bool]:
    """True for a job (the ``jobs`` row) whose parents can all be waited on in Slurm."""
    blocker = exists().where(
        edges.c.child_id == jobs.c.id,
        edges.c.parent_id == _parent.c.id,
        ~_chainable_parent(),
    )
    return ~blocker


def claim_dependents(
    conn: Connection,
    limit: int,
    *,
    actor: str,
    worker: str,
    experiment_ids: Sequence[int] | None = None,
    phase_ids: Sequence[int] | None = None,
) -> list[Dependent]:
    """Claim up to ``limit`` waiting jobs whose parents can all be waited on (waiting → queued).

    Each claimed job starts a new attempt, as a ready job's claim does; its
    state reason names the Slurm jobs it waits for.
    """
    pick = select(jobs.c.id).where(jobs.c.state == State.WAITING.value, _all_parents_chainable())
    if experiment_ids is not None:
        pick = pick.where(jobs.c.experiment_id.in_(list(experiment_ids)))
    if phase_ids is not None:
        pick = pick.where(jobs.c.phase_id.in_(list(phase_ids)))
    ids = list(
        conn.execute(pick.order_by(jobs.c.priority.desc(), jobs.c.id).limit(limit)).scalars()
    )
    waits = _unfinished_parents(conn, ids)
    claimed: list[Dependent] = []
    for job_id in ids:
        after = tuple(sorted({ext for _, _, ext in waits.get(job_id, ()) if ext}, key=int))
        reason = f"claimed behind Slurm job(s) {':'.join(after)}" if after else "claimed"
        params = {"b_id": job_id, "b_reason": reason, "b_actor": actor, "b_worker": worker}
        row = conn.execute(_claim_statement(), params).first()
        if row is not None:
            claimed.append(Dependent(ClaimedJob(*row), after))
    if claimed and not attempt_rows_by_trigger(conn):
        _insert_attempts(conn, [d.job.id for d in claimed], State.QUEUED)
    return claimed


@functools.cache
def _claim_statement() -> Update:
    return (
        update(jobs)
        .where(
            jobs.c.id == bindparam("b_id"),
            jobs.c.state == State.WAITING.value,
            _all_parents_chainable(),
        )
        .values(
            state=State.QUEUED.value,
            state_reason=bindparam("b_reason"),
            state_actor=bindparam("b_actor"),
            attempt=jobs.c.attempt + 1,
            executor="slurm",
            worker=bindparam("b_worker"),
            **_fresh_attempt_values(),
            queued_at=db_now(),
            updated_at=db_now(),
        )
        .returning(*_claimed_columns())
    )


def _unfinished_parents(
    conn: Connection, child_ids: Sequence[int]
) -> dict[int, list[tuple[int, State, str | None]]]:
    """child → (parent id, state, Slurm id) of its parents that are not done, rows locked."""
    out: dict[int, list[tuple[int, State, str | None]]] = defaultdict(list)
    if not child_ids:
        return out
    stmt = (
        select(edges.c.child_id, _parent.c.id, _parent.c.state, _parent.c.external_id)
        .join(_parent, _parent.c.id == edges.c.parent_id)
        .where(edges.c.child_id.in_(sorted(child_ids)), _parent.c.state != State.DONE.value)
        .with_for_update(of=_parent, read=True)
    )
    for child, parent, state, ext in conn.execute(stmt):
        out[int(child)].append((int(parent), State(state), ext))
    return out


def waiting_on_parents(conn: Connection, job_ids: Sequence[int]) -> set[int]:
    """Those of ``job_ids`` that have a parent not done (queued ones: Slurm dependents)."""
    if not job_ids:
        return set()
    stmt = (
        select(edges.c.child_id)
        .join(_parent, _parent.c.id == edges.c.parent_id)
        .where(edges.c.child_id.in_(sorted(job_ids)), _parent.c.state != State.DONE.value)
        .distinct()
    )
    return {int(x) for x in conn.execute(stmt).scalars()}


def destination(parent_states: Iterable[State]) -> State:
    """Where a queued job that never started goes back to, by its unfinished parents' states."""
    states = set(parent_states)
    if not states:
        return State.READY
    if states & ENDED_FOR_GOOD:
        return State.BLOCKED
    return State.WAITING


def give_back(
    conn: Connection, judged: Mapping[int, int], *, actor: str, reason: str
) -> dict[int, State]:
    """Queued jobs that never started (``{job id: attempt}``) → ready, waiting or blocked.

    Where each goes follows its parents (:func:`destination`); its attempt is
    closed as released. A job no longer queued on that attempt is left alone
    (absent from the result). A job blocked here blocks its waiting
    descendants too.
    """
    moved: dict[int, State] = {}
    for job_id, attempt in sorted(judged.items()):
        # Read after the jobs before it moved: in a chain, a job blocked here is its child's parent.
        parents = _unfinished_parents(conn, [job_id]).get(job_id, [])
        target = destination(state for _, state, _ in parents)
        why = _why(target, parents, reason)
        if not transition(
            conn, [job_id], target, reason=why, actor=actor, among=[State.QUEUED],
            attempt=attempt, strict=False,
        ):  # fmt: skip
            continue
        _close_attempt(conn, job_id, attempt, why)
        if target == State.BLOCKED:
            block_descendants(conn, [job_id], actor=actor, reason=f"{job_id} blocked")
        moved[job_id] = target
    return moved


def _why(target: State, parents: Sequence[tuple[int, State, Any]], reason: str) -> str:
    if target == State.READY:
        return reason
    shown = ", ".join(f"{pid} {state}" for pid, state, _ in sorted(parents)[:5])
    return f"{reason} (parent {shown})"


def _close_attempt(conn: Connection, job_id: int, attempt: int, reason: str) -> None:
    conn.execute(
        update(attempts)
        .where(
            attempts.c.job_id == job_id,
            attempts.c.number == attempt,
            attempts.c.state == State.QUEUED.value,
        )
        .values(state="released", reason=reason, ended_at=db_now())
    )
