"""A job's output files: finding them for an attempt, reading their end, following them.

The supervisor of an attempt records where the program's stdout and stderr
go, on the job row (the current attempt) and on the attempt row (kept for
history). This module turns that into bytes for ``jobdb logs``; it never
decodes them, so progress bars (``\\r``), colours and odd encodings reach the
terminal as the program wrote them. Reading is incremental (a cursor per
file), so a log of many gigabytes is streamed, never held in memory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, select

from jobdb.errors import NotFound
from jobdb.models import Attempt, Job
from jobdb.states import ACTIVE, State

STREAMS = ("stdout", "stderr")
_BLOCK = 1 << 16


@dataclass(frozen=True)
class AttemptLogs:
    """Where one attempt of a job wrote its output (None: not recorded)."""

    job_id: int
    attempt: int
    #: The attempt's state: the job's state for its current attempt.
    state: str
    stdout_path: str | None
    stderr_path: str | None

    def cursors(self, streams: Iterable[str]) -> list[Cursor]:
        """A cursor per wanted stream that has a path (one when both go to the same file)."""
        found: list[Cursor] = []
        for stream in streams:
            path = self.stdout_path if stream == "stdout" else self.stderr_path
            if path and all(c.path != Path(path) for c in found):
                found.append(Cursor(stream, Path(path)))
        if not found:
            wanted = " or ".join(streams)
            raise NotFound(
                f"job {self.job_id} attempt {self.attempt} ({self.state}) has no {wanted} log yet",
                hint="logs are recorded when the attempt starts running",
            )
        return found


@dataclass
class Cursor:
    """A position in one log file; each read returns what was written since the last."""

    stream: str
    path: Path
    offset: int = 0

    def exists(self) -> bool:
        return self.path.is_file()

    def read_new(self) -> Iterator[bytes]:
        """The bytes written since the last read, in blocks (nothing while the file is missing)."""
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return
        with handle:
            if os.fstat(handle.fileno()).st_size < self.offset:
                self.offset = 0  # truncated or replaced: start over
            handle.seek(self.offset)
            while block := handle.read(_BLOCK):
                self.offset += len(block)
                yield block

    def skip_to_last_lines(self, n: int) -> None:
        """Move the cursor so the next read returns only the last ``n`` lines."""
        with self.path.open("rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            start, tail = end, b""
            while start > 0 and tail.count(b"\n") <= n:
                step = min(_BLOCK, start)
                start -= step
                handle.seek(start)
                tail = handle.read(step) + tail
        self.offset = end - len(tail) + _start_of_last_lines(tail, n)


def _start_of_last_lines(data: bytes, n: int) -> int:
    """Where the last ``n`` lines of ``data`` begin.

    Only ``\\n`` ends a line: ``\\r`` redraws a progress bar within one.
    """
    if n == 0:
        return len(data)
    at = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(n):
        at = data.rfind(b"\n", 0, at)
        if at < 0:
            return 0
    return at + 1


def find(conn: Connection, job_id: int, attempt: int | None = None) -> AttemptLogs:
    """The log paths of a job's current attempt, or of attempt ``attempt``.

    The job row is read first (it is where a supervisor records paths as soon
    as it has them), the attempt row fills in what it lacks.
    """
    job = conn.execute(
        select(Job.attempt, Job.state, Job.stdout_path, Job.stderr_path).where(Job.id == job_id)
    ).first()
    if job is None:
        raise NotFound(f"no job with id {job_id}", hint="jobdb list shows the jobs and their ids")
    number = job.attempt if attempt is None else attempt
    if number == 0:
        raise NotFound(f"job {job_id} has not run yet ({job.state}): no log yet")
    row = conn.execute(
        select(Attempt.state, Attempt.stdout_path, Attempt.stderr_path).where(
            Attempt.job_id == job_id, Attempt.number == number
        )
    ).first()
    current = number == job.attempt
    if row is None and not current:
        raise NotFound(
            f"job {job_id} has no attempt {number}",
            hint=f"its attempts are numbered 1 to {job.attempt}",
        )
    state, out, err = (job.state, None, None) if row is None else row
    if current:
        state, out, err = job.state, job.stdout_path or out, job.stderr_path or err
    return AttemptLogs(job_id, number, str(state), out, err)


def is_active(conn: Connection, job_id: int, attempt: int) -> bool:
    """Whether the job is still queued or running that attempt (its logs may still grow)."""
    row = conn.execute(select(Job.state, Job.attempt).where(Job.id == job_id)).first()
    return row is not None and row.attempt == attempt and State(row.state) in ACTIVE


def require_files(logs: AttemptLogs, cursors: list[Cursor]) -> None:
    """Refuse when none of the log files exists (a finished attempt's files will not appear)."""
    if any(cursor.exists() for cursor in cursors):
        return
    shown = ", ".join(str(cursor.path) for cursor in cursors)
    raise NotFound(
        f"job {logs.job_id} attempt {logs.attempt}: no log file at {shown}",
        hint="it was deleted, or written on another machine (a Slurm node's local disk)",
    )


def read_all(cursors: list[Cursor]) -> Iterator[tuple[Cursor, bytes]]:
    """Everything new in every file, file by file."""
    for cursor in cursors:
        for block in cursor.read_new():
            yield cursor, block


def follow(
    cursors: list[Cursor],
    still_active: Callable[[], bool],
    *,
    poll_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[tuple[Cursor, bytes]]:
    """What the files gain until the attempt ends, then the last of it.

    The state is asked *before* each read, so the read after the attempt is
    seen ended still gets everything the program wrote before it ended.
    """
    while True:
        active = still_active()
        yield from read_all(cursors)
        if not active:
            return
        sleep(poll_s)
