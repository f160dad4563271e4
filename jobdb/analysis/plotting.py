"""Drawing a :class:`~jobdb.analysis.plotdata.PlotData` as a PNG with matplotlib.

matplotlib is the optional extra ``plot``: it is imported here, only when a
plot is drawn, so the rest of the CLI starts fast and works without it.
Figures are made with ``matplotlib.figure.Figure`` and the Agg canvas, never
pyplot: no global state, no display needed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from jobdb.analysis.plotdata import PlotData
from jobdb.errors import MissingDependency

INSTALL_HINT = "install the plot extra: pip install 'jobdb[plot]'"


def _figure_class() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependency(
            "plots need matplotlib, which is not installed", hint=INSTALL_HINT
        ) from None
    return Figure, FigureCanvasAgg


def png_bytes(data: PlotData, *, width: float = 7.0, height: float = 4.5, dpi: int = 100) -> bytes:
    """The plot as PNG bytes (the report embeds them)."""
    figure_class, canvas_class = _figure_class()
    figure = figure_class(figsize=(width, height), dpi=dpi, layout="constrained")
    canvas_class(figure)
    axes = figure.add_subplot()
    _draw(axes, data)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_png(data: PlotData, path: Path) -> int:
    """Write the plot to ``path``; returns its size in bytes."""
    content = png_bytes(data)
    path.write_bytes(content)
    return len(content)


def _draw(axes: Any, data: PlotData) -> None:
    categories = _categories(data) if data.categorical else None
    for series in data.series:
        xs = [categories.index(x) for x in series.x] if categories else series.x
        errors = [0.0 if e is None else e for e in series.err]
        axes.errorbar(
            xs,
            series.y,
            yerr=errors if any(errors) else None,
            marker="o" if data.kind == "lines" else None,
            markersize=4,
            capsize=3,
            label=series.label,
        )
    if categories:
        axes.set_xticks(range(len(categories)), [str(c) for c in categories])
    if data.log_x:
        axes.set_xscale("log")
    axes.set_title(data.title)
    axes.set_xlabel(data.x_label)
    axes.set_ylabel(data.y_label)
    axes.grid(True, alpha=0.3)
    if len(data.series) > 1:
        axes.legend(fontsize="small")


def _categories(data: PlotData) -> list[Any]:
    seen: dict[str, Any] = {}
    for series in data.series:
        for x in series.x:
            seen.setdefault(repr(x), x)
    return list(seen.values())
