"""The three dependency shapes of issue 3, checked edge by edge on the plan."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from jobdb.spec.plan import Plan
from tests.spec.conftest import plan_of
from tests.specs import CV, DBN, NESTED


def parents(plan: Plan) -> dict[tuple[str, int], set[tuple[str, int]]]:
    out: dict[tuple[str, int], set[tuple[str, int]]] = defaultdict(set)
    for parent, child in plan.edges:
        out[child].add(parent)
    return out


def params(plan: Plan, phase: str) -> list[dict[str, Any]]:
    return [job.params for job in plan.jobs[phase]]


def indices_where(plan: Plan, phase: str, **values: Any) -> set[tuple[str, int]]:
    return {
        (phase, i)
        for i, p in enumerate(params(plan, phase))
        if all(p[k] == v for k, v in values.items())
    }


def test_dbn_pretrain_finetune_retrain_best() -> None:
    plan = plan_of(DBN)
    ups = parents(plan)
    assert [len(plan.jobs[p]) for p in ("pretrain", "finetune", "retrain")] == [4, 12, 1]
    for i, child in enumerate(params(plan, "finetune")):
        (parent,) = ups[("finetune", i)]
        assert parent == ("pretrain", i // 3)
        assert plan.jobs["pretrain"][i // 3].params.items() <= child.items()
    assert ups[("retrain", 0)] == {("finetune", i) for i in range(12)}
    assert plan.jobs["retrain"][0].params == {}
    select = plan.spec.phase("retrain").select
    assert select is not None
    assert select.keys == ("finetune_lr", "layers", "pretrain_lr")
    assert select.aggregate is None and select.mode == "min"
    assert len(plan.edges) == 12 + 12


def test_k_fold_cross_validation_select_retrain_test() -> None:
    plan = plan_of(CV)
    ups = parents(plan)
    assert len(plan.jobs["cv"]) == 2 * 2 * 5
    assert {p["n_folds"] for p in params(plan, "cv")} == {5}
    assert [p["fold"] for p in params(plan, "cv")[:5]] == [0, 1, 2, 3, 4]
    assert len(plan.jobs["summary"]) == 4
    for i, p in enumerate(params(plan, "summary")):
        assert set(p) == {"lr", "wd"}
        assert ups[("summary", i)] == indices_where(plan, "cv", lr=p["lr"], wd=p["wd"])
        assert len(ups[("summary", i)]) == 5
    assert ups[("retrain", 0)] == {("cv", i) for i in range(20)}
    assert ups[("test", 0)] == {("retrain", 0)}
    assert len(plan.edges) == 20 + 20 + 1


def test_nested_cross_validation() -> None:
    plan = plan_of(NESTED)
    ups = parents(plan)
    assert params(plan, "split") == [{"n_outer_folds": 3, "outer_fold": k} for k in range(3)]
    assert len(plan.jobs["inner"]) == 3 * 2 * 4
    for i, p in enumerate(params(plan, "inner")):
        assert ups[("inner", i)] == {("split", p["outer_fold"])}
    assert params(plan, "outer") == [{"outer_fold": k} for k in range(3)]
    for k in range(3):
        assert ups[("outer", k)] == indices_where(plan, "inner", outer_fold=k)
        assert len(ups[("outer", k)]) == 8
    select = plan.spec.phase("outer").select
    assert select is not None
    assert select.keys == ("lr",)  # fold keys and the group key are not candidates
    assert select.aggregate == "mean"  # candidates span the inner folds
    assert ups[("report", 0)] == {("outer", k) for k in range(3)}


def test_expanding_twice_is_identical_and_a_new_value_only_adds() -> None:
    first, second = plan_of(CV), plan_of(CV)
    assert first.jobs == second.jobs and first.edges == second.edges
    grown = plan_of(CV.replace("lr: [0.1, 0.01]", "lr: [0.1, 0.01, 0.001]"))
    for phase in ("cv", "summary"):
        old = {job.hash for job in first.jobs[phase]}
        new = {job.hash for job in grown.jobs[phase]}
        assert old < new
    assert len(grown.jobs["cv"]) == 30


def test_priority_and_attempts_travel_with_jobs() -> None:
    plan = plan_of(
        """
        name: p
        phases:
          - name: a
            command: run {x}
            grid: {x: [1, 2]}
            priority: 5
            retry: {max_attempts: 3, on: [crashed, failed], halve: [x], double: [time]}
        """
    )
    assert {(j.priority, j.max_attempts) for j in plan.jobs["a"]} == {(5, 3)}
    retry = plan.spec.phase("a").retry
    assert retry.on == ("crashed", "failed") and retry.halve == ("x",)
    assert plan.spec.phase("a").config["retry"]["double"] == ["time"]
