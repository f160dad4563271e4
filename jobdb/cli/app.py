"""The Typer application every command module registers on."""

from __future__ import annotations

import typer

from jobdb import __version__

HELP = """\
jobdb: a job database for machine-learning experiments.

Grids of jobs grouped in phases with dependencies, in SQLite (the default,
a file in this folder) or PostgreSQL, run on local GPUs or Slurm.

The database is --db URL, else $JOBDB_URL, else the nearest jobdb.toml,
else ./jobdb.sqlite (created on first use).

Examples:

  jobdb init                      create (or upgrade) the database
  jobdb status                    job counts per experiment, phase and state
  jobdb list --state failed       the failed jobs
  jobdb show 42                   one job: parameters, dependencies, attempts
"""

app = typer.Typer(
    name="jobdb",
    help=HELP,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,  # a local may hold a database password
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

db_app = typer.Typer(help="Manage the database itself (schema upgrades).", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"jobdb {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        help="Print the version and exit.",
        callback=_version,
        is_eager=True,
    ),
) -> None:
    """jobdb: a job database for machine-learning experiments."""
