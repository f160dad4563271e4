"""What a plot shows, built from jobs without drawing anything (pure, tested).

Two kinds:

- **lines**: a metric against a parameter (``x``), one line per value of
  another parameter (``line``), each point the mean over the jobs sharing
  those two values (folds, seeds, ...) with the sample standard deviation
  as its error bar.
- **curve**: a learning curve, when jobs report the metric as a list (one
  value per epoch or step): one line per value of ``line`` (or per job),
  the element-wise mean and std over its jobs.

:mod:`jobdb.analysis.plotting` turns a :class:`PlotData` into a PNG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jobdb.analysis.fetch import JobRow
from jobdb.analysis.table import Stat, flatten, order_key
from jobdb.errors import BadInput
from jobdb.runtime.best import metric_value


@dataclass(frozen=True)
class Series:
    """One line: x values, mean y, error (std, None for a single job) and count per point."""

    label: str
    x: list[Any]
    y: list[float]
    err: list[float | None]
    n: list[int]


@dataclass(frozen=True)
class PlotData:
    """Everything the drawing needs, and nothing about how it is drawn."""

    kind: str
    title: str
    x_label: str
    y_label: str
    series: list[Series] = field(default_factory=list)

    @property
    def categorical(self) -> bool:
        """Whether x values are names (placed evenly) rather than numbers."""
        return any(not _is_number(x) for s in self.series for x in s.x)

    @property
    def log_x(self) -> bool:
        """Numbers spanning two decades or more (learning rates) read better on a log axis."""
        xs = [x for s in self.series for x in s.x]
        if self.kind != "lines" or self.categorical or not xs or min(xs) <= 0:
            return False
        return max(xs) / min(xs) >= 100

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "x_label": self.x_label,
            "y_label": self.y_label,
            "series": [s.__dict__ for s in self.series],
        }


def build(
    rows: Sequence[JobRow], metric: str, x: str | None = None, line: str | None = None
) -> PlotData:
    """A learning curve when the metric is a list, else ``metric`` against ``x``."""
    values = [metric_value(row.result, metric) for row in rows]
    if all(v is None for v in values):
        available = sorted({name for row in rows for name in flatten(row.result)})
        raise BadInput(
            f"no selected job reports the metric {metric!r}",
            hint=f"metrics here: {', '.join(available) or '(none)'}",
        )
    if any(isinstance(v, list) for v in values):
        return curve(rows, metric, line)
    if x is None:
        raise BadInput(
            f"{metric!r} is one number per job: say which parameter goes on the x axis",
            hint=f"e.g. --x {_a_parameter(rows)}",
        )
    return lines(rows, metric, x, line)


def lines(rows: Sequence[JobRow], metric: str, x: str, line: str | None = None) -> PlotData:
    """Mean ± std of ``metric`` per (``line`` value, ``x`` value), over the other parameters."""
    _require_parameter(rows, x)
    if line is not None:
        _require_parameter(rows, line)
    points: dict[Any, dict[Any, list[float]]] = {}
    for row in rows:
        value = metric_value(row.result, metric)
        if not _is_number(value) or x not in row.params:
            continue
        label = row.params.get(line) if line else None
        points.setdefault(_key(label), {}).setdefault(_key(row.params[x]), []).append(value)
    series = []
    for label in sorted(points, key=_order):
        by_x = points[label]
        xs = sorted(by_x, key=_order)
        stats = [Stat.of(by_x[value]) for value in xs]
        name = f"{line}={_show(label)}" if line else metric
        series.append(_series(name, [_unkey(v) for v in xs], stats))
    title = f"{metric} by {x}" + (f", one line per {line}" if line else "")
    return PlotData("lines", title, x, metric, series)


def curve(rows: Sequence[JobRow], metric: str, line: str | None = None) -> PlotData:
    """Element-wise mean ± std of list-valued ``metric`` per ``line`` value (or per job)."""
    if line is not None:
        _require_parameter(rows, line)
    curves: dict[Any, list[list[float]]] = {}
    for row in rows:
        value = metric_value(row.result, metric)
        if not isinstance(value, list) or not all(_is_number(v) for v in value):
            continue
        label = row.params.get(line) if line else row.id
        curves.setdefault(_key(label), []).append([float(v) for v in value])
    series = []
    for label in sorted(curves, key=_order):
        runs = curves[label]
        steps = max(len(run) for run in runs)
        stats = [Stat.of([run[i] for run in runs if i < len(run)]) for i in range(steps)]
        name = f"{line}={_show(label)}" if line else f"job {_show(label)}"
        series.append(_series(name, list(range(1, steps + 1)), stats))
    title = f"{metric} per step" + (f", one line per {line}" if line else "")
    return PlotData("curve", title, "step", metric, series)


def _series(label: str, xs: list[Any], stats: list[Stat]) -> Series:
    return Series(label, xs, [s.mean for s in stats], [s.std for s in stats], [s.n for s in stats])


def _require_parameter(rows: Sequence[JobRow], name: str) -> None:
    if not any(name in row.params for row in rows):
        names = sorted({key for row in rows for key in row.params})
        raise BadInput(
            f"no selected job has the parameter {name!r}",
            hint=f"parameters here: {', '.join(names) or '(none)'}",
        )


def _a_parameter(rows: Sequence[JobRow]) -> str:
    names = sorted({key for row in rows for key in row.params})
    return names[0] if names else "PARAM"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _key(value: Any) -> Any:
    """A hashable stand-in for a JSON value (lists and objects by their text)."""
    return repr(value) if isinstance(value, dict | list) else (type(value) is bool, value)


def _unkey(key: Any) -> Any:
    return key[1] if isinstance(key, tuple) else key


def _order(key: Any) -> tuple[int, Any]:
    return order_key(_unkey(key))


def _show(key: Any) -> str:
    value = _unkey(key)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)
