"""Stopping Slurm jobs when jobdb cancels or resets them: one ``scancel`` for all.

Registered in :data:`jobdb.resetting.STOPPERS` for the ``slurm`` executor.
The cancel or reset is already committed when this runs, so whatever the
Slurm job does next cannot record a verdict. One ``squeue`` first checks
that each id is still this database's job (names carry the database
identity; ids are reused) and tells a queued job's own Slurm job from the
array it waits in: cancelling an array would cancel its other jobs too, so a
queued job of an array is left to the array's tasks, which skip it.
"""

from __future__ import annotations

from collections.abc import Sequence

from jobdb.queries.reset import Member
from jobdb.resetting import Stopped
from jobdb.slurm import render
from jobdb.slurm.commands import Slurm, SlurmError


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
