"""W4: graph operations on 1,000,000 jobs and 1,000,000 edges (3 phases), half of them done.

The graph is W1's shape scaled up: 50 ``features`` jobs (one per model),
each the parent of 10,000 ``train`` jobs, each the parent of one ``eval``
job: 1,000,050 jobs and 1,000,000 edges at ``--scale 1``, written straight
to the driver (``executemany`` on SQLite, ``COPY`` on PostgreSQL). Within a
model, train job k is done for k mod 10 in 0–6 (its eval done for 0–2,
ready for 3–6), ready for 7–8 (eval waiting) and failed for 9 (eval
blocked); done and failed jobs have their attempt row. So every model's
subtree (1 + 20,000 jobs) is alike, and half of all jobs are done.

Three operations are timed, each next to the same operation written as
raw SQL with the DB-API driver (stdlib ``sqlite3`` / psycopg 3) on the same
database, in the same run, rotating which goes first. The raw SQL is timed
twice: as written after reading the plans (``raw SQL``: ``+state`` guards
on SQLite, a fenced recursion on PostgreSQL; see :class:`RawSide`), which
is the floor the targets are measured against, and as first written
(``raw, no hint``):

- **claim**: ``queries.claim(conn, 100)`` (ready → queued, attempt rows
  written) in a transaction that is rolled back; the floor runs the same
  ``UPDATE … RETURNING`` and ``INSERT … SELECT``.
- **promote**: ``queries.promote_children`` of 1,000 train jobs that just
  finished (their 1,000 eval children become ready), in its own committed
  transaction; a fresh 1,000 each run.
- **reset**: ``jobdb.resetting.reset`` of one features job with
  ``cascade=True`` (its 20,000 descendants), committed; a fresh model each
  run. The raw SQL is the two ``UPDATE``\\ s a person would write (descendants
  by a recursive CTE → waiting with the per-attempt columns cleared, the
  root → ready); it skips what jobdb adds around them: locking and reading
  the affected set for the plan and the report, the checks for parents
  that failed outside the set and for results missing from the attempt
  history.

Times are whole transactions (BEGIN to COMMIT or ROLLBACK), medians of
``--runs``; progress goes to stderr, the markdown table to stdout::

    python scripts/bench/graph.py [--runs 5] [--scale 1] [--backend sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import shlex
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
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
from sqlalchemy import bindparam, insert, text
from sqlalchemy.engine import URL

from jobdb import queries, resetting
from jobdb.models import Experiment, Phase
from jobdb.scheduling import insert_rows
from jobdb.selectors import JobFilter
from jobdb.store import Store, connect

MODELS = 50
PER_MODEL = 10_000
CLAIM = 100
PROMOTE = 1_000
ACTOR = "bench"
TARGET_CLAIM_MS = 50.0
TARGET_RATIO = 2.0

JOB_COLUMNS = (
    "id experiment_id phase_id params params_hash state priority max_attempts attempt result "
    "exit_code"
).split()
ATTEMPT_COLUMNS = "job_id number state params result exit_code".split()
RESULT = '{"acc": 0.5}'


# --------------------------------------------------------------------------
# the graph


@dataclass(frozen=True)
class Shape:
    """Where each job of the W4 graph is: ids are assigned, not left to the database."""

    models: int

    @property
    def jobs(self) -> int:
        return self.models * (1 + 2 * PER_MODEL)

    @property
    def edges(self) -> int:
        return self.models * 2 * PER_MODEL

    def features(self, model: int) -> int:
        return 1 + model

    def train(self, model: int, k: int) -> int:
        return 1 + self.models + model * PER_MODEL + k

    def eval(self, model: int, k: int) -> int:
        return 1 + self.models + (self.models + model) * PER_MODEL + k


_TRAIN = ("done",) * 7 + ("ready",) * 2 + ("failed",)
_EVAL = ("done",) * 3 + ("ready",) * 4 + ("waiting",) * 2 + ("blocked",)


def job_row(job_id: int, exp: int, phase: int, state: str, model: int, k: int) -> tuple[Any, ...]:
    """A row of :data:`JOB_COLUMNS`; done jobs have a result, jobs that ran an exit code."""
    ran, done = state in ("done", "failed"), state == "done"
    identity = (job_id, exp, phase, f'{{"model": {model}, "k": {k}}}', f"{job_id:064x}")
    outcome = (RESULT if done else None, (0 if done else 1) if ran else None)
    return (*identity, state, k % 4, 1, int(ran), *outcome)


def model_rows(
    shape: Shape, model: int, exp: int, phases: Sequence[int]
) -> tuple[list[tuple[Any, ...]], list[tuple[int, int]]]:
    """One model's jobs (its features job, 10,000 train, 10,000 eval) and their edges."""
    root = shape.features(model)
    rows = [job_row(root, exp, phases[0], "done", model, -1)]
    edges: list[tuple[int, int]] = []
    for k in range(PER_MODEL):
        train, evaluation = shape.train(model, k), shape.eval(model, k)
        rows.append(job_row(train, exp, phases[1], _TRAIN[k % 10], model, k))
        rows.append(job_row(evaluation, exp, phases[2], _EVAL[k % 10], model, k))
        edges += [(root, train), (train, evaluation)]
    return rows, edges


def attempt_rows(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Attempt 1 of every job that ran, with the job's outcome (as jobdb's finish writes it)."""
    return [(r[0], 1, r[5], r[3], r[9], r[10]) for r in rows if r[5] in ("done", "failed")]


def build(store: Store, shape: Shape) -> None:
    """Write the graph in one transaction, model by model (memory stays flat)."""
    with store.write() as conn:
        exp = conn.execute(
            insert(Experiment).values(name="w4", settings={}).returning(Experiment.id)
        ).scalar_one()
        phases = [
            conn.execute(
                insert(Phase)
                .values(experiment_id=exp, name=name, position=i, config={})
                .returning(Phase.id)
            ).scalar_one()
            for i, name in enumerate(("features", "train", "eval"))
        ]
        for model in range(shape.models):
            rows, edges = model_rows(shape, model, exp, phases)
            insert_rows(conn, "jobs", JOB_COLUMNS, rows, None)
            insert_rows(conn, "edges", ("parent_id", "child_id"), edges, None)
            insert_rows(conn, "attempts", ATTEMPT_COLUMNS, attempt_rows(rows), None)
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn.execute(text("ANALYZE"))  # what autovacuum does after a bulk load
            conn.commit()


# --------------------------------------------------------------------------
# what each run works on: fresh jobs for the operations that write


@dataclass
class Work:
    """Hands out models and train jobs that no earlier run has touched."""

    shape: Shape
    _next_root: int = 0
    _next_batch: int = 0

    def root(self) -> int:
        """A features job (the reset root), one model per call from the first models."""
        model = self._next_root
        self._next_root += 1
        return model

    def finished_batch(self) -> list[int]:
        """1,000 ready train jobs (k mod 10 in 7–8), from the last models."""
        per_model = PER_MODEL // 10 * 2 // PROMOTE
        batch = self._next_batch
        self._next_batch += 1
        model = self.shape.models - 1 - batch // per_model
        offset = batch % per_model * PROMOTE
        ready = [k for k in range(PER_MODEL) if _TRAIN[k % 10] == "ready"]
        return [self.shape.train(model, k) for k in ready[offset : offset + PROMOTE]]


def models_needed(runs: int, sides: int = 3) -> int:
    """Each run resets one model per side and promotes 1,000 train jobs per side (2 per model)."""
    return sides * runs + (sides * runs + 1) // 2


# --------------------------------------------------------------------------
# the sides: jobdb and raw SQL


class JobdbSide:
    """jobdb's own functions on a ``Store``."""

    name = "jobdb"

    def __init__(self, store: Store) -> None:
        self.store = store

    def claim(self) -> int:
        with self.store.engine.connect() as conn:
            transaction = conn.begin()
            claimed = queries.claim(conn, CLAIM, actor=ACTOR)
            transaction.rollback()
        return len(claimed)

    def promote(self, parents: list[int]) -> int:
        with self.store.write() as conn:
            return len(queries.promote_children(conn, parents, actor=ACTOR))

    def reset(self, root: int) -> int:
        outcome = resetting.reset(self.store, JobFilter(ids=(root,)), cascade=True, actor=ACTOR)
        return sum(c.count for c in outcome.changes if c.before != c.after)


class RawSide:
    """The same operations as hand-written SQL on the DB-API connection.

    With ``hint`` the SQL carries what a careful person adds after reading
    the plans: on SQLite the state guard of each ``UPDATE`` is written
    ``+state`` (without statistics SQLite otherwise walks the state index,
    every ready, waiting, … job, to find a few ids); on PostgreSQL the
    recursion of the reset is fenced (:data:`FENCED_STEP`).
    """

    def __init__(self, url: URL, dialect: str, *, hint: bool = True) -> None:
        self.pg = dialect == "postgresql"
        self.name = "raw SQL" if hint else "raw, no hint"
        self.state = "+state" if hint and not self.pg else "state"
        self.step = FENCED_STEP if hint and self.pg else PLAIN_STEP
        self.conn = _raw_connect(url, self.pg)
        self.mark = "%s" if self.pg else "?"
        self.now = "statement_timestamp()" if self.pg else "strftime('%Y-%m-%d %H:%M:%f', 'now')"

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self, commit: bool = True) -> Iterator[Any]:
        cursor = self.conn.cursor()
        cursor.execute("BEGIN" if self.pg else "BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT" if commit else "ROLLBACK")

    def in_ids(self, column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
        if self.pg:
            return f"{column} = ANY(%s)", [list(ids)]
        return f"{column} IN ({', '.join('?' * len(ids))})", list(ids)

    def claim(self) -> int:
        lock = " FOR UPDATE SKIP LOCKED" if self.pg else ""
        with self.transaction(commit=False) as cur:
            cur.execute(
                "WITH picked AS MATERIALIZED (SELECT id FROM jobs WHERE state = 'ready' "
                f"ORDER BY priority DESC, id LIMIT {CLAIM}{lock}) "
                f"UPDATE jobs SET state = 'queued', state_reason = 'claimed', "
                f"state_actor = {self.mark}, attempt = attempt + 1, executor = NULL, "
                f"worker = NULL, {CLEARED}, queued_at = {self.now}, updated_at = {self.now} "
                f"WHERE id IN (SELECT id FROM picked) AND {self.state} = 'ready' "
                "RETURNING id, attempt, experiment_id, phase_id, params, priority, max_attempts",
                (ACTOR,),
            )
            ids = [row[0] for row in cur.fetchall()]
            where, params = self.in_ids("id", ids)
            cur.execute(
                "INSERT INTO attempts (job_id, number, state, params, executor, worker, "
                f"queued_at) SELECT id, attempt, 'queued', params, executor, worker, {self.now} "
                f"FROM jobs WHERE {where}",
                params,
            )
        return len(ids)

    def promote(self, parents: list[int]) -> int:
        where, params = self.in_ids("parent_id", parents)
        with self.transaction() as cur:
            cur.execute(
                "UPDATE jobs SET state = 'ready', state_reason = 'parents done', "
                f"state_actor = {self.mark}, updated_at = {self.now} "
                f"WHERE {self.state} = 'waiting' "
                f"AND id IN (SELECT child_id FROM edges WHERE {where}) "
                f"AND {NO_UNFINISHED_PARENT} RETURNING id",
                [ACTOR, *params],
            )
            return len(cur.fetchall())

    def reset(self, root: int) -> int:
        m = self.mark
        values = f"state_reason = {m}, state_actor = {m}, updated_at = {self.now}, {CLEARED}"
        with self.transaction() as cur:
            cur.execute(
                f"WITH RECURSIVE below(id) AS (SELECT child_id FROM edges WHERE parent_id = {m} "
                f"UNION {self.step}) UPDATE jobs SET state = 'waiting', {values} "
                f"WHERE id IN (SELECT id FROM below) AND {self.state} IN ({RESETTABLE}) "
                "RETURNING id",
                (root, "reset: an ancestor was reset", ACTOR),
            )
            moved = len(cur.fetchall())
            cur.execute(
                f"UPDATE jobs SET state = CASE WHEN {NO_UNFINISHED_PARENT} THEN 'ready' "
                f"ELSE 'waiting' END, {values} WHERE id = {m} AND state IN ({RESETTABLE}) "
                "RETURNING id",
                ("reset", ACTOR, root),
            )
            return moved + len(cur.fetchall())


CLEARED = ", ".join(
    f"{column} = NULL"
    for column in "external_id host pid gpus exit_code error result started_at finished_at "
    "heartbeat_at stdout_path stderr_path".split()
)
RESETTABLE = "'ready', 'done', 'failed', 'crashed', 'cancelled', 'blocked'"
PLAIN_STEP = "SELECT e.child_id FROM edges e JOIN below b ON e.parent_id = b.id"
#: PostgreSQL guesses millions of rows for a recursive CTE and merge-joins each step with
#: all of ``edges``; a LATERAL subquery behind ``OFFSET 0`` makes it probe the index.
FENCED_STEP = (
    "SELECT c.child_id FROM below b CROSS JOIN LATERAL "
    "(SELECT e.child_id FROM edges e WHERE e.parent_id = b.id OFFSET 0) c"
)
NO_UNFINISHED_PARENT = (
    "NOT EXISTS (SELECT 1 FROM edges e JOIN jobs p ON p.id = e.parent_id "
    "WHERE e.child_id = jobs.id AND p.state <> 'done')"
)


def _raw_connect(url: URL, pg: bool) -> Any:
    """A driver connection set up like jobdb's (WAL, busy timeout, synchronous=FULL; JIT off)."""
    if pg:
        import psycopg

        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return psycopg.connect(dsn, autocommit=True, options="-c jit=off")
    conn = sqlite3.connect(str(url.database), isolation_level=None)
    for pragma in ("busy_timeout = 60000", "foreign_keys = ON", "synchronous = FULL"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


#: Milliseconds per (backend, operation, side name).
Timings = dict[tuple[str, str, str], list[float]]


def measure(
    timings: Timings, backend: str, op: str, side: Any, call: Callable[[], int], expected: int
) -> None:
    """Time one call; it must have changed ``expected`` jobs."""
    with timed() as watch:
        got = call()
    if got != expected:
        raise SystemExit(f"{backend} {op} {side.name}: {got} jobs, expected {expected}")
    timings.setdefault((backend, op, side.name), []).append(watch.seconds * 1000)
    log(f"{backend:10} {op:8} {side.name:12} {watch.seconds * 1000:9.1f} ms")


def run_backend(backend: str, store: Store, shape: Shape, runs: int, timings: Timings) -> None:
    """Each run times every operation on every side, rotating which side goes first."""
    work = Work(shape)
    raws = [RawSide(store.url, store.dialect), RawSide(store.url, store.dialect, hint=False)]
    moved_by_reset = 1 + 2 * PER_MODEL - PER_MODEL * 2 // 10  # its waiting jobs stay
    try:
        for run in range(runs):
            sides: list[Any] = [JobdbSide(store), *raws]
            sides = sides[run % len(sides) :] + sides[: run % len(sides)]
            for side in sides:
                measure(timings, backend, "claim", side, side.claim, CLAIM)
            for side in sides:
                batch = work.finished_batch()
                _finish(store, batch)
                promote = functools.partial(side.promote, batch)
                measure(timings, backend, "promote", side, promote, PROMOTE)
            for side in sides:
                reset = functools.partial(side.reset, shape.features(work.root()))
                measure(timings, backend, "reset", side, reset, moved_by_reset)
    finally:
        for raw in raws:
            raw.close()


def _finish(store: Store, train_ids: list[int]) -> None:
    """Mark train jobs done (untimed): the "just finished" parents of the promote step."""
    done = text("UPDATE jobs SET state = 'done' WHERE id IN :ids")
    with store.write() as conn:
        conn.execute(done.bindparams(bindparam("ids", expanding=True)), {"ids": train_ids})


OPERATIONS = (
    ("claim", f"find and claim {CLAIM} ready jobs (rolled back)"),
    ("promote", f"promote the children of {PROMOTE:,} finished jobs"),
    ("reset", f"reset --cascade one root ({2 * PER_MODEL:,} descendants)"),
)


def report(timings: Timings, backends: Sequence[str]) -> str:
    """The markdown table: medians per backend and operation, the ratio and the target."""
    rows: list[list[object]] = []
    for backend in backends:
        name = "SQLite" if backend == "sqlite" else "PostgreSQL"
        for op, what in OPERATIONS:
            mine, floor, naive = (
                median(timings.get((backend, op, side), []))
                for side in ("jobdb", "raw SQL", "raw, no hint")
            )
            rows.append([name, what, mine, floor, mine / floor, naive, _verdict(op, mine, floor)])
    headers = "backend|operation|jobdb ms|raw SQL ms|× raw|raw, no planner hint ms|target"
    return markdown_table(headers.split("|"), rows)


def _verdict(op: str, mine: float, floor: float) -> str:
    within = f"≤ {TARGET_RATIO:g}× raw"
    parts = [f"{within}: {'met' if mine / floor <= TARGET_RATIO else 'MISSED'}"]
    if op == "claim":
        fast = mine < TARGET_CLAIM_MS
        parts.insert(0, f"< {TARGET_CLAIM_MS:g} ms: {'met' if fast else 'MISSED'}")
    return "; ".join(parts)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs per operation and side")
    parser.add_argument("--scale", type=float, default=1.0, help=f"{MODELS} models × scale")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    shape = Shape(max(round(MODELS * args.scale), models_needed(args.runs)))
    if shape.models > round(MODELS * args.scale):
        log(f"using {shape.models} models: {args.runs} runs need that many fresh ones")
    timings: Timings = {}
    versions = []
    with tempfile.TemporaryDirectory(prefix="jobdb-w4-") as folder:
        with databases(backends, Path(folder), "w4") as found:
            for backend, (url, version) in found.items():
                versions.append(version)
                store = connect(url)
                try:
                    with timed() as build_time:
                        build(store, shape)
                    log(f"{backend}: built {shape.jobs:,} jobs in {build_time.seconds:.1f} s")
                    run_backend(backend, store, shape, args.runs, timings)
                finally:
                    store.dispose()
    command = shlex.join(["python", "scripts/bench/graph.py", *(argv or sys.argv[1:])])
    print(
        f"W4 — {shape.jobs:,} jobs, {shape.edges:,} edges; median of {args.runs} runs "
        f"(ms per transaction)"
    )
    print(f"`{command}` at jobdb {git_revision()} on {machine(max(versions) or None)}\n")
    print(report(timings, backends))


if __name__ == "__main__":
    main()
