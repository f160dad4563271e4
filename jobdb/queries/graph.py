"""The graph: promotion of children, blocking and demotion, descendants (set-based SQL)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from sqlalchemy import (
    CTE,
    ColumnElement,
    Connection,
    bindparam,
    exists,
    select,
    update,
)

from jobdb.queries.core import _chunks, edges, jobs
from jobdb.queries.driver import Prepared
from jobdb.sqltypes import db_now, in_ids, unindexed
from jobdb.states import State

_parent = jobs.alias("parent")


def _all_parents_done() -> ColumnElement[bool]:
    """True for a job (the ``jobs`` row being updated) whose parents are all done."""
    unfinished_parent = exists().where(
        edges.c.child_id == jobs.c.id,
        edges.c.parent_id == _parent.c.id,
        _parent.c.state != State.DONE.value,
    )
    return ~unfinished_parent


def promote_children(conn: Connection, parent_ids: Sequence[int], *, actor: str) -> list[int]:
    """Waiting children of these parents whose parents are now all done → ready.

    On PostgreSQL the waiting children are locked first. Two parents of one
    child finishing at the same moment would otherwise each see the other
    still running (neither has committed) and neither would promote it: the
    child would wait forever. With the lock the second one waits for the
    first to commit, and its promotion, a new statement, sees both done.
    SQLite runs one write transaction at a time, so it cannot happen there.
    """
    params = {"parents": sorted(parent_ids), "b_actor": actor}
    if conn.dialect.name == "postgresql":
        _lock_waiting_children_statement().rows(conn, params)
    return sorted(_promote_children_statement().scalars(conn, params))


@functools.cache
def _lock_waiting_children_statement() -> Prepared:
    children = select(edges.c.child_id).where(in_ids(edges.c.parent_id, "parents"))
    return Prepared(
        select(jobs.c.id)
        .where(jobs.c.id.in_(children), jobs.c.state == State.WAITING.value)
        .order_by(jobs.c.id)  # one order for every locker: no deadlock between them
        .with_for_update(key_share=True)  # NO KEY UPDATE: foreign-key checks do not wait
    )


@functools.cache
def _promote_children_statement() -> Prepared:
    # Built once: this runs after every finished job.
    children = select(edges.c.child_id).where(in_ids(edges.c.parent_id, "parents"))
    return Prepared(
        update(jobs)
        .where(
            # Look the children up by id; SQLite would otherwise walk every waiting job.
            unindexed(jobs.c.state) == State.WAITING.value,
            jobs.c.id.in_(children),
            _all_parents_done(),
        )
        .values(
            state=State.READY.value,
            state_reason="parents done",
            state_actor=bindparam("b_actor"),
            updated_at=db_now(),
        )
        .returning(jobs.c.id)
    )


def promote_waiting(
    conn: Connection, *, actor: str, experiment_ids: Sequence[int] | None = None
) -> list[int]:
    """Every waiting job whose parents are all done (or that has none) → ready.

    Used after scheduling and as a repair pass; the per-completion path is
    :func:`promote_children`.
    """
    stmt = (
        update(jobs)
        .where(jobs.c.state == State.WAITING.value, _all_parents_done())
        .values(
            state=State.READY.value,
            state_reason="parents done",
            state_actor=actor,
            updated_at=db_now(),
        )
        .returning(jobs.c.id)
    )
    if experiment_ids is not None:
        stmt = stmt.where(jobs.c.experiment_id.in_(experiment_ids))
    return sorted(conn.execute(stmt).scalars())


def demote_ready_with_unfinished_parents(
    conn: Connection, job_ids: Sequence[int], *, actor: str
) -> list[int]:
    """Ready jobs among ``job_ids`` that now have an unfinished parent → waiting.

    Happens when scheduling adds a parent to an existing job (a new member
    of its group): the job must wait for it again.
    """
    demoted: list[int] = []
    for chunk in _chunks(sorted(job_ids)):
        stmt = (
            update(jobs)
            .where(
                jobs.c.id.in_(chunk),
                jobs.c.state == State.READY.value,
                ~_all_parents_done(),
            )
            .values(
                state=State.WAITING.value,
                state_reason="new parent scheduled",
                state_actor=actor,
                updated_at=db_now(),
            )
            .returning(jobs.c.id)
        )
        demoted.extend(conn.execute(stmt).scalars())
    return sorted(demoted)


def descendants_cte(root_ids: Sequence[int], name: str = "descendants") -> CTE:
    """A recursive CTE of every job below ``root_ids`` (not the roots themselves).

    ``UNION`` rather than ``UNION ALL``: in a diamond DAG a job reached by
    two paths is listed once, and the recursion cannot blow up.
    """
    roots = select(edges.c.child_id.label("id")).where(edges.c.parent_id.in_(list(root_ids)))
    tree = roots.cte(name, recursive=True)
    step = select(edges.c.child_id).join(tree, edges.c.parent_id == tree.c.id)
    return tree.union(step)


def block_descendants(
    conn: Connection, job_ids: Sequence[int], *, actor: str, reason: str
) -> list[int]:
    """Every waiting descendant of jobs that failed for good → blocked.

    Blocked jobs never wait forever for a parent that will not finish; a
    reset of the parent releases them.
    """
    tree = descendants_cte(sorted(job_ids))
    stmt = (
        update(jobs)
        .where(jobs.c.id.in_(select(tree.c.id)), jobs.c.state == State.WAITING.value)
        .values(
            state=State.BLOCKED.value,
            state_reason=f"parent {reason}",
            state_actor=actor,
            updated_at=db_now(),
        )
        .returning(jobs.c.id)
    )
    return sorted(conn.execute(stmt).scalars())
