"""jobdb's command line: a thin Typer layer over service functions.

Each module registers one group of commands on :data:`app` when imported;
``main`` is the console script and the single error boundary.
"""

from __future__ import annotations

from jobdb.cli import (
    database,
    inspect,
    monitor,
    reset,
    results,
    run,
    schedule,
    smoke,
    transfer,
)
from jobdb.cli.app import app
from jobdb.cli.boundary import main

__all__ = [
    "app",
    "database",
    "inspect",
    "main",
    "monitor",
    "reset",
    "results",
    "run",
    "schedule",
    "smoke",
    "transfer",
]
