"""sbatch submissions as data: the script and the ``sbatch`` argv (pure; golden-tested).

Only values that are safe verbatim go into ``#SBATCH`` lines (names, sizes,
times: checked by :func:`jobdb.slurm.options.check_name`; a user's extra
options as written). Everything that may hold any character — the log path,
the comment with the submitter's token — is passed as a separate ``sbatch``
argument, never through a shell or sbatch's own ``#SBATCH`` parser, and the
command the script runs is quoted word by word with :func:`shlex.quote`
(spaces, quotes, ``$``, ``;`` and newlines included). The script is given
to ``sbatch`` on stdin, so no temporary file is needed.

The database URL is not in the script (a file a password should not be
in): ``sbatch`` passes the submitter's environment, ``JOBDB_URL`` included,
to the job.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobdb.slurm.options import SlurmOptions, check_extra, check_name

#: Prefix of every Slurm job name jobdb submits; then the database identity.
NAME_PREFIX = "jobdb-"


@dataclass(frozen=True)
class Request:
    """What one sbatch asks Slurm for (a phase's resources merged with the cluster settings)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    cpus: int | None = None
    gpus: int = 0
    mem: str | None = None
    time: str | None = None
    extra: tuple[str, ...] = ()
    signal_lead_s: int = 0
    #: Slurm job ids this one starts after, when they all ended well (``afterok``).
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class Launcher:
    """How a batch script starts jobdb on the compute node."""

    python: str
    runs_dir: str
    heartbeat_interval: float = 10.0


@dataclass(frozen=True)
class Submission:
    """One ``sbatch`` call: its arguments (without the script) and the script for stdin."""

    argv: tuple[str, ...]
    script: str
    name: str

    def golden(self) -> str:
        """argv and script as one text, for golden files and ``--dry-run`` displays."""
        return f"# {shlex.join(self.argv)}\n{self.script}"


def request(options: SlurmOptions, resources: Mapping[str, Any]) -> Request:
    """A phase's resources (already scaled for the attempt) over the experiment's settings."""

    def pick(key: str) -> str | None:
        value = resources.get(key)
        if value is None:
            value = getattr(options, key)
        return None if value is None else check_name(value, ("resources", key))

    extra = check_extra(resources.get("extra"), ("resources", "extra"))
    return Request(
        partition=pick("partition"),
        account=options.account,
        qos=options.qos,
        constraint=options.constraint,
        cpus=int(resources["cpus"]) if resources.get("cpus") else None,
        gpus=int(resources.get("gpus") or 0),
        mem=pick("mem"),
        time=pick("time"),
        extra=options.extra + extra,
        signal_lead_s=options.signal_lead_s,
    )


def job_name(identity: str, job_id: int, attempt: int) -> str:
    """The Slurm job name of one job's attempt: the database and job in a form squeue shows."""
    return f"{NAME_PREFIX}{identity}-{job_id}-{attempt}"


def array_name(identity: str, phase_id: int) -> str:
    """The Slurm job name of an array of pull-mode workers for one phase."""
    return f"{NAME_PREFIX}{identity}-p{phase_id}"


def comment(identity: str, submitter: str) -> str:
    """The Slurm comment: which database, and which process submitted (to judge orphans)."""
    return f"jobdb {identity} {submitter}"


def parse_comment(text: str) -> tuple[str, str] | None:
    """(identity, submitter token) from :func:`comment`; None for someone else's job."""
    parts = text.split(" ", 2)
    if len(parts) != 3 or parts[0] != "jobdb":
        return None
    return parts[1], parts[2]


def directives(req: Request, *, name: str, array: str | None = None) -> list[str]:
    """The ``#SBATCH`` options, in a fixed order."""
    out = [f"--job-name={name}"]
    if array is not None:
        out.append(f"--array={array}")
    for flag, value in (
        ("--partition", req.partition),
        ("--account", req.account),
        ("--qos", req.qos),
        ("--cpus-per-task", req.cpus),
        ("--mem", req.mem),
        ("--time", req.time),
    ):
        if value is not None:
            out.append(f"{flag}={value}")
    if req.constraint is not None:
        out.append(f"--constraint={_sbatch_quoted(req.constraint)}")
    if req.gpus:
        out.append(f"--gres=gpu:{req.gpus}")
    lead = signal_lead(req)
    if lead:
        # SIGUSR1 to the batch process (B:), which is jobdb itself (exec): it records
        # "timeout" and stops the program with SIGTERM so it can checkpoint.
        out.append(f"--signal=B:USR1@{lead}")
    out.append("--no-requeue")  # jobdb decides retries, with a new attempt
    out.extend(dependency(req.after))
    out.extend(req.extra)
    return out


def dependency(after: Sequence[str]) -> list[str]:
    """``--dependency=afterok:…`` and cancel-if-never-satisfied, for a job behind its parents.

    Without ``--kill-on-invalid-dep=yes`` (or the cluster's
    ``kill_invalid_depend``) a dependent of a failed parent would stay
    pending forever; cancelled, jobdb sees it and gives the job back.
    """
    if not after:
        return []
    for slurm_id in after:
        if not slurm_id.isdigit():
            raise ValueError(f"not a Slurm job id: {slurm_id!r}")
    return ["--dependency=afterok:" + ":".join(after), "--kill-on-invalid-dep=yes"]


def signal_lead(req: Request) -> int:
    """Seconds of warning before the time limit: the setting, at most half the limit."""
    if req.time is None or req.signal_lead_s <= 0:
        return 0
    return min(req.signal_lead_s, max(time_seconds(req.time) // 2, 1))


def time_seconds(text: str) -> int:
    """A Slurm time limit (``M``, ``M:S``, ``H:M:S``, ``D-H[:M[:S]]``) in seconds."""
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:
        hours, minutes, seconds = [*parts, 0, 0][:3]
    elif len(parts) == 1:
        hours, minutes, seconds = 0, parts[0], 0
    elif len(parts) == 2:
        hours, minutes, seconds = 0, parts[0], parts[1]
    else:
        hours, minutes, seconds = parts[:3]
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


def _sbatch_quoted(text: str) -> str:
    """A value for an ``#SBATCH`` line that may contain spaces (sbatch honours double quotes)."""
    if text and all(c.isalnum() or c in "_.,:+@%/=&|[]*-" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def log_pattern(directory: str, file_pattern: str) -> str:
    """An ``--output`` path: ``directory`` taken literally (``%`` doubled), then the pattern."""
    return directory.replace("%", "%%").rstrip("/") + "/" + file_pattern


def sbatch_argv(output: str, comment_text: str) -> tuple[str, ...]:
    """``sbatch`` held (released once its id is recorded), printing only the id."""
    return ("sbatch", "--parsable", "--hold", f"--output={output}", f"--comment={comment_text}")


def script(lines: Sequence[str], command: Sequence[str], note: str) -> str:
    """A bash batch script: ``#SBATCH`` lines, a note, then ``exec`` of the command."""
    body = ["#!/bin/bash", *(f"#SBATCH {line}" for line in lines), f"# {note}"]
    body.append("exec " + shlex.join(command))
    return "\n".join(body) + "\n"


def render_single(
    req: Request,
    launcher: Launcher,
    *,
    identity: str,
    submitter: str,
    job_id: int,
    attempt: int,
    log_dir: str,
) -> Submission:
    """One Slurm job that runs ``jobdb run JOB --attempt N``."""
    name = job_name(identity, job_id, attempt)
    command = [
        launcher.python, "-m", "jobdb", "run", str(job_id), "--attempt", str(attempt),
        "--runs-dir", launcher.runs_dir, "--heartbeat-interval", f"{launcher.heartbeat_interval:g}",
    ]  # fmt: skip
    text = script(
        directives(req, name=name),
        command,
        f"jobdb job {job_id}, attempt {attempt}; JOBDB_URL comes from the submitter's environment",
    )
    output = log_pattern(log_dir, f"job-{job_id}-{attempt}-%j.out")
    return Submission(sbatch_argv(output, comment(identity, submitter)), text, name)


def render_array(
    req: Request,
    launcher: Launcher,
    *,
    identity: str,
    submitter: str,
    phase_id: int,
    tasks: int,
    max_running: int | None,
    log_dir: str,
) -> Submission:
    """A job array whose tasks each run ``jobdb worker`` over the jobs recorded on the array."""
    if tasks < 1:
        raise ValueError("an array needs at least one task")
    name = array_name(identity, phase_id)
    spec = f"0-{tasks - 1}" + (f"%{max_running}" if max_running else "")
    command = [
        launcher.python, "-m", "jobdb", "worker", "--slurm-array", "--quiet",
        "--runs-dir", launcher.runs_dir, "--heartbeat-interval", f"{launcher.heartbeat_interval:g}",
    ]  # fmt: skip
    text = script(
        directives(req, name=name, array=spec),
        command,
        f"pull mode: each task runs the queued jobs recorded on this array ({tasks} task(s)); "
        "JOBDB_URL comes from the submitter's environment",
    )
    output = log_pattern(log_dir, "array-%A_%a.out")
    return Submission(sbatch_argv(output, comment(identity, submitter)), text, name)


def split_batch(
    jobs: int, max_running: int | None, max_array_size: int
) -> tuple[list[int], list[int]]:
    """How a batch of ``jobs`` becomes arrays: (tasks per array, jobs per array).

    One task per job, or at most ``max_running`` tasks (each pulls jobs until
    the batch is empty, so more tasks than may run at once would only start
    to find nothing); arrays are chunked so no index reaches
    ``MaxArraySize``, and the jobs are shared out in proportion to the tasks.
    """
    tasks = min(jobs, max_running) if max_running else jobs
    sizes = chunk_sizes(tasks, max_array_size)
    parts, done, given = [], 0, 0
    for size in sizes:
        done += size
        upto = jobs * done // tasks
        parts.append(upto - given)
        given = upto
    return sizes, parts


def chunk_sizes(count: int, max_array_size: int) -> list[int]:
    """Split ``count`` tasks into arrays whose indices stay below ``MaxArraySize``."""
    if max_array_size < 1:
        raise ValueError("MaxArraySize must be ≥ 1")
    sizes = [max_array_size] * (count // max_array_size)
    if count % max_array_size:
        sizes.append(count % max_array_size)
    return sizes
