"""One phase of a jobdb YAML spec → :class:`PhaseSpec`, checked against the phases before it.

Parameter names follow the dependency: a phase without ``group_by`` inherits
every parameter of its parent job; with ``group_by`` it inherits the group's
key values (and, when it starts, the ``select`` winner's ``keys``). A grid key
that is also an inherited name is an error rather than an override: an
override would give two children of different parents the same parameters,
and the hash that identifies a job within its phase would collide.
"""

from __future__ import annotations

import dataclasses
import json
import re
import string
from dataclasses import dataclass
from typing import Any

from jobdb.slurm.options import MEM, MEM_EXPECTED, TIME, TIME_EXPECTED
from jobdb.spec import slurm
from jobdb.spec.grid import parse_grid
from jobdb.spec.located import At, did_you_mean
from jobdb.spec.model import Dimension, PhaseSpec, Resources, RetryPolicy, Select

PHASE_KEYS = frozenset(
    "name command task grid folds after group_by select resources retry priority".split()
)
SELECT_KEYS = frozenset({"metric", "mode", "aggregate", "keys"})
AGGREGATES = ("mean", "median", "min", "max")
RESOURCE_KEYS = frozenset({"gpus", "cpus", "mem", "time", "partition", "extra"})
RETRY_KEYS = frozenset({"max_attempts", "on", "halve", "double"})
#: Without a ``retry:``, a crashed job (jobdb lost it: node gone, supervisor
#: killed, stale heartbeat) gets two more tries; a failed one (the program
#: said no) gets none, since ``on`` defaults to crashed only.
DEFAULT_MAX_ATTEMPTS = RetryPolicy().max_attempts
#: What ``retry.on`` may name: the two bad verdicts, and ``oom`` (a failure whose
#: reason is out of memory, retried without retrying every failure).
VERDICTS = ("crashed", "failed", "oom")
_TASK = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class PhaseInfo:
    """What later phases may refer to: the parameter names its jobs carry when scheduled."""

    params: frozenset[str]
    fold_keys: frozenset[str]
    #: ``params`` plus names only known when a job starts: the ``select`` winner's
    #: keys, here or in an ancestor whose parameters this phase inherits whole.
    runtime: frozenset[str] = frozenset()


def parse_phase(at: At, earlier: dict[str, PhaseInfo]) -> tuple[PhaseSpec, PhaseInfo]:
    """Parse one phase; ``earlier`` holds the phases above it (``after`` is already checked)."""
    at.as_mapping(PHASE_KEYS)
    name = at.require("name", "a phase name").as_str("a phase name")
    command, task = _what_to_run(at)
    grid, folds = parse_grid(at.get("grid"), at.get("folds"))
    after = _opt(at, "after", lambda a: a.as_str("a phase name"))
    parent = earlier[after] if after is not None else None
    group_by, select = _dependency(at, parent)
    own = {key for dim in grid for key in dim.keys}
    inherited = _inherited(parent, group_by)
    _check_clash(at, own, inherited, f"inherited from phase {after!r}")
    _check_clash(at, own, frozenset(select.keys if select else ()), "chosen by select")
    inherited_late = parent.runtime - parent.params if parent and group_by is None else frozenset()
    _check_clash(at, own, inherited_late, f"chosen by a select above phase {name!r}")
    params = frozenset(own | inherited)
    runtime = params | (frozenset(select.keys) if select else frozenset()) | inherited_late
    if command is not None:
        _check_placeholders(at.require("command", ""), command, runtime)
    spec = PhaseSpec(
        name=name,
        command=command,
        task=task,
        grid=grid,
        folds=folds,
        after=after,
        group_by=group_by,
        select=select,
        resources=_resources(at.get("resources")),
        retry=_retry(at.get("retry"), runtime),
        priority=_opt(at, "priority", lambda a: a.as_int()) or 0,
        config={},
    )
    spec = dataclasses.replace(spec, config=phase_config(spec, at))
    return spec, PhaseInfo(params, _fold_keys(grid, folds, parent, params), runtime)


def _opt(at: At, key: str, read: Any) -> Any:
    child = at.get(key)
    return None if child is None or child.value is None else read(child)


def _what_to_run(at: At) -> tuple[str | None, str | None]:
    command = _opt(at, "command", lambda a: a.as_str("a command template"))
    task = _opt(at, "task", lambda a: a.as_str("module:function"))
    if (command is None) == (task is None):
        what = "both" if command is not None else "neither"
        raise at.error(f"the phase has {what} of command and task", expected="exactly one")
    if task is not None and not _TASK.match(task):
        raise at.require("task", "").error(f"task {task!r}", expected="module:function")
    return command, task


def _dependency(at: At, parent: PhaseInfo | None) -> tuple[tuple[str, ...] | None, Select | None]:
    group_at, select_at = at.get("group_by"), at.get("select")
    for child in (group_at, select_at):
        if child is not None and parent is None:
            raise child.error(f"{child.path[-1]} without after", expected="an after: phase")
    group_by = None if group_at is None else group_at.as_names("a list of parameter names")
    for i, key in enumerate(group_by or ()):
        _check_param(At(at.doc, (*at.path, "group_by", i), key), key, parent)
    if select_at is None or select_at.value is None:
        return group_by, None
    assert parent is not None
    return group_by or (), _select(select_at, parent, group_by or ())


def _check_param(at: At, key: str, parent: PhaseInfo | None) -> None:
    names = parent.params if parent is not None else frozenset()
    if key not in names:
        raise at.error(
            f"{key!r} is not a parameter of the parent phase",
            expected="one of " + (", ".join(sorted(names)) or "(no parameters)"),
            hint=did_you_mean(key, names),
        )


def _select(at: At, parent: PhaseInfo, group_by: tuple[str, ...]) -> Select:
    at.as_mapping(SELECT_KEYS)
    metric = at.require("metric", "the result metric to compare").as_str("a metric name")
    mode_at = at.require("mode", "min or max")
    if mode_at.value not in ("min", "max"):
        raise mode_at.wrong_type("min or max")
    keys_at = at.get("keys")
    if keys_at is None:
        keys = tuple(sorted(parent.params - set(group_by) - parent.fold_keys))
    else:
        keys = keys_at.as_names("a list of parameter names")
        for i, key in enumerate(keys):
            _check_param(At(at.doc, (*keys_at.path, i), key), key, parent)
    if not keys:
        raise at.error("select has no candidate keys", expected="keys: [names] of the parent")
    spread = parent.params - set(group_by) - set(keys)
    aggregate = _opt(at, "aggregate", lambda a: a.as_str("one of " + ", ".join(AGGREGATES)))
    if aggregate is not None and aggregate not in AGGREGATES:
        raise at.require("aggregate", "").wrong_type("one of " + ", ".join(AGGREGATES))
    if "aggregate" not in at.value and spread & parent.fold_keys:
        aggregate = "mean"
    return Select(metric, mode_at.value, aggregate, keys)


def _inherited(parent: PhaseInfo | None, group_by: tuple[str, ...] | None) -> frozenset[str]:
    if parent is None:
        return frozenset()
    return parent.params if group_by is None else frozenset(group_by)


def _check_clash(at: At, own: set[str], inherited: frozenset[str], source: str) -> None:
    for key in sorted(own & inherited):
        grid = at.get("grid")
        where = "grid" if grid is not None and key in (grid.value or {}) else "folds"
        path = (*at.path, where, key) if where == "grid" else (*at.path, "folds")
        raise at.doc.error(
            path,
            f"grid key {key!r} is also a parameter {source}",
            expected="a new name for this phase's value",
        )


def _check_placeholders(at: At, command: str, params: frozenset[str]) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(command) if f is not None]
    except ValueError as exc:
        raise at.error(f"bad braces in command ({exc})", expected="{name}, or {{ }}") from None
    for name in fields:
        if name not in params:
            raise at.error(
                f"placeholder {{{name}}} is not a parameter of this phase",
                expected="one of " + (", ".join(sorted(params)) or "(no parameters)"),
                hint=did_you_mean(name, params),
            )


def _fold_keys(
    grid: tuple[Dimension, ...], folds: int | None, parent: PhaseInfo | None, params: frozenset[str]
) -> frozenset[str]:
    own = frozenset(grid[-2].keys + grid[-1].keys) if folds else frozenset()
    return own | (parent.fold_keys & params if parent else frozenset())


def _resources(at: At | None) -> Resources:
    if at is None or at.value is None:
        return Resources()
    at.as_mapping(RESOURCE_KEYS)
    return Resources(
        gpus=_opt(at, "gpus", lambda a: a.as_int(0)) or 0,
        cpus=_opt(at, "cpus", lambda a: a.as_int(1)),
        mem=_opt(at, "mem", lambda a: _slurm_amount(a, MEM, MEM_EXPECTED)),
        time=_opt(at, "time", lambda a: _slurm_amount(a, TIME, TIME_EXPECTED)),
        partition=_opt(at, "partition", slurm.partition),
        extra=_opt(at, "extra", slurm.extra) or (),
    )


def _slurm_amount(at: At, pattern: re.Pattern[str], expected: str) -> str:
    """Memory or time as Slurm spells it; a bare integer is Slurm's default unit (MB, minutes)."""
    text = str(at.as_int(1)) if isinstance(at.value, int) else at.as_str(expected)
    if not pattern.match(text):
        raise at.wrong_type(expected)
    return text


def _retry(at: At | None, params: frozenset[str]) -> RetryPolicy:
    if at is None or at.value is None:
        return RetryPolicy()
    at.as_mapping(RETRY_KEYS)
    on = _opt(at, "on", lambda a: a.as_names("a list of verdicts")) or ("crashed",)
    for i, verdict in enumerate(on):
        if verdict not in VERDICTS:
            raise at.doc.error(
                (*at.path, "on", i), f"{verdict!r}", expected="crashed, failed or oom"
            )
    scalable = params | {"mem", "time"}
    halve, double = (_opt(at, k, lambda a: a.as_names()) or () for k in ("halve", "double"))
    for key, names in (("halve", halve), ("double", double)):
        for i, name in enumerate(names):
            if name not in scalable:
                raise at.doc.error(
                    (*at.path, key, i),
                    f"{name!r} is neither a parameter nor mem/time",
                    expected="one of " + ", ".join(sorted(scalable)),
                    hint=did_you_mean(name, scalable),
                )
    max_attempts = _opt(at, "max_attempts", lambda a: a.as_int(1)) or DEFAULT_MAX_ATTEMPTS
    return RetryPolicy(max_attempts, tuple(on), tuple(halve), tuple(double))


def phase_config(spec: PhaseSpec, at: At | None = None) -> dict[str, Any]:
    """The phase definition as JSON data, for the ``phases.config`` column."""
    data = dataclasses.asdict(spec)
    data.pop("config")
    data["grid"] = [dim.to_json() for dim in spec.grid]
    if at is not None and isinstance(at.value, dict) and isinstance(at.value.get("folds"), dict):
        data["folds"] = {"count": spec.folds, "key": at.value["folds"].get("key", "fold")}
    return json.loads(json.dumps(data))
