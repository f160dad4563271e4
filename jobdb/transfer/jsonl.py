"""The experiment file format: JSON Lines, one record per line (pure, no I/O).

Line 1 is a header::

    {"kind": "header", "format": "jobdb-experiment", "version": 1,
     "jobdb_version": "...", "exported_at": "...", "counts": {"job": 20, ...},
     "experiment": {"name": ..., "spec_text": ..., "git_commit": ..., ...}}

then the phases, jobs, edges, attempts and events, in that order, each a
record ``{"kind": "job", <column>: <value>, ...}`` with the columns of its
table. Ids are those of the exporting database; they only tie records
together (``job.phase_id``, ``edge.parent_id``, ``attempt.job_id``) and an
import gives every row a new id. Timestamps are ISO 8601 with a UTC offset;
JSON columns (parameters, results, configs) are embedded as JSON.

The header's counts let an import notice a file cut short. Reading checks
every record (keys, types, references, order) and names the line of the
first problem, before anything is written.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Integer, String, Table

from jobdb.sqltypes import UTCDateTime
from jobdb.states import State
from jobdb.transfer.errors import BadExportFile
from jobdb.transfer.tables import TABLES

FORMAT = "jobdb-experiment"
VERSION = 1

#: Record kinds after the header, in the order they must come, and their tables.
KINDS: dict[str, Table] = dict(
    zip(("phase", "job", "edge", "attempt", "event"), TABLES[1:], strict=True)
)
EXPERIMENTS: Table = TABLES[0]
#: Columns a record leaves out: the experiment is implied, attempt/event ids are renumbered.
DROPPED: dict[str, frozenset[str]] = {
    "experiment": frozenset({"id"}),
    "phase": frozenset({"experiment_id"}),
    "job": frozenset({"experiment_id"}),
    "edge": frozenset(),
    "attempt": frozenset({"id"}),
    "event": frozenset({"id"}),
}
_JOB_STATES = frozenset(s.value for s in State)


# --- writing --------------------------------------------------------------------------


def header_line(
    experiment: Mapping[Any, Any], counts: Mapping[str, int], *, jobdb_version: str
) -> str:
    """The first line of an export; ``experiment`` is its row as :func:`record` reads it."""
    header = {
        "kind": "header",
        "format": FORMAT,
        "version": VERSION,
        "jobdb_version": jobdb_version,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(),
        "counts": dict(counts),
        "experiment": record_values("experiment", EXPERIMENTS, experiment),
    }
    return json.dumps(header, ensure_ascii=False)


def record_line(kind: str, row: Mapping[Any, Any]) -> str:
    """One record of ``kind`` from a row read with JSON columns as text."""
    return json.dumps({"kind": kind, **record_values(kind, KINDS[kind], row)}, ensure_ascii=False)


def record_values(kind: str, table: Table, row: Mapping[Any, Any]) -> dict[str, Any]:
    dropped = DROPPED[kind]
    return {c.name: _encode(c, row[c.name]) for c in table.c if c.name not in dropped}


def _encode(column: Column[Any], value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column.type, JSON):
        return json.loads(value)  # the column was read as its JSON text
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


# --- reading --------------------------------------------------------------------------


@dataclass
class Bundle:
    """A parsed export: the experiment's columns and each kind's rows (old ids kept)."""

    header: dict[str, Any]
    experiment: dict[str, Any]
    rows: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {kind: [] for kind in KINDS}
    )


def parse(lines: Iterable[str], path: str) -> Bundle:
    """Read and check a whole export; :class:`BadExportFile` names the first bad line."""
    reader = _Reader(path)
    number = 0
    for number, line in enumerate(lines, 1):
        if line.strip():
            reader.feed(number, line)
    return reader.finish(number)


class _Reader:
    """Checks records one by one: order, columns, types and references."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.bundle: Bundle | None = None
        self.position = 0  # index in KINDS of the latest record's kind
        self.phase_ids: set[int] = set()
        self.phase_names: set[str] = set()
        self.job_ids: set[int] = set()
        self.keys: set[tuple[Any, ...]] = set()  # (kind, unique key) seen so far

    def fail(self, line: int | None, message: str) -> BadExportFile:
        return BadExportFile(self.path, line, message)

    def feed(self, number: int, line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise self.fail(number, f"not JSON: {exc}") from None
        if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
            raise self.fail(number, 'expected a JSON object with a "kind"')
        kind = record.pop("kind")
        try:
            if self.bundle is None:
                self.bundle = _read_header(kind, record)
            else:
                self._record(kind, record)
        except ValueError as exc:
            raise self.fail(number, str(exc)) from None

    def _record(self, kind: str, record: dict[str, Any]) -> None:
        assert self.bundle is not None
        order = list(KINDS)
        if kind not in KINDS:
            raise ValueError(f"unknown record kind {kind!r} (expected one of {', '.join(order)})")
        if order.index(kind) < self.position:
            raise ValueError(f"a {kind} record after the {order[self.position]} records")
        self.position = order.index(kind)
        row = decode(kind, KINDS[kind], record)
        self._check_references(kind, row)
        self.bundle.rows[kind].append(row)

    def _check_references(self, kind: str, row: dict[str, Any]) -> None:
        if kind == "phase":
            self._unique(kind, "id", row["id"], self.phase_ids)
            self._unique(kind, "name", row["name"], self.phase_names)
        elif kind == "job":
            self._unique(kind, "id", row["id"], self.job_ids)
            _known("phase", row["phase_id"], self.phase_ids)
            self._unique_key(
                kind, (row["phase_id"], row["params_hash"]), "params_hash in its phase"
            )
            if row["state"] not in _JOB_STATES:
                raise ValueError(f"unknown job state {row['state']!r}")
        elif kind == "edge":
            _known("job", row["parent_id"], self.job_ids)
            _known("job", row["child_id"], self.job_ids)
            if row["parent_id"] == row["child_id"]:
                raise ValueError(f"an edge from job {row['parent_id']} to itself")
            self._unique_key(kind, (row["parent_id"], row["child_id"]), "edge")
        else:
            _known("job", row["job_id"], self.job_ids)
            if kind == "attempt":
                self._unique_key(kind, (row["job_id"], row["number"]), "attempt number of its job")

    def _unique(self, kind: str, key: str, value: Any, seen: set[Any]) -> None:
        if value in seen:
            raise ValueError(f"a second {kind} with {key} {value!r}")
        seen.add(value)

    def _unique_key(self, kind: str, key: tuple[Any, ...], what: str) -> None:
        if (kind, *key) in self.keys:
            raise ValueError(f"a repeated {what}: {key!r}")
        self.keys.add((kind, *key))

    def finish(self, last_line: int) -> Bundle:
        if self.bundle is None:
            raise self.fail(None, "empty file: expected a jobdb experiment export")
        expected = self.bundle.header["counts"]
        for kind, rows in self.bundle.rows.items():
            if expected.get(kind, 0) != len(rows):
                raise self.fail(
                    last_line,
                    f"the file ends early or was edited: the header says {expected.get(kind, 0)} "
                    f"{kind} record(s), the file has {len(rows)}",
                )
        return self.bundle


def _known(kind: str, value: int, seen: set[int]) -> None:
    if value not in seen:
        raise ValueError(f"refers to {kind} {value}, which is not earlier in the file")


def _read_header(kind: str, record: dict[str, Any]) -> Bundle:
    if kind != "header" or record.get("format") != FORMAT:
        raise ValueError(
            f"not a jobdb experiment export (the first line must be a {FORMAT} header)"
        )
    version = record.get("version")
    if version != VERSION:
        raise ValueError(
            f"format version {version!r}; this jobdb reads version {VERSION} "
            "(a newer jobdb wrote it? upgrade jobdb)"
        )
    counts = record.get("counts")
    if not isinstance(counts, dict) or not all(isinstance(n, int) for n in counts.values()):
        raise ValueError('the header needs "counts": {kind: number of records}')
    experiment = record.get("experiment")
    if not isinstance(experiment, dict):
        raise ValueError('the header needs an "experiment" object')
    return Bundle(record, decode("experiment", EXPERIMENTS, experiment))


def decode(kind: str, table: Table, record: Mapping[str, Any]) -> dict[str, Any]:
    """Column values of a record, checked against ``table``'s columns."""
    columns = {c.name: c for c in table.c if c.name not in DROPPED[kind]}
    unknown = sorted(set(record) - set(columns))
    if unknown:
        raise ValueError(f"unknown key(s) for a {kind} record: {', '.join(unknown)}")
    row: dict[str, Any] = {}
    for name, column in columns.items():
        if record.get(name) is None:
            if not column.nullable:
                raise ValueError(f"a {kind} record needs {name!r}")
            row[name] = None
        else:
            row[name] = _decode(column, record[name])
    return row


def _decode(column: Column[Any], value: Any) -> Any:
    kind = column.type
    if isinstance(kind, JSON):
        return value
    if isinstance(kind, Boolean):
        return _typed(column, value, bool)
    if isinstance(kind, Integer):
        if isinstance(value, bool):  # a bool is an int to Python, not to a database
            raise ValueError(f"{column.name}: expected an integer, got {value!r}")
        return _typed(column, value, int)
    if isinstance(kind, String):
        text = _typed(column, value, str)
        if kind.length is not None and len(text) > kind.length:
            raise ValueError(f"{column.name}: longer than {kind.length} characters")
        return text
    if isinstance(kind, UTCDateTime):
        return _timestamp(column.name, _typed(column, value, str))
    raise TypeError(f"{column.table.name}.{column.name}: no decoder for {kind!r}")


_NOUNS = {bool: "true or false", int: "an integer", str: "a string"}


def _typed(column: Column[Any], value: Any, expected: type) -> Any:
    if not isinstance(value, expected):
        raise ValueError(f"{column.name}: expected {_NOUNS[expected]}, got {value!r}")
    return value


def _timestamp(name: str, text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name}: not an ISO 8601 timestamp: {text!r}") from None
    if value.tzinfo is None:
        raise ValueError(f"{name}: a timestamp needs its UTC offset: {text!r}")
    return value
