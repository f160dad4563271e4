"""Reading what the jobs produced: ``jobdb results``, ``best``, ``plot``, ``report``.

Each command parses its options, calls one function of :mod:`jobdb.analysis`
and prints what it returns; the work (queries, tables, plots, HTML) lives
there.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from jobdb.analysis import fetch, formats, html, plotdata, plotting, service, table, where
from jobdb.analysis import report as report_
from jobdb.analysis.service import Progress as OnBatch
from jobdb.cli import render
from jobdb.cli.app import app
from jobdb.cli.common import DbOption, ExperimentOption, PhaseOption, open_store
from jobdb.errors import BadInput
from jobdb.runtime.best import AGGREGATES, Candidate
from jobdb.states import parse_states
from jobdb.store import Store

#: Below this many jobs reading is quick and a progress bar would only flicker.
PROGRESS_FROM = 20_000

ResultStateOption = Annotated[
    list[str] | None,
    typer.Option(
        "--state",
        "-s",
        metavar="STATE",
        help="Only jobs in this state (repeat or comma-separate; default done; 'all': any).",
    ),
]
ConditionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        "-w",
        metavar="COND",
        help="Only jobs where KEY OP VALUE holds (OP: = != < <= > >=; KEY a parameter "
        "or a dotted metric, params./result. to say which; commas or repeats: AND).",
    ),
]
GroupByOption = Annotated[
    list[str] | None,
    typer.Option(
        "--group-by",
        "-g",
        metavar="KEYS",
        help="One row per value of these parameters, mean ± std over the other jobs "
        "(e.g. over folds and seeds).",
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def selection(
    experiment: Sequence[str] | None,
    phase: Sequence[str] | None,
    state: Sequence[str] | None,
    conditions: Sequence[str] | None,
) -> fetch.Selection:
    """The jobs the options name: done ones unless ``--state`` says otherwise."""
    names = _commas(state or ["done"])
    try:
        states = [] if "all" in names else parse_states(names)
    except ValueError as exc:
        raise BadInput(f"--state: {exc}") from None
    return fetch.Selection(
        experiments=tuple(_commas(experiment or ())),
        phases=tuple(_commas(phase or ())),
        states=tuple(states),
        conditions=where.parse(conditions),
    )


@contextlib.contextmanager
def progress(store: Store, scope_of: fetch.Selection, quiet: bool) -> Iterator[OnBatch | None]:
    """A progress bar on a terminal while many jobs are read; None when there is none."""
    if quiet or not render.err_console.is_terminal:
        yield None
        return
    with store.read() as conn:
        total = fetch.count(conn, fetch.resolve(conn, scope_of))
    if total < PROGRESS_FROM:
        yield None
        return
    with render.progress_bar("reading jobs") as bar:
        task = bar.add_task("read", total=total)
        yield lambda n: bar.advance(task, n)


@contextlib.contextmanager
def spinner(message: str, quiet: bool) -> Iterator[None]:
    """A transient status line on a terminal while the database works."""
    if quiet or not render.err_console.is_terminal:
        yield
        return
    with render.err_console.status(message):
        yield


@app.command()
def results(
    db: DbOption = None,
    experiment: ExperimentOption = None,
    phase: PhaseOption = None,
    state: ResultStateOption = None,
    where_: ConditionOption = None,
    group_by: GroupByOption = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric", "-m", metavar="NAME", help="Only these metrics (dotted for nested)."
        ),
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option("--sort", metavar="COLUMN", help="Sort by this metric or parameter."),
    ] = None,
    desc: Annotated[bool, typer.Option("--desc", help="Sort largest first.")] = False,
    top: Annotated[
        int | None, typer.Option("--top", "-n", min=1, help="Only the first N rows.")
    ] = None,
    csv: Annotated[bool, typer.Option("--csv", help="CSV instead of a table.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="A markdown table instead.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Parameters that vary × metrics: one row per job, or per group with mean ± std.

    Examples:

      jobdb results -e mnist-grid

      jobdb results -e cv -p train --group-by lr,model --sort val.acc --desc --top 5

      jobdb results --where 'lr<=0.01,model=resnet' --csv > results.csv
    """
    if csv + json_ + markdown > 1:
        raise BadInput("choose one of --csv, --json, --markdown")
    chosen = selection(experiment, phase, state, where_)
    keys = _commas(group_by or ())
    store = open_store(db)
    with (
        progress(store, chosen, quiet or bool(keys)) as on_batch,
        spinner("aggregating in the database…", quiet or not keys),
        store.read() as conn,
    ):
        shown = service.results(
            conn, chosen, group_by=keys, metrics=_commas(metric or ()), on_batch=on_batch
        )
    if sort:
        table.sort(shown, sort, descending=desc)
    table.top(shown, top)
    _print_table(shown, csv=csv, json_=json_, markdown=markdown)


def _print_table(shown: table.ResultTable, *, csv: bool, json_: bool, markdown: bool) -> None:
    if json_:
        render.print_json(formats.to_json(shown))
    elif csv:
        sys.stdout.write(formats.to_csv(shown))
    elif markdown:
        sys.stdout.write(formats.to_markdown(shown))
    elif not shown.rows:
        render.console.print("No jobs match.")
    else:
        render.console.print(formats.rich_table(shown))
        if shown.total > len(shown.rows):
            what = "groups" if shown.grouped else "jobs"
            render.console.print(f"showing {len(shown.rows)} of {shown.total} {what}")


@app.command()
def best(
    metric: Annotated[str, typer.Argument(help="The metric to rank by (dotted for nested).")],
    mode: Annotated[
        str, typer.Option("--mode", metavar="min|max", help="Whether smaller or larger wins.")
    ] = "max",
    group_by: GroupByOption = None,
    aggregate: Annotated[
        str,
        typer.Option(
            "--aggregate",
            metavar="HOW",
            help=f"How a group's jobs combine: {', '.join(AGGREGATES)}.",
        ),
    ] = "mean",
    db: DbOption = None,
    experiment: ExperimentOption = None,
    phase: PhaseOption = None,
    where_: ConditionOption = None,
    top: Annotated[int, typer.Option("--top", "-n", min=1, help="Show the best N candidates.")] = 1,
    json_: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False,
    quiet: QuietOption = False,
) -> None:
    """The winning configuration and its score: what a select: phase would pick.

    Examples:

      jobdb best acc --mode max -e cv -p train

      jobdb best val.loss --mode min --group-by lr,wd --top 3
    """
    chosen = selection(experiment, phase, ["done"], where_)
    store = open_store(db)
    with progress(store, chosen, quiet) as on_batch, store.read() as conn:
        jobs = service.rows(conn, chosen, on_batch)
    found = service.best(
        jobs, metric=metric, mode=mode, keys=_commas(group_by or ()), aggregate=aggregate
    )
    ranking = found.choice.ranking[:top]
    if json_:
        render.print_json(
            {
                "metric": metric,
                "mode": mode,
                "aggregate": aggregate,
                "keys": found.keys,
                "winner": _candidate_json(found.choice.winner),
                "ranking": [_candidate_json(c) for c in ranking],
                "candidates": len(found.choice.ranking),
            }
        )
        return
    render.console.print(found.choice.describe(metric, aggregate), highlight=False)
    if top > 1:
        render.console.print(formats.rich_table(_ranking_table(found, ranking)))


def _candidate_json(candidate: Candidate) -> dict[str, Any]:
    return {
        "values": candidate.values,
        "score": candidate.score,
        "job_ids": list(candidate.job_ids),
    }


def _ranking_table(found: service.Best, ranking: Sequence[Candidate]) -> table.ResultTable:
    """The candidates as a table with one metric column, the score."""
    column = f"{found.aggregate} {found.metric}"
    shown = table.ResultTable(list(found.keys), [column], grouped=True)
    for candidate in ranking:
        shown.rows.append(
            table.Row(dict(candidate.values), {column: candidate.score}, n=len(candidate.job_ids))
        )
    return shown


def _commas(values: Sequence[str] | None) -> list[str]:
    """Repeated and comma-separated option values, flattened."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


@app.command()
def plot(
    metric: Annotated[str, typer.Argument(help="The metric on the y axis (dotted for nested).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="FILE", help="Where to write the PNG.")
    ] = Path("plot.png"),
    x: Annotated[
        str | None,
        typer.Option("--x", "-x", metavar="PARAM", help="The parameter on the x axis."),
    ] = None,
    line: Annotated[
        str | None,
        typer.Option("--line", "-l", metavar="PARAM", help="One line per value of this parameter."),
    ] = None,
    db: DbOption = None,
    experiment: ExperimentOption = None,
    phase: PhaseOption = None,
    state: ResultStateOption = None,
    where_: ConditionOption = None,
    json_: Annotated[
        bool, typer.Option("--json", help="Also print the plotted numbers as JSON.")
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """A PNG of a metric against a parameter, one line per value of another.

    Points are means over the jobs that share the x and line values (folds,
    seeds), with the standard deviation as error bars. A metric reported as
    a list (one value per epoch) gives a learning curve instead.

    Examples:

      jobdb plot acc --x lr --line model -e cv -o acc.png

      jobdb plot train_loss --line lr -e cv -o curves.png
    """
    chosen = selection(experiment, phase, state, where_)
    store = open_store(db)
    with progress(store, chosen, quiet) as on_batch, store.read() as conn:
        jobs = service.rows(conn, chosen, on_batch)
    data = plotdata.build(jobs, metric, x, line)
    size = plotting.write_png(data, output)
    if json_:
        render.print_json({**data.to_json(), "file": str(output), "bytes": size})
        return
    points = sum(len(s.x) for s in data.series)
    render.console.print(
        f"wrote {output} ({len(data.series)} line(s), {points} point(s))", highlight=False
    )


@app.command()
def report(
    experiment: Annotated[str, typer.Argument(help="The experiment to report on.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="FILE", help="Where to write the HTML.")
    ] = Path("report.html"),
    db: DbOption = None,
    quiet: QuietOption = False,
) -> None:
    """One self-contained HTML page about an experiment, to open or send.

    Spec and provenance, job counts per phase and state, the phase graph,
    results tables, plots (inline PNG; needs the plot extra), and the failed
    and crashed jobs with their reasons and log tails. No network needed to
    view it.

    Example: jobdb report cv -o cv.html
    """
    store = open_store(db)
    with spinner("reading the experiment…", quiet), store.read() as conn:
        gathered = report_.gather(conn, experiment)
    with spinner("drawing plots…", quiet):
        report_.draw(gathered)
    output.write_text(html.render(gathered), encoding="utf-8")
    for note in gathered.notes:
        render.err_console.print(f"[yellow]note:[/] {note}", highlight=False)
    if not quiet:
        plots = sum(1 for phase in gathered.phases for plot in phase.plots if plot.png)
        render.console.print(f"wrote {output} ({plots} plot(s))", highlight=False)
