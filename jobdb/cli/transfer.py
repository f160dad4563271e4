"""Moving data between databases and files: ``jobdb db copy``, ``export``, ``import``.

The work is done by :mod:`jobdb.transfer`; this module parses arguments,
draws the progress bar and prints what happened. URLs are only ever shown
with their password hidden.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.progress import (
    Progress,
    TaskID,
)
from rich.table import Table

from jobdb.cli import render
from jobdb.cli.app import app, db_app
from jobdb.cli.common import DbOption, JsonOption, open_store
from jobdb.config import parse_url
from jobdb.errors import BadInput
from jobdb.store import Store, make_engine
from jobdb.transfer import jsonl
from jobdb.transfer.copy import CopyReport, copy_database, open_source
from jobdb.transfer.errors import BadExportFile
from jobdb.transfer.export import count_records, experiment_id, export_lines
from jobdb.transfer.importing import ImportReport, import_bundle

#: Draw a progress bar from this many rows on (about a second of work).
PROGRESS_ABOVE = 10_000


class _Bar:
    """A progress bar over rows, drawn on stderr only for big jobs; also a CopyProgress."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self.bar: Progress | None = None
        self.task = TaskID(0)

    def begin(self, counts: dict[str, int]) -> None:
        total = sum(counts.values())
        if total < PROGRESS_ABOVE:
            return
        self.bar = render.progress_bar()
        self.bar.start()
        self.task = self.bar.add_task(self.verb, total=total)

    def advance(self, table: str, rows: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=rows, description=f"{self.verb} {table}")

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@contextlib.contextmanager
def _progress(verb: str) -> Iterator[_Bar]:
    bar = _Bar(verb)
    try:
        yield bar
    finally:
        bar.stop()


COPY_HELP = """\
Copy a whole jobdb database into another one, e.g. SQLite to PostgreSQL.

Every experiment, phase, job, edge, attempt and event is copied with its id,
in one transaction on the destination, and the row counts are compared
before it commits. The destination's schema is created (or upgraded) first;
a PostgreSQL destination database must exist (createdb NAME). The source's
schema must be current (jobdb db upgrade) and is only read. Stop dispatchers
and workers on the source first: jobs running meanwhile keep writing there.

A destination that already holds jobdb data is refused; --replace deletes
that data, in the same transaction, so the destination ends up an exact
copy of the source.

Examples:

  jobdb db copy sqlite:///jobdb.sqlite postgresql+psycopg://me@dbhost/jobdb

  jobdb db copy postgresql+psycopg://me@dbhost/jobdb sqlite:///backup.sqlite --replace
"""


@db_app.command("copy", help=COPY_HELP)
def db_copy(
    source: Annotated[str, typer.Argument(metavar="SRC_URL", help="The database to copy.")],
    destination: Annotated[
        str, typer.Argument(metavar="DST_URL", help="The database to copy into.")
    ],
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Delete the destination's jobdb data first."),
    ] = False,
    json_: JsonOption = False,
) -> None:
    src = open_source(parse_url(source, "SRC_URL"))
    dst = Store(make_engine(parse_url(destination, "DST_URL")))
    try:
        with _progress("copying") as bar:
            report = copy_database(src, dst, replace=replace, progress=bar)
    finally:
        src.dispose()
        dst.dispose()
    _print_copy(report, json_)


def _print_copy(report: CopyReport, json_: bool) -> None:
    if json_:
        render.print_json(
            {
                "source": report.source,
                "destination": report.destination,
                "rows": report.counts,
                "replaced": report.replaced,
            }
        )
        return
    render.console.print(f"{report.source} → {report.destination}", highlight=False)
    table = Table()
    table.add_column("table")
    table.add_column("rows copied", justify="right")
    for name, rows in report.counts.items():
        table.add_row(name, f"{rows:,}")
    render.console.print(table)
    if report.replaced:
        gone = ", ".join(f"{n:,} {name}" for name, n in report.replaced.items())
        render.console.print(f"Replaced the destination's data ({gone}).")
    render.console.print(
        f"Copied {report.total:,} rows; the counts match the source in every table."
    )


@app.command("export")
def export(
    experiment: Annotated[str, typer.Argument(metavar="EXPERIMENT", help="The experiment name.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Where to write (default: EXPERIMENT.jsonl; '-' for stdout).",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Write one experiment to a JSON Lines file: spec, provenance, phases, jobs,
    parameters, states, results, edges, attempts and events.

    The file is for sharing and archiving; jobdb import reads it into any
    database. See docs/guides/moving.md for the format.

    Example: jobdb export mnist-grid -o mnist-grid.jsonl
    """
    target = output or Path(f"{experiment}.jsonl")
    store = open_store(db)
    try:
        with store.read() as conn, _progress("exporting") as bar:
            exp_id = experiment_id(conn, experiment)
            counts = count_records(conn, exp_id)
            bar.begin(counts)
            _write_lines(target, export_lines(conn, exp_id, counts, bar.advance))
    finally:
        store.dispose()
    if str(target) != "-":
        render.console.print(f"Exported {experiment} ({_counted(counts)}) to {target}.")


def _write_lines(target: Path, lines: Iterator[str]) -> None:
    """Write to stdout, or to a temporary file renamed into place once complete."""
    if str(target) == "-":
        _write_all(typer.get_text_stream("stdout"), lines)
        return
    folder = target.parent
    if not folder.is_dir():
        raise BadInput(f"cannot write {target}: no folder {folder}")
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            _write_all(out, lines)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _write_all(out: TextIO, lines: Iterator[str]) -> None:
    for line in lines:
        out.write(line)
        out.write("\n")


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {kind}{'' if n == 1 else 's'}" for kind, n in counts.items())


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A file written by jobdb export.")],
    as_: Annotated[
        str | None,
        typer.Option("--as", metavar="NAME", help="Import under this experiment name."),
    ] = None,
    db: DbOption = None,
    json_: JsonOption = False,
) -> None:
    """Read an experiment written by jobdb export into this database.

    The experiment is created with all its jobs, results, attempts and
    events (new ids, the same states), in one transaction: a bad file changes
    nothing and the error names its line. An experiment of the same name is
    refused; --as gives the import another name.

    Examples:

      jobdb import mnist-grid.jsonl

      jobdb import mnist-grid.jsonl --as mnist-grid-laptop
    """
    if as_ is not None and not 0 < len(as_) <= 200:
        raise BadInput("--as: an experiment name has 1 to 200 characters")
    bundle = _read_export(file)
    store = open_store(db)
    try:
        with _progress("importing") as bar, store.write() as conn:
            bar.begin({k: len(v) for k, v in bundle.rows.items()})
            report = import_bundle(conn, bundle, name=as_, advance=bar.advance)
    finally:
        store.dispose()
    _print_import(report, json_)


def _read_export(file: Path) -> jsonl.Bundle:
    try:
        with file.open(encoding="utf-8") as lines:
            return jsonl.parse(lines, str(file))
    except FileNotFoundError:
        raise BadInput(f"no such file: {file}") from None
    except UnicodeDecodeError:
        raise BadExportFile(str(file), None, "not UTF-8 text") from None
    except OSError as exc:
        raise BadInput(f"cannot read {file}: {exc.strerror}") from None


def _print_import(report: ImportReport, json_: bool) -> None:
    if json_:
        render.print_json(
            {
                "experiment": report.experiment,
                "experiment_id": report.experiment_id,
                "records": report.counts,
            }
        )
        return
    render.console.print(f"Imported experiment {report.experiment} ({_counted(report.counts)}).")
