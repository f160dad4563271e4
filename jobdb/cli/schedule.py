"""``jobdb schedule``: a spec (YAML, InfQuery, or jobman's command line) → jobs and edges."""

from __future__ import annotations

import dataclasses
import getpass
import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table
from rich.tree import Tree

from jobdb import addphase, provenance, scheduling
from jobdb.cli import render
from jobdb.cli.app import app
from jobdb.cli.common import DbOption, JsonOption, open_store
from jobdb.errors import BadInput
from jobdb.spec import ExperimentSpec, Plan, expand, load_spec
from jobdb.spec.jobman import parse_jobman, parse_jobman_phase

#: Above this many new jobs, scheduling asks before writing (``--yes`` skips).
CONFIRM_ABOVE = 100_000
#: Show a progress bar when writing at least this many rows (about a second).
PROGRESS_ABOVE = 20_000

EXAMPLES = """\
Examples:

  jobdb schedule experiment.yaml --dry-run

  jobdb schedule experiment.yaml

  jobdb schedule infquery.yaml          (the InfQuery format is detected)

  jobdb schedule -e sweep --command 'python train.py --lr {lr} --wd {wd}' \\
      'lr={{0.1,0.01}}' 'wd={{0,1e-4}}' 'layers=2'

  jobdb schedule -e sweep --phase retrain --command 'python retrain.py --lr {lr}' \\
      phase=main wd=0 -- lr -- 'seed={{1,2}}'
"""


@app.command(help=f"Turn a spec into jobs and edges, in one transaction.\n\n{EXAMPLES}")
def schedule(
    spec: Annotated[
        str | None,
        typer.Argument(metavar="[SPEC]", help="A YAML spec file (jobdb or InfQuery format)."),
    ] = None,
    assignments: Annotated[
        list[str] | None,
        typer.Argument(metavar="[KEY=VALUE|KEY={{A,B}}]...", show_default=False),
    ] = None,
    experiment: Annotated[
        str | None,
        typer.Option("--experiment", "-e", help="Experiment name (jobman form)."),
    ] = None,
    command: Annotated[
        str | None,
        typer.Option("--command", "-c", help="Command template, e.g. 'python t.py --lr {lr}'."),
    ] = None,
    phase: Annotated[
        str | None,
        typer.Option(
            "--phase",
            "-p",
            help="Add this phase below jobs already in the database (jobman phase form: "
            "FILTERS -- GROUP KEYS -- GRID).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Show what would be created; write nothing.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help=f"Do not ask above {CONFIRM_ABOVE:,} new jobs.")
    ] = False,
    db: DbOption = None,
    json_: JsonOption = False,
) -> None:
    args = assignments or []
    if phase is not None and _has_separator(([spec] if spec else []) + args):
        _add_phase(phase, spec, args, experiment, command, db, dry_run, json_)
        return
    parsed = _parse(spec, args, experiment, command, phase)
    plan = expand(parsed)
    store = open_store(db)
    if dry_run or (plan.job_count > CONFIRM_ABOVE and not yes):
        with store.read() as conn:
            result = scheduling.preview(conn, plan)
        if dry_run:
            _report(result, plan, json_, dry_run=True)
            return
        _confirm(result.new_jobs)
    with _WriteProgress(plan) as advance, store.write() as conn:
        result = scheduling.write_plan(
            conn, plan, provenance.collect(_spec_path(spec)), actor=_actor(), progress=advance
        )
    _report(result, plan, json_, dry_run=False)


def _add_phase(
    phase: str,
    spec: str | None,
    assignments: list[str],
    experiment: str | None,
    command: str | None,
    db: str | None,
    dry_run: bool,
    json_: bool,
) -> None:
    if experiment is None or command is None:
        raise BadInput("--phase needs --experiment NAME and --command CMD")
    args = _restore_first_separator(([spec] if spec else []) + assignments)
    new = addphase.NewPhase(experiment, phase, command, parse_jobman_phase(args))
    store = open_store(db)
    with store.read() if dry_run else store.write() as conn:
        result = addphase.add_phase(conn, new, actor=_actor(), dry_run=dry_run)
    _report(result, None, json_, dry_run=dry_run)


def _has_separator(args: list[str]) -> bool:
    return "--" in args or "--" in sys.argv[1:]


def _restore_first_separator(args: list[str]) -> list[str]:
    """Put back the first ``--``, which the command-line parser swallows.

    Everything after the first ``--`` of the real command line reaches us as
    plain arguments; counting them in ``sys.argv`` tells where it stood.
    """
    argv = sys.argv[1:]
    if "--" not in argv or args.count("--") >= 2:
        return args
    split = len(args) - (len(argv) - argv.index("--") - 1)
    return [*args[:split], "--", *args[split:]]


def _parse(
    spec: str | None,
    assignments: list[str],
    experiment: str | None,
    command: str | None,
    phase: str | None,
) -> ExperimentSpec:
    if command is not None:
        if experiment is None:
            raise BadInput("--command needs --experiment NAME (the jobman form)")
        args = ([spec] if spec else []) + assignments
        return _named_phase(parse_jobman(experiment, command, args), phase)
    if phase is not None:
        raise BadInput("--phase goes with --experiment and --command (the jobman form)")
    if spec is None:
        raise BadInput(
            "give a spec file, or --experiment NAME --command CMD KEY={{A,B}}...",
            hint="jobdb schedule --help shows examples",
        )
    if assignments:
        raise BadInput(f"unexpected arguments after the spec file: {' '.join(assignments)}")
    if experiment is not None:
        raise BadInput("--experiment goes with --command; a spec file names its experiment")
    return load_spec(Path(spec))


def _named_phase(spec: ExperimentSpec, name: str | None) -> ExperimentSpec:
    """A jobman grid's single phase, renamed from ``main`` when ``--phase`` names it."""
    if name is None:
        return spec
    (only,) = spec.phases
    config = {**only.config, "name": name}
    return dataclasses.replace(spec, phases=(dataclasses.replace(only, name=name, config=config),))


def _spec_path(spec: str | None) -> Path | None:
    return Path(spec) if spec and Path(spec).is_file() else None


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"schedule:{user}@{socket.gethostname()}:{os.getpid()}"


def _confirm(new_jobs: int) -> None:
    if new_jobs <= CONFIRM_ABOVE:
        return
    question = f"This creates {new_jobs:,} new jobs. Go ahead?"
    if not sys.stdin.isatty():
        raise BadInput(f"{question} (no terminal to ask: add --yes)")
    if not typer.confirm(question):
        raise typer.Abort()


class _WriteProgress:
    """A progress bar over rows written, shown only when writing takes a while."""

    def __init__(self, plan: Plan) -> None:
        self.total = plan.job_count + len(plan.edges)
        self.bar: Progress | None = None

    def __enter__(self) -> scheduling.Progress | None:
        if self.total < PROGRESS_ABOVE:
            return None
        self.bar = render.progress_bar("writing jobs and edges")
        self.bar.start()
        task = self.bar.add_task("write", total=self.total)
        bar = self.bar
        return lambda n: bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _report(
    result: scheduling.ScheduleResult, plan: Plan | None, json_: bool, *, dry_run: bool
) -> None:
    if json_:
        render.print_json(
            {
                "experiment": result.experiment,
                "dry_run": dry_run,
                "phases": [
                    {"phase": p.name, "planned": p.planned, "new": p.new, "existing": p.existing}
                    for p in result.phases
                ],
                "new_jobs": result.new_jobs,
                "new_edges": result.new_edges,
                "ready": result.ready,
                "blocked": result.blocked,
            }
        )
        return
    render.console.print(_table(result, dry_run))
    if dry_run and plan is not None:
        render.console.print(_sample_tree(plan))
    render.console.print(_summary(result, dry_run))


def _table(result: scheduling.ScheduleResult, dry_run: bool) -> Table:
    verb = "would create" if dry_run else "created"
    table = Table(title=f"experiment {result.experiment}", title_justify="left")
    for name in ("phase", "jobs in spec", "already there", verb):
        table.add_column(name, justify="left" if name == "phase" else "right")
    for phase in result.phases:
        table.add_row(phase.name, f"{phase.planned:,}", f"{phase.existing:,}", f"{phase.new:,}")
    return table


def _summary(result: scheduling.ScheduleResult, dry_run: bool) -> str:
    if result.new_jobs == 0:
        return f"Nothing new: all {result.planned_jobs:,} jobs are already scheduled."
    if dry_run:
        return (
            f"Dry run: would create {result.new_jobs:,} jobs and {result.new_edges:,} edges; "
            "nothing was written."
        )
    parts = [
        f"Created {result.new_jobs:,} jobs and {result.new_edges:,} edges",
        f"{result.ready:,} ready",
    ]
    if result.blocked:
        parts.append(f"{result.blocked:,} blocked under failed parents")
    if result.back_to_waiting:
        parts.append(f"{result.back_to_waiting:,} ready jobs wait for new parents")
    return "; ".join(parts) + "."


def _sample_tree(plan: Plan, per_phase: int = 2) -> Tree:
    """The first jobs of each phase and their parents: a glance at the shape."""
    tree = Tree("sample")
    for name, jobs in plan.jobs.items():
        branch = tree.add(f"{name} ({len(jobs):,} jobs)")
        for index, job in enumerate(jobs[:per_phase]):
            parents = [f"{p}[{i}]" for (p, i), c in plan.edges if c == (name, index)][:4]
            after = f"  ← {', '.join(parents)}" if parents else ""
            branch.add(f"[{index}] {render.compact(job.params, 80)}{after}")
    return tree
