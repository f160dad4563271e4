"""Phase-level validation beyond the corpus, and how a SpecError reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobdb.spec import SpecError, load_spec
from jobdb.spec.yaml_spec import parse_yaml_spec

BASE = "name: e\nphases:\n  - name: a\n    command: run {x}\n    grid: {x: [1, 2]}\n"


@pytest.mark.parametrize(
    ("phase", "message", "line"),
    [
        ("task: nocolon", "task 'nocolon'; expected module:function", 7),
        ("command: run\n    task: m:f", "both of command and task", 6),
        ("command: run\n    group_by: [x]", "group_by without after", 8),
        ("command: run {x}\n    after: a\n    select: {metric: m, mode: best}", "min or max", 9),
        ("command: run\n    after: a\n    resources: {mem: lots}", "a memory size", 9),
        ("command: run\n    after: a\n    resources: {time: 1h}", "a time such as", 9),
        (
            "command: run\n    after: a\n    retry: {on: [timeout]}",
            "'timeout'; expected crashed",
            9,
        ),
        ("command: run\n    after: a\n    retry: {halve: [batch]}", "neither a parameter", 9),
        ("command: run\n    after: a\n    group_by: [x]\n    grid: {x: [3]}", "inherited", 10),
        (
            "command: run\n    after: a\n    select: {metric: m, mode: min}\n    grid: {x: [3]}",
            "chosen by select",
            10,
        ),
        ("command: run {y\n    after: a", "bad braces in command", 7),
        (
            "command: run\n    after: a\n    select: {metric: m, mode: min, keys: []}",
            "no candidate keys",
            9,
        ),
        ("command: run\n    priority: high", "got a string ('high'); expected an integer", 8),
    ],
)
def test_phase_errors(phase: str, message: str, line: int) -> None:
    text = BASE + "  - name: b\n    " + phase + "\n"
    with pytest.raises(SpecError) as info:
        parse_yaml_spec(text, "s.yaml")
    assert message in str(info.value)
    assert info.value.line == line, str(info.value)


def test_duplicate_phase_names() -> None:
    with pytest.raises(SpecError, match="phase 'a' is defined twice"):
        parse_yaml_spec(BASE + "  - name: a\n    command: run\n", "s.yaml")


def test_resources_and_config_are_recorded() -> None:
    spec = parse_yaml_spec(
        BASE.replace(
            "grid:",
            "resources: {gpus: 1, cpus: 4, mem: 16G, time: '1-12:00:00', "
            "partition: gpu, extra: [--constraint=a100]}\n    grid:",
        ),
        "s.yaml",
    )
    res = spec.phases[0].resources
    assert (res.gpus, res.cpus, res.mem, res.time, res.partition) == (
        1,
        4,
        "16G",
        "1-12:00:00",
        "gpu",
    )
    assert res.extra == ("--constraint=a100",)
    assert spec.phases[0].config["resources"]["extra"] == ["--constraint=a100"]
    assert spec.phases[0].config["grid"] == [{"keys": ["x"], "rows": [[1], [2]]}]


def test_load_spec_tells_formats_apart(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(BASE)
    assert load_spec(path).format == "yaml"
    path.write_text("just: a mapping\n")
    with pytest.raises(SpecError, match="not a spec; expected a jobdb spec"):
        load_spec(path)
    with pytest.raises(SpecError, match="cannot read the spec"):
        load_spec(tmp_path / "missing.yaml")


def test_message_without_location() -> None:
    err = SpecError("bad", path="lr", expected="good", hint="try harder")
    assert str(err) == "lr: bad; expected good"
    assert err.render() == "lr: bad; expected good\n  hint: try harder"
    assert str(SpecError("bad", file="f.yaml", line=3, column=7)) == "f.yaml:3:7: bad"
