"""Expand a spec into the jobs and edges it means, without touching a database.

Per phase, in the spec's order:

* no ``after``: one job per grid point;
* ``after`` without ``group_by``: for each parent job (in order), one child per
  grid point, carrying the parent's parameters plus its own; each child has
  one edge, from that parent;
* ``after`` with ``group_by`` (``select`` implies ``group_by: []``): parents
  are grouped by their values of the group keys (groups in order of first
  appearance); for each group, one child per grid point carrying the group's
  key values plus its own parameters, with an edge from every parent of the
  group. ``select`` is recorded on the phase; the winner is merged at run time.

Parameter values are canonical already (the parsers made them so), so a job
costs one dict merge, one ``json.dumps`` and one SHA-256.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobdb.spec.errors import SpecError
from jobdb.spec.model import Dimension, ExperimentSpec, PhaseSpec
from jobdb.spec.params import dump_canonical, hash_text

JobRef = tuple[str, int]
Edge = tuple[JobRef, JobRef]


@dataclass(frozen=True)
class PlannedJob:
    """One job to create: its phase, canonical parameters and their hash."""

    phase: str
    params: dict[str, Any]
    hash: str
    priority: int
    max_attempts: int
    #: The canonical JSON text that ``hash`` was computed from (what the database stores).
    params_json: str = field(default="", compare=False, repr=False)


@dataclass
class Plan:
    """Jobs per phase (in spec order) and edges ``(parent phase, index) → (child phase, index)``."""

    spec: ExperimentSpec
    jobs: dict[str, list[PlannedJob]]
    edges: list[Edge]

    @property
    def job_count(self) -> int:
        return sum(len(jobs) for jobs in self.jobs.values())

    def parents_of(self, child: JobRef) -> list[JobRef]:
        """The parents of one job (a linear scan: for tests and small previews)."""
        return [parent for parent, c in self.edges if c == child]


def grid_points(grid: Sequence[Dimension]) -> list[dict[str, Any]]:
    """The cartesian product of the dimensions, the last varying fastest."""
    points = []
    for rows in itertools.product(*(dim.rows for dim in grid)):
        point: dict[str, Any] = {}
        for dim, row in zip(grid, rows, strict=True):
            point.update(zip(dim.keys, row, strict=True))
        points.append(point)
    return points


def grid_size(grid: Iterable[Dimension]) -> int:
    """How many points :func:`grid_points` yields, without building them."""
    size = 1
    for dim in grid:
        size *= len(dim)
    return size


def expand(spec: ExperimentSpec) -> Plan:
    """All jobs and edges of ``spec``."""
    plan = Plan(spec, {}, [])
    for phase in spec.phases:
        points = grid_points(phase.grid)
        if phase.after is None:
            plan.jobs[phase.name] = [_job(phase, point) for point in points]
        elif phase.group_by is None:
            _expand_per_parent(plan, phase, points)
        else:
            _expand_groups(plan, phase, points)
        _check_unique(phase, plan.jobs[phase.name])
    return plan


def _job(phase: PhaseSpec, params: dict[str, Any]) -> PlannedJob:
    text = dump_canonical(params)
    return PlannedJob(
        phase.name, params, hash_text(text), phase.priority, phase.retry.max_attempts, text
    )


def _expand_per_parent(plan: Plan, phase: PhaseSpec, points: list[dict[str, Any]]) -> None:
    assert phase.after is not None
    jobs: list[PlannedJob] = []
    for index, parent in enumerate(plan.jobs[phase.after]):
        for point in points:
            plan.edges.append(((phase.after, index), (phase.name, len(jobs))))
            jobs.append(_job(phase, {**parent.params, **point}))
    plan.jobs[phase.name] = jobs


def _expand_groups(plan: Plan, phase: PhaseSpec, points: list[dict[str, Any]]) -> None:
    assert phase.after is not None and phase.group_by is not None
    groups: dict[str, tuple[dict[str, Any], list[int]]] = {}
    for index, parent in enumerate(plan.jobs[phase.after]):
        values = {key: parent.params[key] for key in phase.group_by}
        groups.setdefault(dump_canonical(values), (values, []))[1].append(index)
    jobs: list[PlannedJob] = []
    for values, members in groups.values():
        for point in points:
            child = (phase.name, len(jobs))
            plan.edges.extend(((phase.after, index), child) for index in members)
            jobs.append(_job(phase, {**values, **point}))
    plan.jobs[phase.name] = jobs


def _check_unique(phase: PhaseSpec, jobs: list[PlannedJob]) -> None:
    # The parsers make collisions impossible; this guards the invariant the
    # database relies on (one job per hash per phase) against future changes.
    if len({job.hash for job in jobs}) != len(jobs):
        raise SpecError(f"phase {phase.name!r} would create two jobs with the same parameters")
