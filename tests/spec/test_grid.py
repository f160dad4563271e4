"""Grid expansion: lists, zip groups, helpers, nested keys, folds; and its properties."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from jobdb.spec import SpecError
from jobdb.spec.plan import grid_points, grid_size
from tests.spec.conftest import plan_of, spec_of

names = st.text("abcdefgh", min_size=1, max_size=4)
dimension_values = st.lists(st.integers(-50, 50), min_size=1, max_size=4, unique=True)
grids = st.dictionaries(names, dimension_values | st.integers(), min_size=0, max_size=4)


def one_phase(grid: dict[str, Any], extra: str = "") -> str:
    body = yaml.safe_dump({"grid": grid}, default_flow_style=True).strip()[1:-1]
    return f"name: g\nphases:\n  - {{name: a, task: 'm:f', {body}}}\n{extra}"


@settings(max_examples=60, deadline=None)
@given(grids)
def test_job_count_is_the_product_of_dimension_sizes(grid: dict[str, Any]) -> None:
    plan = plan_of(one_phase(grid))
    sizes = [len(v) if isinstance(v, list) else 1 for v in grid.values()]
    assert len(plan.jobs["a"]) == math.prod(sizes)
    assert grid_size(plan.spec.phases[0].grid) == math.prod(sizes)
    assert len({job.hash for job in plan.jobs["a"]}) == len(plan.jobs["a"])


@settings(max_examples=40, deadline=None)
@given(grids, st.randoms())
def test_hashes_do_not_depend_on_key_order_or_runs(grid: dict[str, Any], rnd: Any) -> None:
    keys = list(grid)
    rnd.shuffle(keys)
    first = plan_of(one_phase(grid))
    again = plan_of(one_phase(grid))
    shuffled = plan_of(one_phase({k: grid[k] for k in keys}))
    assert [j.hash for j in first.jobs["a"]] == [j.hash for j in again.jobs["a"]]
    assert {j.hash for j in first.jobs["a"]} == {j.hash for j in shuffled.jobs["a"]}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=5, unique=True))
def test_one_and_one_point_zero_are_the_same_job(values: list[int]) -> None:
    as_ints = plan_of(one_phase({"x": values}))
    as_floats = plan_of(one_phase({"x": [float(v) for v in values]}))
    assert [j.hash for j in as_ints.jobs["a"]] == [j.hash for j in as_floats.jobs["a"]]


def points(grid_yaml: str, folds: str = "") -> list[dict[str, Any]]:
    spec = spec_of(f"name: g\nphases:\n  - name: a\n    task: m:f\n    grid: {grid_yaml}\n{folds}")
    return grid_points(spec.phases[0].grid)


def test_last_dimension_varies_fastest_and_fixed_values_are_shared() -> None:
    assert points("{a: [1, 2], b: [x, y], c: 3}") == [
        {"a": 1, "b": "x", "c": 3},
        {"a": 1, "b": "y", "c": 3},
        {"a": 2, "b": "x", "c": 3},
        {"a": 2, "b": "y", "c": 3},
    ]


def test_zip_groups_values_together() -> None:
    got = points("{zip: [{lr: [0.1, 0.01], bs: [32, 64]}, {p: [1, 2, 3], q: [a, b, c]}]}")
    assert len(got) == 2 * 3
    assert {(g["lr"], g["bs"]) for g in got} == {(0.1, 32), (0.01, 64)}
    assert {(g["p"], g["q"]) for g in got} == {(1, "a"), (2, "b"), (3, "c")}


def test_helpers() -> None:
    assert [p["x"] for p in points("{x: {range: [3]}}")] == [0, 1, 2]
    assert [p["x"] for p in points("{x: {range: [1, 2, 0.25]}}")] == [1, 1.25, 1.5, 1.75]
    assert [p["x"] for p in points("{x: {range: [0, 0.3, 0.1]}}")] == [0, 0.1, 0.2]
    assert [p["x"] for p in points("{x: {linspace: [0, 1, 5]}}")] == [0, 0.25, 0.5, 0.75, 1]
    assert [p["x"] for p in points("{x: {logspace: [-3, -1, 3]}}")] == [0.001, 0.01, 0.1]
    assert [p["x"] for p in points("{x: {logspace: [0, 3, 4, 2]}}")] == [1, 2, 4, 8]


def test_nested_keys_become_dotted_names_and_lists_wrap_structured_values() -> None:
    got = points("{optim: {name: adam, lr: [0.1, 0.2]}, layers: [[64, 64], [128]]}")
    assert got[0] == {"optim.name": "adam", "optim.lr": 0.1, "layers": [64, 64]}
    assert len(got) == 4


def test_yaml_1_2_scalars() -> None:
    got = points("{wd: [0, 1e-4], flag: [on, off], t: 1:30:00, y: [true]}")
    assert got[2]["wd"] == 0.0001
    assert {p["flag"] for p in got} == {"on", "off"}
    assert got[0]["t"] == "1:30:00"
    assert got[0]["y"] is True


def test_folds_add_fold_and_n_folds_last() -> None:
    got = points("{lr: [0.1, 0.2]}", "    folds: 3")
    assert [(p["lr"], p["fold"], p["n_folds"]) for p in got[:4]] == [
        (0.1, 0, 3),
        (0.1, 1, 3),
        (0.1, 2, 3),
        (0.2, 0, 3),
    ]
    named = points("{}", "    folds: {count: 2, key: outer_fold}")
    assert named == [{"n_outer_folds": 2, "outer_fold": 0}, {"n_outer_folds": 2, "outer_fold": 1}]


def test_no_grid_is_one_job() -> None:
    assert points("{}") == [{}]


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("{x: [1, 1.0]}", "value 1 appears twice"),
        ("{x: {range: [0, 1, 0]}}", "range step is 0"),
        ("{x: {linspace: [0, 1]}}", "expected [start, stop, num]"),
        ("{x: .nan}", "expected a finite number"),
        ("{zip: {a: [1], b: 2}}", "expected a list (zip groups"),
        ("{a.b: 1, a: {b: 2}}", "parameter 'a.b' is set twice"),
    ],
)
def test_grid_errors(grid: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        points(grid)
    assert message in str(info.value)
    assert info.value.line is not None
