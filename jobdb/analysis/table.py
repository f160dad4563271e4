"""Result tables: jobs (or groups of jobs) × the parameters that vary and the metrics (pure).

A table has parameter columns (``keys``) and metric columns (``metrics``,
dotted names for nested results). A per-job row holds each metric's value;
a grouped row holds a :class:`Stat` (count, mean, sample standard
deviation) per metric, over the jobs of the group, e.g. over folds and
seeds. Sorting, ``--top`` and metric selection work on either.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobdb.analysis.fetch import Aggregate, JobRow
from jobdb.errors import BadInput


@dataclass(frozen=True)
class Stat:
    """A metric over the jobs of a group: how many had it, their mean and sample std."""

    n: int
    mean: float
    std: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        """The stat of ``values`` (std None for fewer than two)."""
        n = len(values)
        mean = math.fsum(values) / n
        if n < 2:
            return cls(n, mean, None)
        return cls(n, mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)))


@dataclass
class Row:
    """One line of a table: parameter values, metric values (or stats), and where it came from."""

    values: dict[str, Any]
    metrics: dict[str, Any]
    n: int = 1
    job_id: int | None = None
    phase: str | None = None
    state: str | None = None


@dataclass
class ResultTable:
    """Rows under parameter columns ``keys`` and metric columns ``metrics``."""

    keys: list[str]
    metrics: list[str]
    rows: list[Row] = field(default_factory=list)
    grouped: bool = False
    #: How many rows there were before ``--top`` cut them.
    total: int = 0


def flatten(result: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """``{"val": {"acc": 1}, "loss": 2}`` → ``{"val.acc": 1, "loss": 2}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in (result or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def varying_keys(params: Iterable[Mapping[str, Any]]) -> list[str]:
    """Parameter names whose values differ between jobs (all names when none differ).

    A key that some jobs lack varies too; ``1`` and ``true`` differ. Names are
    sorted: PostgreSQL's jsonb does not keep the order the spec wrote them in.
    """
    rows = list(params)
    names = sorted({key for row in rows for key in row})
    varying = [key for key in names if len({_identity(row.get(key, _MISSING)) for row in rows}) > 1]
    return varying or names


_MISSING = object()


def _identity(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return (isinstance(value, bool), value)


def per_job(rows: Sequence[JobRow], metrics: Sequence[str] | None = None) -> ResultTable:
    """One row per job: the parameters that vary among them, and their metrics."""
    flat = [flatten(row.result) for row in rows]
    available = sorted({name for metrics_ in flat for name in metrics_})
    chosen = choose_metrics(available, metrics)
    keys = varying_keys(row.params for row in rows)
    table = ResultTable(keys, chosen, total=len(rows))
    for row, values in zip(rows, flat, strict=True):
        table.rows.append(
            Row(
                {key: row.params.get(key) for key in keys},
                {name: values.get(name) for name in chosen},
                job_id=row.id,
                phase=row.phase,
                state=row.state,
            )
        )
    return table


def grouped(
    aggregates: Iterable[Aggregate], keys: Sequence[str], metrics: Sequence[str] | None = None
) -> ResultTable:
    """One row per group from the database's aggregates, in the order of the key values."""
    groups: dict[str, tuple[tuple[Any, ...], dict[str, Stat]]] = {}
    for agg in aggregates:
        identity = json.dumps(agg.values, sort_keys=True)
        stats = groups.setdefault(identity, (agg.values, {}))[1]
        stats[agg.metric] = Stat(agg.n, agg.mean, agg.std)
    available = sorted({name for _, stats in groups.values() for name in stats})
    chosen = choose_metrics(available, metrics)
    table = ResultTable(list(keys), chosen, grouped=True, total=len(groups))
    ordered = sorted(groups.values(), key=lambda group: [order_key(v) for v in group[0]])
    for values, stats in ordered:
        table.rows.append(
            Row(
                dict(zip(keys, values, strict=True)),
                {name: stats.get(name) for name in chosen},
                n=max((s.n for s in stats.values()), default=0),
            )
        )
    return table


def choose_metrics(available: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    """``wanted`` (checked against ``available``), or every available metric."""
    if not wanted:
        return list(available)
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise BadInput(
            f"no metric {unknown[0]!r} in the selected jobs' results",
            hint=f"metrics here: {', '.join(available) or '(none)'}",
        )
    return list(wanted)


def sort(table: ResultTable, by: str, *, descending: bool = False) -> None:
    """Sort rows by a parameter or metric column (a stat by its mean); missing values last."""
    if by not in table.keys and by not in table.metrics:
        raise BadInput(
            f"--sort {by!r}: no such parameter or metric column",
            hint=f"columns: {', '.join([*table.keys, *table.metrics]) or '(none)'}",
        )
    column = "values" if by in table.keys else "metrics"

    def value(row: Row) -> Any:
        cell = getattr(row, column).get(by)
        return cell.mean if isinstance(cell, Stat) else cell

    present = [row for row in table.rows if value(row) is not None]
    missing = [row for row in table.rows if value(row) is None]
    present.sort(key=lambda row: order_key(value(row)), reverse=descending)
    table.rows = present + missing


def top(table: ResultTable, n: int | None) -> None:
    """Keep the first ``n`` rows (``total`` still says how many there were)."""
    if n is not None:
        table.rows = table.rows[:n]


def order_key(value: Any) -> tuple[int, Any]:
    """A sort key that orders mixed JSON values: null, booleans, numbers, strings, the rest."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, int | float):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, repr(value))
