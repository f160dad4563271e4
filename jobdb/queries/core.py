"""Tables, chunking and the guarded transition every other query builds on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Table,
    select,
    update,
)

from jobdb.errors import LostRace
from jobdb.models import Attempt, Edge, Job
from jobdb.sqltypes import db_now
from jobdb.states import State, sources

jobs = cast(Table, Job.__table__)
edges = cast(Table, Edge.__table__)
attempts = cast(Table, Attempt.__table__)

#: Expanding ``IN`` lists are sent in chunks below SQLite's variable limit.
CHUNK = 10_000


def transition(
    conn: Connection,
    job_ids: Iterable[int],
    target: State,
    *,
    reason: str,
    actor: str,
    among: Iterable[State] | None = None,
    attempt: int | None = None,
    values: Mapping[str, Any] | None = None,
    strict: bool = True,
) -> list[int]:
    """Move jobs to ``target`` if their state allows it; returns the ids moved.

    ``among`` narrows the allowed source states; ``attempt`` additionally
    requires the job to be on that attempt (a runner finishing attempt 2
    must not touch attempt 3). With ``strict`` (the default) a job that was
    not moved raises :class:`LostRace` and, the caller's transaction being
    rolled back, nothing changes.
    """
    ids = sorted(set(job_ids))
    allowed = [s.value for s in sources(target, among)]
    moved: list[int] = []
    for chunk in _chunks(ids):
        stmt = (
            update(jobs)
            .where(jobs.c.id.in_(chunk), jobs.c.state.in_(allowed))
            .values(
                state=target.value,
                state_reason=reason,
                state_actor=actor,
                updated_at=db_now(),
                **(values or {}),
            )
            .returning(jobs.c.id)
        )
        if attempt is not None:
            stmt = stmt.where(jobs.c.attempt == attempt)
        moved.extend(conn.execute(stmt).scalars())
    if strict and len(moved) != len(ids):
        raise lost_race(conn, set(ids) - set(moved), target, allowed, attempt)
    return sorted(moved)


def lost_race(
    conn: Connection, lost: set[int], target: State, allowed: Sequence[str], attempt: int | None
) -> LostRace:
    """Build the error for jobs that were not in a state (or attempt) allowing ``target``."""
    rows = conn.execute(select(jobs.c.id, jobs.c.state).where(jobs.c.id.in_(sorted(lost))))
    current = {job_id: state for job_id, state in rows}
    states = {job_id: current.get(job_id) for job_id in sorted(lost)}
    shown = ", ".join(
        f"{job_id} is {state or 'missing'}" for job_id, state in list(states.items())[:10]
    )
    more = f" (and {len(states) - 10} more)" if len(states) > 10 else ""
    need = " or ".join(allowed)
    on_attempt = f" on attempt {attempt}" if attempt is not None else ""
    return LostRace(
        f"cannot make job(s) {target}: they must be {need}{on_attempt}, but {shown}{more}",
        lost=states,
    )


def _chunks(items: Sequence[Any]) -> Iterable[list[Any]]:
    for start_at in range(0, len(items), CHUNK):
        yield list(items[start_at : start_at + CHUNK])
