"""Selecting jobs the way users type it: experiment, phase, state, ``--where key=value``.

One implementation of job filters shared by ``list``, ``status`` and, later,
``reset``/``cancel``, so a selector means the same thing everywhere.
Parameter filters compare JSON values with their JSON type: ``lr=0.1``
matches the number 0.1 (and 0.10), ``name=abc`` the string ``"abc"``,
``flag=true`` the boolean.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, cast, func, literal, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from jobdb.errors import BadInput
from jobdb.models import Experiment, Job, Phase
from jobdb.states import State, parse_states


@dataclass(frozen=True)
class JobFilter:
    """What the user asked for; empty fields mean "any"."""

    experiments: Sequence[str] = ()
    phases: Sequence[str] = ()
    states: Sequence[State] = ()
    where: Sequence[tuple[str, Any]] = field(default_factory=tuple)
    ids: Sequence[int] = ()

    @classmethod
    def from_cli(
        cls,
        experiments: Sequence[str] | None = None,
        phases: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        where: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
    ) -> JobFilter:
        """Parse command-line values; bad ones raise :class:`BadInput` naming the option."""
        try:
            parsed_states = parse_states(_split_commas(states or ()))
        except ValueError as exc:
            raise BadInput(f"--state: {exc}") from None
        return cls(
            experiments=tuple(_split_commas(experiments or ())),
            phases=tuple(_split_commas(phases or ())),
            states=tuple(parsed_states),
            where=tuple(parse_where(item) for item in where or ()),
            ids=tuple(ids or ()),
        )


def _split_commas(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def parse_where(item: str) -> tuple[str, Any]:
    """``key=value`` → (key, typed value)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise BadInput(f"--where {item!r}: expected key=value, e.g. --where lr=0.1")
    return key.strip(), parse_value(raw.strip())


def parse_value(raw: str) -> Any:
    """A command-line value as the JSON scalar it denotes (int, float, bool, null, str)."""
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    for convert in (int, float):
        try:
            number = convert(raw)
        except ValueError:
            continue
        if isinstance(number, float) and not math.isfinite(number):
            break
        return number
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


def param_equals(dialect: str, key: str, value: Any) -> ColumnElement[bool]:
    """SQL: the job parameter ``key`` equals ``value`` as JSON."""
    if dialect == "postgresql":
        column = type_coerce(Job.params, JSONB)
        return column[key] == cast(literal(json.dumps(value)), JSONB)
    path = "$." + json.dumps(key)  # a quoted member name, so dots in keys are literal
    extracted = func.json_extract(Job.params, path)
    if value is None:
        return func.json_type(Job.params, path) == "null"
    if isinstance(value, bool):
        return (func.json_type(Job.params, path) == ("true" if value else "false")) & (
            extracted.is_not(None)
        )
    return extracted == value


def apply(query: Select[Any], selector: JobFilter, dialect: str) -> Select[Any]:
    """Narrow a query over ``jobs`` (joined to phases and experiments) to ``selector``."""
    if selector.ids:
        query = query.where(Job.id.in_(selector.ids))
    if selector.experiments:
        query = query.where(Experiment.name.in_(selector.experiments))
    if selector.phases:
        query = query.where(Phase.name.in_(selector.phases))
    if selector.states:
        query = query.where(Job.state.in_([s.value for s in selector.states]))
    for key, value in selector.where:
        query = query.where(param_equals(dialect, key, value))
    return query


def jobs_joined(*columns: Any) -> Select[Any]:
    """``SELECT columns FROM jobs JOIN phases JOIN experiments``."""
    return (
        select(*columns)
        .select_from(Job)
        .join(Phase, Phase.id == Job.phase_id)
        .join(Experiment, Experiment.id == Job.experiment_id)
    )
