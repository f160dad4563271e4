"""What a parsed spec is: frozen dataclasses, with no parsing and no database.

All three input forms (jobdb YAML, InfQuery, jobman's command line) end up as
an :class:`ExperimentSpec`; :func:`jobdb.spec.plan.expand` turns one into jobs
and edges. Parameter values held here are already canonical
(:mod:`jobdb.spec.params`), so expanding a large grid only merges dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["min", "max"]
Format = Literal["yaml", "infquery", "jobman"]


@dataclass(frozen=True)
class Dimension:
    """One axis of a grid: the parameter names it sets and one row of values per point.

    A plain list is a dimension of one key; a ``zip`` group is one dimension
    of several keys whose rows are taken together; a fixed value is a
    dimension with a single row. The grid is the cartesian product of its
    dimensions, the last one varying fastest.
    """

    keys: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def __len__(self) -> int:
        return len(self.rows)

    def to_json(self) -> dict[str, Any]:
        return {"keys": list(self.keys), "rows": [list(row) for row in self.rows]}


@dataclass(frozen=True)
class Resources:
    """What one job of a phase asks the executor for (Slurm spellings for mem and time)."""

    gpus: int = 0
    cpus: int | None = None
    mem: str | None = None
    time: str | None = None
    partition: str | None = None
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetryPolicy:
    """How often a job is tried, after which verdicts, and what changes between tries.

    ``halve`` and ``double`` name parameters or resources (``mem``, ``time``)
    to halve or double on each retry, e.g. halve ``batch_size`` after an out
    of memory, double ``time`` after a timeout.
    """

    max_attempts: int = 3
    on: tuple[str, ...] = ("crashed",)
    halve: tuple[str, ...] = ()
    double: tuple[str, ...] = ()


@dataclass(frozen=True)
class Select:
    """Best-of over the parents of a group, applied when the child starts.

    Parents are split into candidates by their values of ``keys``; each
    candidate's ``metric`` (from the parents' results) is aggregated with
    ``aggregate`` (e.g. the mean over folds; None when each candidate is a
    single job) and the best by ``mode`` wins: its ``keys`` values are merged
    into the child's parameters and recorded.
    """

    metric: str
    mode: Mode
    aggregate: str | None
    keys: tuple[str, ...]


@dataclass(frozen=True)
class PhaseSpec:
    """One step of an experiment: what to run, on which grid, after which phase."""

    name: str
    command: str | None
    task: str | None
    grid: tuple[Dimension, ...]
    folds: int | None = None
    after: str | None = None
    group_by: tuple[str, ...] | None = None
    select: Select | None = None
    resources: Resources = field(default_factory=Resources)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    priority: int = 0
    #: The whole phase definition as JSON-able data, for the ``phases.config`` column.
    config: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def own_keys(self) -> tuple[str, ...]:
        """Parameter names this phase's grid sets (fold keys included)."""
        return tuple(key for dim in self.grid for key in dim.keys)


@dataclass(frozen=True)
class ExperimentSpec:
    """A whole experiment: its name, settings, phases in dependency order, and source text."""

    name: str
    settings: dict[str, Any]
    phases: tuple[PhaseSpec, ...]
    text: str
    format: Format

    def phase(self, name: str) -> PhaseSpec:
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(name)
