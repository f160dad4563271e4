"""jobman's phase form: add a dependent phase to jobs already in the database (seed 001).

::

    jobdb schedule -e dbn --phase finetune --command 'python ft.py --lr {lr} --ft {ft}' \\
        phase=pretrain lr={{0.1,0.01}} -- lr -- 'ft={{1,2}}'

Parent filters (``phase=NAME`` picks the parent phase; other keys match the
parents' parameters, any of the listed values), then ``--``, then the
grouping keys, then ``--``, then the new phase's grid:

- no grouping keys: each matching parent job gets its own children (one per
  grid point), which inherit its parameters;
- ``[]``: one group of every matching parent; each child depends on all;
- ``k1 k2``: parents grouped by their values of k1, k2; each group gets one
  child per grid point, carrying the group's values, depending on every
  parent in the group.

The children and edges are written like any schedule: idempotent by
parameter hash, in the caller's transaction, with initial states settled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, or_, select

from jobdb import scheduling, selectors
from jobdb.errors import BadInput, NotFound
from jobdb.models import Experiment, Job, Phase
from jobdb.spec.jobman import JobmanPhase, check_placeholders
from jobdb.spec.params import canonical, dump_canonical, hash_text
from jobdb.spec.plan import PlannedJob, grid_points


@dataclass(frozen=True)
class NewPhase:
    """The phase to add: its name, command and the parsed ``filters -- keys -- grid``."""

    experiment: str
    name: str
    command: str
    form: JobmanPhase


def add_phase(
    conn: Connection, new: NewPhase, *, actor: str, dry_run: bool = False
) -> scheduling.ScheduleResult:
    """Create (or extend) the phase ``new.name`` below the matching parent jobs."""
    exp_id = _experiment_id(conn, new.experiment)
    parents = _matching_parents(conn, exp_id, new.form.parent_filters)
    children, edges = _children(new, parents)
    check_placeholders(new.command, {key for job in children for key in job.params})
    result = scheduling.ScheduleResult(new.experiment, exp_id, False)
    phase_id = _phase_id(conn, exp_id, new.name)
    if dry_run:
        existing = scheduling.hashes_of_phase(conn, phase_id) if phase_id else {}
        counts = scheduling.PhaseCounts(new.name, len(children))
        counts.new = sum(1 for job in children if job.hash not in existing)
        result.phases.append(counts)
        result.new_edges = sum(1 for _, i in edges if children[i].hash not in existing)
        return result
    phase_id = scheduling.upsert_phase(
        conn, exp_id, _next_position(conn, exp_id, new.name), _PhaseRow(new)
    )
    counts, ids, new_ids = scheduling.write_jobs(conn, exp_id, phase_id, new.name, children, None)
    result.phases.append(counts)
    new_edges = [
        (parent, ids[(new.name, i)]) for parent, i in edges if ids[(new.name, i)] in new_ids
    ]
    scheduling.insert_rows(conn, "edges", ("parent_id", "child_id"), new_edges, None)
    result.new_edges = len(new_edges)
    scheduling.settle_states(conn, result, exp_id, new_ids, new_edges, actor)
    return result


def _experiment_id(conn: Connection, name: str) -> int:
    found = conn.execute(select(Experiment.id).where(Experiment.name == name)).scalar()
    if found is None:
        raise NotFound(
            f"no experiment named {name!r}", hint="the phase form adds to an existing experiment"
        )
    return int(found)


def _phase_id(conn: Connection, exp_id: int, name: str) -> int | None:
    query = select(Phase.id).where(Phase.experiment_id == exp_id, Phase.name == name)
    found = conn.execute(query).scalar()
    return None if found is None else int(found)


def _next_position(conn: Connection, exp_id: int, name: str) -> int:
    query = select(Phase.position).where(Phase.experiment_id == exp_id, Phase.name == name)
    found = conn.execute(query).scalar()
    if found is not None:
        return int(found)
    last = conn.execute(select(func.max(Phase.position)).where(Phase.experiment_id == exp_id))
    return int(last.scalar() or 0) + 1


def _matching_parents(
    conn: Connection, exp_id: int, filters: dict[str, list[Any]]
) -> list[tuple[int, dict[str, Any]]]:
    """(id, params) of the experiment's jobs matching every filter, in id order."""
    query = (
        select(Job.id, Job.params)
        .join(Phase, Phase.id == Job.phase_id)
        .where(Job.experiment_id == exp_id)
        .order_by(Job.id)
    )
    dialect = conn.dialect.name
    for key, values in filters.items():
        if key == "phase":
            query = query.where(Phase.name.in_([str(v) for v in values]))
        else:
            query = query.where(or_(*(selectors.param_equals(dialect, key, v) for v in values)))
    parents = [(int(i), dict(p)) for i, p in conn.execute(query)]
    if not parents:
        shown = " ".join(f"{k}={v if len(v) > 1 else v[0]}" for k, v in filters.items())
        raise BadInput(f"no job of this experiment matches the parent filters {shown}")
    return parents


def _children(
    new: NewPhase, parents: Sequence[tuple[int, dict[str, Any]]]
) -> tuple[list[PlannedJob], list[tuple[int, int]]]:
    """The child jobs and (parent id, child index) edges, per the grouping rule."""
    points = grid_points(new.form.grid)
    children: list[PlannedJob] = []
    edges: list[tuple[int, int]] = []
    for members, inherited in _groups(new.form.group_keys, parents):
        for point in points:
            clash = sorted(set(point) & set(inherited))
            if clash:
                raise BadInput(f"grid key {clash[0]!r} is already a parameter of the parents")
            params = canonical({**inherited, **point})
            text = dump_canonical(params)
            edges.extend((parent, len(children)) for parent in members)
            children.append(PlannedJob(new.name, params, hash_text(text), 0, 1, text))
    return children, edges


def _groups(
    keys: list[str] | None, parents: Sequence[tuple[int, dict[str, Any]]]
) -> list[tuple[list[int], dict[str, Any]]]:
    """(member ids, inherited parameters) per group, in order of first appearance."""
    if keys is None:
        return [([job_id], params) for job_id, params in parents]
    groups: dict[str, tuple[list[int], dict[str, Any]]] = {}
    for job_id, params in parents:
        missing = [key for key in keys if key not in params]
        if missing:
            raise BadInput(
                f"group key {missing[0]!r} is not a parameter of parent job {job_id}",
                hint=f"its parameters are: {', '.join(sorted(params)) or '(none)'}",
            )
        values = {key: params[key] for key in keys}
        groups.setdefault(dump_canonical(values), ([], values))[0].append(job_id)
    return list(groups.values())


class _PhaseRow:
    """What :func:`scheduling.upsert_phase` stores for a command-line phase."""

    def __init__(self, new: NewPhase) -> None:
        self.name = new.name
        self.command = new.command
        self.task = None
        self.config = {
            "form": "jobman-phase",
            "command": new.command,
            "parent_filters": new.form.parent_filters,
            "group_by": new.form.group_keys,
            "grid": [dim.to_json() for dim in new.form.grid],
        }
