"""jobman's command-line grids and the phase syntax of seed 001."""

from __future__ import annotations

import pytest

from jobdb.spec import SpecError, expand
from jobdb.spec.jobman import JobmanPhase, parse_jobman, parse_jobman_phase, parse_value
from jobdb.spec.plan import grid_points


def test_cartesian_product_with_fixed_values() -> None:
    spec = parse_jobman(
        "mlp",
        "python train.py --lr {lr} --wd {wd}",
        ["lr={{0.1,0.01}}", "wd={{0,1e-4}}", "layers=2"],
    )
    assert spec.format == "jobman" and spec.name == "mlp"
    assert (
        spec.text
        == "'python train.py --lr {lr} --wd {wd}' 'lr={{0.1,0.01}}' 'wd={{0,1e-4}}' layers=2"
    )
    jobs = expand(spec).jobs["main"]
    assert [j.params for j in jobs] == [
        {"lr": 0.1, "wd": 0, "layers": 2},
        {"lr": 0.1, "wd": 0.0001, "layers": 2},
        {"lr": 0.01, "wd": 0, "layers": 2},
        {"lr": 0.01, "wd": 0.0001, "layers": 2},
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2", 2),
        ("2.0", 2),
        ("1e-4", 0.0001),
        ("true", True),
        ("None", None),
        ("'3'", "3"),
        ("adam", "adam"),
    ],
)
def test_values(text: str, value: object) -> None:
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lr={{0.1,0.01}"], "unbalanced braces in 'lr={{0.1,0.01}'"),
        (["lr={0.1,0.01}}"], "unbalanced braces"),
        (["lr={{}}"], "empty grid list"),
        (["lr"], "expected key=value"),
        (["lr=1", "lr=2"], "lr is given twice"),
        (["lr={{1,1.0}}"], "lists a value twice"),
    ],
)
def test_bad_arguments(args: list[str], message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_jobman("x", "run {lr}", args)
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_unknown_placeholder() -> None:
    with pytest.raises(SpecError, match=r"placeholder \{wd\}") as info:
        parse_jobman("x", "run {lr} {wd}", ["lr=1"])
    assert info.value.path == "command"


def test_phase_syntax_of_the_seed_dbn_example() -> None:
    got = parse_jobman_phase(
        ["phase=pretrain", "lr={{0.1,0.01}}", "--", "layers", "seed", "--", "ft_lr={{1,2}}", "e=3"]
    )
    assert isinstance(got, JobmanPhase)
    filters, keys, grid = got
    assert filters == {"phase": ["pretrain"], "lr": [0.1, 0.01]}
    assert keys == ["layers", "seed"]
    assert grid_points(grid) == [{"ft_lr": 1, "e": 3}, {"ft_lr": 2, "e": 3}]


def test_phase_grouping_forms() -> None:
    assert parse_jobman_phase(["phase=a", "--", "--"]).group_keys is None
    assert parse_jobman_phase(["phase=a", "--", "[]", "--"]).group_keys == []
    assert parse_jobman_phase(["phase=a", "--", "--"]).grid == ()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["phase=a", "--", "k"], "1 '--' separator(s)"),
        (["--", "k", "--"], "no parent filters"),
        (["phase=a", "--", "k=1", "--"], "group key 'k=1'"),
        (["phase=a", "--", "--", "p={{1,2}"], "unbalanced braces"),
    ],
)
def test_bad_phase_syntax(args: list[str], message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_jobman_phase(args)
    assert message in str(info.value)
