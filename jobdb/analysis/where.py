"""``--where`` conditions: a small expression language, never SQL from the user.

One condition is ``KEY OP VALUE`` with ``OP`` one of ``= == != < <= > >=``;
conditions are joined by commas (or given as repeated ``--where``) and all
must hold. ``KEY`` names a parameter or a metric (dotted for nested
metrics): ``params.lr`` and ``result.val.acc`` say which; a bare ``lr`` is
the parameter when the job has it, else the metric. ``VALUE`` is a JSON
scalar as on the command line (``0.1``, ``true``, ``null``, ``abc``,
``"a,b"``).

Keys and values reach the database only as bound parameters; the operator
comes from a fixed table. Comparisons follow the database's JSON values:
numbers numerically, strings as text; ``!=`` also matches a job that lacks
the key.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, cast, func, literal, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from jobdb.errors import BadInput
from jobdb.models import Job
from jobdb.selectors import parse_value

OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    ">=": operator.ge,
    "=": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
}
SCOPES = {"params": "params", "param": "params", "result": "result", "metrics": "result"}
_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(==|!=|<=|>=|=|<|>)\s*(.*?)\s*$", re.S)
EXAMPLE = "e.g. --where lr=0.1 --where 'acc>0.9,model!=small'"


@dataclass(frozen=True)
class Condition:
    """``key op value``; ``scope`` is params, result, or None (parameter, else metric)."""

    key: str
    op: str
    value: Any
    scope: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.scope}." if self.scope else ""
        return f"{prefix}{self.key}{self.op}{json.dumps(self.value)}"


def parse(items: Sequence[str] | None) -> tuple[Condition, ...]:
    """Every ``--where`` value, split on top-level commas, as conditions."""
    return tuple(
        parse_one(part) for item in items or () for part in split_commas(item) if part.strip()
    )


def split_commas(text: str) -> list[str]:
    """``a=1,b="x,y"`` → ``['a=1', 'b="x,y"']``: commas inside quotes stay."""
    parts: list[str] = []
    current: list[str] = []
    quote = ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == ",":
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quote:
        raise BadInput(f"--where {text!r}: unclosed quote {quote}", hint=EXAMPLE)
    parts.append("".join(current))
    return parts


def parse_one(text: str) -> Condition:
    """One ``KEY OP VALUE``; anything else is :class:`BadInput` with an example."""
    match = _CONDITION.match(text)
    if match is None or not match.group(3):
        raise BadInput(
            f"--where {text.strip()!r}: expected KEY OP VALUE with OP one of {' '.join(OPERATORS)}",
            hint=EXAMPLE,
        )
    key, op, raw = match.groups()
    if raw[0] in "=<>!":  # "lr>>1", "lr=<1": a typo, not a string that starts so
        raise BadInput(
            f"--where {text.strip()!r}: {op!r} followed by {raw[0]!r}; quote the value if "
            "it really starts with it",
            hint=EXAMPLE,
        )
    scope, _, rest = key.partition(".")
    if scope in SCOPES and rest:
        return Condition(rest, op, parse_value(raw), SCOPES[scope])
    return Condition(key, op, parse_value(raw))


def to_sql(conditions: Sequence[Condition], dialect: str) -> ColumnElement[bool] | None:
    """All conditions as one SQL expression over ``jobs`` (None when there are none)."""
    if not conditions:
        return None
    return and_(*(_compare(c, dialect) for c in conditions))


def _compare(condition: Condition, dialect: str) -> ColumnElement[bool]:
    left = _operand(condition, dialect)
    value = condition.value
    right: Any = cast(literal(json.dumps(value)), JSONB) if dialect == "postgresql" else value
    if condition.op == "!=":
        return left.is_distinct_from(right)
    if value is None and condition.op in ("=", "=="):
        return left.is_(None) if dialect != "postgresql" else _pg_is_null(left)
    result: ColumnElement[bool] = OPERATORS[condition.op](left, right)
    return result


def _pg_is_null(left: ColumnElement[Any]) -> ColumnElement[bool]:
    return left.is_(None) | (left == cast(literal("null"), JSONB))


def _operand(condition: Condition, dialect: str) -> ColumnElement[Any]:
    param = json_value(Job.params, [condition.key], dialect)
    dotted = condition.key.split(".")
    metric = json_value(Job.result, [condition.key], dialect)
    if len(dotted) > 1:  # a flat key with a dot wins over the nested path, as in best-of
        metric = func.coalesce(metric, json_value(Job.result, dotted, dialect))
    if condition.scope == "params":
        return param
    if condition.scope == "result":
        return metric
    return func.coalesce(param, metric)


def json_value(column: Any, path: Sequence[str], dialect: str) -> ColumnElement[Any]:
    """The value at ``path`` in a JSON column: a SQL scalar (SQLite) or jsonb (PostgreSQL)."""
    if dialect == "postgresql":
        return (
            type_coerce(column, JSONB)[tuple(path)]
            if len(path) > 1
            else type_coerce(column, JSONB)[path[0]]
        )
    return func.json_extract(column, sqlite_path(path))


def sqlite_path(path: Sequence[str]) -> str:
    """``['val', 'acc']`` → ``$."val"."acc"``: quoted members, so dots in keys are literal."""
    return "$" + "".join("." + json.dumps(part) for part in path)
