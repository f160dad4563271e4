"""The one place that runs Slurm's commands.

Everything else calls :class:`Slurm`, whose runner can be replaced (tests of
pure callers; the benchmark counts calls). Each method is one command for
many jobs: one ``squeue``, one ``sacct``, one ``scancel``, one
``scontrol release`` per pass, whatever the number of jobs.
"""

from __future__ import annotations

import getpass
import subprocess
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from jobdb.errors import JobDBError
from jobdb.slurm import parse
from jobdb.slurm.parse import SlurmJob
from jobdb.slurm.render import Submission

#: Seconds any Slurm command may take before it counts as failed.
COMMAND_TIMEOUT_S = 60.0


class SlurmError(JobDBError):
    """A Slurm command failed."""


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], str | None, Mapping[str, str] | None], Result]


def run_command(argv: Sequence[str], stdin: str | None, env: Mapping[str, str] | None) -> Result:
    """Run a command and capture its output (the default :data:`Runner`)."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise SlurmError(
            f"{argv[0]}: command not found",
            hint="run on a machine with the Slurm client commands (sbatch, squeue, ...)",
        ) from None
    except subprocess.TimeoutExpired:
        return Result(124, "", f"{argv[0]} timed out after {COMMAND_TIMEOUT_S:g} s")
    return Result(done.returncode, done.stdout, done.stderr)


@dataclass
class Slurm:
    """Slurm's commands, counted."""

    runner: Runner = run_command
    calls: Counter[str] = field(default_factory=Counter)
    _config: str | None = field(default=None, repr=False)

    def _run(
        self, argv: Sequence[str], stdin: str | None = None, env: Mapping[str, str] | None = None
    ) -> Result:
        self.calls[argv[0]] += 1
        return self.runner(argv, stdin, env)

    def sbatch(self, submission: Submission, env: Mapping[str, str]) -> str:
        """Submit; the Slurm job id. ``env`` is what the job will see (``JOBDB_URL``)."""
        got = self._run(submission.argv, submission.script, env)
        if got.returncode != 0:
            raise SlurmError(f"sbatch failed: {_first_lines(got.stderr or got.stdout)}")
        try:
            return parse.parse_parsable(got.stdout)
        except ValueError as exc:
            raise SlurmError(str(exc)) from None

    def squeue(self, job_ids: Sequence[str]) -> list[SlurmJob]:
        """The jobs (and array tasks) Slurm's controller still knows, any state.

        Purged ids are simply absent (``Invalid job id`` with none left is
        not an error).
        """
        if not job_ids:
            return []
        argv = ["squeue", "-h", "-t", "all", "-o", parse.SQUEUE_FORMAT, "-j", ",".join(job_ids)]
        got = self._run(argv)
        if got.returncode != 0:
            if "Invalid job id" in got.stderr:
                return []
            raise SlurmError(f"squeue failed: {_first_lines(got.stderr)}")
        return parse.parse_squeue(got.stdout)

    def squeue_mine(self) -> list[SlurmJob]:
        """Every job of this user that the controller knows (to find unrecorded submissions)."""
        argv = ["squeue", "-h", "-t", "all", "-u", _user(), "-o", parse.SQUEUE_FORMAT]
        got = self._run(argv)
        if got.returncode != 0:
            raise SlurmError(f"squeue failed: {_first_lines(got.stderr)}")
        return parse.parse_squeue(got.stdout)

    def sacct(self, job_ids: Sequence[str], *, completion_log: bool) -> list[SlurmJob]:
        """Finished jobs from accounting, or from the completion log (``sacct -c``)."""
        if not job_ids:
            return []
        argv = ["sacct", "-n", "-P", "-o", parse.SACCT_FIELDS, "-j", ",".join(job_ids)]
        if completion_log:
            argv.insert(1, "-c")
        else:
            argv += ["-S", "now-30days"]
        got = self._run(argv)
        if got.returncode != 0:
            raise SlurmError(f"sacct failed: {_first_lines(got.stderr)}")
        return parse.parse_sacct(got.stdout)

    def release(self, job_ids: Sequence[str]) -> None:
        """``scontrol release`` many held jobs; ids no longer held are ignored."""
        if job_ids:
            self._run(["scontrol", "release", ",".join(job_ids)])

    def scancel(self, job_ids: Sequence[str]) -> Result:
        """Cancel many jobs in one call (already finished ids only produce a warning)."""
        return self._run(["scancel", *job_ids])

    def stderr_path(self, job_id: str) -> str | None:
        """Where a job's stderr goes (``scontrol show job``), while the controller knows it."""
        got = self._run(["scontrol", "show", "job", job_id])
        return parse.parse_stderr_path(got.stdout) if got.returncode == 0 else None

    def config(self) -> str:
        """``scontrol show config`` (read once)."""
        if self._config is not None:
            return self._config
        got = self._run(["scontrol", "show", "config"])
        if got.returncode != 0:
            raise SlurmError(f"scontrol show config failed: {_first_lines(got.stderr)}")
        self._config = got.stdout
        return got.stdout

    def accounting(self) -> bool:
        """Whether ``sacct`` has a database (else the completion log is read with ``-c``)."""
        value = parse.parse_config_value(self.config(), "AccountingStorageType") or ""
        return value not in ("", "accounting_storage/none")

    def max_array_size(self) -> int:
        """``MaxArraySize``: array indices must stay below it."""
        value = parse.parse_config_value(self.config(), "MaxArraySize")
        return int(value) if value and value.isdigit() else 1001


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "root"


def _first_lines(text: str, n: int = 5) -> str:
    return "\n".join(text.strip().splitlines()[:n]) or "(no output)"
