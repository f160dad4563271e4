"""Reading what Slurm prints, and what a Slurm state means for a job (pure).

``squeue`` is asked for explicit ``|``-separated fields (:data:`SQUEUE_FORMAT`),
``sacct`` for ``--parsable2`` columns (:data:`SACCT_FIELDS`); on a cluster
without accounting storage ``sacct -c`` reads the same columns from the job
completion log. States are mapped by :func:`crash_reason`: the states in
which a job may still run (or run again: preempted, requeued) are not
verdicts; the others are, for a job that did not record its own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

#: squeue's fields: raw job id, array job id, array task id, state, reason, submit time,
#: name, comment (last: it may contain the separator).
SQUEUE_FORMAT = "%A|%F|%K|%T|%r|%V|%j|%k"
#: sacct's columns (``--parsable2``, no header).
SACCT_FIELDS = "jobid,jobname,state,exitcode,submit"

#: States in which the job may still run: no verdict.
ALIVE = frozenset(
    {
        "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED",
        "SIGNALING", "STAGE_OUT", "RESIZING",
        # Not final: Slurm runs the same job id again.
        "PREEMPTED", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT",
    }
)  # fmt: skip
#: Final states and the crash reason jobdb records for a job that did not record a verdict.
REASONS = {
    "COMPLETED": "lost",  # the batch script ended without jobdb recording how
    "CANCELLED": "cancelled outside jobdb",
    "TIMEOUT": "timeout",
    "OUT_OF_MEMORY": "oom",
    "NODE_FAIL": "node failure",
    "BOOT_FAIL": "boot failure",
    "DEADLINE": "deadline",
    "FAILED": "slurm job failed",
    "REVOKED": "lost",
}
#: What slurmstepd writes to a job's stderr when it kills it for memory (no cgroups).
OOM_MARKER = "exceeded memory limit"
LOST = "lost"
#: Slurm's reason for a job whose ``afterok`` dependency can no longer be satisfied.
NEVER_SATISFIED = "DependencyNeverSatisfied"


@dataclass(frozen=True)
class SlurmJob:
    """One Slurm job (or array task) as squeue or sacct reports it."""

    job_id: str
    state: str
    submitted: dt.datetime | None
    name: str
    #: The array's job id (tasks of one array share it); None outside arrays.
    array_id: str | None = None
    task_id: str | None = None
    reason: str = ""
    comment: str = ""
    exit_code: str = ""

    @property
    def alive(self) -> bool:
        return self.state in ALIVE

    @property
    def held(self) -> bool:
        """Pending on a user hold (jobdb submits held and releases after recording the id)."""
        return self.state == "PENDING" and self.reason in ("JobHeldUser", "JobHeldAdmin")


def parse_parsable(text: str) -> str:
    """The job id from ``sbatch --parsable`` (``ID`` or ``ID;cluster``)."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    job_id = first.split(";", 1)[0].strip()
    if not job_id.isdigit():
        raise ValueError(f"sbatch printed no job id: {text.strip()[:200]!r}")
    return job_id


def parse_time(text: str) -> dt.datetime | None:
    """Slurm's ``2026-01-31T12:00:00`` (local time of the controller) as an aware datetime."""
    text = text.strip()
    if not text or text in ("N/A", "Unknown", "None"):
        return None
    try:
        return dt.datetime.fromisoformat(text).astimezone()
    except ValueError:
        return None


def _none(text: str) -> str | None:
    text = text.strip()
    return None if text in ("", "N/A", "(null)") else text


def parse_squeue(text: str) -> list[SlurmJob]:
    """Rows of ``squeue -h -o SQUEUE_FORMAT``; a pending array's own row has no raw id of a task."""
    rows = []
    for line in text.splitlines():
        parts = line.split("|", 7)
        if len(parts) < 8:
            continue
        raw, array, task, state, reason, submitted, name, note = parts
        array_id = _none(array)
        task_id = _none(task)
        rows.append(
            SlurmJob(
                job_id=raw.strip(),
                state=_state(state),
                submitted=parse_time(submitted),
                name=name,
                array_id=array_id if task_id is not None else None,
                task_id=task_id,
                reason=reason.strip(),
                comment=note,
            )
        )
    return rows


def parse_sacct(text: str) -> list[SlurmJob]:
    """Rows of ``sacct -n -P -o SACCT_FIELDS`` (job steps such as ``12.batch`` are skipped)."""
    rows = []
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 5 or "." in parts[0]:
            continue
        job_id, name, state, exit_code, submitted = parts[:5]
        raw, _, task = job_id.partition("_")
        rows.append(
            SlurmJob(
                job_id=raw.strip(),
                state=_state(state),
                submitted=parse_time(submitted),
                name=name,
                array_id=raw.strip() if task else None,
                task_id=task or None,
                exit_code=exit_code.strip(),
            )
        )
    return rows


def _state(text: str) -> str:
    """``CANCELLED by 0`` → ``CANCELLED``; ``COMPLETING+`` style suffixes dropped."""
    word = text.strip().split(" ", 1)[0]
    return word.rstrip("+*").upper()


def parse_config_value(text: str, key: str) -> str | None:
    """One value of ``scontrol show config`` (``Key = value`` lines)."""
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    return None


def parse_stderr_path(text: str) -> str | None:
    """The ``StdErr=`` of ``scontrol show job`` (the rest of its line: paths may hold spaces)."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("StdErr="):
            return stripped[len("StdErr=") :] or None
    return None


def crash_reason(state: str, stderr_text: str | None = None) -> str | None:
    """The crash reason a final Slurm state means; None while the job may still run."""
    if state in ALIVE:
        return None
    if state == "FAILED" and stderr_text and OOM_MARKER in stderr_text:
        return "oom"
    return REASONS.get(state, LOST)


#: Why Slurm is ending a job, from the reason it shows while the job is COMPLETING.
COMPLETING_REASONS = {
    "TimeLimit": "timeout",
    "NodeDown": "node failure",
    "NodeFail": "node failure",
    "Preempted": "preempted",
    "Deadline": "deadline",
}


def ending_reason(job: SlurmJob) -> str | None:
    """Why Slurm signals a job it is ending (asked by the job itself on SIGTERM).

    A final state says it; a COMPLETING job says it through its reason, and a
    COMPLETING job with no such reason was cancelled (``scancel``). None: the
    job is still running, so the signal did not come from Slurm ending it.
    """
    if job.state == "COMPLETING":
        return COMPLETING_REASONS.get(job.reason, REASONS["CANCELLED"])
    return crash_reason(job.state)


def is_ours(job: SlurmJob, name_prefix: str, queued_at: dt.datetime | None, slack_s: float) -> bool:
    """Whether a Slurm record belongs to the attempt we submitted, not to a reused job id.

    The name carries the database identity; the submission cannot be older
    than the claim (less ``slack_s`` for clock differences between the
    database and the controller).
    """
    if not job.name.startswith(name_prefix):
        return False
    if queued_at is None or job.submitted is None:
        return True
    return job.submitted >= queued_at - dt.timedelta(seconds=slack_s)
