"""Result tables, their text formats and plot data, from rows built by hand (pure)."""

from __future__ import annotations

import csv
import io
import json
import math
import sys

import pytest

from jobdb.analysis import formats, plotdata, table
from jobdb.analysis.fetch import Aggregate, JobRow, parse_fullkey
from jobdb.analysis.table import Stat
from jobdb.errors import BadInput, MissingDependency


def job(i: int, lr: float, fold: int, acc: float, **extra: object) -> JobRow:
    params = {"lr": lr, "fold": fold, "n_folds": 2}
    return JobRow(i, "cv", "train", "done", params, {"acc": acc, "val": {"loss": 1 - acc}, **extra})


ROWS = [job(1, 0.1, 0, 0.8), job(2, 0.1, 1, 0.9), job(3, 0.01, 0, 0.6), job(4, 0.01, 1, 0.7)]


def test_flatten_and_varying_keys() -> None:
    assert table.flatten({"a": {"b": 1, "c": {"d": 2}}, "e": [1], "f": {}}) == {
        "a.b": 1,
        "a.c.d": 2,
        "e": [1],
        "f": {},
    }
    assert table.varying_keys([{"a": 1, "b": 2}, {"a": 1, "b": 3}]) == ["b"]
    assert table.varying_keys([{"a": 1}, {"a": True}]) == ["a"]  # 1 and true differ
    assert table.varying_keys([{"a": 1}, {"a": 1, "z": 0}]) == ["z"]  # missing varies
    assert table.varying_keys([{"b": 1, "a": 1}]) == ["a", "b"]  # nothing varies: all


def test_stat_is_the_sample_std() -> None:
    stat = Stat.of([0.8, 0.9, 0.7, 0.74])
    assert stat.mean == pytest.approx(0.785)
    assert stat.std == pytest.approx(0.0869866, abs=1e-6)
    assert Stat.of([3.0]) == Stat(1, 3.0, None)


def test_per_job_table_sort_top_and_formats() -> None:
    shown = table.per_job(ROWS)
    assert shown.keys == ["fold", "lr"] and shown.metrics == ["acc", "val.loss"]
    table.sort(shown, "acc", descending=True)
    table.top(shown, 3)
    assert [row.job_id for row in shown.rows] == [2, 1, 4] and shown.total == 4
    assert formats.to_markdown(shown).splitlines()[:3] == [
        "| id | fold | lr | acc | val.loss |",
        "| --- | --- | --- | --- | --- |",
        "| 2 | 1 | 0.1 | 0.9 | 0.1 |",
    ]
    rows = list(csv.reader(io.StringIO(formats.to_csv(shown))))
    assert rows[0] == ["id", "phase", "state", "fold", "lr", "acc", "val.loss"]
    assert rows[1][:6] == ["2", "train", "done", "1", "0.1", "0.9"]
    assert json.loads(json.dumps(formats.to_json(shown)))[0]["metrics"]["acc"] == 0.9


def test_grouped_table_from_aggregates() -> None:
    aggregates = [
        Aggregate((0.1,), "acc", 2, 0.85, 0.0707),
        Aggregate((0.01,), "acc", 2, 0.65, 0.0707),
        Aggregate((0.01,), "loss", 1, 0.35, None),
    ]
    shown = table.grouped(aggregates, ["lr"])
    assert [row.values for row in shown.rows] == [{"lr": 0.01}, {"lr": 0.1}]
    assert shown.rows[0].n == 2 and shown.rows[1].metrics["loss"] is None
    assert formats.display_cells(shown, shown.rows[0]) == ["0.01", "2", "0.65 ± 0.071", "0.35"]
    assert formats.data_columns(shown) == [
        "lr", "n", "acc.mean", "acc.std", "acc.n", "loss.mean", "loss.std", "loss.n",
    ]  # fmt: skip
    with pytest.raises(BadInput, match="no metric 'f1'"):
        table.grouped(aggregates, ["lr"], ["f1"])
    with pytest.raises(BadInput, match="--sort 'f1'"):
        table.sort(shown, "f1")


def test_sqlite_json_tree_keys_become_dotted_names() -> None:
    assert parse_fullkey("$.val.acc") == ["val", "acc"]
    assert parse_fullkey('$."a.b".c') == ["a.b", "c"]
    assert parse_fullkey('$."q\\"x"') == ['q"x']


def test_line_plot_data_is_mean_and_std_per_point() -> None:
    data = plotdata.build(ROWS, "acc", x="lr")
    [series] = data.series
    assert series.x == [0.01, 0.1]
    assert series.y == pytest.approx([0.65, 0.85])
    assert series.err == pytest.approx([math.sqrt(0.005), math.sqrt(0.005)])
    assert series.n == [2, 2]
    by_fold = plotdata.build(ROWS, "val.loss", x="lr", line="fold")
    assert [s.label for s in by_fold.series] == ["fold=0", "fold=1"]
    assert by_fold.series[0].y == pytest.approx([0.4, 0.2]) and by_fold.series[0].err == [None] * 2


def test_curve_plot_data_averages_steps_over_jobs() -> None:
    rows = [job(1, 0.1, 0, 0.8, curve=[1, 2, 3]), job(2, 0.1, 1, 0.9, curve=[3, 4])]
    data = plotdata.build(rows, "curve", line="lr")
    assert data.kind == "curve"
    [series] = data.series
    assert series.x == [1, 2, 3] and series.y == [2.0, 3.0, 3.0] and series.n == [2, 2, 1]


def test_plot_errors_say_what_is_there() -> None:
    with pytest.raises(BadInput, match="say which parameter") as caught:
        plotdata.build(ROWS, "acc")
    assert caught.value.hint == "e.g. --x fold"
    with pytest.raises(BadInput, match="no selected job reports the metric 'f1'"):
        plotdata.build(ROWS, "f1", x="lr")
    with pytest.raises(BadInput, match="no selected job has the parameter 'wd'"):
        plotdata.build(ROWS, "acc", x="wd")


def test_without_matplotlib_plots_say_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jobdb.analysis import plotting

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(MissingDependency) as caught:
        plotting.png_bytes(plotdata.build(ROWS, "acc", x="lr"))
    assert caught.value.hint is not None and "pip install 'jobdb[plot]'" in caught.value.hint
