"""Results and best-of on real databases, against expectations computed by hand.

A cross-validation grid (lr × model × 2 folds) is scheduled from a spec and
every job is run to done by hand with a result, the way a runner records
it, on SQLite and PostgreSQL. The grouped figures come from the database
(``json_tree`` / ``jsonb_each``); each expectation below is worked out in
the comment next to it.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from typing import Any

import pytest

from jobdb import queries, scheduling
from jobdb.analysis import fetch, service, table, where
from jobdb.analysis.fetch import Selection
from jobdb.errors import BadInput, NotFound
from jobdb.provenance import Provenance
from jobdb.spec import expand, parse_spec
from jobdb.states import State
from jobdb.store import Store

ACTOR = "test-results"
SPEC = """\
name: cv
phases:
  - name: train
    command: "true"
    grid: {lr: [0.1, 0.01], model: [small, big]}
    folds: 2
"""
#: acc per (lr, model) and fold; loss = 1 - acc, nested under "val".
ACC = {
    (0.1, "small"): (0.80, 0.90),  # mean 0.85, std 0.0707107
    (0.1, "big"): (0.70, 0.74),  # mean 0.72, std 0.0282843
    (0.01, "small"): (0.60, 0.64),  # mean 0.62, std 0.0282843
    (0.01, "big"): (0.95, 0.85),  # mean 0.90, std 0.0707107
}


def result_of(params: Mapping[str, Any]) -> dict[str, Any]:
    """What the job reports: acc, a nested loss, a learning curve and a flag."""
    acc = ACC[(params["lr"], params["model"])][params["fold"]]
    curve = [round(acc * step / 3, 6) for step in (1, 2, 3)]
    return {"acc": acc, "val": {"loss": round(1 - acc, 6)}, "curve": curve, "ok": True}


def schedule_and_finish(store: Store, spec: str = SPEC) -> dict[tuple[Any, ...], int]:
    """Schedule ``spec``, run its train jobs to done with :func:`result_of`.

    Returns (lr, model, fold) → job id.
    """
    plan = expand(parse_spec(textwrap.dedent(spec), "cv.yaml"))
    provenance = Provenance(None, None, None, "testhost", "tester", "0")
    with store.write() as conn:
        scheduling.write_plan(conn, plan, provenance, actor=ACTOR)
    with store.read() as conn:
        rows = list(fetch.job_rows(conn, fetch.resolve(conn, Selection(phases=("train",)))))
    ids = {}
    for row in rows:
        with store.write() as conn:
            attempt = queries.start(conn, row.id, actor=ACTOR, host="h", pid=1)
            result = result_of(row.params)
            queries.finish(conn, row.id, attempt, State.DONE, actor=ACTOR, result=result)
        ids[(row.params["lr"], row.params["model"], row.params["fold"])] = row.id
    return ids


@pytest.fixture
def cv(store: Store) -> dict[tuple[Any, ...], int]:
    return schedule_and_finish(store)


ALL = Selection()


def results(store: Store, selection: Selection = ALL, **kwargs: Any) -> table.ResultTable:
    with store.read() as conn:
        return service.results(conn, selection, **kwargs)


def rows(store: Store, selection: Selection = ALL) -> list[fetch.JobRow]:
    with store.read() as conn:
        return service.rows(conn, selection)


def test_per_job_rows_show_the_parameters_that_vary_and_every_metric(
    store: Store, cv: dict[tuple[Any, ...], int]
) -> None:
    shown = results(store)
    assert shown.keys == ["fold", "lr", "model"]  # n_folds is 2 everywhere: not shown
    assert shown.metrics == ["acc", "curve", "ok", "val.loss"]
    by_id = {row.job_id: row for row in shown.rows}
    row = by_id[cv[(0.01, "big", 0)]]
    assert row.values == {"fold": 0, "lr": 0.01, "model": "big"}
    assert row.metrics == {"acc": 0.95, "curve": [0.316667, 0.633333, 0.95], "ok": True,
                           "val.loss": 0.05}  # fmt: skip
    assert len(shown.rows) == 8


def test_grouping_over_folds_gives_mean_std_and_count(store: Store, cv: object) -> None:
    shown = results(store, group_by=["lr", "model"])
    assert shown.grouped and shown.keys == ["lr", "model"]
    # Numbers only: the curve (a list) and the flag (a boolean) are not aggregated.
    assert shown.metrics == ["acc", "val.loss"]
    got = {(r.values["lr"], r.values["model"]): r for r in shown.rows}
    assert set(got) == set(ACC)
    big = got[(0.01, "big")]
    assert big.n == 2
    assert big.metrics["acc"].mean == pytest.approx(0.90)
    assert big.metrics["acc"].std == pytest.approx(0.0707107, abs=1e-6)  # |0.95-0.85|/√2
    assert big.metrics["val.loss"].mean == pytest.approx(0.10)
    assert got[(0.1, "big")].metrics["acc"].std == pytest.approx(0.0282843, abs=1e-6)
    # Rows come in the order of the key values: numbers, then strings.
    assert [(r.values["lr"], r.values["model"]) for r in shown.rows] == [
        (0.01, "big"),
        (0.01, "small"),
        (0.1, "big"),
        (0.1, "small"),
    ]


def test_grouping_by_one_key_averages_over_the_rest(store: Store, cv: object) -> None:
    shown = results(store, group_by=["lr"], metrics=["acc"])
    got = {r.values["lr"]: r.metrics["acc"] for r in shown.rows}
    # lr=0.1: 0.80 0.90 0.70 0.74 → mean 0.785; deviations .015 .115 -.085 -.045,
    # squares sum 0.0227, / 3 → 0.0075667, √ → 0.0869866
    assert got[0.1].n == 4
    assert got[0.1].mean == pytest.approx(0.785)
    assert got[0.1].std == pytest.approx(0.0869866, abs=1e-6)
    # lr=0.01: 0.60 0.64 0.95 0.85 → mean 0.76
    assert got[0.01].mean == pytest.approx(0.76)


def test_sort_and_top_on_a_grouped_metric(store: Store, cv: object) -> None:
    shown = results(store, group_by=["lr", "model"])
    table.sort(shown, "acc", descending=True)
    table.top(shown, 2)
    assert [(r.values["lr"], r.values["model"]) for r in shown.rows] == [
        (0.01, "big"),
        (0.1, "small"),
    ]
    assert shown.total == 4


def test_where_filters_parameters_and_metrics_in_sql(store: Store, cv: object) -> None:
    chosen = Selection(conditions=where.parse(["model=big,acc>0.8"]))
    got = sorted(r.metrics["acc"] for r in results(store, chosen).rows)
    assert got == [0.85, 0.95]
    nested = Selection(conditions=where.parse(["val.loss<=0.1", "lr!=0.1"]))
    assert sorted(r.metrics["acc"] for r in results(store, nested).rows) == [0.95]
    flagged = Selection(conditions=where.parse(["result.ok=true", "params.fold=1"]))
    assert len(results(store, flagged).rows) == 4
    nothing = Selection(conditions=where.parse(["model='huge'"]))
    assert results(store, nothing).rows == []


def test_state_experiment_and_phase_filters(store: Store, cv: object) -> None:
    assert results(store, Selection(states=(State.FAILED,))).rows == []
    assert len(results(store, Selection(experiments=("cv",), phases=("train",))).rows) == 8
    with pytest.raises(NotFound, match="no experiment named 'nope'"):
        results(store, Selection(experiments=("nope",)))
    with pytest.raises(NotFound, match="no phase named 'eval'"):
        results(store, Selection(phases=("eval",)))


def test_an_unknown_metric_is_bad_input_listing_the_metrics(store: Store, cv: object) -> None:
    with pytest.raises(BadInput, match="no metric 'acc2'") as caught:
        results(store, group_by=["lr"], metrics=["acc2"])
    assert caught.value.hint == "metrics here: acc, val.loss"


def test_best_over_folds_is_the_select_winner(store: Store, cv: dict[Any, int]) -> None:
    found = service.best(rows(store), metric="acc", mode="max", keys=["lr", "model"])
    assert found.choice.winner.values == {"lr": 0.01, "model": "big"}
    assert found.choice.winner.score == pytest.approx(0.90)
    assert set(found.choice.winner.job_ids) == {cv[(0.01, "big", 0)], cv[(0.01, "big", 1)]}
    assert [c.values["model"] for c in found.choice.ranking] == ["big", "small", "big", "small"]


def test_best_by_one_key_and_mode_min_on_a_nested_metric(store: Store, cv: object) -> None:
    # mean val.loss: lr=0.1 → 1 - 0.785 = 0.215; lr=0.01 → 0.24
    found = service.best(rows(store), metric="val.loss", mode="min", keys=["lr"])
    assert found.choice.winner.values == {"lr": 0.1}
    assert found.choice.winner.score == pytest.approx(0.215)


def test_best_without_keys_ranks_single_jobs(store: Store, cv: dict[Any, int]) -> None:
    found = service.best(rows(store), metric="acc", mode="max")
    assert found.keys == ["fold", "lr", "model"]
    assert found.choice.winner.job_ids == (cv[(0.01, "big", 0)],)
    assert found.choice.winner.score == 0.95


def test_best_of_a_metric_nobody_reports(store: Store, cv: object) -> None:
    with pytest.raises(BadInput, match="no finished job reports the metric 'f1'"):
        service.best(rows(store), metric="f1", mode="max")


def test_sqlite_and_postgresql_agree_with_python(store: Store, cv: object) -> None:
    """The database's one-pass std equals the two-pass one computed here."""
    shown = results(store, group_by=["model"], metrics=["acc"])
    for row in shown.rows:
        accs = [a for (_, model), pair in ACC.items() if model == row.values["model"] for a in pair]
        mean = math.fsum(accs) / len(accs)
        std = math.sqrt(math.fsum((a - mean) ** 2 for a in accs) / (len(accs) - 1))
        assert row.metrics["acc"].mean == pytest.approx(mean)
        assert row.metrics["acc"].std == pytest.approx(std, rel=1e-9)


def test_metrics_only_some_jobs_report_are_found(store: Store) -> None:
    """Metric names come from every result, not the first one."""
    spec = "name: mixed\nphases:\n  - name: train\n    command: 'true'\n    grid: {k: [1, 2, 3]}\n"
    plan = expand(parse_spec(spec, "mixed.yaml"))
    with store.write() as conn:
        scheduling.write_plan(conn, plan, Provenance(None, None, None, "h", "u", "0"), actor=ACTOR)
    outcomes: dict[int, dict[str, Any]] = {
        1: {"acc": 1},
        2: {"acc": 2, "extra": {"f1": 0.5}},
        3: {"acc": 3, "loss": 4},
    }
    for row in rows(store, Selection(states=(State.READY,))):
        with store.write() as conn:
            attempt = queries.start(conn, row.id, actor=ACTOR)
            result = outcomes[row.params["k"]]
            queries.finish(conn, row.id, attempt, State.DONE, actor=ACTOR, result=result)
    shown = results(store, group_by=["k"])
    assert shown.metrics == ["acc", "extra.f1", "loss"]
    got = {row.values["k"]: {m: s and s.mean for m, s in row.metrics.items()} for row in shown.rows}
    assert got == {
        1: {"acc": 1, "extra.f1": None, "loss": None},
        2: {"acc": 2, "extra.f1": 0.5, "loss": None},
        3: {"acc": 3, "extra.f1": None, "loss": 4},
    }
