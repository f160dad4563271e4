"""``jobdb dispatch --executor slurm``: submit, and with ``--watch`` keep going to the end.

Without ``--watch``: recover what a dead dispatcher left, submit what is
ready (with ``--slurm-dependencies``, and every waiting job behind its
parents' Slurm jobs, so a whole chain is submitted at once), return.
With ``--watch``: also act as the monitor (Slurm's view and heartbeats,
:func:`jobdb.monitor.run_pass`), submit dependents as they become ready,
and stop when nothing in scope is ready, queued or running.
Slurm runs the jobs, not this process: killing it loses nothing, and Ctrl-C
leaves submitted jobs running.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, func, select

from jobdb import monitor
from jobdb.queries.core import jobs
from jobdb.slurm.poll import Watcher
from jobdb.slurm.submit import Submitted, Submitter, recover
from jobdb.states import State

#: Seconds between two passes of ``--watch``.
DEFAULT_INTERVAL_S = 2.0


@dataclass
class Progress:
    """What a dispatch did, for its summary."""

    submitted: int = 0
    #: Of ``submitted``, the jobs that wait in Slurm for their parents (afterok).
    dependents: int = 0
    slurm_jobs: int = 0
    arrays: int = 0
    recovered: int = 0
    verdicts: list[monitor.Verdict] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    #: Why some dependents could not be submitted (they wait for the next pass).
    errors: list[str] = field(default_factory=list)

    def add(self, sent: Submitted) -> None:
        self.submitted += sent.jobs
        self.dependents += sent.dependents
        self.slurm_jobs += len(sent.slurm_jobs)
        self.arrays += sent.arrays
        self.errors.extend(sent.errors)


def dispatch_once(submitter: Submitter) -> Progress:
    """Recover orphans, submit what is ready, return."""
    progress = Progress()
    progress.recovered = recover(
        submitter.store, submitter.slurm, actor=submitter.actor, force_scan=True
    )
    progress.add(submitter.submit_ready())
    progress.states = scope_states(submitter)
    return progress


def dispatch_watch(
    submitter: Submitter,
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    heartbeat_timeout: float = monitor.DEFAULT_HEARTBEAT_TIMEOUT,
    report: Callable[[str], None] | None = None,
) -> Progress:
    """Submit and watch until nothing in scope is ready, queued or running."""
    say = report or (lambda _m: None)
    progress = Progress()
    watcher = Watcher(slurm=submitter.slurm)
    progress.recovered = recover(
        submitter.store, submitter.slurm, actor=submitter.actor, force_scan=True
    )
    try:
        while True:
            found = monitor.run_pass(
                submitter.store,
                heartbeat_timeout=heartbeat_timeout,
                actor=submitter.actor,
                slurm=watcher,
            )
            for mv in found.verdicts:
                progress.verdicts.append(mv)
                then = " → retry" if mv.retried else ""
                say(f"{mv.state} job {mv.job_id} (attempt {mv.attempt}): {mv.reason}{then}")
            sent = submitter.submit_ready()
            _report(sent, say)
            progress.add(sent)
            states = scope_states(submitter)
            if not any(states.get(s.value) for s in (State.READY, State.QUEUED, State.RUNNING)):
                progress.states = states
                return progress
            time.sleep(max(interval_s, watcher.backoff_s))
    except KeyboardInterrupt:
        progress.interrupted = True
        progress.states = scope_states(submitter)
        return progress


def _report(sent: Submitted, say: Callable[[str], None]) -> None:
    if sent.jobs:
        what = f"{sent.arrays} array(s)" if sent.arrays else "single jobs"
        behind = f", {sent.dependents} behind their parents" if sent.dependents else ""
        say(f"submitted {sent.jobs} job(s) as {len(sent.slurm_jobs)} Slurm job(s), {what}{behind}")
    for error in sent.errors:
        say(f"dependents not submitted this pass (they wait for the next): {error}")


def scope_states(submitter: Submitter) -> dict[str, int]:
    """How many jobs of the scope are in each state."""
    stmt = select(jobs.c.state, func.count()).group_by(jobs.c.state)
    stmt = _scoped(stmt, submitter.experiment_ids, submitter.phase_ids)
    with submitter.store.read() as conn:
        return {str(s): int(n) for s, n in conn.execute(stmt)}


def _scoped(
    stmt: Select[Any], experiment_ids: Sequence[int] | None, phase_ids: Sequence[int] | None
) -> Select[Any]:
    if experiment_ids is not None:
        stmt = stmt.where(jobs.c.experiment_id.in_(experiment_ids))
    if phase_ids is not None:
        stmt = stmt.where(jobs.c.phase_id.in_(phase_ids))
    return stmt
