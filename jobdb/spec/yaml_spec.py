"""The jobdb YAML spec: ``name``, ``settings``, and ``phases`` in dependency order.

Each phase may name the phase it runs ``after``. The dependencies are checked
as a graph first, so a loop is reported as a cycle (``a → b → a``); a phase
that depends on one written below it is reported as out of order, because
reading the file top to bottom should read the pipeline in the order it runs.
"""

from __future__ import annotations

from pathlib import Path

from jobdb.spec.grid import json_value
from jobdb.spec.located import At, Doc, did_you_mean, parse_yaml
from jobdb.spec.model import ExperimentSpec, PhaseSpec
from jobdb.spec.phase import PhaseInfo, parse_phase
from jobdb.spec.slurm import check_settings

TOP_KEYS = frozenset({"name", "description", "settings", "phases"})


def load_yaml_spec(path: Path) -> ExperimentSpec:
    """Read and parse a jobdb YAML spec file."""
    return parse_yaml_spec(Path(path).read_text(encoding="utf-8"), str(path))


def parse_yaml_spec(text: str, filename: str = "<spec>") -> ExperimentSpec:
    """Parse the text of a jobdb YAML spec; ``filename`` is what error messages show."""
    return spec_from_doc(parse_yaml(text, filename), text)


def spec_from_doc(doc: Doc, text: str) -> ExperimentSpec:
    """Build the spec from an already parsed document (see :func:`jobdb.spec.load_spec`)."""
    root = doc.root
    root.as_mapping(TOP_KEYS)
    name = root.require("name", "the experiment name").as_str("an experiment name")
    settings_at = root.get("settings")
    settings = {} if settings_at is None or settings_at.value is None else _settings(settings_at)
    items = _phase_items(root.require("phases", "a list of phases"))
    _check_order(items)
    earlier: dict[str, PhaseInfo] = {}
    phases: list[PhaseSpec] = []
    for item in items:
        phase, info = parse_phase(item, earlier)
        earlier[phase.name] = info
        phases.append(phase)
    return ExperimentSpec(name, settings, tuple(phases), text, "yaml")


def _settings(at: At) -> dict[str, object]:
    at.as_mapping()
    check_settings(at)
    return json_value(at)


def _phase_items(at: At) -> list[At]:
    items = at.as_list("a list of phases")
    if not items:
        raise at.error("no phases, so the spec would create no jobs", expected="at least one phase")
    seen: set[str] = set()
    for item in items:
        item.as_mapping()
        name = item.require("name", "a phase name").as_str("a phase name")
        if name in seen:
            raise item.require("name", "").error(f"phase {name!r} is defined twice")
        seen.add(name)
    return items


def _after_of(item: At) -> At | None:
    after = item.get("after")
    if after is None or after.value is None:
        return None
    after.as_str("a phase name")
    return after


def _check_order(items: list[At]) -> None:
    names = [item.value["name"] for item in items]
    position = {name: i for i, name in enumerate(names)}
    parent_of: dict[str, str] = {}
    for item in items:
        after = _after_of(item)
        if after is None:
            continue
        if after.value not in position:
            raise after.error(
                f"unknown phase {after.value!r}",
                expected="the name of a phase above this one",
                hint=did_you_mean(after.value, names),
            )
        parent_of[item.value["name"]] = after.value
    _check_cycles(items, parent_of)
    for item in items:
        after = _after_of(item)
        if after is not None and position[after.value] >= position[item.value["name"]]:
            raise after.error(
                f"phase {after.value!r} comes later in the file",
                expected="phases in dependency order (move it above this one)",
            )


def _check_cycles(items: list[At], parent_of: dict[str, str]) -> None:
    for item in items:
        start = item.value["name"]
        chain = [start]
        while chain[-1] in parent_of:
            chain.append(parent_of[chain[-1]])
            if chain[-1] == start:
                after = _after_of(item)
                assert after is not None
                raise after.error(
                    "dependency cycle " + " → ".join(chain),
                    expected="phases that depend on earlier phases only",
                )
            if len(chain) > len(items):
                break
