"""The report page: everything escaped, no scripts, plots inline, the phase graph drawn."""

from __future__ import annotations

import base64

from jobdb.analysis import html, plotdata
from jobdb.analysis.fetch import JobRow
from jobdb.analysis.report import FailedJob, PhaseReport, Plot, Report, plots_for
from jobdb.analysis.table import per_job

EVIL = "<script>alert('x')</script>"
PNG = b"\x89PNG fake"


def report() -> Report:
    rows = [JobRow(i, "e", "train", "done", {"lr": lr}, {"acc": lr}) for i, lr in enumerate([1, 2])]
    train = PhaseReport("train", None, {}, {"done": 2, "failed": 1}, per_job(rows))
    train.plots = [Plot(plotdata.lines(rows, "acc", "lr"), PNG)]
    evil = PhaseReport(EVIL, "train", {"select": {"metric": "acc", "mode": "max"}}, {"ready": 1})
    failed = FailedJob(7, "train", "failed", {"k": EVIL}, EVIL, EVIL, 3, f"last\n{EVIL}\n")
    return Report(EVIL, EVIL, {"host": EVIL}, [train, evil], [failed])


def test_every_text_is_escaped_and_there_is_no_script() -> None:
    page = html.render(report())
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page


def test_plots_are_inline_pngs_and_phases_are_a_graph() -> None:
    page = html.render(report())
    encoded = base64.b64encode(PNG).decode()
    assert f'src="data:image/png;base64,{encoded}"' in page
    assert page.count("<rect ") == 2 and page.count("<line ") == 1  # train → the other phase
    assert "max acc" in page  # the select: column
    assert '<table class="results">' in page and "job 7" in page


def test_plots_for_a_phase_are_curves_then_metrics_by_the_first_key() -> None:
    rows = [
        JobRow(i, "e", "p", "done", {"lr": lr, "m": m}, {"acc": lr, "curve": [1, 2]})
        for i, (lr, m) in enumerate([(1, "a"), (2, "b")])
    ]
    plots = plots_for(rows, ["lr", "m"])
    assert [(p.kind, p.y_label, p.x_label) for p in plots] == [
        ("curve", "curve", "step"),
        ("lines", "acc", "lr"),
    ]
    assert plots_for(rows, []) == [plotdata.curve(rows, "curve", None)]
