"""Everything a claimed job needs to start, read from the database in a few queries.

For a batch of claimed jobs this reads their phases and their parents (with
the parameters each parent actually ran with and its result), resolves
``select:`` (best-of parents), computes the parameters of this attempt,
renders the argv, and lays out the job's files::

    RUNS/<experiment>/<phase>/<job id>/            work dir (kept across attempts)
    RUNS/<experiment>/<phase>/<job id>/checkpoint/ survives retries
    RUNS/<experiment>/<phase>/<job id>/attempt-N/  stdout.log stderr.log result.json context.json

A job that cannot be prepared (a parent without the select metric, a
placeholder that is not a parameter) gets ``error`` instead of an argv: the
caller records it as failed without starting anything.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, and_, bindparam, select

from jobdb.errors import JobDBError
from jobdb.models import Attempt, Edge, Experiment, Job, Phase
from jobdb.queries.claims import ClaimedJob
from jobdb.retry import scaled_params
from jobdb.runtime.best import Choice, Finished, pick_best
from jobdb.runtime.command import render_argv
from jobdb.runtime.context import ParentView

jobs = cast(Table, Job.__table__)
edges = cast(Table, Edge.__table__)
attempts = cast(Table, Attempt.__table__)
phases = cast(Table, Phase.__table__)
experiments = cast(Table, Experiment.__table__)

#: What a ``task:`` job's process runs: a small bootstrap that calls the function.
TASK_MAIN = [sys.executable, "-m", "jobdb.runtime.taskmain"]


@dataclass(frozen=True)
class PhaseInfo:
    """The parts of a phase a runner needs (read once per dispatcher, not per job)."""

    id: int
    name: str
    experiment: str
    command: str | None
    task: str | None
    config: dict[str, Any]

    @property
    def gpus(self) -> int:
        return int((self.config.get("resources") or {}).get("gpus") or 0)


@dataclass
class Launch:
    """One attempt of one job, ready to start (or ``error``: it cannot start)."""

    job_id: int
    attempt: int
    max_attempts: int
    phase: PhaseInfo
    params: dict[str, Any]
    work_dir: Path
    argv: list[str] = field(default_factory=list)
    parents: list[ParentView] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    #: True in ``jobdb smoke``: the job runs one batch (``ctx.smoke``).
    smoke: bool = False

    @property
    def attempt_dir(self) -> Path:
        return self.work_dir / f"attempt-{self.attempt}"

    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / "checkpoint"

    @property
    def stdout_path(self) -> Path:
        return self.attempt_dir / "stdout.log"

    @property
    def stderr_path(self) -> Path:
        return self.attempt_dir / "stderr.log"

    @property
    def result_path(self) -> Path:
        return self.attempt_dir / "result.json"

    @property
    def context_path(self) -> Path:
        return self.attempt_dir / "context.json"

    def context(self, devices: Sequence[str]) -> dict[str, Any]:
        """What ``context.json`` holds: the job's view of itself, its parents and its device."""
        return {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "experiment": self.phase.experiment,
            "phase": self.phase.name,
            "task": self.phase.task,
            "params": self.params,
            "parents": [p.__dict__ for p in self.parents],
            "work_dir": str(self.work_dir),
            "checkpoint_dir": str(self.checkpoint_dir),
            "result_file": str(self.result_path),
            "gpus": list(devices),
            "device": "cuda" if devices else "cpu",
            "notes": self.notes,
            "smoke": self.smoke,
        }


class PhaseCache:
    """Phases by id, read from the database the first time they are needed."""

    def __init__(self) -> None:
        self._known: dict[int, PhaseInfo] = {}

    def get(self, conn: Connection, phase_ids: Iterable[int]) -> dict[int, PhaseInfo]:
        wanted = set(phase_ids)
        missing = wanted - set(self._known)
        if missing:
            self._known.update(read_phases(conn, missing))
        return {pid: self._known[pid] for pid in wanted}

    def all(self, conn: Connection) -> dict[int, PhaseInfo]:
        """Every phase in the database (refreshed), e.g. to know which ones need GPUs."""
        self._known = read_phases(conn, None)
        return dict(self._known)


def read_phases(conn: Connection, phase_ids: Iterable[int] | None) -> dict[int, PhaseInfo]:
    query = select(
        phases.c.id,
        phases.c.name,
        experiments.c.name,
        phases.c.command,
        phases.c.task,
        phases.c.config,
    ).join(experiments, experiments.c.id == phases.c.experiment_id)
    if phase_ids is not None:
        query = query.where(phases.c.id.in_(sorted(phase_ids)))
    return {
        row[0]: PhaseInfo(row[0], row[1], row[2], row[3], row[4], row[5] or {})
        for row in conn.execute(query)
    }


def prepare(
    conn: Connection,
    claimed: Sequence[ClaimedJob],
    phase_cache: PhaseCache,
    runs_dir: Path,
) -> list[Launch]:
    """Launches for ``claimed`` jobs (in the same order); reads only, writes files."""
    if not claimed:
        return []
    infos = phase_cache.get(conn, {job.phase_id for job in claimed})
    parents = read_parents(conn, [job.id for job in claimed])
    return [
        prepare_one(job, infos[job.phase_id], parents.get(job.id, []), runs_dir) for job in claimed
    ]


def read_parents(conn: Connection, child_ids: Sequence[int]) -> dict[int, list[ParentView]]:
    """Each child's parents with the parameters their latest attempt ran with, and results."""
    found: dict[int, list[ParentView]] = {}
    rows = conn.execute(_parents_statement(), {"child_ids": sorted(child_ids)})
    for child, pid, phase, scheduled, ran_with, result in rows:
        found.setdefault(child, []).append(ParentView(pid, phase, ran_with or scheduled, result))
    return found


@functools.cache
def _parents_statement() -> Select[Any]:
    # Built once: compiling it costs more than running it, once per supervisor turn.
    run = attempts.alias("run")
    return (
        select(
            edges.c.child_id,
            jobs.c.id,
            phases.c.name,
            jobs.c.params,
            run.c.params,
            jobs.c.result,
        )
        .join(jobs, jobs.c.id == edges.c.parent_id)
        .join(phases, phases.c.id == jobs.c.phase_id)
        .outerjoin(run, and_(run.c.job_id == jobs.c.id, run.c.number == jobs.c.attempt))
        .where(edges.c.child_id.in_(bindparam("child_ids", expanding=True)))
        .order_by(edges.c.child_id, jobs.c.id)
    )


def prepare_one(
    job: ClaimedJob, phase: PhaseInfo, parents: list[ParentView], runs_dir: Path
) -> Launch:
    work_dir = runs_dir / safe_name(phase.experiment) / safe_name(phase.name) / str(job.id)
    launch = Launch(job.id, job.attempt, job.max_attempts, phase, dict(job.params), work_dir)
    launch.parents = parents
    try:
        chosen = effective_params(job.params, parents, phase.config.get("select"), launch.notes)
        launch.params = scaled_params(phase.config, chosen, job.attempt)
        launch.notes.extend(_scaling_notes(chosen, launch.params, job.attempt))
        launch.argv = TASK_MAIN if phase.task else render_argv(phase.command or "", launch.params)
    except JobDBError as exc:
        launch.error = str(exc)
    return launch


def _scaling_notes(before: Mapping[str, Any], after: Mapping[str, Any], attempt: int) -> list[str]:
    """One line per parameter the retry policy changed, for the attempt's stdout log."""
    return [
        f"attempt {attempt}: retry policy sets {key} = {after[key]!r} (scheduled {before[key]!r})"
        for key in after
        if after[key] != before.get(key)
    ]


def effective_params(
    own: Mapping[str, Any],
    parents: Sequence[ParentView],
    select_config: Mapping[str, Any] | None,
    notes: list[str],
) -> dict[str, Any]:
    """The parameters this attempt runs with.

    Keys on which all parents agree are inherited (so a value chosen by a
    best-of phase upstream reaches every descendant), the job's own
    parameters override them, and a ``select:`` winner's keys come last.
    """
    params = {**_agreed(parents), **own}
    if select_config:
        choice = _select(parents, select_config)
        params.update(choice.winner.values)
        notes.append(choice.describe(select_config["metric"], select_config.get("aggregate")))
    return params


def _agreed(parents: Sequence[ParentView]) -> dict[str, Any]:
    if not parents:
        return {}
    first, *rest = parents
    return {
        key: value
        for key, value in first.params.items()
        if all(key in p.params and p.params[key] == value for p in rest)
    }


def _select(parents: Sequence[ParentView], config: Mapping[str, Any]) -> Choice:
    finished = [Finished(p.id, p.params, p.result) for p in parents]
    return pick_best(
        finished,
        metric=config["metric"],
        mode=config["mode"],
        keys=config.get("keys") or [],
        aggregate=config.get("aggregate"),
    )


_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


def safe_name(name: str) -> str:
    """A path component for an experiment or phase name (no slashes, spaces or dots-only)."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "_"
    return cleaned[:100]


def write_context(launch: Launch, devices: Sequence[str]) -> None:
    """Create the attempt's folders and its ``context.json``."""
    launch.attempt_dir.mkdir(parents=True, exist_ok=True)
    launch.checkpoint_dir.mkdir(exist_ok=True)
    launch.context_path.write_text(json.dumps(launch.context(devices), default=str))
