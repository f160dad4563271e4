"""Column types and SQL expressions that behave the same on SQLite and PostgreSQL.

- :class:`UTCDateTime`: timezone-aware datetimes on both backends. SQLite
  has no time zone type, so values are stored as naive UTC text and given
  back as aware UTC datetimes.
- :func:`db_now` and :func:`db_ago`: the *database* clock, so that heartbeats
  written by many hosts are judged against one clock (Optuna's lesson).
- :data:`JSONType`: JSON on SQLite, JSONB on PostgreSQL (indexable, and
  equality that ignores key order); :data:`OptionalJSONType` stores None as
  SQL NULL.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    DateTime,
    String,
    Text,
    bindparam,
    literal_column,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

JSONType = JSON().with_variant(JSONB(), "postgresql")
#: For a JSON value that may be absent (a result, an attempt's parameters): Python's
#: None is SQL NULL, not the JSON text ``null``, so "has a result" is ``IS NOT NULL``
#: in plain SQL too.
OptionalJSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

# SQLite text timestamps; ``strftime('%f')`` gives seconds with milliseconds.
_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware datetime; naive values read back from SQLite are UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        if dialect.name == "sqlite":
            return value.astimezone(dt.UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw text from a server default on SQLite
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class db_now(FunctionElement[dt.datetime]):
    """The database's current time, in UTC."""

    type = UTCDateTime()
    inherit_cache = True


#: A shared :class:`db_now` for the values a query passes to ``transition`` and attempt
#: updates per call: building the element costs more than the hot path's SQL does.
NOW = db_now()


class db_ago(FunctionElement[dt.datetime]):
    """The database's current time minus a number of seconds (a bound parameter)."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(db_now, "sqlite")
def _now_sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return _SQLITE_NOW


@compiles(db_now)
def _now_default(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # Not now(): that is the transaction's start, and a long transaction
    # would stamp heartbeats in the past.
    return "statement_timestamp()"


@compiles(db_ago, "sqlite")
def _ago_sqlite(element: db_ago, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || ({seconds}) || ' seconds')"


@compiles(db_ago)
def _ago_default(element: db_ago, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"(statement_timestamp() - make_interval(secs => {seconds}))"


#: Server-side default text for creation timestamps, per dialect.
SERVER_NOW = {"sqlite": _SQLITE_NOW, "postgresql": "statement_timestamp()"}


def written_in(value: str) -> ColumnElement[str]:
    """A string constant written into the SQL text rather than bound as a parameter.

    Both planners use a partial index (``… WHERE state = 'ready'``) only for a
    query whose condition they can see implies the index's, which a bound
    parameter hides; PostgreSQL's generic plan for a prepared statement sees
    the value too. For jobdb's own constants (state names), never user input.
    """
    return literal_column("'" + value.replace("'", "''") + "'", String())


class unindexed(FunctionElement[str]):
    """A column SQLite's planner will not use an index for (``+column``; plain elsewhere).

    Without ``ANALYZE`` statistics SQLite guesses ``state IN (…)`` matches
    ten rows, so for ``id IN (20,000 ids) AND state IN (…)`` it walks the
    state index (most of a million jobs) instead of 20,000 key lookups.
    """

    type = String()
    inherit_cache = True


@compiles(unindexed, "sqlite")
def _unindexed_sqlite(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.clauses, **kw)


@compiles(unindexed)
def _unindexed_default(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


class IdList(TypeDecorator[list[int]]):
    """Many job ids as one bound parameter: JSON text on SQLite, a bigint array elsewhere.

    Expanding ``IN (?, ?, …)`` lists cost SQLAlchemy about 0.1 s per 20,000
    ids and must be chunked below SQLite's variable limit.
    """

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(BigInteger()))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Iterable[int] | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        ids = [int(i) for i in value]
        return ids if dialect.name == "postgresql" else json.dumps(ids)


class in_ids(FunctionElement[Any]):
    """``column IN`` the :class:`IdList` bound to ``name``: ``IN (SELECT value FROM
    json_each(:name))`` on SQLite, ``= ANY(:name)`` elsewhere; both plan as index lookups."""

    # Not Boolean-typed: SQLAlchemy would append "= 1" on SQLite, hiding the IN from the planner.
    inherit_cache = True

    def __init__(self, column: ColumnElement[Any], name: str) -> None:
        super().__init__(column, bindparam(name, type_=IdList()))


@compiles(in_ids, "sqlite")
def _in_ids_sqlite(element: in_ids, compiler: SQLCompiler, **kw: Any) -> str:
    column, ids = (compiler.process(c, **kw) for c in element.clauses)
    return f"{column} IN (SELECT value FROM json_each({ids}))"


@compiles(in_ids)
def _in_ids_default(element: in_ids, compiler: SQLCompiler, **kw: Any) -> str:
    column, ids = (compiler.process(c, **kw) for c in element.clauses)
    return f"{column} = ANY({ids})"
