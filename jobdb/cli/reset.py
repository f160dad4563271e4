"""``jobdb reset`` and ``jobdb cancel``: preview, ask, then change in one transaction."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from jobdb import resetting
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
from jobdb.resetting import Change, Outcome, Preview
from jobdb.selectors import JobFilter
from jobdb.states import State

JobsArgument = Annotated[
    list[int] | None,
    typer.Argument(metavar="JOB", help="Job ids (see jobdb list).", show_default=False),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", "-n", help="Show what would change; change nothing.")
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before changing.")]

RESET_HELP = """\
Reset jobs to run again: the selected jobs become ready (waiting while a
parent is not done), and with --cascade every job below them waits again.

Queued and running jobs among them are cancelled and their programs
stopped; results stay in the attempt history. Without --cascade, a reset
refuses when a job below the selection has run or is running. Jobs below
that are waiting, ready or blocked simply wait again (blocked ones are
released).

Examples:

  jobdb reset 12 15 --dry-run

  jobdb reset --state failed,crashed -e mnist-grid

  jobdb reset -p pretrain --where lr=0.1 --cascade --yes
"""

CANCEL_HELP = """\
Cancel jobs that have not ended: queued and running programs are stopped,
and every waiting job below them becomes blocked (a reset releases them).

Examples:

  jobdb cancel 42

  jobdb cancel -e mnist-grid --state waiting,ready --yes
"""


@app.command(help=RESET_HELP)
def reset(
    jobs: JobsArgument = None,
    experiment: ExperimentOption = None,
    phase: PhaseOption = None,
    state: StateOption = None,
    where: WhereOption = None,
    cascade: Annotated[
        bool, typer.Option("--cascade", help="Also reset jobs below that have run or are running.")
    ] = False,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    db: DbOption = None,
    json_: JsonOption = False,
) -> None:
    selector = JobFilter.from_cli(experiment, phase, state, where, jobs)
    store = open_store(db)

    def act(expect: frozenset[int] | None) -> Outcome:
        return resetting.reset(store, selector, cascade=cascade, expect=expect)

    _run(
        lambda: resetting.preview_reset(store, selector, cascade=cascade), act, dry_run, yes, json_
    )


@app.command(help=CANCEL_HELP)
def cancel(
    jobs: JobsArgument = None,
    experiment: ExperimentOption = None,
    phase: PhaseOption = None,
    state: StateOption = None,
    where: WhereOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    db: DbOption = None,
    json_: JsonOption = False,
) -> None:
    selector = JobFilter.from_cli(experiment, phase, state, where, jobs)
    store = open_store(db)

    def act(expect: frozenset[int] | None) -> Outcome:
        return resetting.cancel(store, selector, expect=expect)

    _run(lambda: resetting.preview_cancel(store, selector), act, dry_run, yes, json_)


def _run(
    preview: Callable[[], Preview],
    act: Callable[[frozenset[int] | None], Outcome],
    dry_run: bool,
    yes: bool,
    json_: bool,
) -> None:
    """Preview, ask, act; with ``--yes`` act at once (the outcome says what was done)."""
    if yes and not dry_run:
        _print_outcome(act(None), json_)
        return
    shown = preview()
    if not dry_run and not _moves(shown.changes):
        _nothing_to_do(shown, json_)
        return
    if dry_run:
        if json_:
            render.print_json({**shown.to_json(), "dry_run": True})
            return
        _print_preview(shown)
        render.console.print("Dry run: nothing was changed.")
        return
    _print_preview(shown, to=render.err_console if json_ else render.console)
    _confirm(shown)
    _print_outcome(act(shown.ids), json_)


def _nothing_to_do(shown: Preview, json_: bool) -> None:
    """Every selected job is already where the command would put it: no question asked."""
    if json_:
        render.print_json(Outcome(shown.action, shown.changes, shown.skipped).to_json())
        return
    _print_preview(shown)


def _confirm(shown: Preview) -> None:
    verb = "Reset" if shown.action == "reset" else "Cancel"
    question = f"{verb} these {len(shown.ids):,} jobs?"
    if not sys.stdin.isatty():
        raise BadInput(f"{question} (no terminal to ask: add --yes, or --dry-run to look only)")
    if not typer.confirm(question):
        raise typer.Abort()


# --------------------------------------------------------------------------
# rendering


def _print_preview(shown: Preview, to: Console | None = None) -> None:
    console = to or render.console
    if shown.nodes is not None:
        console.print(_tree(shown))
    else:
        console.print(_changes_table(shown.changes, "would become"))
    if shown.skipped:
        console.print(_skipped_line(shown.skipped))
    console.print(_summary(shown.changes, f"would {shown.action}"))


def _print_outcome(outcome: Outcome, json_: bool) -> None:
    if json_:
        render.print_json(outcome.to_json())
        return
    render.console.print(_changes_table(outcome.changes, "now"))
    if outcome.skipped:
        render.console.print(_skipped_line(outcome.skipped))
    for stop in outcome.stopped:
        head = f"job {stop.job_id} ({stop.state}, attempt {stop.attempt}): {stop.outcome}"
        render.console.print(Text(f"{head} ({stop.detail})"))
    if outcome.archived:
        render.console.print(f"{outcome.archived:,} attempt rows completed from their job rows.")
    done = "reset" if outcome.action == "reset" else "cancelled"
    render.console.print(_summary(outcome.changes, done))


def _tree(shown: Preview) -> Tree:
    """The affected jobs, each under its parents in the set (a job with two is shown twice)."""
    assert shown.nodes is not None
    nodes = shown.nodes
    has_parent = {child for node in nodes.values() for child in node.children}
    tree = Tree(f"{shown.action}{' --cascade' if shown.cascade else ''}", guide_style="dim")

    def add(branch: Tree, job_id: int, seen: frozenset[int]) -> None:
        node = nodes[job_id]
        line = Text.assemble(
            (f"job {node.id}", "bold"),
            f" {node.phase} ",
            render.state_text(node.before),
        )
        if node.after != node.before:
            line.append(" → ")
            line.append_text(render.state_text(node.after))
        line.append(f"  {render.compact(node.params, 50)}", style="dim")
        child_branch = branch.add(line)
        for child in node.children:
            if child not in seen:
                add(child_branch, child, seen | {child})

    for job_id in sorted(nodes):
        if job_id not in has_parent:
            add(tree, job_id, frozenset({job_id}))
    return tree


def _changes_table(changes: list[Change], after: str) -> Table:
    table = Table(title="jobs per phase and state", title_justify="left")
    for name, justify in (
        ("experiment", "left"),
        ("phase", "left"),
        ("was", "left"),
        (after, "left"),
        ("jobs", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for c in changes:
        same = c.after == c.before
        table.add_row(
            c.experiment,
            c.phase,
            render.state_text(c.before),
            Text("unchanged", style="dim") if same else render.state_text(c.after),
            f"{c.count:,}",
        )
    return table


def _skipped_line(skipped: list[Change]) -> Text:
    total = sum(c.count for c in skipped)
    parts = ", ".join(f"{c.count:,} {c.before} ({c.phase})" for c in skipped)
    return Text(f"Left alone, already ended: {total:,} job(s): {parts}")


def _moves(changes: list[Change]) -> dict[str, int]:
    """Jobs that change state, per state they go to (in the order of the state table)."""
    moved: dict[str, int] = {}
    for c in changes:
        if c.after != c.before:
            moved[c.after] = moved.get(c.after, 0) + c.count
    return {s.value: moved[s.value] for s in State if s.value in moved}


def _summary(changes: list[Change], verb: str) -> Text:
    """``Reset 12 jobs: 3 → ready, 9 → waiting`` (jobs that keep their state not counted)."""
    moved = _moves(changes)
    total = sum(moved.values())
    if not total:
        n = sum(c.count for c in changes)
        return Text(f"Nothing to change: all {n:,} job(s) are already where they belong.")
    line = Text(f"{verb[0].upper()}{verb[1:]} {total:,} job(s)")
    for i, (state, n) in enumerate(moved.items()):
        line.append(": " if i == 0 else ", ")
        line.append(f"{n:,} → ")
        line.append_text(render.state_text(state))
    unchanged = sum(c.count for c in changes) - total
    if unchanged:
        line.append(f"; {unchanged:,} already where they belong")
    active = sum(c.count for c in changes if c.before in ("queued", "running"))
    if active:
        line.append(f"; {active:,} queued or running (their programs stopped)")
    return line.append(".")
