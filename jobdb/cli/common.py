"""Options shared by every command, and opening the store they name."""

from __future__ import annotations

from typing import Annotated

import typer

from jobdb.config import resolve_url
from jobdb.store import Store, connect

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="Database URL (default: $JOBDB_URL, else jobdb.toml, else ./jobdb.sqlite).",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")
]
ExperimentOption = Annotated[
    list[str] | None,
    typer.Option(
        "--experiment",
        "-e",
        metavar="NAME",
        help="Only this experiment (repeat or comma-separate).",
    ),
]
PhaseOption = Annotated[
    list[str] | None,
    typer.Option(
        "--phase", "-p", metavar="NAME", help="Only this phase (repeat or comma-separate)."
    ),
]
StateOption = Annotated[
    list[str] | None,
    typer.Option(
        "--state", "-s", metavar="STATE", help="Only jobs in this state (repeat or comma-separate)."
    ),
]
WhereOption = Annotated[
    list[str] | None,
    typer.Option(
        "--where", "-w", metavar="KEY=VALUE", help="Only jobs whose parameter KEY equals VALUE."
    ),
]


def open_store(db: str | None) -> Store:
    """The store named by ``--db`` (or the lookup order), with its schema checked."""
    return connect(resolve_url(db).url)
