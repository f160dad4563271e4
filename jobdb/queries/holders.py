"""Who holds a queued or running job: executor ids, array tasks, pids, supervisors, heartbeats.

Split from :mod:`jobdb.queries.claims` (claim → start → finish): these are
the statements an executor uses between handing a job over and its verdict.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    and_,
    bindparam,
    func,
    select,
    tuple_,
    update,
)

from jobdb.queries.claims import (
    ClaimedJob,
    _claim_order,
    _claimed_columns,
    _update_attempt,
    _update_attempt_prepared,
)
from jobdb.queries.core import _chunks, jobs, lost_race, value_shape
from jobdb.queries.driver import Prepared
from jobdb.sqltypes import db_now
from jobdb.states import State


def _queued_on(job_id: int, attempt: int) -> ColumnElement[bool]:
    """Job ``job_id`` still queued for ``attempt``: what a holder may write to, and no other."""
    return and_(jobs.c.id == job_id, jobs.c.attempt == attempt, jobs.c.state == State.QUEUED.value)


def record_submission(
    conn: Connection, job_id: int, attempt: int, *, external_id: str, array_id: str | None = None
) -> None:
    """Store the executor's id for a queued job (e.g. a Slurm job id) right after submission."""
    stmt = (
        update(jobs)
        .where(_queued_on(job_id, attempt))
        .values(external_id=external_id, updated_at=db_now())
        .returning(jobs.c.id)
    )
    if conn.execute(stmt).first() is None:
        raise lost_race(conn, {job_id}, State.QUEUED, [State.QUEUED.value], attempt)
    _update_attempt(conn, job_id, attempt, external_id=external_id, array_id=array_id)


def claim_submitted(
    conn: Connection,
    limit: int,
    *,
    external_id: str,
    worker: str,
    phase_ids: Sequence[int] | None = None,
) -> list[ClaimedJob]:
    """Take up to ``limit`` queued jobs submitted together under ``external_id`` (a Slurm array).

    The pull mode of arrays: the dispatcher claimed the batch (ready → queued)
    and recorded the array's id on each job; each array task takes jobs from
    it until none is left, so a task index is never bound to a job. The jobs
    stay queued (the caller marks them running in the same transaction); the
    row lock (``SKIP LOCKED`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite)
    keeps two tasks from taking the same job.
    """
    pick = (
        select(jobs.c.id)
        .where(
            jobs.c.state == State.QUEUED.value,
            jobs.c.executor == "slurm",
            jobs.c.external_id == external_id,
        )
        .order_by(jobs.c.priority.desc(), jobs.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if phase_ids is not None:
        pick = pick.where(jobs.c.phase_id.in_(list(phase_ids)))
    stmt = (
        update(jobs)
        .where(jobs.c.id.in_(pick), jobs.c.state == State.QUEUED.value)
        .values(worker=worker, updated_at=db_now())
        .returning(*_claimed_columns())
    )
    return sorted((ClaimedJob(*row) for row in conn.execute(stmt)), key=_claim_order)


def record_pids(conn: Connection, started: Sequence[tuple[int, int, int]]) -> None:
    """Store the program's process-group id of running attempts ``(job, attempt, pid)``.

    Written just after the program started (the job was marked running
    before, so it can never start twice); a job that stopped running in the
    meantime is left alone.
    """
    for job_id, attempt, pid in started:
        params = {"b_job_id": job_id, "b_number": attempt, "v_pid": pid}
        _record_pid_prepared().rows(conn, params)
        _update_attempt_prepared(value_shape({"pid": pid})).rows(conn, params)


@functools.cache
def _record_pid_prepared() -> Prepared:
    return Prepared(
        update(jobs)
        .where(
            jobs.c.id == bindparam("b_job_id"),
            jobs.c.attempt == bindparam("b_number"),
            jobs.c.state == State.RUNNING.value,
        )
        .values(pid=bindparam("v_pid", type_=Integer))
    )


def queued_job(conn: Connection, job_id: int) -> ClaimedJob | None:
    """A job claimed for someone else to start (``jobdb run`` launched by a dispatcher)."""
    row = conn.execute(
        select(*_claimed_columns()).where(jobs.c.id == job_id, jobs.c.state == State.QUEUED.value)
    ).first()
    return ClaimedJob(*row) if row is not None else None


def take_turns_on_host(conn: Connection, host: str) -> None:
    """Make dispatchers on ``host`` take turns until this transaction ends.

    A dispatcher counts the slots this host's jobs hold, then claims what is
    left: two doing that at once would both see the same free slots. SQLite's
    write transaction already admits one writer; PostgreSQL takes a
    transaction-scoped advisory lock named after the host.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"jobdb dispatch {host}"))))


def held_on_host(conn: Connection, host: str) -> list[tuple[int, tuple[str, ...]]]:
    """``(job id, devices)`` of the queued and running local jobs placed on ``host``.

    What every supervisor on one machine must count before handing out slots
    or GPUs: jobs started by another dispatcher, a detached ``jobdb run``, or
    a worker. Read after :func:`take_turns_on_host`, in the transaction that
    then claims.
    """
    rows = conn.execute(
        select(jobs.c.id, jobs.c.gpus).where(
            jobs.c.state.in_([State.QUEUED.value, State.RUNNING.value]),
            jobs.c.executor == "local",
            jobs.c.host == host,
        )
    )
    return [(int(job_id), tuple(g for g in (gpus or "").split(",") if g)) for job_id, gpus in rows]


def place(conn: Connection, job_id: int, attempt: int, host: str, gpus: Sequence[str]) -> None:
    """Record the host and devices a queued job was handed, in the transaction that claimed it.

    The ``jobdb run`` that will start it records them again when it does; until
    then, this is what tells the next dispatcher on this host that the slots
    are taken (a dispatch right after another must not start more than fits).
    """
    conn.execute(
        update(jobs)
        .where(_queued_on(job_id, attempt))
        .values(host=host, gpus=",".join(gpus) or None)
    )


def set_supervisor(conn: Connection, job_id: int, attempt: int, worker: str) -> None:
    """Hand a queued job to another supervisor (the ``jobdb run`` a dispatcher spawned)."""
    conn.execute(update(jobs).where(_queued_on(job_id, attempt)).values(worker=worker))


def heartbeat(conn: Connection, running: Mapping[int, int]) -> list[int]:
    """Stamp the database clock on running jobs (``{job_id: attempt}``).

    Returns the ids that are no longer running that attempt (the monitor or a
    user got there first): their runner should stop.
    """
    pairs = sorted(running.items())
    alive: set[int] = set()
    for chunk in _chunks(pairs):
        stmt = (
            update(jobs)
            .where(
                tuple_(jobs.c.id, jobs.c.attempt).in_(chunk),
                jobs.c.state == State.RUNNING.value,
            )
            .values(heartbeat_at=db_now())
            .returning(jobs.c.id)
        )
        alive.update(conn.execute(stmt).scalars())
    return sorted(set(running) - alive)


def stale_running(conn: Connection, timeout_s: float) -> list[tuple[int, int]]:
    """(job id, attempt) of running jobs whose heartbeat is older than ``timeout_s``.

    Judged by the database clock, so hosts with skewed clocks agree.
    """
    from jobdb.sqltypes import db_ago

    stmt = select(jobs.c.id, jobs.c.attempt).where(
        jobs.c.state == State.RUNNING.value,
        jobs.c.heartbeat_at < db_ago(bindparam("timeout", timeout_s)),
    )
    return [(int(a), int(b)) for a, b in conn.execute(stmt)]
