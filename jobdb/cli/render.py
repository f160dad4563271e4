"""Rich rendering of the plain data that ``jobdb.views`` returns."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from jobdb.states import State
from jobdb.views import JobDetail, JobSummary, PhaseStatus

STATE_STYLE = {
    State.WAITING: "dim",
    State.READY: "cyan",
    State.QUEUED: "blue",
    State.RUNNING: "yellow",
    State.DONE: "green",
    State.FAILED: "red",
    State.CRASHED: "bold magenta",
    State.CANCELLED: "bright_black",
    State.BLOCKED: "dark_orange",
}

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def progress_bar(description: str = "{task.description}") -> Progress:
    """The progress bar every long command shows on stderr (gone when done)."""
    columns = (TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=err_console, transient=True)


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(State(state), ""))


def print_json(data: Any) -> None:
    """JSON on stdout, plain (no colour codes), for scripts."""
    print(json.dumps(data, indent=2, default=str))


def compact(mapping: Mapping[str, Any] | None, limit: int = 60) -> str:
    """``{"lr": 0.1, "wd": 0}`` → ``lr=0.1 wd=0``, cut at ``limit`` characters."""
    if not mapping:
        return ""
    text = " ".join(
        f"{k}={json.dumps(v) if isinstance(v, str | dict | list) else v}"
        for k, v in mapping.items()
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_table(rows: list[PhaseStatus]) -> Table:
    present = [s for s in State if any(row.counts.get(s.value) for row in rows)]
    table = Table(title="Jobs per phase and state", title_justify="left")
    table.add_column("experiment")
    table.add_column("phase")
    for state in present:
        table.add_column(state_text(state.value), justify="right")
    table.add_column("total", justify="right", style="bold")
    for row in rows:
        cells = [_count_cell(row.counts.get(s.value), s) for s in present]
        table.add_row(row.experiment, row.phase, *cells, str(row.total))
    return table


def _count_cell(count: int | None, state: State) -> Text:
    return Text(str(count), style=STATE_STYLE[state]) if count else Text("")


def status_summary(rows: Iterable[PhaseStatus]) -> Text:
    """One line: ``120 jobs: 80 done, 30 running, 10 failed``."""
    totals: dict[str, int] = {}
    for row in rows:
        for state, n in row.counts.items():
            totals[state] = totals.get(state, 0) + n
    line = Text(f"{sum(totals.values())} jobs")
    parts = [(s, totals[s.value]) for s in State if totals.get(s.value)]
    for i, (state, n) in enumerate(parts):
        line.append(": " if i == 0 else ", ")
        line.append(f"{n} {state.value}", style=STATE_STYLE[state])
    return line


def jobs_table(jobs: list[JobSummary]) -> Table:
    table = Table(show_lines=False)
    for name, justify in (
        ("id", "right"),
        ("experiment", "left"),
        ("phase", "left"),
        ("state", "left"),
        ("try", "right"),
        ("params", "left"),
        ("result / reason", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for job in jobs:
        outcome = compact(job.result) if job.result else (job.reason or "")
        table.add_row(
            str(job.id),
            job.experiment,
            job.phase,
            state_text(job.state),
            f"{job.attempt}/{job.max_attempts}",
            compact(job.params),
            outcome,
        )
    return table


def _when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def job_detail(detail: JobDetail) -> list[Any]:
    """The renderables of ``jobdb show``, top to bottom."""
    job = detail.job
    head = Text.assemble(
        (f"job {job['id']}", "bold"),
        f"  {detail.experiment} / {detail.phase}  ",
        state_text(job["state"]),
        f"  attempt {job['attempt']}/{job['max_attempts']}  priority {job['priority']}",
    )
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for label, key in (
        ("reason", "state_reason"),
        ("by", "state_actor"),
        ("created", "created_at"),
        ("queued", "queued_at"),
        ("started", "started_at"),
        ("finished", "finished_at"),
        ("heartbeat", "heartbeat_at"),
        ("executor", "executor"),
        ("external id", "external_id"),
        ("host", "host"),
        ("pid", "pid"),
        ("gpus", "gpus"),
        ("exit code", "exit_code"),
        ("error", "error"),
        ("work dir", "work_dir"),
        ("stdout", "stdout_path"),
        ("stderr", "stderr_path"),
    ):
        if job.get(key) is not None:
            facts.add_row(label, _when(job[key]))
    out: list[Any] = [head, facts, _mapping_table("parameters", job["params"])]
    if job.get("result") is not None:
        out.append(_mapping_table("result", job["result"]))
    out.append(_relatives_table(detail))
    if detail.attempts:
        out.append(_attempts_table(detail.attempts))
    if detail.events:
        out.append(_events_table(detail.events))
    return out


def _mapping_table(title: str, mapping: Mapping[str, Any]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in mapping.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    return table


def _relatives_table(detail: JobDetail) -> Table:
    table = Table(title="dependencies", title_justify="left")
    for name in ("direction", "job", "phase", "state"):
        table.add_column(name)
    for direction, relatives in (("parent", detail.parents), ("child", detail.children)):
        for rel in relatives:
            table.add_row(direction, str(rel.id), rel.phase, state_text(rel.state))
    if not detail.parents and not detail.children:
        table.add_row("none", "", "", "")
    return table


def _attempts_table(attempts: list[dict[str, Any]]) -> Table:
    table = Table(title="attempts", title_justify="left")
    for name in (
        "#",
        "state",
        "reason",
        "host",
        "pid",
        "external id",
        "queued",
        "ended",
        "exit",
        "stderr",
    ):
        table.add_column(name)
    for a in attempts:
        table.add_row(
            str(a["number"]),
            a["state"],
            a.get("reason") or "",
            a.get("host") or "",
            _when(a.get("pid")),
            a.get("external_id") or "",
            _when(a["queued_at"]),
            _when(a.get("ended_at")),
            _when(a.get("exit_code")),
            a.get("stderr_path") or "",
        )
    return table


def _events_table(events: list[dict[str, Any]]) -> Table:
    table = Table(title="events", title_justify="left")
    for name in ("at", "from", "to", "reason", "by"):
        table.add_column(name)
    for e in events:
        table.add_row(
            _when(e["at"]),
            e.get("from_state") or "",
            state_text(e["to_state"]),
            e.get("reason") or "",
            e.get("actor") or "",
        )
    return table
