"""``jobdb results --group-by`` over 200,000 jobs, next to one SQL query and pandas.

The grid: lr (10) × wd (10) × model (8) × fold (5) × seed (50) = 200,000 done
jobs of one phase, each with a result ``{"acc", "loss", "val": {"acc"}}``,
written straight to the driver (``executemany`` / ``COPY``). The
aggregation: per (lr, wd, model), 800 groups of 250 jobs, the count, mean
and sample standard deviation of the three metrics.

- **jobdb**: ``jobdb results -e bench -g lr,wd,model --csv --quiet`` as a
  subprocess: the whole process (interpreter start, imports, metric
  discovery, the query, CSV out). The target: within 3× of the floor.
- **SQL floor**: the same aggregation written as one query that already
  knows the metric names (``json_extract`` / ``->>``), run with the DB-API
  driver in this process (SQLite has no ``stddev``: sums of squares).
- **jobdb, metrics named**: the same with ``-m acc,loss,val.acc``.
- **pandas, exported**: ``read_csv`` of the per-job table exported once
  beforehand (untimed), then ``groupby().agg(["count", "mean", "std"])``.
- **pandas, from the database**: what a script does without jobdb:
  ``SELECT params, result``, ``json.loads`` per row, a DataFrame, the same
  ``groupby``.

Medians of ``--runs``, rotating which side goes first; progress on stderr,
the markdown table on stdout::

    python scripts/bench/results.py [--runs 5] [--backend sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    databases,
    git_revision,
    log,
    machine,
    markdown_table,
    median,
    timed,
)
from sqlalchemy import insert
from sqlalchemy.engine import URL

from jobdb.models import Experiment, Phase
from jobdb.scheduling import insert_rows
from jobdb.store import Store, connect

GRID: dict[str, list[Any]] = {
    "lr": [round(0.001 * (i + 1), 3) for i in range(10)],
    "wd": list(range(10)),
    "model": [f"m{i}" for i in range(8)],
    "fold": list(range(5)),
    "seed": list(range(50)),
}
KEYS = ("lr", "wd", "model")
METRICS = ("acc", "loss", "val.acc")
GROUPS = 800
TARGET_RATIO = 3.0
COLUMNS = "experiment_id phase_id params params_hash state priority max_attempts attempt result"


def job_rows(experiment: int, phase: int) -> Iterator[tuple[Any, ...]]:
    """Every grid point as a done job with a result (seeded: the same data every run)."""
    rnd = random.Random(0)
    names = list(GRID)
    for number, values in enumerate(itertools.product(*GRID.values()), 1):
        params = json.dumps(dict(zip(names, values, strict=True)), sort_keys=True)
        result = {"acc": rnd.random(), "loss": 3 * rnd.random(), "val": {"acc": rnd.random()}}
        yield (experiment, phase, params, f"{number:064x}", "done", 0, 1, 1, json.dumps(result))


def build(store: Store) -> int:
    """Write the experiment; returns the number of jobs."""
    with store.write() as conn:
        exp = conn.execute(
            insert(Experiment).values(name="bench", settings={}).returning(Experiment.id)
        ).scalar_one()
        phase = conn.execute(
            insert(Phase)
            .values(experiment_id=exp, name="train", position=0, config={})
            .returning(Phase.id)
        ).scalar_one()
        rows = list(job_rows(exp, phase))
        insert_rows(conn, "jobs", COLUMNS.split(), rows, None)
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    return len(rows)


# --------------------------------------------------------------------------
# the sides


def run_jobdb(url: URL, named: bool = False) -> int:
    """The CLI in a subprocess; returns the number of groups it printed.

    ``named``: with ``-m`` naming the metrics, which spares PostgreSQL their search.
    """
    command = [sys.executable, "-m", "jobdb", "results", "--db", _url(url), "-e", "bench"]
    command += ["-g", ",".join(KEYS), "--csv", "--quiet"]
    command += ["-m", ",".join(METRICS)] if named else []
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return out.count("\n") - 1


def floor_sql(pg: bool) -> str:
    """The aggregation as one query that knows its metrics."""
    if pg:
        keys = ", ".join(f"params -> '{k}'" for k in KEYS)
        values = {m: f"(result #>> '{{{m.replace('.', ',')}}}')::float8" for m in METRICS}
        stats = ", ".join(f"count({v}), avg({v}), stddev_samp({v})" for v in values.values())
    else:
        keys = ", ".join(f"json_extract(params, '$.{k}')" for k in KEYS)
        values = {m: f"json_extract(result, '$.{m}')" for m in METRICS}
        stats = ", ".join(f"count({v}), avg({v}), avg({v} * {v})" for v in values.values())
    return (
        f"SELECT {keys}, {stats} FROM jobs WHERE state = 'done' "
        f"GROUP BY {', '.join(str(i + 1) for i in range(len(KEYS)))}"
    )


def run_floor(url: URL, pg: bool) -> int:
    with contextlib.closing(_raw_connect(url, pg)) as conn:
        return len(conn.execute(floor_sql(pg)).fetchall())


def export_csv(url: URL, pg: bool, path: Path) -> None:
    """The per-job table, exported once (untimed) for the pandas peer."""
    frame = _frame_from_database(url, pg)
    frame.to_csv(path, index=False)


def run_pandas_csv(path: Path) -> int:
    import pandas as pd  # type: ignore[import-untyped]

    return _group(pd.read_csv(path))


def run_pandas_db(url: URL, pg: bool) -> int:
    return _group(_frame_from_database(url, pg))


def _frame_from_database(url: URL, pg: bool) -> Any:
    import pandas as pd

    with contextlib.closing(_raw_connect(url, pg)) as conn:
        rows = conn.execute("SELECT params, result FROM jobs WHERE state = 'done'").fetchall()
    loads = (lambda v: v) if pg else json.loads
    records = [{**loads(p), **_flat(loads(r))} for p, r in rows]
    return pd.DataFrame.from_records(records)


def _flat(result: dict[str, Any]) -> dict[str, Any]:
    return {"acc": result["acc"], "loss": result["loss"], "val.acc": result["val"]["acc"]}


def _group(frame: Any) -> int:
    grouped = frame.groupby(list(KEYS))[list(METRICS)].agg(["count", "mean", "std"])
    return len(grouped)


def _raw_connect(url: URL, pg: bool) -> Any:
    if pg:
        import psycopg

        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return psycopg.connect(dsn, autocommit=True, options="-c jit=off")
    return sqlite3.connect(str(url.database))


def _url(url: URL) -> str:
    return url.render_as_string(hide_password=False)


# --------------------------------------------------------------------------
# measuring

Timings = dict[tuple[str, str], list[float]]
SIDES = (
    "jobdb results",
    "SQL floor",
    "pandas, exported CSV",
    "pandas, from the database",
    "jobdb results -m (metrics named)",
)


def measure_backend(backend: str, url: URL, runs: int, folder: Path, timings: Timings) -> None:
    pg = backend == "postgres"
    exported = folder / f"{backend}.csv"
    export_csv(url, pg, exported)
    calls: dict[str, Callable[[], int]] = {
        SIDES[0]: lambda: run_jobdb(url),
        SIDES[1]: lambda: run_floor(url, pg),
        SIDES[2]: lambda: run_pandas_csv(exported),
        SIDES[3]: lambda: run_pandas_db(url, pg),
        SIDES[4]: lambda: run_jobdb(url, named=True),
    }
    for run in range(runs):
        order = list(calls)[run % len(calls) :] + list(calls)[: run % len(calls)]
        for side in order:
            with timed() as watch:
                groups = calls[side]()
            if groups != GROUPS:
                raise SystemExit(f"{backend} {side}: {groups} groups, expected {GROUPS}")
            timings.setdefault((backend, side), []).append(watch.seconds)
            log(f"{backend:9} {side:26} {watch.seconds:7.2f} s")


def python_start() -> float:
    """The interpreter and jobdb's imports alone: ``jobdb --version``, median of 3."""
    times = []
    for _ in range(3):
        with timed() as watch:
            subprocess.run([sys.executable, "-m", "jobdb", "--version"], check=True, stdout=-3)
        times.append(watch.seconds)
    return median(times)


def report(timings: Timings, backends: Sequence[str]) -> str:
    rows: list[list[object]] = []
    for backend in backends:
        name = "SQLite" if backend == "sqlite" else "PostgreSQL"
        floor = median(timings[(backend, SIDES[1])])
        for side in SIDES:
            seconds = median(timings[(backend, side)])
            verdict = ""
            if side in (SIDES[0], SIDES[4]):
                met = seconds / floor <= TARGET_RATIO
                verdict = f"≤ {TARGET_RATIO:g}× floor: {'met' if met else 'MISSED'}"
            rows.append([name, side, seconds, seconds / floor, verdict])
    return markdown_table(["backend", "side", "median s", "× floor", "target"], rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs per side")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="sqlite")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    timings: Timings = {}
    with tempfile.TemporaryDirectory() as tmp, databases(backends, Path(tmp), "results") as found:
        for backend, (url, _) in found.items():
            store = connect(url)
            try:
                with timed() as watch:
                    jobs = build(store)
                log(f"{backend}: {jobs:,} jobs written in {watch.seconds:.1f} s")
            finally:
                store.dispose()
            measure_backend(backend, url, args.runs, Path(tmp), timings)
        postgres = next((version for _, version in found.values() if version), None)
        start = python_start()
    print(f"Measured on {machine(postgres)}; commit {git_revision()}; {args.runs} runs.\n")
    print(report(timings, backends))
    print(f"\n`jobdb --version` alone (interpreter and imports): {start:.2f} s")


if __name__ == "__main__":
    main()
