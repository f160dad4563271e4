"""Core statements compiled once per dialect and run on the DB-API driver directly.

Why: claim → start → finish runs several statements per job, and through
``Connection.execute`` each one pays SQLAlchemy's per-call machinery
(parameter processing, an execution context, a result object): about four
times what SQLite spends running it. On SQLite that time is spent holding
the database-wide write lock, so it caps how many jobs all workers together
can claim per second.

A :class:`Prepared` keeps the statement a Core construct (one definition
for both backends, no hand-written SQL) and does the per-call work once:
it compiles the statement for the connection's dialect, records the bind
parameters in order with their literal values and type processors, and the
result processors of the ``RETURNING`` columns. Each call then only builds
the driver's argument list and calls ``cursor.execute`` inside the caller's
transaction (``Store.write()``). Errors come out as SQLAlchemy's
``DBAPIError`` subclasses, like everywhere else.

Lists of ids go in as one parameter (:class:`~jobdb.sqltypes.in_ids`): an
expanding ``IN`` changes the SQL with the list length, so statements with
one are left to ``Connection.execute``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase

_ECHO = logging.getLogger("sqlalchemy.engine.Engine")

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Compiled:
    """One statement's driver-ready form for one dialect."""

    sql: str
    names: tuple[str, ...]  # bind names, in the order a positional driver wants them
    positional: bool
    template: tuple[Any, ...]  # the literal binds' values, already processed
    slots: tuple[tuple[int, str, Processor], ...]  # (position, name, processor) of named binds
    readers: tuple[Processor, ...]

    def arguments(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        values = list(self.template)
        for position, name, binder in self.slots:
            value = params[name]
            values[position] = binder(value) if binder is not None else value
        return values if self.positional else dict(zip(self.names, values, strict=True))

    def read(self, rows: list[Any]) -> list[tuple[Any, ...]]:
        if not any(self.readers):
            return [tuple(row) for row in rows]
        return [
            tuple(r(v) if r is not None else v for r, v in zip(self.readers, row, strict=True))
            for row in rows
        ]


class Prepared:
    """A Core ``INSERT``/``UPDATE`` statement (or a ``SELECT`` around data-modifying
    ``WITH`` parts) run through the driver (see the module doc)."""

    def __init__(self, statement: UpdateBase | Select[Any]) -> None:
        self.statement = statement
        self._forms: dict[str, _Compiled] = {}

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run it in ``conn``'s transaction; the ``RETURNING`` rows, processed like Core's."""
        form = self._forms.get(conn.dialect.name) or self._compile(conn.dialect)
        if not conn.in_transaction():
            raise RuntimeError("Prepared statements run inside Store.write() or Store.read()")
        driver = conn.connection.driver_connection
        assert driver is not None
        arguments = form.arguments(params)
        if conn.engine.echo:  # echo shows these statements too, like Core's
            _ECHO.info("%s [driver] %r", form.sql, arguments)
        try:
            cursor = driver.execute(form.sql, arguments)
            # Whether rows come back is known from the statement: psycopg builds a
            # column object per column each time ``cursor.description`` is read.
            fetched = cursor.fetchall() if form.readers else []
        except conn.dialect.loaded_dbapi.Error as error:
            raise exc.DBAPIError.instance(
                form.sql, arguments, error, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
            ) from error
        return form.read(fetched)

    def scalars(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        """The first ``RETURNING`` column of every row."""
        return [row[0] for row in self.rows(conn, params)]

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        if compiled.post_compile_params or compiled.literal_execute_params:
            raise ValueError("a Prepared statement cannot have expanding or literal parameters")
        if compiled.escaped_bind_names:
            raise ValueError("a Prepared statement's bind names must not need escaping")
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError("a Prepared statement cannot have Python-side column defaults")
        names = tuple(compiled.positiontup or ()) if compiled.positional else _named(compiled)
        binds = [compiled.binds[name] for name in names]
        binders = [_binder(bind.type, dialect) for bind in binds]
        # A bind the statement names (bindparam("b_actor")) comes from the caller;
        # an anonymous one (a literal such as state = 'ready') is fixed.
        named = [bind.key == name for bind, name in zip(binds, names, strict=True)]
        form = _Compiled(
            sql=compiled.string,
            names=names,
            positional=bool(compiled.positional),
            template=tuple(
                None if is_named else _apply(binder, bind.effective_value)
                for bind, binder, is_named in zip(binds, binders, named, strict=True)
            ),
            slots=tuple(
                (position, names[position], binders[position])
                for position, is_named in enumerate(named)
                if is_named
            ),
            readers=tuple(_reader(col.type, dialect) for col in self.statement.exported_columns),
        )
        self._forms[dialect.name] = form
        return form


def _named(compiled: SQLCompiler) -> tuple[str, ...]:
    """The bind names a named-parameter driver (psycopg's ``%(name)s``) needs."""
    return tuple(sorted(set(compiled.bind_names.values())))


def _apply(processor: Processor, value: Any) -> Any:
    return processor(value) if processor is not None else value


def _binder(type_: Any, dialect: Dialect) -> Processor:
    processor: Processor = type_.dialect_impl(dialect).bind_processor(dialect)
    return processor


def _reader(type_: Any, dialect: Dialect) -> Processor:
    processor: Processor = type_.dialect_impl(dialect).result_processor(dialect, None)
    return processor
