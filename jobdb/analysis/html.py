"""A :class:`~jobdb.analysis.report.Report` as one self-contained HTML page (pure).

No scripts, no network: styles are inline, plots are ``data:`` PNGs, the
phase graph is inline SVG. Every piece of text from the database (names,
parameters, spec, log tails) goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from jobdb.analysis import formats
from jobdb.analysis.report import FailedJob, PhaseReport, Plot, Report
from jobdb.analysis.table import ResultTable
from jobdb.states import State

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 75em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
img.plot { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.muted { color: #777; } .done { color: #1a7f37; } .failed, .crashed { color: #c62828; }
"""
BOX_W, BOX_H, GAP_X, GAP_Y = 150, 36, 60, 20


def render(report: Report) -> str:
    """The whole page."""
    name = escape(report.experiment)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>jobdb report: {name}</title><style>{STYLE}</style></head><body>",
        f"<h1>Experiment {name}</h1>",
        f'<p class="muted">created {escape(_when(report.created_at))}</p>',
        *(f'<p class="muted">{escape(note)}</p>' for note in report.notes),
        _provenance(report),
        _counts(report.phases),
        _graph(report.phases),
        *(_phase_results(phase) for phase in report.phases),
        _failed(report.failed),
        "<h2>Spec</h2>",
        f"<pre>{escape(report.spec_text) or '(no spec text)'}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _when(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "unknown"


def _provenance(report: Report) -> str:
    rows = [(key, "" if value is None else str(value)) for key, value in report.provenance.items()]
    return "<h2>Provenance</h2>" + _table(["", ""], rows, header=False)


def _counts(phases: Sequence[PhaseReport]) -> str:
    present = [s.value for s in State if any(p.counts.get(s.value) for p in phases)]
    rows = [
        [
            phase.name,
            *(str(phase.counts.get(s, "")) for s in present),
            str(sum(phase.counts.values())),
        ]
        for phase in phases
    ]
    return "<h2>Jobs per phase and state</h2>" + _table(
        ["phase", *present, "total"], rows, numeric_from=1, id_="state-counts"
    )


def _graph(phases: Sequence[PhaseReport]) -> str:
    """The phases as boxes, each after the phase it depends on, and the same as a table."""
    depth = _depths(phases)
    columns: dict[int, list[str]] = {}
    for phase in phases:
        columns.setdefault(depth[phase.name], []).append(phase.name)
    where = {
        name: (d * (BOX_W + GAP_X) + 10, i * (BOX_H + GAP_Y) + 10)
        for d, names in columns.items()
        for i, name in enumerate(names)
    }
    width = (max(columns, default=0) + 1) * (BOX_W + GAP_X)
    height = max((len(n) for n in columns.values()), default=1) * (BOX_H + GAP_Y) + 10
    shapes = [_arrow(where[p.after], where[p.name]) for p in phases if p.after in where]
    shapes += [_box(name, *xy) for name, xy in where.items()]
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'role="img" aria-label="phase graph"><defs><marker id="head" markerWidth="8" '
        'markerHeight="8" refX="8" refY="4" orient="auto"><path d="M0,0 L8,4 L0,8 z" '
        f'fill="#555"/></marker></defs>{"".join(shapes)}</svg>'
    )
    rows = [
        [
            phase.name,
            phase.after or "",
            ", ".join(phase.config.get("group_by") or []),
            _select_text(phase.config.get("select")),
        ]
        for phase in phases
    ]
    return "<h2>Phases</h2>" + svg + _table(["phase", "after", "group by", "select"], rows)


def _depths(phases: Sequence[PhaseReport]) -> dict[str, int]:
    after = {phase.name: phase.after for phase in phases}
    depth: dict[str, int] = {}
    for name in after:
        seen, at, d = set(), name, 0
        while after.get(at) in after and at not in seen:
            seen.add(at)
            at, d = after[at] or "", d + 1
        depth[name] = d
    return depth


def _box(name: str, x: int, y: int) -> str:
    label = name if len(name) <= 20 else name[:19] + "…"
    return (
        f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="#eef4fb" '
        f'stroke="#4a78b0"/><text x="{x + BOX_W / 2}" y="{y + BOX_H / 2 + 5}" '
        f'text-anchor="middle" font-size="13">{escape(label)}</text>'
    )


def _arrow(start: tuple[int, int], end: tuple[int, int]) -> str:
    (x1, y1), (x2, y2) = start, end
    return (
        f'<line x1="{x1 + BOX_W}" y1="{y1 + BOX_H / 2}" x2="{x2}" y2="{y2 + BOX_H / 2}" '
        'stroke="#555" marker-end="url(#head)"/>'
    )


def _select_text(select: Any) -> str:
    if not select:
        return ""
    how = f"{select.get('aggregate') or ''} {select.get('metric')}".strip()
    keys = ", ".join(select.get("keys") or [])
    return f"{select.get('mode')} {how}" + (f" over {keys}" if keys else "")


def _phase_results(phase: PhaseReport) -> str:
    title = f"<h2>Results: {escape(phase.name)}</h2>"
    if phase.results is None:
        return title + '<p class="muted">no finished jobs yet</p>'
    shown = phase.results
    note = ""
    if shown.grouped:
        note = f"mean ± std over {', '.join(phase.over)}; n: jobs per row"
    elif shown.total > len(shown.rows):
        note = f"the first {len(shown.rows)} of {shown.total} jobs"
    body = _result_table(shown)
    plots = "".join(_plot(plot) for plot in phase.plots)
    return title + (f'<p class="muted">{escape(note)}</p>' if note else "") + body + plots


def _result_table(shown: ResultTable) -> str:
    columns = formats.display_columns(shown)
    rows = [formats.display_cells(shown, row) for row in shown.rows]
    first_numeric = len(columns) - len(shown.metrics)
    return _table(columns, rows, numeric_from=first_numeric, class_="results")


def _plot(plot: Plot) -> str:
    if plot.png is None:
        return ""
    data = base64.b64encode(plot.png).decode("ascii")
    return (
        f'<figure><img class="plot" alt="{escape(plot.data.title)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{escape(plot.data.title)}'
        "</figcaption></figure>"
    )


def _failed(failed: Sequence[FailedJob]) -> str:
    title = "<h2>Failed and crashed jobs</h2>"
    if not failed:
        return title + '<p class="muted">none</p>'
    items = []
    for job in failed:
        facts = [
            ("state", job.state),
            ("phase", job.phase),
            ("parameters", json.dumps(job.params, sort_keys=True)),
            ("reason", job.reason or ""),
            ("error", job.error or ""),
            ("exit code", "" if job.exit_code is None else str(job.exit_code)),
        ]
        tail = job.log_tail or "(no log)"
        items.append(
            f'<h3 class="{escape(job.state)}">job {job.id}</h3>'
            + _table(["", ""], facts, header=False)
            + f"<pre>{escape(tail)}</pre>"
        )
    return title + "".join(items)


def _table(
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    header: bool = True,
    numeric_from: int | None = None,
    class_: str | None = None,
    id_: str | None = None,
) -> str:
    attrs = (f' class="{class_}"' if class_ else "") + (f' id="{id_}"' if id_ else "")
    head = "<tr>" + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr>" if header else ""
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            numeric = numeric_from is not None and i >= numeric_from
            cells.append(
                f'<td class="num">{escape(cell)}</td>' if numeric else f"<td>{escape(cell)}</td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table{attrs}><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"
