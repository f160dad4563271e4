"""Tables, chunking and the guarded transition every other query builds on."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    Table,
    Update,
    bindparam,
    literal,
    select,
    update,
)

from jobdb.errors import LostRace
from jobdb.models import Attempt, Edge, Job
from jobdb.queries.driver import Prepared
from jobdb.sqltypes import db_now, in_ids, unindexed
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
    rolled back, nothing changes. ``values`` are more columns to set: plain
    values, or :func:`~jobdb.sqltypes.db_now` for the database clock.
    """
    ids = sorted(set(job_ids))
    allowed = _allowed(target, None if among is None else tuple(among))
    extra = dict(values or {})
    shape = (target.value, allowed, attempt is not None, value_shape(extra))
    params: dict[str, Any] = {"b_reason": reason, "b_actor": actor, "b_attempt": attempt}
    params.update(bound_values(extra))
    moved = _transition_statement(*shape).scalars(conn, {**params, "ids": ids})
    if strict and len(moved) != len(ids):
        raise lost_race(conn, set(ids) - set(moved), target, allowed, attempt)
    return sorted(moved)


@functools.cache
def _allowed(target: State, among: tuple[State, ...] | None) -> tuple[str, ...]:
    return tuple(s.value for s in sources(target, among))


ValueShape = tuple[tuple[str, bool], ...]


def value_shape(values: Mapping[str, Any]) -> ValueShape:
    """(column, is the database clock) per extra value: the part of a statement's shape
    that its cache key needs."""
    return tuple((key, isinstance(value, db_now)) for key, value in sorted(values.items()))


def bound_values(values: Mapping[str, Any], prefix: str = "v_") -> dict[str, Any]:
    """The bind parameters ``<prefix><column>`` for the extra values that are not SQL."""
    return {
        f"{prefix}{key}": value for key, value in values.items() if not isinstance(value, db_now)
    }


def set_clause(table: Table, shape: ValueShape, prefix: str = "v_") -> dict[str, Any]:
    """``SET`` values for a shape: the clock inline, everything else a typed bind parameter
    (named ``<prefix><column>``: two tables set in one statement need two prefixes)."""
    return {
        key: db_now() if is_now else bindparam(f"{prefix}{key}", type_=table.c[key].type)
        for key, is_now in shape
    }


@functools.cache
def _transition_statement(
    target: str, allowed: tuple[str, ...], on_attempt: bool, shape: ValueShape
) -> Prepared:
    # Built once per shape: building a statement costs more than running it.
    return Prepared(transition_update(target, allowed, on_attempt, shape))


def transition_update(
    target: str,
    allowed: tuple[str, ...],
    on_attempt: bool,
    shape: ValueShape,
    *,
    one_job: bool = False,
) -> Update:
    """The guarded ``UPDATE`` behind :func:`transition`, returning the ids moved.

    The ids are one parameter (``in_ids``), so one job or 20,000 run the same
    SQL through the driver; the state guard is kept off SQLite's indexes so
    the ids lead the plan. With ``one_job`` the id is a scalar ``b_job_id``
    instead: PostgreSQL then estimates one row, so it can keep one generic
    plan for the prepared statement rather than plan every call again (it
    assumes ten elements for an array it cannot see).
    """
    which = (
        jobs.c.id == bindparam("b_job_id", type_=jobs.c.id.type)
        if one_job
        else in_ids(jobs.c.id, "ids")
    )
    stmt = (
        update(jobs)
        .where(which, in_values(unindexed(jobs.c.state), allowed))
        .values(
            state=target,
            state_reason=bindparam("b_reason"),
            state_actor=bindparam("b_actor"),
            updated_at=db_now(),
            **set_clause(jobs, shape),
        )
        .returning(jobs.c.id)
    )
    if on_attempt:
        stmt = stmt.where(jobs.c.attempt == bindparam("b_attempt"))
    return stmt


def in_values(column: ColumnElement[str], values: Sequence[str]) -> ColumnElement[bool]:
    """``column IN (?, ?)`` with one bind per value: an expanding ``IN`` would change the
    statement's SQL per call, which a :class:`Prepared` statement cannot have."""
    return column.in_([literal(value, String()) for value in values])


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
