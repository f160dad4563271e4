"""Stopping Slurm jobs when jobdb cancels, resets or gives up on them: one ``scancel`` for all.

Registered in :data:`jobdb.resetting.STOPPERS` for the ``slurm`` executor.
The cancel or reset is already committed when this runs, so whatever the
Slurm job does next cannot record a verdict. One ``squeue`` first checks
that each id is still this database's job (names carry the database
identity; ids are reused) and tells a queued job's own Slurm job from the
array it waits in: cancelling an array would cancel its other jobs too, so a
queued job of an array is left to the array's tasks, which skip it.

The monitor also cancels the Slurm job of an attempt it crashed for a
stale heartbeat (:func:`cancel_ghosts`): Slurm may still show it RUNNING on
a node that hung, and only Slurm can stop it there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import Connection, select

from jobdb.queries.core import attempts, jobs
from jobdb.queries.reset import Member
from jobdb.resetting import Stopped
from jobdb.slurm import render
from jobdb.slurm.commands import Slurm, SlurmError

log = logging.getLogger(__name__)


def scancel_stopper(
    members: Sequence[Member], grace_s: float, database: str | None, slurm: Slurm | None = None
) -> list[Stopped]:
    """Cancel the Slurm jobs of queued and running jobs in one call."""
    del grace_s  # Slurm's KillWait is the grace period
    slurm = slurm or Slurm()

    def stopped(m: Member, outcome: str, detail: str) -> Stopped:
        return Stopped(m.id, m.attempt, m.state.value, m.executor, m.host, outcome, detail)

    with_id = [m for m in members if m.external_id]
    out = [stopped(m, "not started", "not submitted yet") for m in members if not m.external_id]
    if not with_id:
        return out
    try:
        seen = slurm.squeue(sorted({str(m.external_id) for m in with_id}))
    except SlurmError as exc:
        return out + [stopped(m, "supervisor", f"scancel not attempted: {exc}") for m in with_id]
    prefix = render.NAME_PREFIX + (database or "")
    names = {r.job_id: r.name for r in seen}
    alive = {r.job_id for r in seen if r.alive}
    cancel: list[str] = []
    for m in with_id:
        ext = str(m.external_id)
        name = names.get(ext, "")
        if ext not in alive:
            out.append(stopped(m, "gone", f"Slurm job {ext} is not running any more"))
        elif database is not None and not name.startswith(prefix):
            out.append(stopped(m, "gone", f"Slurm job {ext} belongs to another database"))
        elif m.state.value == "queued" and _is_array(name):
            out.append(stopped(m, "not started", f"left in array {ext}: its tasks skip it"))
        else:
            cancel.append(ext)
            out.append(stopped(m, "terminated", f"scancel {ext}"))
    if cancel:
        slurm.scancel(sorted(set(cancel)))
    return out


def _is_array(name: str) -> bool:
    """Array names end in ``-p<phase id>`` (:func:`jobdb.slurm.render.array_name`)."""
    return name.rsplit("-", 1)[-1].startswith("p")


def single_jobs(conn: Connection, job_ids: Sequence[int]) -> dict[int, str]:
    """job id → Slurm id of those jobs whose current attempt is a Slurm job of its own.

    Array members are left out: their Slurm job (a task) may be running
    other jobs of the array.
    """
    if not job_ids:
        return {}
    stmt = (
        select(jobs.c.id, jobs.c.external_id)
        .join(attempts, (attempts.c.job_id == jobs.c.id) & (attempts.c.number == jobs.c.attempt))
        .where(
            jobs.c.id.in_(sorted(job_ids)),
            jobs.c.executor == "slurm",
            jobs.c.external_id.is_not(None),
            attempts.c.array_id.is_(None),
        )
    )
    return {int(job_id): str(ext) for job_id, ext in conn.execute(stmt)}


def cancel_ghosts(slurm_ids: Sequence[str], database: str, slurm: Slurm | None = None) -> list[str]:
    """scancel the Slurm jobs of attempts jobdb crashed while Slurm still runs them; which.

    A job whose heartbeat stopped may still run on a hung or cut-off node,
    where the monitor cannot reach its program: cancelling it at Slurm is
    the only way to keep it from running next to its retry. Only this
    database's jobs that Slurm still has alive are cancelled; a failing
    Slurm command is logged (the job's verdict is already written).
    """
    slurm = slurm or Slurm()
    prefix = render.NAME_PREFIX + database + "-"
    try:
        seen = slurm.squeue(sorted(set(slurm_ids)))
        ghosts = sorted(
            {r.job_id for r in seen if r.alive and r.name.startswith(prefix) and r.task_id is None}
            & set(slurm_ids)
        )
        if ghosts:
            slurm.scancel(ghosts)
    except SlurmError as exc:
        log.warning("could not cancel Slurm jobs %s: %s", ", ".join(slurm_ids), exc)
        return []
    return ghosts
