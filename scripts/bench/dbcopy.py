"""``jobdb db copy`` at 100,000 jobs: SQLite → PostgreSQL → SQLite, whole process, with a floor.

The source is a SQLite database at jobdb's schema holding one experiment
with two phases: ``--jobs`` / 2 ``train`` jobs, each the parent of one
``eval`` job (so ``--jobs`` / 2 edges). Every train job is done with a
result (a few metrics and a 10-point curve), one attempt and three events
(waiting → ready → queued → running → done would be four; three is what a
job scheduled ready has), so at 100,000 jobs the database holds 350,004 rows.
It is written straight to the driver (stdlib ``sqlite3``), not timed.

Timed, each a fresh destination, medians of ``--runs`` (the ratio to the
floor is the median of the per-run ratios, which survives a shared machine's
changing load better than a ratio of medians):

- **jobdb**: ``jobdb db copy SRC DST`` in a subprocess — start-up, schema
  creation by the migrations, the streamed copy, sequence reset and the
  count check included — for SQLite → PostgreSQL and PostgreSQL → SQLite.
- **floor**: the same rows moved with the drivers alone, no checks, into a
  destination whose schema already exists: ``sqlite3`` rows → psycopg
  ``COPY … FROM STDIN`` one way; psycopg reading (``::text`` for JSON) →
  ``sqlite3.executemany`` the other way. One transaction each.

Progress on stderr, the markdown table on stdout::

    python scripts/bench/dbcopy.py [--jobs 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    git_revision,
    log,
    machine,
    markdown_table,
    median,
    postgres_cluster,
    postgres_version,
    timed,
)

from jobdb.config import sqlite_url
from jobdb.store import Store, connect, make_engine, upgrade
from jobdb.testing import PostgresCluster
from jobdb.transfer.tables import TABLES

STAMP = "2024-05-01 10:00:00.000"


def build_source(path: Path, jobs: int) -> dict[str, int]:
    """The source database (see the module docstring); returns rows per table."""
    connect(sqlite_url(path)).dispose()  # jobdb's schema, created by the migrations
    half = jobs // 2
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO experiments (id, name, spec_text, spec_format, spec_hash, "
            "settings, created_at) VALUES (1, 'bench', 'name: bench', 'yaml', '', '{}', ?)",
            (STAMP,),
        )
        db.executemany(
            "INSERT INTO phases (id, experiment_id, name, position, command, config, created_at) "
            "VALUES (?, 1, ?, ?, 'python x.py', '{}', ?)",
            [(1, "train", 0, STAMP), (2, "eval", 1, STAMP)],
        )
        db.executemany(_insert("jobs", JOB_COLUMNS), _jobs(half))
        db.executemany(
            "INSERT INTO edges (parent_id, child_id) VALUES (?, ?)",
            ((i, half + i) for i in range(1, half + 1)),
        )
        db.executemany(_insert("attempts", ATTEMPT_COLUMNS), _attempts(half))
        db.executemany(_insert("events", EVENT_COLUMNS), _events(half))
    return {
        "experiments": 1,
        "phases": 2,
        "jobs": 2 * half,
        "edges": half,
        "attempts": half,
        "events": 3 * half,
    }


JOB_COLUMNS = (
    "id",
    "experiment_id",
    "phase_id",
    "params",
    "params_hash",
    "state",
    "priority",
    "attempt",
    "max_attempts",
    "created_at",
    "updated_at",
    "finished_at",
    "result",
    "exit_code",
    "host",
)
ATTEMPT_COLUMNS = (
    "id",
    "job_id",
    "number",
    "state",
    "reason",
    "host",
    "queued_at",
    "started_at",
    "ended_at",
    "exit_code",
    "result",
)
EVENT_COLUMNS = ("id", "job_id", "from_state", "to_state", "reason", "actor", "at")


def _insert(table: str, columns: tuple[str, ...]) -> str:
    quoted = ", ".join(f'"{c}"' for c in columns)
    return f"INSERT INTO {table} ({quoted}) VALUES ({', '.join('?' * len(columns))})"


def _result(i: int) -> str:
    curve = [round(1 / (1 + e + i % 7), 4) for e in range(10)]
    return json.dumps({"val_acc": curve[-1], "loss": 1 - curve[-1], "curve": curve})


def _jobs(half: int):  # type: ignore[no-untyped-def]
    for i in range(1, 2 * half + 1):
        train = i <= half
        params = json.dumps({"lr": 10 ** -(i % 4), "seed": i, "model": f"m{i % 10}"})
        yield (
            i,
            1,
            1 if train else 2,
            params,
            f"{i:064x}",
            "done" if train else "ready",
            0,
            1 if train else 0,
            3,
            STAMP,
            STAMP,
            STAMP if train else None,
            _result(i) if train else None,
            0 if train else None,
            "gpu1" if train else None,
        )


def _attempts(half: int):  # type: ignore[no-untyped-def]
    for i in range(1, half + 1):
        yield (i, i, 1, "done", "exit 0", "gpu1", STAMP, STAMP, STAMP, 0, _result(i))


def _events(half: int):  # type: ignore[no-untyped-def]
    steps = (
        ("ready", "queued", "claimed"),
        ("queued", "running", "started"),
        ("running", "done", "exit 0"),
    )
    for i in range(1, half + 1):
        for k, (old, new, why) in enumerate(steps):
            yield (3 * (i - 1) + k + 1, i, old, new, why, "bench", STAMP)


def jobdb_copy(src: str, dst: str) -> float:
    command = [sys.executable, "-m", "jobdb", "db", "copy", src, dst, "--json"]
    with timed() as t:
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"jobdb db copy failed:\n{proc.stderr}")
    return t.seconds


def floor_to_postgres(src: Path, cluster: PostgresCluster, name: str) -> float:
    """sqlite3 rows → psycopg COPY, table by table, one transaction."""
    import psycopg

    with sqlite3.connect(src) as lite, psycopg.connect(_dsn(cluster, name)) as pg, timed() as t:
        for table in TABLES:
            columns = ", ".join(f'"{c.name}"' for c in table.c)
            rows = lite.execute(f"SELECT {columns} FROM {table.name} ORDER BY 1")
            with pg.cursor().copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    return t.seconds


def floor_to_sqlite(cluster: PostgresCluster, name: str, dst: Path) -> float:
    """psycopg rows (JSON as text) → sqlite3 executemany, table by table, one transaction."""
    import psycopg

    with psycopg.connect(_dsn(cluster, name)) as pg, sqlite3.connect(dst) as lite, timed() as t:
        for table in TABLES:
            names = [c.name for c in table.c]
            select = ", ".join(
                f'"{n}"::text' if "JSON" in str(c.type).upper() else f'"{n}"'
                for n, c in zip(names, table.c, strict=True)
            )
            with pg.cursor(name=f"read_{table.name}") as cursor:
                cursor.itersize = 5_000
                cursor.execute(f"SELECT {select} FROM {table.name} ORDER BY 1")
                lite.executemany(_insert(table.name, tuple(names)), cursor)
    return t.seconds


def _dsn(cluster: PostgresCluster, name: str) -> str:
    return f"host=127.0.0.1 port={cluster.port} user={cluster.superuser} dbname={name}"


def fresh_postgres(cluster: PostgresCluster, name: str, schema: bool) -> str:
    url = cluster.create_database(name)
    if schema:
        store = Store(make_engine(url))
        upgrade(store)
        store.dispose()
    return url.render_as_string(hide_password=False)


def fresh_sqlite(folder: Path, name: str, schema: bool) -> Path:
    path = folder / f"{name}.sqlite"
    if schema:
        connect(sqlite_url(path)).dispose()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, postgres_cluster() as cluster:
        folder = Path(tmp)
        source = folder / "source.sqlite"
        counts = build_source(source, args.jobs)
        total = sum(counts.values())
        log(f"source: {counts} ({total:,} rows)")
        pg_full = fresh_postgres(cluster, "full", schema=True)
        jobdb_copy(f"sqlite:///{source}", pg_full)  # the PostgreSQL source of the way back
        for run in range(args.runs):
            log(f"run {run + 1}/{args.runs}")
            for key, seconds in one_run(run, folder, source, cluster, pg_full).items():
                times.setdefault(key, []).append(seconds)
                log(f"  {key[0]:22} {key[1]:6} {seconds:6.2f} s")
        pg = postgres_version(cluster)
    rows = []
    for (direction, side), values in times.items():
        floors = times[(direction, "floor")]
        # Paired per run: the machine's load changes between runs, not within one.
        ratio = median([v / f for v, f in zip(values, floors, strict=True)])
        spread = f"{min(values):.2f}–{max(values):.2f}"
        rows.append([direction, side, median(values), spread, round(total / median(values)), ratio])
    print(f"{args.jobs:,} jobs, {total:,} rows; {machine(pg)}; jobdb {git_revision()}\n")
    print(
        markdown_table(
            ["direction", "copy", "seconds (median)", "min–max", "rows/s", "× floor"], rows
        )
    )
    print(f"\ncommand: python scripts/bench/dbcopy.py --jobs {args.jobs} --runs {args.runs}")


def one_run(
    run: int, folder: Path, source: Path, cluster: PostgresCluster, pg_full: str
) -> dict[tuple[str, str], float]:
    """One timing of each copy, each into a fresh destination."""
    to_pg, to_lite = "SQLite → PostgreSQL", "PostgreSQL → SQLite"
    times = {}
    pg_new = fresh_postgres(cluster, f"j{run}", schema=False)
    times[(to_pg, "jobdb")] = jobdb_copy(f"sqlite:///{source}", pg_new)
    pg_floor = fresh_postgres(cluster, f"f{run}", schema=True)
    times[(to_pg, "floor")] = floor_to_postgres(source, cluster, _named(pg_floor))
    lite_new = fresh_sqlite(folder, f"j{run}", schema=False)
    times[(to_lite, "jobdb")] = jobdb_copy(pg_full, f"sqlite:///{lite_new}")
    lite_floor = fresh_sqlite(folder, f"f{run}", schema=True)
    times[(to_lite, "floor")] = floor_to_sqlite(cluster, "full", lite_floor)
    return times


def _named(url: str) -> str:
    return url.rsplit("/", 1)[1]


if __name__ == "__main__":
    os.environ.pop("JOBDB_URL", None)
    main()
