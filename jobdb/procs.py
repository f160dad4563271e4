"""Processes on this host: who supervises a job, whether it is alive, how to stop it.

Every running job has a *supervisor*: the process that started its program
and will record how it ended (``jobdb run``, a local dispatcher, a worker).
The supervisor writes its :func:`supervisor_token` into ``jobs.worker``; the
token carries host, pid and the process start time, so a recycled pid is
never mistaken for the supervisor. The program itself runs in its own
process group whose id is ``jobs.pid``, and its environment carries
``JOBDB_JOB_ID`` and ``JOBDB_ATTEMPT`` so it can be found even when the
supervisor died before recording the pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass

import psutil

HOST = socket.gethostname()

#: Environment variables every job program sees.
ENV_JOB_ID = "JOBDB_JOB_ID"
ENV_ATTEMPT = "JOBDB_ATTEMPT"
#: Which database the job belongs to (:attr:`jobdb.store.Store.identity`).
ENV_DATABASE = "JOBDB_DATABASE"


@dataclass(frozen=True)
class Token:
    """A process identity that survives pid reuse: host, pid and start time."""

    host: str
    pid: int
    started: float

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.started:.2f}"


def supervisor_token(pid: int | None = None) -> str:
    """The token of this process (or of ``pid`` on this host), for ``jobs.worker``."""
    pid = os.getpid() if pid is None else pid
    return str(Token(HOST, pid, psutil.Process(pid).create_time()))


def parse_token(text: str | None) -> Token | None:
    """Read a token back; None for a worker name that is not a token."""
    if not text:
        return None
    host, sep, rest = text.rpartition(":")
    host, sep2, pid = host.rpartition(":")
    if not (sep and sep2):
        return None
    try:
        return Token(host, int(pid), float(rest))
    except ValueError:
        return None


def token_alive(text: str | None) -> bool | None:
    """Whether the supervisor named by a token still runs.

    None when the token names another host (or is not a token): this host
    cannot tell, and the heartbeat is the judge.
    """
    token = parse_token(text)
    if token is None or token.host != HOST:
        return None
    return process_alive(token.pid, token.started)


def process_alive(pid: int, started: float | None = None) -> bool:
    """Whether ``pid`` runs (and, given ``started``, is the process started then)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 0.05
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def job_processes(job_id: int, attempt: int, database: str | None = None) -> list[psutil.Process]:
    """Processes on this host running attempt ``attempt`` of job ``job_id`` (by environment).

    With ``database`` only that database's job matches: two projects (or two
    test runs) on one machine both have a job 12.
    """
    found = []
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if _is_job_env(env, job_id, attempt, database):
            found.append(proc)
    return found


def _is_job_env(env: dict[str, str], job_id: int, attempt: int, database: str | None) -> bool:
    same_db = database is None or env.get(ENV_DATABASE) == database
    return same_db and env.get(ENV_JOB_ID) == str(job_id) and env.get(ENV_ATTEMPT) == str(attempt)


def terminate_group(pgid: int, grace_s: float = 5.0) -> bool:
    """SIGTERM a process group, then SIGKILL what is left after ``grace_s``.

    Returns whether the group existed. The program gets the grace period to
    checkpoint (Slurm's time limit and preemption send SIGTERM the same way).
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _group_exists(pgid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    return True


def terminate_job(
    job_id: int,
    attempt: int,
    pgid: int | None,
    grace_s: float = 5.0,
    database: str | None = None,
) -> bool:
    """Stop a job's program on this host: its process group, else any process of that attempt.

    A process counts only if its environment names this job, attempt (and
    ``database``): a recycled pid or another database's job is never hit.
    """
    if pgid is not None and _is_job_group(pgid, job_id, attempt, database):
        return terminate_group(pgid, grace_s)
    stopped = False
    for proc in job_processes(job_id, attempt, database):
        with contextlib.suppress(psutil.Error, OSError):
            stopped = terminate_group(os.getpgid(proc.pid), grace_s) or stopped
    return stopped


def _is_job_group(pgid: int, job_id: int, attempt: int, database: str | None) -> bool:
    """Whether process ``pgid`` leads that job attempt's group (not a recycled pid)."""
    try:
        env = psutil.Process(pgid).environ()
    except (psutil.Error, OSError):
        return False
    return _is_job_env(env, job_id, attempt, database)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies still count for killpg; a group of zombies is as good as gone.
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (psutil.Error, OSError):
            continue
    return False
