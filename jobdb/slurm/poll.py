"""Watching Slurm jobs: one batched call per pass, verdicts for jobs Slurm ended.

Each pass reads the queued and running Slurm jobs of the database, asks
``squeue`` about all their ids at once, and ``sacct`` (or ``sacct -c``, the
completion log, on clusters without accounting) only for the ids the
controller has already purged. A job Slurm ended without jobdb recording a
verdict is crashed with Slurm's reason (:func:`jobdb.slurm.parse.crash_reason`),
through the same guarded write as every monitor verdict: if the job's own
supervisor recorded first, nothing is written. A job unknown to both is
``lost``. Records whose name is not this database's, or that were submitted
before the attempt was claimed, belong to someone else (a reused job id)
and are ignored.

Recorded jobs that Slurm still holds (their dispatcher died between
recording and releasing) are released; unrecorded ones are
:func:`jobdb.slurm.submit.recover`'s.

A queued job that waits in Slurm behind its parents' Slurm jobs
(``--slurm-dependencies``) and that Slurm will never start — its
dependency can no longer be satisfied (``DependencyNeverSatisfied``), or
its Slurm job ended while a parent is not done — is not a crash: it never
ran. It goes back to waiting, blocked or ready, as its parents say
(:func:`jobdb.queries.slurmdeps.give_back`); a Slurm job still pending on
such a dependency is cancelled.

Failures of Slurm's commands are not verdicts: the pass is skipped and the
next one waits twice as long (up to :data:`MAX_BACKOFF_S`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from jobdb import procs
from jobdb.queries import slurmdeps, verdicts
from jobdb.queries.core import jobs
from jobdb.queries.verdicts import Judged
from jobdb.slurm import parse, render
from jobdb.slurm.commands import Slurm, SlurmError
from jobdb.slurm.parse import SlurmJob
from jobdb.slurm.submit import recover
from jobdb.states import State
from jobdb.store import Store

log = logging.getLogger(__name__)

#: Longest wait between passes after Slurm's commands failed.
MAX_BACKOFF_S = 60.0
#: Clock difference tolerated between the database and the Slurm controller.
CLOCK_SLACK_S = 300.0
#: How much of a failed job's stderr is searched for the memory-kill message.
STDERR_TAIL_BYTES = 64 * 1024
#: Why a dependent that Slurm will not start goes back (its parents say where).
DEPENDENCY_FAILED = "dependency never satisfied"


@dataclass(frozen=True)
class Watched:
    """A queued or running Slurm job of the database."""

    job_id: int
    attempt: int
    state: State
    external_id: str
    queued_at: dt.datetime | None
    host: str | None = None
    pid: int | None = None


@dataclass(frozen=True)
class Crash:
    """A verdict to write: the job and why."""

    job: Watched
    reason: str
    error: str


@dataclass
class Decisions:
    """What one pass concluded (pure data, before anything is written)."""

    crashes: list[Crash] = field(default_factory=list)
    release: list[str] = field(default_factory=list)
    #: Slurm job ids whose FAILED state needs their stderr read (memory kill or not).
    failed: dict[str, list[Watched]] = field(default_factory=dict)
    #: Queued jobs Slurm will never start because of their dependency: given back.
    unchain: list[Watched] = field(default_factory=list)
    #: Slurm jobs pending on a dependency that can no longer be satisfied: cancelled.
    cancel: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    """A crash written from Slurm's view."""

    job_id: int
    attempt: int
    reason: str
    retried: bool
    blocked: list[int]


@dataclass
class Outcome:
    """What one pass did."""

    verdicts: list[Verdict] = field(default_factory=list)
    skipped: list[tuple[int, int, str]] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    recovered: int = 0
    #: Dependents Slurm will not run: (job, attempt, state they went back to, reason).
    given_back: list[tuple[int, int, State, str]] = field(default_factory=list)


def watched(store: Store) -> list[Watched]:
    """The database's queued and running Slurm jobs that have a Slurm id."""
    stmt = select(
        jobs.c.id,
        jobs.c.attempt,
        jobs.c.state,
        jobs.c.external_id,
        jobs.c.queued_at,
        jobs.c.host,
        jobs.c.pid,
    ).where(
        jobs.c.executor == "slurm",
        jobs.c.state.in_([State.QUEUED.value, State.RUNNING.value]),
        jobs.c.external_id.is_not(None),
    )
    with store.read() as conn:
        return [
            Watched(int(i), int(a), State(s), str(e), q, h, p)
            for i, a, s, e, q, h, p in conn.execute(stmt)
        ]


def decide(
    active: Sequence[Watched],
    seen: Sequence[SlurmJob],
    identity: str,
    dependents: Collection[int] = frozenset(),
) -> Decisions:
    """Verdicts from Slurm's records (pure): alive, held, ended (and why) or unknown.

    ``dependents`` are the queued jobs that have a parent not done: they
    wait in Slurm behind it, and when their Slurm job is gone they never ran.
    """
    prefix = render.NAME_PREFIX + identity + "-"
    by_id: dict[str, list[SlurmJob]] = defaultdict(list)
    for record in seen:
        by_id[record.job_id].append(record)
        if record.array_id is not None and record.array_id != record.job_id:
            by_id[record.array_id].append(record)
    out = Decisions()
    for job in active:
        mine = [
            r for r in by_id.get(job.external_id, [])
            if parse.is_ours(r, prefix, job.queued_at, CLOCK_SLACK_S)
        ]  # fmt: skip
        if job.state == State.QUEUED and _left_behind(job, mine, dependents):
            out.unchain.append(job)
            out.cancel.extend(r.job_id for r in mine if r.alive)
            continue
        if not mine:
            out.crashes.append(
                Crash(job, parse.LOST, f"Slurm does not know job {job.external_id} any more")
            )
            continue
        alive = [r for r in mine if r.alive]
        if alive:
            if job.state == State.QUEUED and any(r.held for r in alive):
                out.release.append(job.external_id)
            continue
        ended = _deciding(mine)
        if ended.state == "FAILED":
            out.failed.setdefault(ended.job_id, []).append(job)
            continue
        reason = parse.crash_reason(ended.state) or parse.LOST
        out.crashes.append(Crash(job, reason, _describe(job, ended)))
    out.release = sorted(set(out.release))
    return out


def _left_behind(job: Watched, mine: Sequence[SlurmJob], dependents: Collection[int]) -> bool:
    """A queued job Slurm will not start because of its dependency (it never ran)."""
    if any(r.reason == parse.NEVER_SATISFIED for r in mine):
        return True
    return job.job_id in dependents and not any(r.alive for r in mine)


def _deciding(records: Sequence[SlurmJob]) -> SlurmJob:
    """Of an array's ended tasks, the one that says most (anything but COMPLETED first)."""
    for record in records:
        if record.state != "COMPLETED":
            return record
    return records[0]


def _describe(job: Watched, record: SlurmJob) -> str:
    code = f" (exit {record.exit_code})" if record.exit_code else ""
    where = "its array" if job.state == State.QUEUED and record.array_id else "Slurm job"
    ended = f"{where} {record.job_id} ended {record.state}{code}"
    if record.state == "COMPLETED":
        return f"{ended} without jobdb recording a verdict"
    return ended


@dataclass
class Watcher:
    """Polls Slurm for a monitor or a dispatcher, with back-off after failures."""

    slurm: Slurm = field(default_factory=Slurm)
    completion_log: bool | None = None
    backoff_s: float = 0.0
    _not_before: float = 0.0
    last_error: str | None = None

    def due(self) -> bool:
        return time.monotonic() >= self._not_before

    def poll(self, store: Store, *, actor: str, force_scan: bool = False) -> Outcome:
        """One pass (skipped while backing off); Slurm failures are logged, not raised."""
        if not self.due():
            return Outcome()
        try:
            outcome = self._poll(store, actor, force_scan)
        except SlurmError as exc:
            self.backoff_s = min(max(self.backoff_s * 2, 1.0), MAX_BACKOFF_S)
            self._not_before = time.monotonic() + self.backoff_s
            self.last_error = str(exc)
            log.warning("Slurm pass skipped (%s); next in %.0f s", exc, self.backoff_s)
            return Outcome()
        self.backoff_s = 0.0
        self.last_error = None
        return outcome

    def _poll(self, store: Store, actor: str, force_scan: bool) -> Outcome:
        outcome = Outcome(recovered=recover(store, self.slurm, actor=actor, force_scan=force_scan))
        active = watched(store)
        if not active:
            return outcome
        ids = sorted({job.external_id for job in active})
        seen = self.slurm.squeue(ids)
        known = {r.job_id for r in seen} | {r.array_id for r in seen if r.array_id}
        purged = [i for i in ids if i not in known]
        if purged:
            if self.completion_log is None:
                self.completion_log = not self.slurm.accounting()
            seen = [*seen, *self.slurm.sacct(purged, completion_log=self.completion_log)]
        decisions = decide(active, seen, store.identity, _dependents(store, active))
        if decisions.unchain:
            outcome.given_back = _give_back(store, decisions.unchain, actor)
        if decisions.cancel:
            self.slurm.scancel(sorted(set(decisions.cancel)))
        for slurm_id, members in decisions.failed.items():
            reason = parse.crash_reason("FAILED", self._stderr_tail(slurm_id)) or parse.LOST
            for job in members:
                error = f"Slurm job {slurm_id} ended FAILED"
                if reason == "oom":
                    error += f" ({parse.OOM_MARKER}: killed by Slurm)"
                decisions.crashes.append(Crash(job, reason, error))
        if decisions.release:
            self.slurm.release(decisions.release)
            outcome.released = decisions.release
        for crash in decisions.crashes:
            _write(store, crash, actor, outcome)
        return outcome

    def _stderr_tail(self, slurm_id: str) -> str | None:
        path = self.slurm.stderr_path(slurm_id)
        if path is None:
            return None
        try:
            with open(Path(path), "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - STDERR_TAIL_BYTES))
                return f.read().decode(errors="replace")
        except OSError:
            return None


def _dependents(store: Store, active: Sequence[Watched]) -> set[int]:
    """The queued jobs among ``active`` that have a parent not done (one query)."""
    queued = [job.job_id for job in active if job.state == State.QUEUED]
    if not queued:
        return set()
    with store.read() as conn:
        return slurmdeps.waiting_on_parents(conn, queued)


def _give_back(
    store: Store, left: Sequence[Watched], actor: str
) -> list[tuple[int, int, State, str]]:
    """Dependents Slurm will not run → waiting, blocked or ready, as their parents say."""
    attempts = {job.job_id: job.attempt for job in left}
    with store.write() as conn:
        moved = slurmdeps.give_back(conn, attempts, actor=actor, reason=DEPENDENCY_FAILED)
    for job_id, state in sorted(moved.items()):
        log.info("job %s attempt %s: %s (%s)", job_id, attempts[job_id], state, DEPENDENCY_FAILED)
    return [(i, attempts[i], state, DEPENDENCY_FAILED) for i, state in sorted(moved.items())]


def _write(store: Store, crash: Crash, actor: str, outcome: Outcome) -> None:
    job = crash.job
    judged = Judged(job.job_id, job.attempt, job.state)
    with store.write() as conn:
        done = verdicts.crash(conn, judged, actor=actor, reason=crash.reason, error=crash.error)
        now = None if done else verdicts.current_state(conn, job.job_id)
    if done is None:
        outcome.skipped.append((job.job_id, job.attempt, f"now {now}"))
        return
    outcome.verdicts.append(
        Verdict(job.job_id, job.attempt, crash.reason, done.retried, list(done.blocked))
    )
    if job.state == State.RUNNING and job.host == procs.HOST:
        # The program runs in its own process group, which Slurm's process tracking
        # may not have ended with the job (proctrack/pgid): stop it, as for any orphan.
        procs.terminate_job(job.job_id, job.attempt, job.pid, database=store.identity)
    log.info("job %s attempt %s: crashed (%s)", job.job_id, job.attempt, crash.reason)
