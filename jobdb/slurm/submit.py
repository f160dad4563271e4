"""Submitting ready jobs to Slurm: claim, ``sbatch --hold``, record, release.

The order is what makes a dispatcher safe to kill at any instant:

1. claim (ready → queued) and commit: no other dispatcher takes the job;
2. ``sbatch --hold``: Slurm has the job but cannot start it;
3. record the Slurm id on the job and commit: from now on the monitor
   follows it;
4. one ``scontrol release`` for everything recorded.

Killed after 2, the job is queued without an id and Slurm holds a job
that never ran: :func:`recover` (run by the next dispatcher or monitor pass)
cancels that held job and gives the queued job back (queued → ready), once
the submitter is known dead. Killed after 3, the poll releases it. So a
job is never submitted twice for one attempt, and never runs twice.

Single mode: one Slurm job per job, running ``jobdb run JOB --attempt N``.
Array mode: the claimed jobs of one phase (same resources) become one array
(several when the tasks would reach ``MaxArraySize``), recorded as the
array's id on each job; each task runs ``jobdb worker --slurm-array`` and
takes queued jobs of its array until none is left. With ``--max-running N``
an array has at most N tasks, each running jobs back to back: Slurm's start
cost is paid per task, not per job.

With ``--slurm-dependencies``, waiting jobs whose parents are recorded
Slurm jobs are claimed too (waiting → queued, :mod:`jobdb.queries.slurmdeps`)
and submitted the same way, one Slurm job each, with
``--dependency=afterok:<parents>``; round after round, so a whole chain is
in Slurm after one pass. An unrecorded one whose submitter died goes back
where its parents put it (waiting, not ready).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Table, select

from jobdb import procs, queries
from jobdb.errors import LostRace
from jobdb.models import Experiment, Phase
from jobdb.queries.claims import ClaimedJob
from jobdb.queries.core import jobs
from jobdb.queries.holders import record_submission
from jobdb.queries.slurmdeps import claim_dependents, give_back
from jobdb.retry import scaled_resources
from jobdb.slurm import render
from jobdb.slurm.commands import Slurm, SlurmError
from jobdb.slurm.options import Overrides, SlurmOptions, from_settings
from jobdb.sqltypes import db_now
from jobdb.store import Store

phases = cast(Table, Phase.__table__)
experiments = cast(Table, Experiment.__table__)

#: Jobs claimed per submission pass at most.
CLAIM_LIMIT = 10_000
#: An unrecorded submission by a process on another host is judged dead after this long.
ORPHAN_AGE_S = 600.0
RELEASED_ORPHAN = "submitter died before recording its Slurm job"


#: One sbatch call: the submission, the jobs it carries, whether it is an array.
Batch = tuple[render.Submission, list[ClaimedJob], bool]
#: Gives claimed jobs back (their submission failed), with the reason.
GiveBack = Callable[[Sequence[ClaimedJob], str], None]


@dataclass(frozen=True)
class PhaseSlurm:
    """A phase's config with its experiment's Slurm options."""

    phase_id: int
    name: str
    config: dict[str, Any]
    options: SlurmOptions


@dataclass
class Submitted:
    """What one submission pass did."""

    jobs: int = 0
    slurm_jobs: list[str] = field(default_factory=list)
    arrays: int = 0
    #: Jobs claimed but given back because their submission failed or they changed meanwhile.
    given_back: int = 0
    #: Of ``jobs``, those submitted behind their parents' Slurm jobs (afterok).
    dependents: int = 0
    #: Why dependents could not be submitted this time (they went back to waiting).
    errors: list[str] = field(default_factory=list)


@dataclass
class Submitter:
    """Submits the ready jobs of a scope to Slurm."""

    store: Store
    slurm: Slurm
    launcher: render.Launcher
    actor: str
    db_url: str
    overrides: Overrides = field(default_factory=Overrides)
    experiment_ids: Sequence[int] | None = None
    phase_ids: Sequence[int] | None = None
    #: Also submit waiting jobs behind their parents' Slurm jobs (``--slurm-dependencies``).
    dependencies: bool = False
    token: str = field(default_factory=procs.supervisor_token)

    @property
    def log_dir(self) -> str:
        return str(Path(self.launcher.runs_dir) / "slurm")

    def phases(self, conn: Connection) -> dict[int, PhaseSlurm]:
        """The phases in scope with their Slurm options (a bad one raises before any claim)."""
        stmt = select(phases.c.id, phases.c.name, phases.c.config, experiments.c.settings).join(
            experiments, experiments.c.id == phases.c.experiment_id
        )
        if self.experiment_ids is not None:
            stmt = stmt.where(phases.c.experiment_id.in_(self.experiment_ids))
        if self.phase_ids is not None:
            stmt = stmt.where(phases.c.id.in_(self.phase_ids))
        out = {}
        for pid, name, config, settings in conn.execute(stmt):
            options = from_settings(settings, self.overrides)
            out[int(pid)] = PhaseSlurm(int(pid), name, dict(config or {}), options)
        return out

    def submit_ready(self, limit: int = CLAIM_LIMIT) -> Submitted:
        """Claim the ready jobs in scope and submit them; one ``scontrol release`` per round.

        With :attr:`dependencies`, then the waiting jobs that can wait in
        Slurm behind the jobs just recorded, round after round down the graph.
        """
        known = self._known_phases()
        with self.store.write() as conn:
            claimed = queries.claim(
                conn, limit, actor=self.actor, executor="slurm", worker=self.token,
                experiment_ids=self.experiment_ids, phase_ids=self.phase_ids,
            )  # fmt: skip
        done = Submitted()
        if claimed:
            self._send(self._batches(claimed, known), done, self._give_back)
        if self.dependencies:
            self._submit_dependents(known, limit, done)
        return done

    def _known_phases(self) -> dict[int, PhaseSlurm]:
        """The phases in scope, each checked to render (a bad one raises before any claim)."""
        with self.store.read() as conn:
            known = self.phases(conn)
        for info in known.values():
            render.request(info.options, scaled_resources(info.config, 1))
        return known

    def _send(self, batches: Sequence[Batch], done: Submitted, give_back: GiveBack) -> None:
        """sbatch each batch held, record the ids, release them; unsent jobs are given back."""
        os.makedirs(self.log_dir, exist_ok=True)
        env = {**os.environ, "JOBDB_URL": self.db_url}
        submitted: list[tuple[str, list[ClaimedJob], bool]] = []
        try:
            for submission, members, is_array in batches:
                slurm_id = self.slurm.sbatch(submission, env)
                submitted.append((slurm_id, members, is_array))
        finally:
            unsent = [job for _, members, _ in batches[len(submitted) :] for job in members]
            recorded, lost = self._record(submitted)
            if unsent:
                give_back(unsent, "sbatch failed")
            self.slurm.release(recorded)
            if lost:
                self.slurm.scancel(lost)
        done.jobs += sum(len(m) for s, m, _ in submitted if s in recorded)
        done.slurm_jobs += recorded
        done.arrays += sum(1 for s, _, is_array in submitted if is_array and s in recorded)
        done.given_back += len(unsent)

    def _submit_dependents(
        self, known: Mapping[int, PhaseSlurm], limit: int, done: Submitted
    ) -> None:
        """Waiting jobs behind their parents' Slurm jobs (afterok), until none is left.

        Each round's jobs are recorded before the next round is claimed, so
        they can be waited on in turn. A failed sbatch is not fatal here (a
        parent's Slurm job may be gone already): its jobs go back to waiting
        and the next pass tries again.
        """
        while True:
            with self.store.write() as conn:
                claimed = claim_dependents(
                    conn, limit, actor=self.actor, worker=self.token,
                    experiment_ids=self.experiment_ids, phase_ids=self.phase_ids,
                )  # fmt: skip
            if not claimed:
                return
            batches = [(self._single(known, d.job, d.after), [d.job], False) for d in claimed]
            before = done.jobs
            try:
                self._send(batches, done, self._give_back_dependents)
            except SlurmError as exc:
                done.errors.append(str(exc))
                return
            finally:
                done.dependents += done.jobs - before

    def _batches(
        self, claimed: Sequence[ClaimedJob], known: Mapping[int, PhaseSlurm]
    ) -> list[Batch]:
        """The sbatch calls for the claimed jobs: one per job, or arrays per phase and resources."""
        out: list[Batch] = []
        groups: dict[tuple[int, str], tuple[render.Request, list[ClaimedJob]]] = {}
        for job in claimed:
            info = known[job.phase_id]
            if info.options.mode == "single":
                out.append((self._single(known, job), [job], False))
            else:
                req = render.request(info.options, scaled_resources(info.config, job.attempt))
                groups.setdefault((job.phase_id, repr(req)), (req, []))[1].append(job)
        max_size = self.slurm.max_array_size() if groups else 0
        for (phase_id, _), (req, members) in groups.items():
            throttle = known[phase_id].options.max_running
            sizes, parts = render.split_batch(len(members), throttle, max_size)
            start = 0
            for tasks, count in zip(sizes, parts, strict=True):
                chunk = members[start : start + count]
                start += count
                sub = render.render_array(
                    req, self.launcher, identity=self.store.identity, submitter=self.token,
                    phase_id=phase_id, tasks=tasks, max_running=throttle,
                    log_dir=self.log_dir,
                )  # fmt: skip
                out.append((sub, chunk, True))
        return out

    def _single(
        self, known: Mapping[int, PhaseSlurm], job: ClaimedJob, after: tuple[str, ...] = ()
    ) -> render.Submission:
        """One Slurm job for one job's attempt, started after ``after`` ended well."""
        info = known[job.phase_id]
        req = render.request(info.options, scaled_resources(info.config, job.attempt))
        return render.render_single(
            replace(req, after=after), self.launcher, identity=self.store.identity,
            submitter=self.token, job_id=job.id, attempt=job.attempt, log_dir=self.log_dir,
        )  # fmt: skip

    def _record(
        self, submitted: Sequence[tuple[str, list[ClaimedJob], bool]]
    ) -> tuple[list[str], list[str]]:
        """Record the Slurm ids in one transaction: (ids to release, ids to cancel).

        A job cancelled or reset while it was being submitted is not queued
        any more: its (held, never started) Slurm job is cancelled instead.
        """
        recorded: list[str] = []
        lost: list[str] = []
        if not submitted:
            return recorded, lost
        with self.store.write() as conn:
            for slurm_id, members, is_array in submitted:
                ok = 0
                for job in members:
                    try:
                        record_submission(
                            conn, job.id, job.attempt, external_id=slurm_id,
                            array_id=slurm_id if is_array else None,
                        )  # fmt: skip
                        ok += 1
                    except LostRace:
                        continue
                (recorded if ok else lost).append(slurm_id)
        return recorded, lost

    def _give_back(self, claimed: Sequence[ClaimedJob], reason: str) -> None:
        with self.store.write() as conn:
            queries.release(conn, [job.id for job in claimed], actor=self.actor, reason=reason)

    def _give_back_dependents(self, claimed: Sequence[ClaimedJob], reason: str) -> None:
        """Dependents that were not submitted go back where their parents put them."""
        with self.store.write() as conn:
            give_back(conn, {j.id: j.attempt for j in claimed}, actor=self.actor, reason=reason)


def launcher(runs_dir: Path, heartbeat_interval: float) -> render.Launcher:
    """How batch scripts start jobdb: this interpreter (a shared file system is assumed)."""
    return render.Launcher(sys.executable, str(runs_dir), heartbeat_interval)


# --------------------------------------------------------------------------
# orphans: submitted but never recorded


@dataclass(frozen=True)
class Orphan:
    """A queued Slurm job without a Slurm id: its submitter may have died before recording it."""

    job_id: int
    attempt: int
    worker: str | None
    age_s: float


def unrecorded(conn: Connection) -> list[Orphan]:
    """Queued Slurm jobs without a Slurm id, with how long they have been queued."""
    stmt = select(jobs.c.id, jobs.c.attempt, jobs.c.worker, jobs.c.queued_at, db_now()).where(
        jobs.c.state == "queued", jobs.c.executor == "slurm", jobs.c.external_id.is_(None)
    )
    out = []
    for job_id, attempt, worker, queued_at, now in conn.execute(stmt):
        seconds = _seconds_between(queued_at, now)
        out.append(Orphan(int(job_id), int(attempt), worker, seconds))
    return out


def _seconds_between(then: dt.datetime | None, now: dt.datetime | None) -> float:
    if then is None or now is None:
        return 0.0
    return max(0.0, (now - then).total_seconds())


def submitter_dead(token: str | None, age_s: float) -> bool:
    """Whether a submitter is gone: known on this host, assumed after a while elsewhere."""
    alive = procs.token_alive(token)
    return alive is False or (alive is None and age_s > ORPHAN_AGE_S)


def recover(store: Store, slurm: Slurm, *, actor: str, force_scan: bool = False) -> int:
    """Cancel held Slurm jobs nobody recorded and give their queued jobs back; how many jobs.

    Slurm is asked (one ``squeue``) only when the database has such jobs, or
    with ``force_scan`` (a dispatcher starting up).
    """
    with store.read() as conn:
        orphans = [o for o in unrecorded(conn) if submitter_dead(o.worker, o.age_s)]
        recorded = _recorded_ids(conn)
    if not orphans and not force_scan:
        return 0
    prefix = render.NAME_PREFIX + store.identity + "-"
    stale = []
    for job in slurm.squeue_mine():
        parsed = render.parse_comment(job.comment)
        if not job.name.startswith(prefix) or parsed is None or not job.held:
            continue
        if job.job_id in recorded or (job.array_id or "") in recorded:
            continue
        age = _seconds_between(job.submitted, dt.datetime.now().astimezone())
        if submitter_dead(parsed[1], age):
            stale.append(job.array_id or job.job_id)
    if stale:
        slurm.scancel(sorted(set(stale)))
    if not orphans:
        return 0
    with store.write() as conn:
        # A dependent goes back to waiting (or blocked), not ready: its parents are not done.
        moved = give_back(
            conn, {o.job_id: o.attempt for o in orphans}, actor=actor, reason=RELEASED_ORPHAN
        )
    return len(moved)


def _recorded_ids(conn: Connection) -> set[str]:
    stmt = select(jobs.c.external_id).where(
        jobs.c.executor == "slurm",
        jobs.c.state.in_(["queued", "running"]),
        jobs.c.external_id.is_not(None),
    )
    return {str(x) for x in conn.execute(stmt).scalars()}
