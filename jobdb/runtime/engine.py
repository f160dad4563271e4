"""The supervising loop shared by ``jobdb run``, ``dispatch --executor local`` and ``worker``.

One process supervises many programs without starting an interpreter per
job. Each turn of the loop is one write transaction that records how the
programs that just exited ended (and their effects: children promoted,
descendants blocked, retries), records the pids of programs started last
turn, and claims and marks running as many jobs as there are free slots.
Only after that transaction commits are the new programs started, so a job
is always ``running`` in the database before its process exists: a
supervisor killed at any moment leaves either a job that never started
(queued, released by the monitor) or a running job whose process the
monitor can find by its environment — never a job that runs twice.

Between turns the supervisor stamps heartbeats for all its programs in one
statement; a program whose job is no longer running (cancelled, reset, or
judged crashed by the monitor) is terminated.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from sqlalchemy import Connection, Select, func, select

from jobdb import queries
from jobdb.errors import LostRace
from jobdb.procs import ENV_DATABASE, HOST, supervisor_token
from jobdb.queries.claims import ClaimedJob
from jobdb.queries.core import jobs
from jobdb.queries.holders import (
    claim_submitted,
    held_on_host,
    queued_job,
    record_pids,
    take_turns_on_host,
)
from jobdb.retry import should_retry
from jobdb.runtime.child import Child, Outcome, Reaper, judge, spawn
from jobdb.runtime.launch import Launch, PhaseCache, prepare, write_context
from jobdb.runtime.slots import Slots
from jobdb.runtime.tally import Options, Report, Tally, Verdict
from jobdb.states import State
from jobdb.store import Store

#: Seconds a stopped program gets between SIGTERM and SIGKILL.
STOP_GRACE_S = 10.0
#: Seconds between re-reading the phases (new phases may be scheduled meanwhile).
PHASE_REFRESH_S = 5.0
#: The crash reason when Slurm warns of the time limit (``#SBATCH --signal=B:USR1@…``).
TIME_LIMIT = "timeout"


class Engine:
    """Claims, starts, supervises and judges jobs until its stop condition holds."""

    def __init__(
        self,
        store: Store,
        slots: Slots,
        options: Options,
        *,
        report: Report | None = None,
        on_verdict: Callable[[Verdict], None] | None = None,
        adopt: int | None = None,
    ) -> None:
        self.store = store
        self.slots = slots
        self.options = options
        self.report = report or (lambda _msg: None)
        self.on_verdict = on_verdict or (lambda _v: None)
        self.token = supervisor_token()
        self.tally = Tally()
        self._adopt = adopt
        self._phases = PhaseCache()
        self._phase_gpus: dict[int, int] = {}
        self._phases_read_at = -PHASE_REFRESH_S
        self._base_env = {**os.environ, ENV_DATABASE: store.identity}
        self._unrecorded: list[tuple[int, int, int]] = []
        self._failed_to_start: list[tuple[Launch, Outcome]] = []
        self._to_spawn: list[tuple[Launch, tuple[str, ...]]] = []
        self._kill_at: dict[int, float] = {}
        self._stopping = False
        self._claimable = True
        self._started_at = time.monotonic()
        self._next_beat = time.monotonic() + options.heartbeat_interval
        self._reaper: Reaper | None = None

    # -- the loop -----------------------------------------------------------------

    def run(self) -> Tally:
        """Supervise until done; returns what happened."""
        previous = self._install_signals()
        try:
            with Reaper() as reaper:
                self._reaper = reaper
                while True:
                    exited = reaper.wait(self._timeout())
                    self._turn(exited)
                    self._spawn_pending()
                    self._beat_if_due()
                    self._escalate_stops()
                    if self._finished():
                        break
        finally:
            self._restore_signals(previous)
        return self.tally

    def _turn(self, exited: Sequence[Child]) -> None:
        """One write transaction: verdicts, pids, new claims marked running."""
        with self.store.write() as conn:
            if self._unrecorded:
                record_pids(conn, self._unrecorded)
                self._unrecorded = []
            for launch, outcome in self._failed_to_start:
                self._record(conn, launch, outcome, 0.0)
            self._failed_to_start = []
            for child in exited:
                self.slots.give_back(child.launch.job_id)
                self._kill_at.pop(child.launch.job_id, None)
                elapsed = time.monotonic() - child.started
                self._record(conn, child.launch, judge(child), elapsed)
            if self._may_claim():
                self._claim_and_start(conn)

    def _timeout(self) -> float:
        """How long to wait for an exit: not at all while there is more to claim or
        record; else until the next heartbeat, or the idle poll when ready jobs may
        appear (claiming) or nothing runs here."""
        if self._failed_to_start or (self._may_claim() and self._claimable and self._has_room()):
            return 0.0
        until_beat = max(0.0, self._next_beat - time.monotonic())
        idle = self._reaper is not None and not self._reaper.children
        polling = idle or self._may_claim()
        return min(until_beat, self.options.idle_poll) if polling else until_beat

    def _finished(self) -> bool:
        assert self._reaper is not None
        if self._reaper.children or self._to_spawn or self._failed_to_start:
            return False
        if self._stopping or self._budget_spent():
            return True
        if self._claimable:
            return False
        if self.options.until == "idle":
            return True
        with self.store.read() as conn:
            return not self._work_left(conn)

    # -- claiming and starting ----------------------------------------------------

    def _may_claim(self) -> bool:
        return not self._stopping and not self._budget_spent()

    def _has_room(self) -> bool:
        return self.slots.free_cpu > 0 or self.slots.free_gpus > 0

    def _budget_spent(self) -> bool:
        o = self.options
        if o.max_jobs is not None and self.tally.started >= o.max_jobs:
            return True
        return o.max_time is not None and time.monotonic() - self._started_at >= o.max_time

    def _claim_and_start(self, conn: Connection) -> None:
        claimed = self._claim(conn)
        self._claimable = bool(claimed)
        launches = prepare(conn, claimed, self._phases, self.options.runs_dir)
        for launch in launches:
            devices = self.slots.take(launch.job_id, launch.phase.gpus)
            write_context(launch, devices)
            queries.start(
                conn,
                launch.job_id,
                actor=self.options.actor,
                attempt=launch.attempt,
                host=HOST,
                gpus=",".join(devices) or None,
                work_dir=str(launch.work_dir),
                stdout_path=str(launch.stdout_path),
                stderr_path=str(launch.stderr_path),
                params=launch.params,
                worker=self.token,
                external_id=self.options.external_id,
            )
            self.tally.started += 1
            if launch.error is not None:
                self.slots.give_back(launch.job_id)
                self._record(
                    conn, launch, Outcome(State.FAILED, "cannot start", error=launch.error), 0
                )
            else:
                self._to_spawn.append((launch, devices))

    def claim_for_others(self, conn: Connection) -> list[tuple[ClaimedJob, tuple[str, ...]]]:
        """Claim what fits in the free slots and assign devices, without starting anything."""
        claimed = self._claim(conn)
        if claimed:
            self._phases.get(conn, {job.phase_id for job in claimed})
        return [
            (job, self.slots.take(job.id, self._phase_gpus.get(job.phase_id, 0))) for job in claimed
        ]

    def _claim(self, conn: Connection) -> list[ClaimedJob]:
        if self._adopt is not None:
            return self._adopt_job(conn)
        self._refresh_phases(conn)
        if self.options.share_host_gpus and self.slots.gpus:
            # Other supervisors here (a detached dispatch's runs, another dispatch or
            # worker) hold devices this one never saw start: count them first, and
            # take turns with them from that count to the claim.
            take_turns_on_host(conn, HOST)
            self.slots.in_use_elsewhere(held_on_host(conn, HOST))
        room = self._room()
        claimed: list[ClaimedJob] = []
        cpu_phases = self._fitting_phases(0)
        if self.slots.free_cpu > 0 and cpu_phases != []:
            claimed += self._claim_some(conn, min(room, self.slots.free_cpu), cpu_phases)
        free_gpus = self.slots.free_gpus  # devices are taken when the jobs start, below
        for need in sorted({g for g in self._phase_gpus.values() if g > 0}):
            while free_gpus >= need and len(claimed) < room:
                got = self._claim_some(conn, 1, self._fitting_phases(need))
                if not got:
                    break
                claimed += got
                free_gpus -= need
        return claimed

    def _room(self) -> int:
        room = self.slots.free_cpu + self.slots.free_gpus
        if self.options.max_jobs is not None:
            room = min(room, self.options.max_jobs - self.tally.started)
        return max(room, 0)

    def _claim_some(
        self, conn: Connection, limit: int, phase_ids: list[int] | None
    ) -> list[ClaimedJob]:
        if limit <= 0:
            return []
        wanted = self.options.phase_ids
        if phase_ids is not None:
            phase_ids = [p for p in phase_ids if wanted is None or p in wanted]
            if not phase_ids:
                return []
        else:
            phase_ids = list(wanted) if wanted is not None else None
        if self.options.submitted_as is not None:
            return claim_submitted(
                conn, limit, external_id=self.options.submitted_as, worker=self.token,
                phase_ids=phase_ids,
            )  # fmt: skip
        return queries.claim(
            conn,
            limit,
            actor=self.options.actor,
            executor=self.options.executor,
            worker=self.token,
            experiment_ids=self.options.experiment_ids,
            phase_ids=phase_ids,
            job_ids=self.options.job_ids,
        )

    def _fitting_phases(self, gpus: int) -> list[int] | None:
        """Phases whose jobs ask exactly ``gpus`` devices; None when that is every phase."""
        if gpus == 0 and all(g == 0 for g in self._phase_gpus.values()):
            return None
        return sorted(p for p, g in self._phase_gpus.items() if g == gpus)

    def _refresh_phases(self, conn: Connection) -> None:
        if time.monotonic() - self._phases_read_at < PHASE_REFRESH_S:
            return
        self._phase_gpus = {pid: info.gpus for pid, info in self._phases.all(conn).items()}
        self._phases_read_at = time.monotonic()

    def _adopt_job(self, conn: Connection) -> list[ClaimedJob]:
        """``jobdb run JOB``: start this one job, queued for us or ready (claimed here)."""
        job_id, self._adopt = self._adopt, None
        assert job_id is not None
        job = queued_job(conn, job_id)
        expected = self.options.expect_attempt
        if job is not None and expected is not None and job.attempt != expected:
            raise LostRace(
                f"job {job_id} is queued for attempt {job.attempt}, not {expected}: "
                "another dispatcher owns it",
                lost={job_id: State.QUEUED.value},
            )
        if job is not None:
            self._stopping = True  # one job only
            return [job]
        if expected is not None:  # launched for that attempt, which is no longer queued
            raise queries.lost_race(conn, {job_id}, State.RUNNING, ["queued"], expected)
        claimed = queries.claim(
            conn, 1, actor=self.options.actor, executor=self.options.executor,
            worker=self.token, job_ids=[job_id],
        )  # fmt: skip
        if not claimed:
            raise queries.lost_race(conn, {job_id}, State.RUNNING, ["ready", "queued"], None)
        self._stopping = True
        return claimed

    def _spawn_pending(self) -> None:
        assert self._reaper is not None
        for launch, devices in self._to_spawn:
            started = spawn(launch, devices, self._base_env)
            if isinstance(started, Outcome):
                self.slots.give_back(launch.job_id)
                self._failed_to_start.append((launch, started))
                continue
            self._reaper.add(started)
            self._unrecorded.append((launch.job_id, launch.attempt, started.pid))
        self._to_spawn = []

    # -- verdicts -----------------------------------------------------------------

    def _record(self, conn: Connection, launch: Launch, outcome: Outcome, seconds: float) -> None:
        retry = should_retry(
            launch.phase.config,
            outcome.verdict,
            launch.attempt,
            launch.max_attempts,
            outcome.reason,
        )
        try:
            done = queries.finish(
                conn,
                launch.job_id,
                launch.attempt,
                outcome.verdict,
                actor=self.options.actor,
                reason=outcome.reason,
                exit_code=outcome.exit_code,
                error=outcome.error,
                result=outcome.result,
                retry=retry,
            )
        except LostRace as exc:
            # Cancelled, reset or judged by the monitor while it ran: theirs is the verdict.
            self.tally.lost.append(str(exc))
            return
        verdict = Verdict(
            launch.job_id, launch.attempt, launch.phase.name, outcome, done.retried,
            len(done.blocked), seconds,
        )  # fmt: skip
        self.tally.verdicts.append(verdict)
        self.on_verdict(verdict)

    # -- heartbeats and stopping ----------------------------------------------------

    def _beat_if_due(self) -> None:
        assert self._reaper is not None
        if time.monotonic() < self._next_beat:
            return
        self._next_beat = time.monotonic() + self.options.heartbeat_interval
        children = self._reaper.children
        if not children:
            return
        with self.store.write() as conn:
            gone = queries.heartbeat(conn, {jid: c.launch.attempt for jid, c in children.items()})
        for job_id in gone:
            self._stop(children[job_id], "no longer running in the database")

    def _stop(self, child: Child, why: str) -> None:
        """SIGTERM the program's group now, SIGKILL it after the grace period."""
        if child.stopped_because is None:
            child.stopped_because = why
        self._kill_at.setdefault(child.launch.job_id, time.monotonic() + STOP_GRACE_S)
        _signal_group(child.pid, signal.SIGTERM)

    def _escalate_stops(self) -> None:
        assert self._reaper is not None
        now = time.monotonic()
        for job_id, deadline in list(self._kill_at.items()):
            child = self._reaper.children.get(job_id)
            if child is not None and now >= deadline:
                _signal_group(child.pid, signal.SIGKILL)

    def stop_all(self, why: str) -> None:
        """Terminate every running program (recorded as crashed with ``why``)."""
        assert self._reaper is not None
        for child in list(self._reaper.children.values()):
            self._stop(child, why)

    def _install_signals(self) -> dict[int, object]:
        previous: dict[int, object] = {}
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            try:
                previous[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread (tests driving an engine in a thread)
                break
        return previous

    def _restore_signals(self, previous: dict[int, object]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        running = self._reaper.children if self._reaper is not None else {}
        again = self._stopping and self.tally.interrupted is not None
        self._stopping = True
        self.tally.interrupted = name
        if signum == signal.SIGUSR1:
            # Slurm's warning before the time limit: the programs get SIGTERM to
            # checkpoint, and the attempt is recorded as a timeout (retried by policy).
            self.stop_all(TIME_LIMIT)
            self.report(f"{name}: time limit near, stopping {len(running)} running job(s)")
        elif signum == signal.SIGTERM or again or self.options.stop_running_on_interrupt:
            known = self.options.interrupt_reason and self.options.interrupt_reason(name)
            self.stop_all(known or f"interrupted by {name}")
            self.report(f"{name}: stopping {len(running)} running job(s)")
        elif running:
            ids = ", ".join(str(j) for j in sorted(running))
            self.report(
                f"{name}: no new jobs; waiting for {len(running)} running job(s): {ids} "
                "(press Ctrl-C again to stop them)"
            )

    def _work_left(self, conn: Connection) -> bool:
        """Whether anything in scope is ready (and could run here), queued or running."""
        query = (
            select(func.count())
            .select_from(jobs)
            .where(jobs.c.state.in_([State.QUEUED.value, State.RUNNING.value]))
        )
        query = _scoped(query, self.options)
        if conn.execute(query).scalar_one():
            return True
        ready = _scoped(
            select(jobs.c.phase_id, func.count())
            .where(jobs.c.state == State.READY.value)
            .group_by(jobs.c.phase_id),
            self.options,
        )
        self._refresh_phases(conn)
        unfit = 0
        for phase_id, count in conn.execute(ready):
            if self.slots.could_ever_fit(self._phase_gpus.get(phase_id, 0)):
                return True
            unfit += count
        self.tally.unfit = unfit
        return False


def _scoped(query: Select[Any], options: Options) -> Select[Any]:
    """Narrow a query over jobs to the supervisor's experiments, phases and jobs."""
    if options.experiment_ids is not None:
        query = query.where(jobs.c.experiment_id.in_(options.experiment_ids))
    if options.phase_ids is not None:
        query = query.where(jobs.c.phase_id.in_(options.phase_ids))
    if options.job_ids is not None:
        query = query.where(jobs.c.id.in_(options.job_ids))
    return query


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
