"""What ``jobdb run`` and ``jobdb worker`` do differently when Slurm started them."""

from __future__ import annotations

import os

from jobdb.slurm import parse
from jobdb.slurm.commands import Slurm, SlurmError


def slurm_job_id() -> str | None:
    """This process's Slurm job id (an array task's own id), None outside Slurm."""
    return os.environ.get("SLURM_JOB_ID") or None


def array_job_id() -> str | None:
    """The array this task belongs to, None outside an array."""
    return os.environ.get("SLURM_ARRAY_JOB_ID") or None


def interrupt_reason(signal_name: str) -> str | None:
    """Why Slurm signalled this job: its state says (cancelled outside jobdb, timeout, ...).

    Asked once, when the signal arrives. Slurm shows a job it is ending as
    COMPLETING until its processes exit (this one included), so the reason
    field tells why (:func:`jobdb.slurm.parse.ending_reason`). None while
    Slurm still has the job running (a plain ``kill``): the caller keeps its
    own reason.
    """
    job_id = slurm_job_id()
    if job_id is None:
        return None
    try:
        found = [j for j in Slurm().squeue([job_id]) if j.job_id == job_id]
    except SlurmError:
        return None
    return parse.ending_reason(found[0]) if found else None
