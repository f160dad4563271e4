"""The monitor: verdicts for jobs whose supervisor can no longer give one (DESIGN §4).

Every queued or running job has a supervisor (``jobdb run``, a local
dispatcher, a worker) that records how its program ended. The monitor is for
when that supervisor is gone. It reads three signals:

- **heartbeat** (any host, any executor): a supervisor stamps
  ``heartbeat_at`` with the database clock every few seconds; a running job
  whose heartbeat is older than the timeout is crashed (reason
  ``heartbeat``). The database judges the age, so skewed host clocks agree.
  A Slurm job of such an attempt that Slurm still shows alive (a hung node
  looks RUNNING) is cancelled, so that it cannot run next to its retry.
- **Slurm's view** (jobs of the Slurm executor): one batched ``squeue``
  (``sacct`` for purged ids) per pass; a job Slurm ended without jobdb
  recording a verdict is crashed with Slurm's reason (timeout, cancelled
  outside jobdb, node failure, oom, lost; :mod:`jobdb.slurm.poll`).
- **this host's processes**: ``jobs.worker`` holds the supervisor's token
  (host, pid, start time; :mod:`jobdb.procs`), so a dead supervisor is known
  at once, without waiting for the heartbeat to age. A running job whose
  supervisor died may have left its program orphaned: the program is
  terminated (reason ``supervisor lost``), or was already gone (``process
  vanished``). A queued job whose supervisor died never started its program
  (supervisors mark a job running before they start it) and goes back to
  ready, unless Slurm is to start it. Jobs supervised on other hosts are
  left to the heartbeat: this host cannot see their processes.

A job is therefore flagged at most a heartbeat timeout plus one monitor
interval after its last heartbeat, and within one interval when its
supervisor ran on the monitor's host.

Crashes go through the phase's retry policy (:func:`jobdb.retry.should_retry`):
back to ready while attempts are left, else crashed for good with every
descendant blocked, in one transaction. Each write is guarded by the attempt
and the situation judged (:mod:`jobdb.queries.verdicts`): when the supervisor
records its own verdict first, the monitor writes nothing and reports a
:class:`Skipped` lost race.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from jobdb import procs, queries, selectors, views
from jobdb.models import Event, Experiment, Job, Phase
from jobdb.queries import verdicts
from jobdb.queries.core import jobs
from jobdb.queries.verdicts import Judged
from jobdb.sqltypes import db_now
from jobdb.states import FINISHED, State
from jobdb.store import Store

if TYPE_CHECKING:
    from jobdb.slurm.poll import Watcher as SlurmWatcher

log = logging.getLogger(__name__)

HEARTBEAT = "heartbeat"
SUPERVISOR_LOST = "supervisor lost"
VANISHED = "process vanished"

#: Seconds without a heartbeat before a running job is judged crashed.
DEFAULT_HEARTBEAT_TIMEOUT = 60.0
#: Seconds between two monitor passes.
DEFAULT_INTERVAL = 10.0


@dataclass(frozen=True)
class Verdict:
    """A verdict the monitor wrote.

    ``state`` is what it judged: crashed, or ready for a queued job given
    back (waiting or blocked for one that waited in Slurm behind a parent
    that did not end well). ``retried``: the crash earned another attempt
    (the job is ready again); ``blocked``: the descendants blocked because it
    crashed for good.
    """

    job_id: int
    attempt: int
    state: State
    reason: str
    retried: bool = False
    blocked: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}


@dataclass(frozen=True)
class Skipped:
    """A verdict not written: the job changed after it was judged (a lost race, not an error)."""

    job_id: int
    attempt: int
    reason: str
    #: What the job is now, e.g. ``done (attempt 1)``.
    now: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Pass:
    """What one monitor pass did."""

    verdicts: list[Verdict] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class _Active:
    """A queued or running job supervised on this host."""

    job_id: int
    attempt: int
    state: State
    worker: str
    pid: int | None
    executor: str | None


def check_once(store: Store, *, heartbeat_timeout: float, actor: str) -> list[Verdict]:
    """One full pass: this host's dead supervisors, then stale heartbeats everywhere."""
    return run_pass(store, heartbeat_timeout=heartbeat_timeout, actor=actor).verdicts


def recover_host(store: Store, *, actor: str) -> list[Verdict]:
    """Only this host's dead supervisors: what a restarted dispatcher cleans up at startup."""
    found = Pass()
    _recover_host(store, actor, found)
    return found.verdicts


def run_pass(
    store: Store, *, heartbeat_timeout: float, actor: str, slurm: SlurmWatcher | None = None
) -> Pass:
    """:func:`check_once`, also returning the verdicts skipped because a supervisor was faster.

    Slurm's view goes first (when the database has Slurm jobs), then the
    process checks: they give the more precise reason and stop orphaned
    programs before the heartbeat check could crash their jobs. ``slurm`` is
    the watcher to use (a dispatcher's own); by default one per process,
    which keeps its back-off between passes.
    """
    found = Pass()
    _poll_slurm(store, actor, found, slurm)
    _recover_host(store, actor, found)
    _judge_stale(store, heartbeat_timeout, actor, found, slurm)
    return found


_slurm_watcher: SlurmWatcher | None = None


def _poll_slurm(store: Store, actor: str, found: Pass, watcher: SlurmWatcher | None) -> None:
    """Crash the jobs Slurm ended without a verdict (one batched call, jobdb.slurm.poll)."""
    global _slurm_watcher
    with store.read() as conn:
        active = conn.execute(
            select(func.count())
            .select_from(jobs)
            .where(
                jobs.c.executor == "slurm",
                jobs.c.state.in_([State.QUEUED.value, State.RUNNING.value]),
            )
        ).scalar_one()
    if not active:
        return
    if watcher is None:
        from jobdb.slurm.poll import Watcher

        watcher = _slurm_watcher = _slurm_watcher or Watcher()
    outcome = watcher.poll(store, actor=actor)
    for v in outcome.verdicts:
        found.verdicts.append(
            Verdict(v.job_id, v.attempt, State.CRASHED, v.reason, v.retried, v.blocked)
        )
    for job_id, attempt, state, reason in outcome.given_back:
        found.verdicts.append(Verdict(job_id, attempt, state, reason))
    for job_id, attempt, now in outcome.skipped:
        found.skipped.append(Skipped(job_id, attempt, "slurm", now))


def _recover_host(store: Store, actor: str, found: Pass) -> None:
    for job in _local_active(store):
        if procs.token_alive(job.worker) is not False or _started_elsewhere(job):
            continue
        if job.state == State.QUEUED:
            _release(store, job, actor, found)
        else:
            _crash_orphan(store, job, actor, found)


def _started_elsewhere(job: _Active) -> bool:
    """Whether a queued job's program is started by someone else than its claimer.

    A queued Slurm job starts when Slurm runs it, not under the process that
    submitted it, so that process exiting says nothing (Slurm is the judge).
    """
    return job.state == State.QUEUED and job.executor == "slurm"


def _local_active(store: Store) -> list[_Active]:
    """Queued and running jobs whose supervisor token names this host."""
    stmt = (
        select(jobs.c.id, jobs.c.attempt, jobs.c.state, jobs.c.worker, jobs.c.pid, jobs.c.executor)
        .where(
            jobs.c.state.in_([State.QUEUED.value, State.RUNNING.value]),
            jobs.c.worker.startswith(f"{procs.HOST}:", autoescape=True),
        )
        .order_by(jobs.c.id)
    )
    with store.read() as conn:
        rows = conn.execute(stmt).all()
    return [_Active(int(i), int(a), State(s), str(w), p, e) for i, a, s, w, p, e in rows]


def _release(store: Store, job: _Active, actor: str, found: Pass) -> None:
    judged = Judged(job.job_id, job.attempt, State.QUEUED, worker=job.worker)
    with store.write() as conn:
        released = verdicts.release_unstarted(conn, judged, actor=actor, reason=SUPERVISOR_LOST)
        now = None if released else verdicts.current_state(conn, job.job_id)
    if released:
        found.verdicts.append(Verdict(job.job_id, job.attempt, State.READY, SUPERVISOR_LOST))
    else:
        _skip(found, judged, SUPERVISOR_LOST, now)


def _crash_orphan(store: Store, job: _Active, actor: str, found: Pass) -> None:
    """Stop the program a dead supervisor left behind (if any), then crash the attempt.

    Stopping first is safe: with its supervisor dead, nobody else will stop
    the program, and it must not run next to its retry.
    """
    stopped = procs.terminate_job(job.job_id, job.attempt, job.pid, database=store.identity)
    if stopped:
        reason = SUPERVISOR_LOST
        error = f"supervisor {job.worker} died; the monitor terminated the orphaned program"
    else:
        reason = VANISHED
        error = (
            f"supervisor {job.worker} and its program ended without a verdict "
            "(exit status unknown: the program was not the monitor's child)"
        )
    judged = Judged(job.job_id, job.attempt, State.RUNNING, worker=job.worker)
    _write_crash(store, judged, actor, reason, error, found)


def _judge_stale(
    store: Store, timeout: float, actor: str, found: Pass, watcher: SlurmWatcher | None = None
) -> None:
    """Crash running jobs whose heartbeat is older than ``timeout``; stop what is left of them.

    The verdict is written first and the program stopped only when it was:
    a heartbeat that arrived meanwhile means the job is alive. A program on
    this host is terminated; a Slurm job that Slurm still runs (a hung node
    shows RUNNING) is cancelled, so it cannot run next to its retry.
    """
    with store.read() as conn:
        stale = queries.stale_running(conn, timeout)
        here = _programs_here(conn)
        at_slurm = _slurm_ids(conn, [job_id for job_id, _ in stale])
    ghosts = []
    for job_id, attempt in sorted(stale):
        judged = Judged(job_id, attempt, State.RUNNING, stale_after=timeout)
        error = f"no heartbeat for more than {timeout:g} s"
        if not _write_crash(store, judged, actor, HEARTBEAT, error, found):
            continue
        if job_id in here:
            procs.terminate_job(job_id, attempt, here[job_id], database=store.identity)
        if job_id in at_slurm:
            ghosts.append(at_slurm[job_id])
    if ghosts:
        from jobdb.slurm.stop import cancel_ghosts

        cancel_ghosts(ghosts, store.identity, watcher.slurm if watcher is not None else None)


def _slurm_ids(conn: Connection, job_ids: list[int]) -> dict[int, str]:
    """job id → Slurm id, for the jobs among ``job_ids`` that run as Slurm jobs of their own."""
    if not job_ids:
        return {}
    from jobdb.slurm.stop import single_jobs

    return single_jobs(conn, job_ids)


def _programs_here(conn: Connection) -> dict[int, int | None]:
    """job id → program pid of the running jobs on this host (as many as the host runs)."""
    stmt = select(jobs.c.id, jobs.c.pid).where(
        jobs.c.state == State.RUNNING.value, jobs.c.host == procs.HOST
    )
    return {int(job_id): pid for job_id, pid in conn.execute(stmt)}


def _write_crash(
    store: Store, judged: Judged, actor: str, reason: str, error: str, found: Pass
) -> bool:
    """Write one crash in its own short transaction; False (and a skip) on a lost race."""
    with store.write() as conn:
        outcome = verdicts.crash(conn, judged, actor=actor, reason=reason, error=error)
        now = None if outcome else verdicts.current_state(conn, judged.job_id)
    if outcome is None:
        _skip(found, judged, reason, now)
        return False
    verdict = Verdict(
        judged.job_id, judged.attempt, State.CRASHED, reason, outcome.retried, outcome.blocked
    )
    found.verdicts.append(verdict)
    log.info("job %s attempt %s: crashed (%s)", judged.job_id, judged.attempt, reason)
    return True


def _skip(found: Pass, judged: Judged, reason: str, now: tuple[str, int] | None) -> None:
    shown = "missing" if now is None else f"{now[0]} (attempt {now[1]})"
    found.skipped.append(Skipped(judged.job_id, judged.attempt, reason, shown))
    log.info(
        "job %s attempt %s: not marked %s, it changed first and is now %s",
        judged.job_id,
        judged.attempt,
        reason,
        shown,
    )


# --------------------------------------------------------------------------
# what the dashboard shows (plain data; jobdb.cli.monitor renders it)


@dataclass(frozen=True)
class RunningJob:
    """A running job as the dashboard lists it; ages are by the database clock."""

    id: int
    experiment: str
    phase: str
    attempt: int
    max_attempts: int
    host: str | None
    gpus: str | None
    params: dict[str, Any]
    elapsed_s: float | None
    heartbeat_age_s: float | None


@dataclass(frozen=True)
class RecentVerdict:
    """A job that recently ended (done, failed, crashed, cancelled), whoever judged it."""

    job_id: int
    state: str
    reason: str | None
    actor: str | None
    at: dt.datetime


@dataclass(frozen=True)
class Snapshot:
    """Everything one dashboard frame shows."""

    at: dt.datetime
    phases: list[views.PhaseStatus]
    running: list[RunningJob]
    running_total: int
    recent: list[RecentVerdict]


def snapshot(store: Store, *, running_limit: int = 15, recent_limit: int = 10) -> Snapshot:
    """Progress per phase, the longest-running jobs and the latest verdicts, in one read."""
    with store.read() as conn:
        now = conn.execute(select(db_now())).scalar_one()
        running, total = _running(conn, now, running_limit)
        return Snapshot(now, views.status(conn), running, total, _recent(conn, recent_limit))


def _running(conn: Connection, now: dt.datetime, limit: int) -> tuple[list[RunningJob], int]:
    stmt = (
        selectors.jobs_joined(
            Job.id,
            Experiment.name.label("experiment"),
            Phase.name.label("phase"),
            Job.attempt,
            Job.max_attempts,
            Job.host,
            Job.gpus,
            Job.params,
            Job.started_at,
            Job.heartbeat_at,
        )
        .where(Job.state == State.RUNNING.value)
        .order_by(Job.started_at, Job.id)
    )
    shown = [
        RunningJob(
            id=row.id,
            experiment=row.experiment,
            phase=row.phase,
            attempt=row.attempt,
            max_attempts=row.max_attempts,
            host=row.host,
            gpus=row.gpus,
            params=row.params,
            elapsed_s=_age(now, row.started_at),
            heartbeat_age_s=_age(now, row.heartbeat_at),
        )
        for row in conn.execute(stmt.limit(limit))
    ]
    count = select(func.count()).select_from(Job).where(Job.state == State.RUNNING.value)
    return shown, int(conn.execute(count).scalar_one())


def _recent(conn: Connection, limit: int) -> list[RecentVerdict]:
    stmt = (
        select(Event.job_id, Event.to_state, Event.reason, Event.actor, Event.at)
        .where(Event.to_state.in_([s.value for s in FINISHED]))
        .order_by(Event.id.desc())
        .limit(limit)
    )
    return [RecentVerdict(*row) for row in conn.execute(stmt)]


def _age(now: dt.datetime, then: dt.datetime | None) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())
