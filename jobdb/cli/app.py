"""The Typer application every command module registers on."""

from __future__ import annotations

import typer

from jobdb import __version__

HELP = """\
jobdb: a job database for machine-learning experiments.

Grids of jobs grouped in phases with dependencies, in SQLite (the default,
a file in this folder) or PostgreSQL, run on local GPUs or Slurm. The
database is --db URL, else $JOBDB_URL, else the nearest jobdb.toml, else
./jobdb.sqlite. Every command has --help with examples; docs/ has the rest.

\b
  jobdb schedule spec.yaml        grid + phases -> jobs, edges (--dry-run)
  jobdb dispatch --watch          run ready jobs here (--gpus 0,1 --slots 4)
  jobdb dispatch -x slurm --array on Slurm; jobdb worker pulls jobs anywhere
  jobdb run JOB                   run one job (what the executors launch)
  jobdb status                    counts per phase and state (-q, --json)
  jobdb list --state failed       jobs; jobdb show 42; jobdb logs 42
  jobdb monitor --watch           mark lost jobs crashed, retry, dashboard
  jobdb reset 42 --cascade        run a job and all after it again (cancel)
  jobdb results --group-by lr     parameters x metrics, mean/std over folds
  jobdb best val_acc --mode max   the winning configuration
  jobdb plot val_acc -o acc.png   a PNG; jobdb report EXP: one HTML page
  jobdb smoke EXP                 each phase's first job on CPU, first
  jobdb export EXP -o exp.jsonl   an experiment to a file; jobdb import it
  jobdb db copy SRC_URL DST_URL   a whole database, e.g. SQLite -> PostgreSQL
  jobdb init / jobdb db upgrade   create or upgrade the schema

Shell completion: jobdb --install-completion (bash, zsh, fish, PowerShell).
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

db_app = typer.Typer(
    help="The database itself: schema upgrades, copies between databases.",
    no_args_is_help=True,
)
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
