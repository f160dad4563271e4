"""Claiming, starting, heartbeats and finishing attempts."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    Select,
    String,
    Update,
    bindparam,
    exists,
    insert,
    literal,
    literal_column,
    null,
    select,
    update,
)

from jobdb.queries.core import (
    ValueShape,
    _allowed,
    _chunks,
    attempts,
    bound_values,
    edges,
    jobs,
    lost_race,
    set_clause,
    transition,
    transition_update,
    value_shape,
)
from jobdb.queries.driver import Prepared
from jobdb.queries.graph import block_descendants, promote_children
from jobdb.sqltypes import NOW, db_now, in_ids, unindexed, written_in
from jobdb.states import State


@dataclass(frozen=True)
class ClaimedJob:
    """What a claimer needs to run a job it now owns."""

    id: int
    attempt: int
    experiment_id: int
    phase_id: int
    params: dict[str, Any]
    priority: int
    max_attempts: int


@dataclass
class Finish:
    """What :func:`finish` did besides recording the verdict."""

    state: State
    retried: bool = False
    promoted: list[int] = field(default_factory=list)
    blocked: list[int] = field(default_factory=list)


def claim(
    conn: Connection,
    limit: int,
    *,
    actor: str,
    executor: str | None = None,
    worker: str | None = None,
    experiment_ids: Sequence[int] | None = None,
    phase_ids: Sequence[int] | None = None,
    job_ids: Sequence[int] | None = None,
) -> list[ClaimedJob]:
    """Claim up to ``limit`` ready jobs (ready → queued) in one statement.

    The best priority goes first, then the oldest job. Each claimed job
    starts a new attempt: its counter goes up and an attempt row is written
    by the same statement (see :func:`_one_round_trip`).
    """
    filters = {"experiment_ids": experiment_ids, "phase_ids": phase_ids, "job_ids": job_ids}
    params: dict[str, Any] = {
        "limit": limit,
        "b_actor": actor,
        "b_executor": executor,
        "b_worker": worker,
        **{name: list(value) for name, value in filters.items() if value is not None},
    }
    together = _one_round_trip(conn)
    if filters_given := tuple(name for name, value in filters.items() if value is not None):
        stmt = _claim_with_attempts(filters_given) if together else _claim_statement(filters_given)
        rows: Iterable[Sequence[Any]] = conn.execute(stmt, params)
    else:  # a worker taking whatever is ready: the hot path
        rows = _claim_prepared(together, limit).rows(conn, params)
    return sorted((ClaimedJob(*row) for row in rows), key=_claim_order)


def _one_round_trip(conn: Connection) -> bool:
    """Whether a job's change and its attempt row are written by one SQL statement.

    On PostgreSQL each statement is a round trip to the server, so the
    ``UPDATE`` of the job and the write of its attempt row are one statement
    (a data-modifying ``WITH``). SQLite has no ``WITH`` around an
    ``UPDATE``: there the trigger ``jobs_new_attempts`` writes a claim's
    attempt row (:mod:`jobdb.triggers`), and starting or finishing runs a
    second statement for the attempt row.
    """
    return conn.dialect.name == "postgresql"


def attempt_rows_by_trigger(conn: Connection) -> bool:
    """Whether raising ``jobs.attempt`` writes the attempt row by itself (SQLite)."""
    return conn.dialect.name == "sqlite"


_FILTER_COLUMNS = {
    "experiment_ids": jobs.c.experiment_id,
    "phase_ids": jobs.c.phase_id,
    "job_ids": jobs.c.id,
}


@functools.cache
def _claim_statement(filters: tuple[str, ...], limit: int | None = None) -> Update:
    """The claim for one combination of filters, built once (building costs more than running)."""
    return _build_claim(filters, limit).returning(*_claimed_columns())


def _build_claim(filters: tuple[str, ...], limit: int | None = None) -> Update:
    """The claim ``UPDATE`` without its ``RETURNING`` (which the callers choose).

    A ``limit`` given here is written into the SQL; otherwise it is the bind
    parameter ``limit``. Written in, PostgreSQL can keep one generic plan
    for the prepared statement: for a bound ``LIMIT`` its generic plan
    assumes a tenth of the table and loses to a plan made per call, and
    planning this statement costs as much as running it.
    """
    pick = select(jobs.c.id).where(jobs.c.state == written_in(State.READY.value))
    for name in filters:
        pick = pick.where(_FILTER_COLUMNS[name].in_(bindparam(name, expanding=True)))
    pick = (
        pick.order_by(jobs.c.priority.desc(), jobs.c.id)
        .limit(
            bindparam("limit", type_=Integer)
            if limit is None
            else literal_column(str(int(limit)), Integer)
        )
        .with_for_update(skip_locked=True)
    )
    # MATERIALIZED: the pick runs exactly once, so LIMIT bounds the claim.
    picked = pick.cte("picked").prefix_with("MATERIALIZED")
    return (
        update(jobs)
        # The pick uses the claim index; the re-check must not (SQLite would walk it).
        .where(jobs.c.id.in_(select(picked.c.id)), unindexed(jobs.c.state) == State.READY.value)
        .values(
            state=State.QUEUED.value,
            state_reason="claimed",
            state_actor=bindparam("b_actor"),
            attempt=jobs.c.attempt + 1,
            executor=bindparam("b_executor"),
            worker=bindparam("b_worker"),
            **_fresh_attempt_values(),
            queued_at=db_now(),
            updated_at=db_now(),
        )
    )


@functools.cache
def _claim_with_attempts(filters: tuple[str, ...], limit: int | None = None) -> Select[Any]:
    """The claim and its attempt rows as one statement (PostgreSQL)."""
    returned = (*_claimed_columns(), jobs.c.executor, jobs.c.worker)
    claimed = _build_claim(filters, limit).returning(*returned).cte("claimed")
    source = select(
        claimed.c.id,
        claimed.c.attempt,
        literal(State.QUEUED.value, String()),
        claimed.c.params,
        claimed.c.executor,
        claimed.c.worker,
        db_now(),
    ).order_by(claimed.c.id)
    new_attempts = insert(attempts).from_select(_ATTEMPT_COLUMNS, source).cte("new_attempts")
    return select(*(claimed.c[col.name] for col in _claimed_columns())).add_cte(new_attempts)


@functools.cache
def _claim_prepared(together: bool, limit: int) -> Prepared:
    """The hot-path claim for ``limit`` jobs (a runner asks for as many as it has slots)."""
    return Prepared(_claim_with_attempts((), limit) if together else _claim_statement((), limit))


def _claimed_columns() -> tuple[Any, ...]:
    """The job columns a :class:`ClaimedJob` is made of, in its field order."""
    return (
        jobs.c.id,
        jobs.c.attempt,
        jobs.c.experiment_id,
        jobs.c.phase_id,
        jobs.c.params,
        jobs.c.priority,
        jobs.c.max_attempts,
    )


def _claim_order(job: ClaimedJob) -> tuple[int, int]:
    return (-job.priority, job.id)


def _fresh_attempt_values() -> dict[str, Any]:
    """Columns describing the previous attempt, cleared when a new one starts."""
    return {
        "external_id": None,
        "host": None,
        "pid": None,
        "gpus": None,
        "exit_code": None,
        "error": None,
        "result": null(),  # SQL NULL, not JSON null: "has a result" is result IS NOT NULL
        "started_at": None,
        "finished_at": None,
        "heartbeat_at": None,
        "stdout_path": None,
        "stderr_path": None,
    }


def _insert_attempts(conn: Connection, job_ids: Sequence[int], state: State) -> None:
    """One attempt row per job, copied from the job's current attempt (set-based).

    For a claim on PostgreSQL outside :func:`claim`; on SQLite the trigger
    has written them (:func:`attempt_rows_by_trigger`).
    """
    _insert_attempts_statement().rows(conn, {"ids": sorted(job_ids), "b_state": state.value})


@functools.cache
def _insert_attempts_statement() -> Prepared:
    source = select(
        jobs.c.id,
        jobs.c.attempt,
        bindparam("b_state", type_=String),
        jobs.c.params,
        jobs.c.executor,
        jobs.c.worker,
        db_now(),
    ).where(in_ids(jobs.c.id, "ids"))
    return Prepared(insert(attempts).from_select(_ATTEMPT_COLUMNS, source))


#: What a new attempt row copies from its job.
_ATTEMPT_COLUMNS = ["job_id", "number", "state", "params", "executor", "worker", "queued_at"]


def start(
    conn: Connection,
    job_id: int,
    *,
    actor: str,
    attempt: int | None = None,
    host: str | None = None,
    pid: int | None = None,
    gpus: str | None = None,
    work_dir: str | None = None,
    stdout_path: str | None = None,
    stderr_path: str | None = None,
    params: Mapping[str, Any] | None = None,
    worker: str | None = None,
    external_id: str | None = None,
) -> int:
    """Mark a job running (queued → running, or ready → running when run by hand).

    Returns the attempt number now running. A job already running or
    finished is refused with :class:`LostRace`: a job can never run twice.
    ``params`` are the parameters this attempt runs with (inherited and
    best-of values included), recorded on the attempt; the job keeps the
    parameters it was scheduled with, which are its identity. ``external_id``
    (e.g. the Slurm id of the array task that runs it) replaces the one
    recorded at submission; None keeps it.
    """
    if attempt is None:
        attempt = _current_attempt(conn, job_id)
        if _state_of(conn, job_id) == State.READY.value:
            claimed = claim(conn, 1, actor=actor, job_ids=[job_id])
            if not claimed:
                raise lost_race(conn, {job_id}, State.RUNNING, [State.READY.value], None)
            attempt = claimed[0].attempt
    details = {
        "host": host,
        "pid": pid,
        "gpus": gpus,
        "work_dir": work_dir,
        "stdout_path": stdout_path,
        "stderr_path": stderr_path,
    }
    values: dict[str, Any] = {**details, "started_at": NOW, "heartbeat_at": NOW}
    if worker is not None:
        values["worker"] = worker
    if external_id is not None:
        values["external_id"] = external_id
    attempt_values: dict[str, Any] = {k: v for k, v in details.items() if k != "work_dir"}
    if params is not None:
        attempt_values["params"] = dict(params)
    if worker is not None:
        attempt_values["worker"] = worker
    if external_id is not None:
        attempt_values["external_id"] = external_id
    attempt_values.update(state=State.RUNNING.value, started_at=NOW)
    _advance(
        conn,
        job_id,
        attempt,
        State.RUNNING,
        reason="started",
        actor=actor,
        among=[State.QUEUED],
        values=values,
        attempt_values=attempt_values,
    )
    return attempt


def finish(
    conn: Connection,
    job_id: int,
    attempt: int,
    verdict: State,
    *,
    actor: str,
    reason: str | None = None,
    exit_code: int | None = None,
    error: str | None = None,
    result: Mapping[str, Any] | None = None,
    retry: bool = False,
) -> Finish:
    """Record how an attempt ended, and its effects, in one transaction.

    ``verdict`` is done, failed, crashed or cancelled. Done promotes the
    children whose parents are now all done. Otherwise, with ``retry`` (the
    caller applied the phase's retry policy) the job goes back to ready;
    without, it has failed for good and every descendant becomes blocked.
    """
    among = [State.RUNNING] if verdict in (State.DONE, State.FAILED) else None
    values: dict[str, Any] = {"finished_at": NOW, "exit_code": exit_code, "error": error}
    if result is not None:
        values["result"] = dict(result)
    why = reason or verdict.value
    ended = {
        "state": verdict.value,
        "reason": why,
        "ended_at": NOW,
        "exit_code": exit_code,
        "error": error,
        "result": dict(result) if result is not None else None,
    }
    has_children = _advance(
        conn,
        job_id,
        attempt,
        verdict,
        reason=why,
        actor=actor,
        among=among,
        values=values,
        attempt_values=ended,
    )
    outcome = Finish(verdict)
    if verdict == State.DONE:
        if has_children:
            outcome.promoted = promote_children(conn, [job_id], actor=actor)
    elif retry:
        transition(
            conn, [job_id], State.READY, reason=f"retry after {why}", actor=actor, among=[verdict]
        )
        outcome.retried = True
    else:
        outcome.blocked = block_descendants(conn, [job_id], actor=actor, reason=f"{job_id} {why}")
    return outcome


def release(conn: Connection, job_ids: Iterable[int], *, actor: str, reason: str) -> list[int]:
    """Give queued jobs back (queued → ready), e.g. when a submission failed.

    The attempt that never started is closed as released; the counter is not
    rolled back, so attempt numbers stay unique.
    """
    moved = transition(conn, job_ids, State.READY, reason=reason, actor=actor, among=[State.QUEUED])
    for chunk in _chunks(moved):
        conn.execute(
            update(attempts)
            .where(
                attempts.c.job_id.in_(chunk),
                attempts.c.state == State.QUEUED.value,
            )
            .values(state="released", reason=reason, ended_at=db_now())
        )
    return moved


def _advance(
    conn: Connection,
    job_id: int,
    attempt: int,
    target: State,
    *,
    reason: str,
    actor: str,
    among: Sequence[State] | None,
    values: Mapping[str, Any],
    attempt_values: Mapping[str, Any],
) -> bool:
    """Move a job on ``attempt`` to ``target`` and write the same change to its attempt row.

    The per-job step of start and finish: a guarded transition as
    :func:`transition` makes it (a job not in an allowed state, or on another
    attempt, raises :class:`LostRace`), in one statement on PostgreSQL (see
    :func:`_one_round_trip`). Returns whether the job has children, so that a
    finished job without any skips the promotion.
    """
    allowed = _allowed(target, None if among is None else tuple(among))
    together = _one_round_trip(conn)
    statements = _advance_statements(
        target.value, allowed, value_shape(values), value_shape(attempt_values), together
    )
    # One set of parameters for both statements on SQLite: each reads the names it binds.
    params: dict[str, Any] = {
        "b_job_id": job_id,
        "b_reason": reason,
        "b_actor": actor,
        "b_attempt": attempt,
        **bound_values(values),
        **bound_values(attempt_values, "a_"),
    }
    moved = statements[0].rows(conn, params)
    if not moved:
        raise lost_race(conn, {job_id}, target, allowed, attempt)
    for attempt_row in statements[1:]:
        attempt_row.rows(conn, params)
    return bool(moved[0][1])


@functools.cache
def _advance_statements(
    target: str, allowed: tuple[str, ...], shape: ValueShape, attempt_shape: ValueShape,
    together: bool,
) -> tuple[Prepared, ...]:  # fmt: skip
    """The job's guarded change, then its attempt row's (one statement when ``together``)."""
    # SQLite's RETURNING drops the table name: `parent_id = id` finds jobs.id because edges
    # has no id column (the promotion tests would fail if it ever had one).
    has_children = exists().where(edges.c.parent_id == jobs.c.id).label("has_children")
    moved = transition_update(target, allowed, True, shape, one_job=True).returning(has_children)
    attempt_row = update(attempts).where(
        # By the job's id, not a join with the CTE: the planner could not see how
        # many rows the CTE has and might scan every attempt.
        attempts.c.job_id == bindparam("b_job_id"),
        attempts.c.number == bindparam("b_attempt"),
    )
    attempt_row = attempt_row.values(**set_clause(attempts, attempt_shape, "a_"))
    if not together:
        return Prepared(moved), Prepared(attempt_row)
    job = moved.cte("moved")
    in_step = attempt_row.where(exists(select(job.c.id))).cte("attempt_row")
    return (Prepared(select(job.c.id, job.c.has_children).add_cte(in_step)),)


def _update_attempt(conn: Connection, job_id: int, number: int, **values: Any) -> None:
    params = {"b_job_id": job_id, "b_number": number, **bound_values(values)}
    _update_attempt_prepared(value_shape(values)).rows(conn, params)


@functools.cache
def _update_attempt_prepared(shape: ValueShape) -> Prepared:
    return Prepared(
        update(attempts)
        .where(
            attempts.c.job_id == bindparam("b_job_id"),
            attempts.c.number == bindparam("b_number"),
        )
        .values(**set_clause(attempts, shape))
    )


def _current_attempt(conn: Connection, job_id: int) -> int:
    found = conn.execute(select(jobs.c.attempt).where(jobs.c.id == job_id)).scalar()
    if found is None:
        raise lost_race(conn, {job_id}, State.RUNNING, [State.QUEUED.value], None)
    return int(found)


def _state_of(conn: Connection, job_id: int) -> str | None:
    return conn.execute(select(jobs.c.state).where(jobs.c.id == job_id)).scalar()
