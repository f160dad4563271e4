"""W3: worker processes claiming a queue of ready jobs until it is empty.

Each worker loops claim-one → mark done. Three ways of doing that are timed
in the same run, each on a fresh database:

- ``floor``: the loop written directly with the stdlib ``sqlite3`` / psycopg 3
  on a minimal table (id, state, priority; index on (state, priority desc,
  id)): a claim transaction of one ``UPDATE … RETURNING``, then a transaction
  of one ``UPDATE`` to done.
- ``jobdb``: jobdb's own queries on jobdb's schema, each worker with its own
  ``jobdb.store.connect``: one write transaction for ``claim`` (ready →
  queued), one for ``start`` + ``finish`` (queued → running → done). Two
  transactions per job, like the floor.
- ``jobdb-3tx``: the same with ``start`` and ``finish`` in transactions of
  their own (three per job), the way a runner that records the start before
  the job runs does it.

Throughput is jobs / (last worker done − barrier release), median of the
runs. Each run also checks that every job was claimed exactly once, that no
worker saw "database is locked", that every job ended done, and reports the
fewest and most jobs one worker got (fairness).

Usage::

    python scripts/bench/claims.py [--jobs 10000] [--workers 8] [--runs 5]
                                   [--backend sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import shutil
import sqlite3
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from claims_workers import (
    VARIANTS,
    RunResult,
    Target,
    WorkerResult,
    psycopg_params,
    run_workers,
)
from common import (
    git_revision,
    log,
    machine,
    markdown_table,
    median,
    postgres_cluster,
    postgres_version,
)
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import URL, make_url

from jobdb.models import Attempt, Event, Experiment, Job, Phase
from jobdb.states import State
from jobdb.store import Store, connect, upgrade
from jobdb.testing import PostgresCluster


def summarise(target: Target, jobs: int, collected: list[WorkerResult], not_done: int) -> RunResult:
    claims = Counter(job_id for r in collected for job_id in r.claimed)
    elapsed = max(r.finished for r in collected) - min(r.started for r in collected)
    return RunResult(
        backend=target.backend,
        variant=target.variant,
        jobs_per_s=jobs / elapsed,
        double_claims=sum(n - 1 for n in claims.values()),
        lock_errors=sum(r.lock_errors for r in collected),
        not_done=not_done,
        per_worker=sorted(len(r.claimed) for r in collected),
    )


def not_done(target: Target, jobs: int) -> int:
    """Jobs that did not end correctly done (never claimed ones included)."""
    if target.variant == "floor":
        return floor_not_done(target)
    return jobdb_not_done(target, jobs)


def floor_not_done(target: Target) -> int:
    url = make_url(target.url)
    sql = "SELECT count(*) FROM jobs WHERE state <> 'done'"
    if target.backend == "sqlite":
        with contextlib.closing(sqlite3.connect(str(url.database))) as conn:
            return int(conn.execute(sql).fetchone()[0])
    import psycopg

    with psycopg.connect(**psycopg_params(url)) as pg:
        row = pg.execute(sql).fetchone()
    return int(row[0]) if row else -1


def jobdb_not_done(target: Target, jobs: int) -> int:
    """Jobs not done on attempt 1; a missing done attempt row or event is also counted."""
    store = connect(make_url(target.url))
    try:
        with store.read() as conn:
            done = conn.execute(
                select(func.count()).where(Job.state == State.DONE.value, Job.attempt == 1)
            ).scalar_one()
            attempts = conn.execute(
                select(func.count()).where(Attempt.state == State.DONE.value)
            ).scalar_one()
            # ready → queued → running → done: three events per job.
            events = conn.execute(select(func.count()).select_from(Event)).scalar_one()
    finally:
        store.dispose()
    return jobs - min(done, attempts, events // 3)


# --------------------------------------------------------------------------
# databases: a fresh one per run, with the ready jobs in it


def sqlite_url(path: Path) -> URL:
    return URL.create("sqlite", database=str(path))


def insert_jobdb_jobs(store: Store, jobs: int) -> None:
    """One experiment, one phase and ``jobs`` ready jobs, in bulk Core inserts."""
    with store.write() as conn:
        experiment_id = conn.execute(
            insert(Experiment)
            .values(name="w3", spec_text="", spec_format="yaml", spec_hash="", settings={})
            .returning(Experiment.id)
        ).scalar_one()
        phase_id = conn.execute(
            insert(Phase)
            .values(experiment_id=experiment_id, name="train", position=0, config={})
            .returning(Phase.id)
        ).scalar_one()
        rows = [
            {
                "experiment_id": experiment_id,
                "phase_id": phase_id,
                "params": {"i": i},
                "params_hash": f"{i:064x}",
                "state": State.READY.value,
                "priority": i % 4,
                "attempt": 0,
                "max_attempts": 1,
            }
            for i in range(jobs)
        ]
        conn.execute(insert(Job), rows)
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            # What autovacuum does after the insert: it analyses the table that changed,
            # not the empty attempts and events tables (a planner that believes those
            # empty would cache plans that scan them).
            conn.execute(text("ANALYZE jobs"))
            conn.commit()


def floor_sqlite_setup(path: Path, jobs: int) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(
            "CREATE TABLE jobs (id INTEGER PRIMARY KEY, state TEXT NOT NULL, "
            "priority INTEGER NOT NULL)"
        )
        conn.execute("CREATE INDEX ix_jobs_claim ON jobs (state, priority DESC, id)")
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO jobs (id, state, priority) VALUES (?, 'ready', ?)",
            ((i + 1, i % 4) for i in range(jobs)),
        )
        conn.execute("COMMIT")


def floor_postgres_setup(url: URL, jobs: int) -> None:
    import psycopg

    with psycopg.connect(**psycopg_params(url), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE jobs (id bigint PRIMARY KEY, state text NOT NULL, priority int NOT NULL)"
        )
        conn.execute("CREATE INDEX ix_jobs_claim ON jobs (state, priority DESC, id)")
        conn.execute(
            "INSERT INTO jobs (id, state, priority) "
            "SELECT g, 'ready', (g - 1) %% 4 FROM generate_series(1, %s) g",
            (jobs,),
        )
        conn.execute("ANALYZE jobs")


class Databases:
    """Fresh databases for each run: SQLite files, PostgreSQL databases from a template."""

    def __init__(self, folder: Path, jobs: int, cluster: PostgresCluster | None) -> None:
        self.folder = folder
        self.jobs = jobs
        self.cluster = cluster
        self.sqlite_template = folder / "template.sqlite"
        connect(sqlite_url(self.sqlite_template)).dispose()  # runs the migrations once
        if cluster is not None:
            cluster.create_database("w3_template")
            store = connect(cluster.url("w3_template"), ensure_schema=False)
            upgrade(store)
            store.dispose()

    @contextlib.contextmanager
    def fresh(self, backend: str, variant: str, run: int) -> Iterator[Target]:
        name = f"w3_{variant.replace('-', '_')}_{run}"
        if backend == "sqlite":
            with self._fresh_sqlite(name, variant) as url:
                yield Target(backend, variant, url.render_as_string(hide_password=False))
        else:
            with self._fresh_postgres(name, variant) as url:
                yield Target(backend, variant, url.render_as_string(hide_password=False))

    @contextlib.contextmanager
    def _fresh_sqlite(self, name: str, variant: str) -> Iterator[URL]:
        path = self.folder / f"{name}.sqlite"
        if variant == "floor":
            floor_sqlite_setup(path, self.jobs)
        else:
            shutil.copyfile(self.sqlite_template, path)
            store = connect(sqlite_url(path))
            insert_jobdb_jobs(store, self.jobs)
            store.dispose()
        try:
            yield sqlite_url(path)
        finally:
            for leftover in self.folder.glob(f"{name}.sqlite*"):
                leftover.unlink()

    @contextlib.contextmanager
    def _fresh_postgres(self, name: str, variant: str) -> Iterator[URL]:
        assert self.cluster is not None
        template = None if variant == "floor" else "w3_template"
        url = self.cluster.create_database(name, template=template)
        try:
            if variant == "floor":
                floor_postgres_setup(url, self.jobs)
            else:
                store = connect(url)
                insert_jobdb_jobs(store, self.jobs)
                store.dispose()
            yield url
        finally:
            self.cluster.drop_database(name)


# --------------------------------------------------------------------------
# the whole benchmark


def measure(databases: Databases, backend: str, variant: str, run: int, workers: int) -> RunResult:
    with databases.fresh(backend, variant, run) as target:
        collected = run_workers(target, workers)
        result = summarise(target, databases.jobs, collected, not_done(target, databases.jobs))
    log(
        f"run {run + 1} {backend:10} {variant:9} {result.jobs_per_s:8,.0f} jobs/s  "
        f"double {result.double_claims}  locked {result.lock_errors}  "
        f"not done {result.not_done}  per worker {result.per_worker}"
    )
    return result


def table(results: list[RunResult], backends: Sequence[str], variants: Sequence[str]) -> str:
    headers = [
        "backend",
        "loop",
        "jobs/s (median)",
        "runs: min–max jobs/s",
        "× floor",
        "double claims",
        "lock errors",
        "not done",
        "jobs per worker (min–max)",
    ]
    rows: list[list[object]] = []
    for backend in backends:
        floor = [r.jobs_per_s for r in results if r.backend == backend and r.variant == "floor"]
        for variant in variants:
            mine = [r for r in results if r.backend == backend and r.variant == variant]
            speeds = [r.jobs_per_s for r in mine]
            ratio = median(speeds) / median(floor) if floor else float("nan")
            rows.append(
                [
                    "SQLite" if backend == "sqlite" else "PostgreSQL",
                    variant,
                    median(speeds),
                    f"{min(speeds):,.0f}–{max(speeds):,.0f}",
                    ratio,
                    sum(r.double_claims for r in mine),
                    sum(r.lock_errors for r in mine),
                    sum(r.not_done for r in mine),
                    f"{min(min(r.per_worker) for r in mine):,}"
                    f"–{max(max(r.per_worker) for r in mine):,}",
                ]
            )
    return markdown_table(headers, rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=10_000, help="ready jobs in the queue")
    parser.add_argument("--workers", type=int, default=8, help="worker processes")
    parser.add_argument("--runs", type=int, default=5, help="runs per backend and loop")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated loops to time (default: {','.join(VARIANTS)})",
    )
    args = parser.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown loop(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    backends = {"sqlite": ["sqlite"], "postgres": ["postgresql"]}.get(
        args.backend, ["sqlite", "postgresql"]
    )
    revision = git_revision()
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(postgres_cluster()) if "postgresql" in backends else None
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jobdb-w3-")))
        databases = Databases(folder, args.jobs, cluster)
        results = [
            measure(databases, backend, variant, run, args.workers)
            for run in range(args.runs)
            for backend in backends
            for variant in args.variants
        ]
        pg = postgres_version(cluster) if cluster is not None else None
    command = shlex.join(["python", "scripts/bench/claims.py", *sys.argv[1:]])
    print(f"W3 — {args.jobs:,} ready jobs, {args.workers} worker processes, {args.runs} runs")
    print(f"`{command}` at jobdb {revision} on {machine(pg)}\n")
    print(table(results, backends, args.variants))


if __name__ == "__main__":
    main()
