"""``jobdb smoke``: the first job of every phase, run here on CPU with a one-batch budget.

A bug in phase three of a thousand-job sweep otherwise shows up as hundreds
of crashed cluster jobs an hour later. The smoke run starts each phase's
first job (lowest id) as a child process exactly as the runner would —
same argv, parameters, ``select:`` resolution and context file — except:

- the job sees ``ctx.smoke`` true (``$JOBDB_SMOKE=1`` for commands) and no
  GPU (``CUDA_VISIBLE_DEVICES`` empty), so it runs one batch on the CPU;
- it runs in a scratch folder, outside the runs folder, and the database is
  only read: no state, attempt or event changes, so what follows (``jobdb
  dispatch``) starts from the same place whether the smoke passed or not;
- a parent that has not run yet is stood in for by the smoke result of its
  phase's first job, so downstream phases (and their best-of ``select:``)
  get realistic inputs; a phase whose upstream smoke failed is skipped.

The programs carry no database identity, so ``jobdb monitor``, ``reset`` and
``cancel`` never mistake a smoke run for the real job.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select

from jobdb.models import Job, Phase
from jobdb.procs import ENV_DATABASE, terminate_group
from jobdb.queries.claims import ClaimedJob
from jobdb.runtime.child import Outcome, judge, spawn
from jobdb.runtime.context import ParentView
from jobdb.runtime.launch import (
    Launch,
    PhaseCache,
    PhaseInfo,
    prepare_one,
    read_parents,
    write_context,
)
from jobdb.states import State

#: Set in a smoke run's environment (commands read it; tasks get ``ctx.smoke``).
ENV_SMOKE = "JOBDB_SMOKE"


@dataclass(frozen=True)
class SmokeRun:
    """How one phase's first job did."""

    phase: str
    job_id: int
    status: str  # "ok", "failed" or "skipped"
    seconds: float = 0.0
    detail: str | None = None
    result: dict[str, Any] | None = None
    log_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def first_jobs(
    conn: Connection, experiment_id: int, phase_names: Sequence[str]
) -> list[ClaimedJob]:
    """The lowest-id job of each phase (all phases, or those named), in phase order."""
    first = select(Job.phase_id, func.min(Job.id).label("job_id")).group_by(Job.phase_id).subquery()
    query = (
        select(Job.id, Job.experiment_id, Job.phase_id, Job.params, Job.priority, Job.max_attempts)
        .join(first, first.c.job_id == Job.id)
        .join(Phase, Phase.id == Job.phase_id)
        .where(Phase.experiment_id == experiment_id)
        .order_by(Phase.position, Phase.id)
    )
    if phase_names:
        query = query.where(Phase.name.in_(list(phase_names)))
    rows = conn.execute(query).all()
    return [
        ClaimedJob(r.id, 1, r.experiment_id, r.phase_id, dict(r.params), r.priority, r.max_attempts)
        for r in rows
    ]


def run_smoke(
    conn: Connection,
    jobs: Sequence[ClaimedJob],
    scratch: Path,
    timeout_s: float,
    on_start: Callable[[str, int], None] = lambda phase, job_id: None,
) -> list[SmokeRun]:
    """Run ``jobs`` one after the other (upstream first); read-only on ``conn``."""
    infos = PhaseCache().get(conn, {job.phase_id for job in jobs})
    parents = read_parents(conn, [job.id for job in jobs])
    by_phase: dict[str, SmokeRun] = {}
    runs: list[SmokeRun] = []
    for job in jobs:
        phase = infos[job.phase_id]
        on_start(phase.name, job.id)
        run = _smoke_one(job, phase, parents.get(job.id, []), by_phase, scratch, timeout_s)
        by_phase[phase.name] = run
        runs.append(run)
    return runs


def _smoke_one(
    job: ClaimedJob,
    phase: PhaseInfo,
    parents: list[ParentView],
    upstream: Mapping[str, SmokeRun],
    scratch: Path,
    timeout_s: float,
) -> SmokeRun:
    broken = sorted({p.phase for p in parents if p.phase in upstream and not upstream[p.phase].ok})
    if broken:
        return SmokeRun(
            phase.name, job.id, "skipped", detail=f"upstream {', '.join(broken)} failed"
        )
    stand_ins = [_stand_in(p, upstream) for p in parents]
    launch = prepare_one(job, phase, stand_ins, scratch)
    launch.smoke = True
    if launch.error is not None:
        return SmokeRun(phase.name, job.id, "failed", detail=launch.error)
    started = time.monotonic()
    outcome = _run(launch, timeout_s)
    seconds = time.monotonic() - started
    status = "ok" if outcome.verdict is State.DONE else "failed"
    detail = None if status == "ok" else _describe(outcome)
    return SmokeRun(phase.name, job.id, status, seconds, detail, outcome.result, launch.attempt_dir)


def _stand_in(parent: ParentView, upstream: Mapping[str, SmokeRun]) -> ParentView:
    """A parent as the smoke child sees it: its real result, else its phase's smoke result."""
    if parent.result is not None or parent.phase not in upstream:
        return parent
    return replace(parent, result=upstream[parent.phase].result)


def _run(launch: Launch, timeout_s: float) -> Outcome:
    write_context(launch, [])
    env = {k: v for k, v in os.environ.items() if k != ENV_DATABASE}
    env[ENV_SMOKE] = "1"
    started = spawn(launch, [], env)
    if isinstance(started, Outcome):
        return started
    try:
        started.proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        started.stopped_because = f"smoke budget of {timeout_s:g} s exceeded"
        terminate_group(started.pid, grace_s=5.0)
        started.proc.wait()
    return judge(started)


def _describe(outcome: Outcome) -> str:
    lines = [outcome.reason]
    if outcome.error:
        lines.append(outcome.error.rstrip())
    return "\n".join(lines)
