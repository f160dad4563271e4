"""Read-only queries behind ``results``, ``best``, ``plot`` and ``report``.

Two shapes of read, both one streaming statement over ``jobs`` that touches
only the columns it needs:

- :func:`job_rows`: one row per job (id, phase, state, parameters, result),
  for per-job tables, best-of and plots.
- :func:`aggregate`: mean, standard deviation and count of every numeric
  metric per group, computed by the database. At 200,000 jobs decoding the
  JSON in Python costs seconds (about 6 µs per document here), while the
  database does it: SQLite in one pass with ``json_tree`` (which also
  finds the metric names, nested ones included); PostgreSQL lists the
  numeric paths level by level (``jsonb_each``, cheap there) and then runs
  one ``GROUP BY`` over them. Metrics inside lists (series) are left out of
  aggregates.

Experiment and phase names are resolved to phase ids first, so the big
statement filters on the indexed ``phase_id`` without joins.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    case,
    cast,
    func,
    literal,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB

from jobdb.analysis import where as where_
from jobdb.analysis.where import Condition
from jobdb.errors import NotFound
from jobdb.models import Experiment, Job, Phase
from jobdb.states import State

#: Rows fetched per round trip when streaming jobs.
BATCH = 5_000


@dataclass(frozen=True)
class Selection:
    """Which jobs to read: experiment and phase names, states, ``--where`` conditions."""

    experiments: Sequence[str] = ()
    phases: Sequence[str] = ()
    states: Sequence[State] = ()
    conditions: Sequence[Condition] = field(default_factory=tuple)


@dataclass(frozen=True)
class JobRow:
    """One job as the analysis sees it."""

    id: int
    experiment: str
    phase: str
    state: str
    params: dict[str, Any]
    result: dict[str, Any] | None


@dataclass(frozen=True)
class Aggregate:
    """One metric of one group: the group's key values, and n, mean, std of the metric."""

    values: tuple[Any, ...]
    metric: str
    n: int
    mean: float
    std: float | None


@dataclass(frozen=True)
class Scope:
    """The selection resolved: phase id → (experiment, phase), and the SQL filter."""

    phases: dict[int, tuple[str, str]]
    clauses: tuple[ColumnElement[bool], ...]


def resolve(conn: Connection, selection: Selection) -> Scope:
    """Phase ids for the names, and the filters on ``jobs``; unknown names are NotFound."""
    query = select(Phase.id, Experiment.name, Phase.name).join(
        Experiment, Experiment.id == Phase.experiment_id
    )
    if selection.experiments:
        query = query.where(Experiment.name.in_(selection.experiments))
    if selection.phases:
        query = query.where(Phase.name.in_(selection.phases))
    phases = {int(pid): (str(exp), str(name)) for pid, exp, name in conn.execute(query)}
    _check_names(selection, phases)
    clauses: list[ColumnElement[bool]] = []
    if selection.experiments or selection.phases:
        clauses.append(Job.phase_id.in_(sorted(phases)))
    if selection.states:
        clauses.append(Job.state.in_([s.value for s in selection.states]))
    condition = where_.to_sql(selection.conditions, conn.dialect.name)
    if condition is not None:
        clauses.append(condition)
    return Scope(phases, tuple(clauses))


def _check_names(selection: Selection, phases: dict[int, tuple[str, str]]) -> None:
    experiments = {exp for exp, _ in phases.values()}
    for name in selection.experiments:
        if name not in experiments and not selection.phases:
            raise NotFound(f"no experiment named {name!r}", hint="jobdb status lists them")
    names = {phase for _, phase in phases.values()}
    for name in selection.phases:
        if name not in names:
            raise NotFound(f"no phase named {name!r} here", hint="jobdb status lists them")


def count(conn: Connection, scope: Scope) -> int:
    """How many jobs the selection holds (for a progress bar's total)."""
    query = select(func.count()).select_from(Job).where(*scope.clauses)
    return int(conn.execute(query).scalar_one())


def job_rows(
    conn: Connection, scope: Scope, on_batch: Callable[[int], None] | None = None
) -> Iterator[JobRow]:
    """The selected jobs, oldest first, streamed ``BATCH`` rows at a time."""
    query = (
        select(Job.id, Job.phase_id, Job.state, Job.params, Job.result)
        .where(*scope.clauses)
        .order_by(Job.id)
        .execution_options(yield_per=BATCH)
    )
    result = conn.execute(query)
    for partition in result.partitions():
        for job_id, phase_id, state, params, outcome in partition:
            experiment, phase = scope.phases[phase_id]
            yield JobRow(job_id, experiment, phase, state, params, outcome)
        if on_batch is not None:
            on_batch(len(partition))


def aggregate(
    conn: Connection, scope: Scope, keys: Sequence[str], metrics: Sequence[str] = ()
) -> list[Aggregate]:
    """Every numeric metric's count, mean and sample std per distinct value of ``keys``.

    Naming the ``metrics`` (dotted paths) spares PostgreSQL the search for them.
    """
    if conn.dialect.name == "postgresql":
        paths = [metric.split(".") for metric in metrics]
        return _aggregate_postgresql(conn, scope, keys, paths or None)
    return _aggregate_sqlite(conn, scope, keys)


def _aggregate_sqlite(conn: Connection, scope: Scope, keys: Sequence[str]) -> list[Aggregate]:
    # A second, missing path makes json_extract return JSON text ("[true,null]"), so a
    # boolean parameter stays a boolean instead of becoming 1.
    groups = [
        func.json_extract(Job.params, where_.sqlite_path([key]), "$[0]").label(f"g{i}")
        for i, key in enumerate(keys)
    ]
    # Materialised, the group values are extracted once per job; inlined, SQLite would
    # extract them again for every leaf json_tree yields (1.5x slower at 200,000 jobs).
    selected = (
        select(*groups, Job.result).where(*scope.clauses).cte("picked").prefix_with("MATERIALIZED")
    )
    tree = func.json_tree(selected.c.result).table_valued("fullkey", "atom", "type").alias("t")
    names = [selected.c[f"g{i}"] for i in range(len(keys))]
    query = (
        select(
            *names,
            tree.c.fullkey,
            func.count(tree.c.atom),
            func.sum(tree.c.atom),
            func.sum(tree.c.atom * tree.c.atom),
        )
        .select_from(selected)
        .join(tree, true())
        .where(tree.c.type.in_(["integer", "real"]))
        # Elements of lists ($.curve[3], $.a[0].b) are series, not metrics.
        .where(~tree.c.fullkey.op("GLOB", is_comparison=True)(literal("*[[][0-9]*")))
        .group_by(*names, tree.c.fullkey)
    )
    return [
        Aggregate(
            tuple(json.loads(text)[0] for text in row[: len(keys)]),
            ".".join(parse_fullkey(row[len(keys)])),
            *_moments(*row[len(keys) + 1 :]),
        )
        for row in conn.execute(query)
    ]


def _moments(n: int, total: float, squares: float) -> tuple[int, float, float | None]:
    """(n, mean, sample std) from the count, sum and sum of squares."""
    mean = total / n
    if n < 2:
        return n, mean, None
    variance = max(squares - total * mean, 0.0) / (n - 1)
    return n, mean, math.sqrt(variance)


def parse_fullkey(fullkey: str) -> list[str]:
    """SQLite's ``$.val.acc`` or ``$."a.b".c`` → ``['val', 'acc']`` / ``['a.b', 'c']``."""
    parts: list[str] = []
    at = 1  # after "$"
    while at < len(fullkey):
        at += 1  # the "."
        if fullkey[at] == '"':
            end = at + 1
            while fullkey[end] != '"':
                end += 2 if fullkey[end] == "\\" else 1
            parts.append(json.loads(fullkey[at : end + 1]))
            at = end + 1
        else:
            end = fullkey.find(".", at)
            end = len(fullkey) if end < 0 else end
            parts.append(fullkey[at:end])
            at = end
    return parts


def _aggregate_postgresql(
    conn: Connection, scope: Scope, keys: Sequence[str], paths: list[list[str]] | None
) -> list[Aggregate]:
    """Find the numeric paths level by level, then one ``GROUP BY`` over them.

    Carrying every leaf with its group values through a recursive CTE cost
    9x the aggregation itself at 200,000 jobs; listing the distinct keys
    is one cheap pass per level of nesting. (Guessing the paths from a
    sample and checking every job for missed keys in the aggregation was
    tried: the check, ``result - keys`` per job, cost as much as the passes.)
    """
    metrics = paths or numeric_paths(conn, scope)
    if not metrics:
        return []
    found = []
    for row in conn.execute(_grouped_query(scope, keys, metrics)):
        values, numbers = tuple(row[: len(keys)]), row[len(keys) :]
        for i, path in enumerate(metrics):
            n, mean, std = numbers[3 * i : 3 * i + 3]
            if n:
                found.append(Aggregate(values, ".".join(path), n, mean, std))
    return found


def _grouped_query(scope: Scope, keys: Sequence[str], metrics: Sequence[list[str]]) -> Any:
    """count, avg, stddev_samp of each metric path per group.

    Each value is extracted once per job in a fenced subquery (``OFFSET 0``):
    inlined, PostgreSQL would extract it again for each aggregate (3x slower).
    """
    groups = [type_coerce(Job.params, JSONB)[key].label(f"g{i}") for i, key in enumerate(keys)]
    raw = [_at(Job.result, path).label(f"v{i}") for i, path in enumerate(metrics)]
    inner = select(*groups, *raw).where(*scope.clauses).offset(0).subquery("picked")
    names = [inner.c[f"g{i}"] for i in range(len(keys))]
    numbers = [
        case(
            (func.jsonb_typeof(inner.c[f"v{i}"]) == "number", cast(inner.c[f"v{i}"], Float))
        ).label(f"x{i}")
        for i in range(len(metrics))
    ]
    typed = select(*names, *numbers).offset(0).subquery("typed")
    stats = []
    for i in range(len(metrics)):
        number = typed.c[f"x{i}"]
        stats += [func.count(number), func.avg(number), func.stddev_samp(number)]
    group_columns = [typed.c[f"g{i}"] for i in range(len(keys))]
    return select(*group_columns, *stats).group_by(*group_columns)


def _at(column: Any, path: Sequence[str]) -> ColumnElement[Any]:
    node = where_.json_value(column, path, "postgresql") if path else column
    return type_coerce(node, JSONB)


def numeric_paths(conn: Connection, scope: Scope) -> list[list[str]]:
    """The paths to numbers in the selected results, one statement per level of nesting."""
    numbers: list[list[str]] = []
    objects: list[list[str]] = [[]]
    while objects:
        found = [([*path, key], kind) for path in objects for key, kind in _keys(conn, scope, path)]
        numbers += [path for path, kind in found if kind == "number"]
        objects = [path for path, kind in found if kind == "object"]
    return sorted(numbers)


def _keys(conn: Connection, scope: Scope, path: list[str]) -> list[tuple[str, str]]:
    """The distinct (key, JSON type) of the objects at ``path`` in the selected results."""
    node = _at(Job.result, path)
    each = func.jsonb_each(node).table_valued("key", "value").alias("e")
    query = (
        select(each.c.key, func.jsonb_typeof(each.c.value))
        .select_from(Job)
        .join(each, true())
        .where(*scope.clauses, func.jsonb_typeof(node) == "object")
        .distinct()
    )
    return [(str(key), str(kind)) for key, kind in conn.execute(query)]
