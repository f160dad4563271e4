"""The tables a copy or an export moves, and how their rows travel unchanged.

Rows are read with SQLAlchemy Core, column by column, with two twists that
keep a copy exact:

- JSON columns are read as their JSON *text*. Through the ``JSON`` type a
  SQL ``NULL`` would come back as ``None`` and go in again as the JSON
  literal ``null`` (SQLAlchemy's ``none_as_null=False``): ``result IS NULL``
  would stop matching after a copy. Text also skips a parse and a dump per
  value. An import, whose values come parsed from a file, writes through
  :func:`values_table`, where ``None`` is SQL ``NULL``.
- Timestamps go through :class:`~jobdb.sqltypes.UTCDateTime`, so SQLite's
  naive UTC text and PostgreSQL's ``timestamptz`` map onto each other.

The writes of :mod:`jobdb.transfer` are bulk inserts of rows that already
exist elsewhere, not state transitions, which is why they live there and not
in :mod:`jobdb.queries` (where every statement that *changes* a job's state is).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import JSON, Column, MetaData, Select, Table, Text, select, type_coerce
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from jobdb.models import Attempt, Edge, Event, Experiment, Job, Phase

#: Every jobdb table, parents before children (the order inserts must follow).
TABLES: tuple[Table, ...] = tuple(
    cast(Table, model.__table__) for model in (Experiment, Phase, Job, Edge, Attempt, Event)
)
#: Tables whose ``id`` comes from a sequence on PostgreSQL.
SEQUENCED: tuple[Table, ...] = tuple(t for t in TABLES if "id" in t.c)

#: Rows per read partition and per ``executemany`` batch.
BATCH = 5_000


def is_json(column: Column[Any]) -> bool:
    return isinstance(column.type, JSON)  # JSONB, the PostgreSQL variant, is a JSON too


def read_statement(table: Table, dialect: str) -> Select[Any]:
    """Every row of ``table`` in primary-key order, JSON columns as text."""
    columns = [_as_text(c, dialect) if is_json(c) else c for c in table.c]
    return select(*columns).order_by(*table.primary_key.columns)


def _as_text(column: Column[Any], dialect: str) -> ColumnElement[Any]:
    # jsonb must be cast (psycopg would parse it); SQLite already stores the text.
    if dialect == "postgresql":
        return sql_cast(column, Text).label(column.name)
    return type_coerce(column, Text).label(column.name)


def values_table(table: Table) -> Table:
    """A stand-in for ``table`` whose JSON columns take Python values, ``None`` as SQL NULL.

    For imports, whose values come parsed from a file. (JSON text would not
    do: PostgreSQL's multi-row ``INSERT … RETURNING`` casts each value to the
    column's declared type, and text is not jsonb.)
    """
    json_type = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
    columns = [
        Column(c.name, json_type if is_json(c) else c.type, primary_key=c.primary_key)
        for c in table.c
    ]
    return Table(table.name, MetaData(), *columns)
