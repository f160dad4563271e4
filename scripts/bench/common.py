"""Helpers shared by the benchmark scripts in ``scripts/bench``.

Timing, medians, a throwaway PostgreSQL server, a description of the machine
and markdown tables: what every benchmark needs so that its figures can be
pasted into ``docs/benchmarks.md`` with the command that produced them.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL

from jobdb.store import connect, upgrade
from jobdb.testing import PostgresCluster, find_binaries


@dataclass
class Stopwatch:
    """Seconds between entering and leaving a ``with timed()`` block."""

    start: float = 0.0
    end: float | None = None

    @property
    def seconds(self) -> float:
        end = time.perf_counter() if self.end is None else self.end
        return end - self.start


@contextlib.contextmanager
def timed() -> Iterator[Stopwatch]:
    """Time a block: ``with timed() as t: ...`` then read ``t.seconds``."""
    watch = Stopwatch(start=time.perf_counter())
    try:
        yield watch
    finally:
        watch.end = time.perf_counter()


def now() -> float:
    """A clock that is comparable between processes (CLOCK_MONOTONIC on Linux)."""
    return time.perf_counter()


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values (a benchmark that did not run)."""
    return statistics.median(values) if values else float("nan")


def repeat(runs: int, measure: Callable[[int], float]) -> list[float]:
    """Call ``measure(run_number)`` ``runs`` times and return what each call measured."""
    return [measure(run) for run in range(runs)]


def log(message: str) -> None:
    """Progress on stderr, so that stdout holds only the result table."""
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL server (initdb in a temp dir), stopped and deleted afterwards.

    The server log's tail is printed when the benchmark fails inside the block.
    """
    if find_binaries() is None:
        raise SystemExit("PostgreSQL server binaries (initdb, pg_ctl) not found")
    with PostgresCluster.start() as cluster:
        try:
            yield cluster
        except BaseException:
            log(f"--- PostgreSQL server log (tail) ---\n{cluster.log_tail()}")
            raise


@contextlib.contextmanager
def databases(
    backends: Sequence[str], folder: Path, name: str
) -> Iterator[dict[str, tuple[URL, str]]]:
    """One empty jobdb database per backend: {backend: (url, PostgreSQL version or "")}."""
    found: dict[str, tuple[URL, str]] = {}
    with contextlib.ExitStack() as stack:
        if "sqlite" in backends:
            found["sqlite"] = (URL.create("sqlite", database=str(folder / f"{name}.sqlite")), "")
        if "postgres" in backends:
            cluster = stack.enter_context(postgres_cluster())
            url = cluster.create_database(name)
            store = connect(url, ensure_schema=False)
            upgrade(store)
            store.dispose()
            found["postgres"] = (url, postgres_version(cluster))
        yield found


def postgres_version(cluster: PostgresCluster) -> str:
    """The server's version string, e.g. ``15.14``."""
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=cluster.port, user=cluster.superuser, dbname="postgres"
    ) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "unknown"


def machine(postgres: str | None = None) -> str:
    """One line describing where the figures were measured."""
    parts = [
        f"{os.cpu_count()} cores",
        f"{platform.machine()}",
        f"Linux {platform.release()}" if sys.platform == "linux" else sys.platform,
        f"Python {platform.python_version()}",
        f"SQLite {sqlite3.sqlite_version}",
    ]
    if postgres:
        parts.append(f"PostgreSQL {postgres}")
    return ", ".join(parts)


def git_revision() -> str:
    """The checked-out commit (with ``+dirty`` when files differ), or ``unknown``."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+dirty" if dirty else head


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; numbers are right-aligned."""
    align = [
        "---:" if rows and all(_is_number(row[i]) for row in rows) else "---"
        for i in range(len(headers))
    ]
    lines = [_row(headers), _row(align)]
    lines += [_row([_cell(value) for value in row]) for row in rows]
    return "\n".join(lines)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
