"""A throwaway PostgreSQL cluster for tests and benchmarks (``initdb`` in a temp dir).

Real PostgreSQL, not a fake: the server binaries (``initdb``, ``pg_ctl``,
``postgres``) from Debian's ``postgresql`` package are started on a free
local port with a Unix socket in the cluster's own folder, trust
authentication, fsync on (benchmarks measure real commits) and JIT off.

PostgreSQL refuses to run as root, so when we are root the cluster belongs
to the ``postgres`` system user (or ``nobody``) and its commands run through
``runuser``.

Usage::

    with PostgresCluster.start() as cluster:
        url = cluster.create_database("t1")    # a SQLAlchemy URL
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL

SEARCH_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")


def find_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
    candidates = [Path(p) for p in SEARCH_DIRS]
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.insert(0, Path(found).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL")


@dataclass
class PostgresCluster:
    """A running throwaway PostgreSQL server."""

    bindir: Path
    root: Path
    port: int
    user: str | None
    superuser: str = "jobdb"

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    @classmethod
    @contextlib.contextmanager
    def start(cls, root: Path | None = None) -> Iterator[PostgresCluster]:
        """Start a cluster; it is stopped and deleted when the block ends."""
        bindir = find_binaries()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        owned = root is None
        folder = Path(tempfile.mkdtemp(prefix="jobdb-pg-")) if root is None else root
        cluster = cls(bindir=bindir, root=folder, port=_free_port(), user=_server_user())
        try:
            cluster._init()
            cluster._start()
            yield cluster
        finally:
            cluster.stop()
            if owned:
                shutil.rmtree(folder, ignore_errors=True)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = list(args)
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        return subprocess.run(argv, check=True, capture_output=True, text=True, cwd=self.root)

    def _init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self.root.chmod(0o755)
            # Every folder above must be traversable by the server's user.
            for parent in self.root.parents:
                with contextlib.suppress(OSError):
                    parent.chmod(parent.stat().st_mode | 0o011)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            self.superuser,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def _start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c jit=off -c max_connections=200 -c shared_buffers=128MB"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        """Stop the server (fast mode); safe to call twice."""
        if (self.datadir / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run(
                    str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "stop"
                )

    def url(self, database: str = "postgres") -> URL:
        """A SQLAlchemy URL (psycopg 3 driver) for ``database`` on this server."""
        return URL.create(
            "postgresql+psycopg",
            username=self.superuser,
            host="127.0.0.1",
            port=self.port,
            database=database,
        )

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run one statement outside a transaction (CREATE DATABASE needs that)."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.superuser, dbname=database, autocommit=True
        ) as conn:
            conn.execute(sql)

    def create_database(self, name: str, template: str | None = None) -> URL:
        """Create a database (optionally a copy of ``template``) and return its URL."""
        clause = f' TEMPLATE "{template}"' if template else ""
        self.execute(f'CREATE DATABASE "{name}"{clause}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server log, printed when a test fails."""
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_until(predicate: object, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(interval)
    return False
