"""A result table as text: Rich table, CSV, JSON, markdown (pure; no I/O).

Display formats (Rich, markdown) show a grouped metric as ``mean ± std``
and a series as ``[n values]``; data formats (CSV, JSON) keep every number
at full precision, a grouped metric as its mean, std and count.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from rich.table import Table

from jobdb.analysis.table import ResultTable, Row, Stat


def display_columns(table: ResultTable) -> list[str]:
    """Column titles of the Rich and markdown tables."""
    if table.grouped:
        return [*table.keys, "n", *table.metrics]
    return [*_origin_columns(table), *table.keys, *table.metrics]


def _origin_columns(table: ResultTable) -> list[str]:
    """``id``, and ``phase``/``state`` only when they differ between rows."""
    columns = ["id"]
    for name in ("phase", "state"):
        if len({getattr(row, name) for row in table.rows}) > 1:
            columns.append(name)
    return columns


def display_cells(table: ResultTable, row: Row) -> list[str]:
    """One row of the Rich and markdown tables."""
    values = [show(row.values.get(key)) for key in table.keys]
    metrics = [show(row.metrics.get(name)) for name in table.metrics]
    if table.grouped:
        return [*values, str(row.n), *metrics]
    origin = {"id": str(row.job_id), "phase": row.phase or "", "state": row.state or ""}
    return [*(origin[c] for c in _origin_columns(table)), *values, *metrics]


def show(value: Any) -> str:
    """A cell for people: 4 significant digits, ``mean ± std``, ``[n values]`` for a series."""
    if value is None:
        return ""
    if isinstance(value, Stat):
        mean = f"{value.mean:.4g}"
        return mean if value.std is None else f"{mean} ± {value.std:.2g}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return f"[{len(value)} values]"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def rich_table(table: ResultTable, title: str | None = None) -> Table:
    """The default output of ``jobdb results``."""
    out = Table(title=title, title_justify="left")
    numeric = {"id", "n", *table.metrics}
    for column in display_columns(table):
        out.add_column(column, justify="right" if column in numeric else "left")
    for row in table.rows:
        out.add_row(*display_cells(table, row))
    return out


def to_markdown(table: ResultTable) -> str:
    """A GitHub markdown table (``|`` in cells escaped)."""
    columns = display_columns(table)
    lines = [_md_row(columns), _md_row(["---"] * len(columns))]
    lines += [_md_row(display_cells(table, row)) for row in table.rows]
    return "\n".join(lines) + "\n"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def data_columns(table: ResultTable) -> list[str]:
    """Column titles of the CSV: a grouped metric gives ``m.mean``, ``m.std``, ``m.n``."""
    if table.grouped:
        stats = [f"{m}.{part}" for m in table.metrics for part in ("mean", "std", "n")]
        return [*table.keys, "n", *stats]
    return ["id", "phase", "state", *table.keys, *table.metrics]


def to_csv(table: ResultTable) -> str:
    """CSV with full-precision numbers; lists and objects as JSON text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(data_columns(table))
    for row in table.rows:
        writer.writerow([_csv_cell(v) for v in _data_cells(table, row)])
    return buffer.getvalue()


def _data_cells(table: ResultTable, row: Row) -> list[Any]:
    values = [row.values.get(key) for key in table.keys]
    if not table.grouped:
        metrics = [row.metrics.get(name) for name in table.metrics]
        return [row.job_id, row.phase, row.state, *values, *metrics]
    stats: list[Any] = []
    for name in table.metrics:
        stat = row.metrics.get(name)
        stats += [None, None, 0] if stat is None else [stat.mean, stat.std, stat.n]
    return [*values, row.n, *stats]


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def to_json(table: ResultTable) -> list[dict[str, Any]]:
    """JSON-able rows: per job ``id, phase, state, params, metrics``; per group
    ``group, n, metrics: {name: {mean, std, n}}``."""
    if table.grouped:
        return [
            {
                "group": row.values,
                "n": row.n,
                "metrics": {
                    name: None if s is None else {"mean": s.mean, "std": s.std, "n": s.n}
                    for name, s in row.metrics.items()
                },
            }
            for row in table.rows
        ]
    return [
        {
            "id": row.job_id,
            "phase": row.phase,
            "state": row.state,
            "params": row.values,
            "metrics": row.metrics,
        }
        for row in table.rows
    ]
