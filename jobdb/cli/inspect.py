"""``jobdb status``, ``jobdb list``, ``jobdb show``: looking at jobs."""

from __future__ import annotations

from typing import Annotated

import typer

from jobdb import views
from jobdb.cli import render
from jobdb.cli.app import app
from jobdb.cli.common import (
    DbOption,
    ExperimentOption,
    JsonOption,
    PhaseOption,
    StateOption,
    WhereOption,
    open_store,
)
from jobdb.errors import BadInput
from jobdb.selectors import JobFilter


@app.command()
def status(
    db: DbOption = None,
    experiment: ExperimentOption = None,
    phase: PhaseOption = None,
    json_: JsonOption = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="Print only the one-line summary (e.g. '20 jobs: 18 done, 2 failed').",
        ),
    ] = False,
) -> None:
    """Job counts per experiment, phase and state, and a one-line summary.

    Each state has its colour (when the output is a terminal). --json prints
    one object per experiment and phase for scripts; --quiet only the summary.

    Examples:

      jobdb status -e mnist-grid

      jobdb status --quiet

      jobdb status --json
    """
    if quiet and json_:
        raise BadInput("--quiet and --json exclude each other")
    store = open_store(db)
    with store.read() as conn:
        rows = views.status(conn, JobFilter.from_cli(experiment, phase))
    if json_:
        render.print_json(
            [
                {"experiment": r.experiment, "phase": r.phase, "counts": r.counts, "total": r.total}
                for r in rows
            ]
        )
        return
    if quiet:
        render.console.print(render.status_summary(rows))
        return
    if not rows:
        render.console.print(f"No experiments in {store.display_url}.")
        return
    render.console.print(render.status_table(rows))
    render.console.print(render.status_summary(rows))


@app.command("list")
def list_(
    db: DbOption = None,
    experiment: ExperimentOption = None,
    phase: PhaseOption = None,
    state: StateOption = None,
    where: WhereOption = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, help="At most this many jobs (0: all).")
    ] = 100,
    json_: JsonOption = False,
) -> None:
    """List jobs with their state, attempt, parameters and result.

    Examples:

      jobdb list --state failed,crashed

      jobdb list -e mnist-grid -p train --where lr=0.1 --json
    """
    selector = JobFilter.from_cli(experiment, phase, state, where)
    store = open_store(db)
    with store.read() as conn:
        jobs = views.list_jobs(conn, selector, limit or None)
        total = views.count_jobs(conn, selector) if limit and len(jobs) == limit else len(jobs)
    if json_:
        render.print_json([job.to_json() for job in jobs])
        return
    if not jobs:
        render.console.print("No jobs match.")
        return
    render.console.print(render.jobs_table(jobs))
    if total > len(jobs):
        render.console.print(f"showing {len(jobs)} of {total} jobs (--limit 0 shows all)")


@app.command()
def show(
    job: Annotated[int, typer.Argument(metavar="JOB", help="The job id (see jobdb list).")],
    db: DbOption = None,
    json_: JsonOption = False,
) -> None:
    """One job: parameters, state, dependencies up and down, attempts, events, result, logs."""
    store = open_store(db)
    with store.read() as conn:
        detail = views.show_job(conn, job)
    if json_:
        render.print_json(detail.to_json())
        return
    for part in render.job_detail(detail):
        render.console.print(part)
