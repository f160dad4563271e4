"""Verdicts written by a watcher rather than by the job's own supervisor (the monitor).

A watcher judges from something it read a moment ago (a stale heartbeat, a
dead supervisor) and writes later; in between, the supervisor may heartbeat
or record its own verdict. So each write here first locks the job row *only
if it is still in the situation that was judged* (same attempt, same state,
same supervisor, heartbeat still stale), in the same transaction as the
write. SQLite's ``BEGIN IMMEDIATE`` already serialises writers; on
PostgreSQL ``FOR UPDATE`` makes a concurrent heartbeat or verdict wait for
this transaction and then find the job changed. No row back means a lost
race: nothing is written and the caller reports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, select

from jobdb import retry
from jobdb.models import Phase
from jobdb.queries.claims import Finish, finish, release
from jobdb.queries.core import jobs
from jobdb.sqltypes import db_ago
from jobdb.states import State

phases = cast(Table, Phase.__table__)


@dataclass(frozen=True)
class Judged:
    """What must still hold for a verdict to be written: the situation that was judged."""

    job_id: int
    attempt: int
    state: State
    #: The supervisor token that was seen dead (None: any supervisor).
    worker: str | None = None
    #: The heartbeat must still be older than this many seconds (None: not checked).
    stale_after: float | None = None


def crash(
    conn: Connection,
    judged: Judged,
    *,
    actor: str,
    reason: str,
    error: str | None = None,
) -> Finish | None:
    """Mark a running attempt crashed, applying its phase's retry policy; None on a lost race.

    Retry or block happens in this same transaction (:func:`~jobdb.queries.finish`).
    """
    policy = _lock(conn, judged)
    if policy is None:
        return None
    max_attempts, config = policy
    again = retry.should_retry(config, State.CRASHED, judged.attempt, max_attempts, reason)
    return finish(
        conn,
        judged.job_id,
        judged.attempt,
        State.CRASHED,
        actor=actor,
        reason=reason,
        error=error,
        retry=again,
    )


def release_unstarted(conn: Connection, judged: Judged, *, actor: str, reason: str) -> bool:
    """Give a queued attempt whose supervisor died back (queued → ready); False on a lost race.

    Safe because a supervisor marks its job running before it starts the
    program: a job still queued never ran.
    """
    if _lock(conn, judged) is None:
        return False
    release(conn, [judged.job_id], actor=actor, reason=reason)
    return True


def _lock(conn: Connection, judged: Judged) -> tuple[int, Mapping[str, Any] | None] | None:
    """Lock the job row if it is still as judged; (max_attempts, phase config) or None."""
    stmt = (
        select(jobs.c.max_attempts, phases.c.config)
        .join(phases, phases.c.id == jobs.c.phase_id)
        .where(
            jobs.c.id == judged.job_id,
            jobs.c.attempt == judged.attempt,
            jobs.c.state == judged.state.value,
        )
        .with_for_update(of=jobs)
    )
    if judged.worker is not None:
        stmt = stmt.where(jobs.c.worker == judged.worker)
    if judged.stale_after is not None:
        stmt = stmt.where(jobs.c.heartbeat_at < db_ago(judged.stale_after))
    row = conn.execute(stmt).first()
    return None if row is None else (int(row[0]), row[1])


def current_state(conn: Connection, job_id: int) -> tuple[str, int] | None:
    """(state, attempt) of a job now, to say why a verdict was not written."""
    row = conn.execute(select(jobs.c.state, jobs.c.attempt).where(jobs.c.id == job_id)).first()
    return None if row is None else (str(row[0]), int(row[1]))
