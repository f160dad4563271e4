"""Running ``jobdb`` the way a user does: a subprocess, shared by the acceptance tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import URL

JOBDB = [sys.executable, "-m", "jobdb"]


def jobdb(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    check: int | None = 0,
    stdin: str = "",
) -> subprocess.CompletedProcess[str]:
    """Run ``jobdb ARGS`` (stdin a pipe, not a terminal); assert the exit code when ``check``.

    ``JOBDB_URL`` from the calling environment is dropped so that each test
    names its database; ``env`` adds variables.
    """
    full_env = {k: v for k, v in os.environ.items() if k != "JOBDB_URL"}
    full_env.update(env or {})
    full_env["COLUMNS"] = "200"
    proc = subprocess.run(
        [*JOBDB, *args],
        cwd=cwd,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def db_arg(url: URL) -> str:
    """The URL as the ``--db`` argument (with its password: tests own their databases)."""
    return url.render_as_string(hide_password=False)
