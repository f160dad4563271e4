"""jobman's command-line grids (seed 001): ``'lr={{0.1,0.01}}' 'wd={{0,1e-4}}' 'layers=2'``.

``key={{a,b,c}}`` is a dimension (the grid is the cartesian product of them,
in argument order); ``key=value`` is a fixed value. Values are read as
numbers, ``true``/``false``, ``null``/``none``, or else strings (quotes around
a value are removed). A value with ``{`` or ``}`` that is not one whole
``{{…}}`` list is refused as unbalanced braces.

The phase form adds a dependent phase to jobs already in a database::

    phase=pretrain lr=0.1 -- key1 key2 -- p={{1,2}}

parent filters (``key=value`` or ``key={{a,b}}``: any of), then ``--``, then
the grouping keys (none: each parent job gets its own children and they
inherit its parameters; ``[]``: one group of all the matching parents), then
``--``, then the grid of the new phase, per group.
"""

from __future__ import annotations

import math
import re
import shlex
import string
from collections.abc import Sequence
from typing import Any, NamedTuple

from jobdb.spec.errors import SpecError
from jobdb.spec.located import did_you_mean
from jobdb.spec.model import Dimension, ExperimentSpec, PhaseSpec
from jobdb.spec.params import canonical_value, dump_canonical
from jobdb.spec.phase import phase_config

PHASE_NAME = "main"
_KEY = re.compile(r"^[A-Za-z_][\w.]*$")
_INT = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?$")
_WORDS = {"true": True, "false": False, "null": None, "none": None}
LIST_FORM = "a list written key={{a,b,c}}"


class JobmanPhase(NamedTuple):
    """A dependent phase given on the command line (see the module docstring)."""

    #: Parameter (or ``phase``) → the values a parent job may have.
    parent_filters: dict[str, list[Any]]
    #: None: children per parent job; []: one group of all parents; else the group keys.
    group_keys: list[str] | None
    grid: tuple[Dimension, ...]


def parse_value(text: str) -> Any:
    """One command-line value: a number, boolean, null, or string (canonical)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text) and math.isfinite(float(text)):
        try:
            return canonical_value(float(text))
        except ValueError as exc:
            raise SpecError(
                str(exc), expected="a number below 2**53, an integer or a string"
            ) from None
    return _WORDS[text.lower()] if text.lower() in _WORDS else text


def parse_assignment(arg: str) -> tuple[str, list[Any] | None, Any]:
    """``key={{a,b}}`` → (key, [a, b], None); ``key=v`` → (key, None, v)."""
    key, sep, raw = arg.partition("=")
    key = key.strip()
    if not sep or not _KEY.match(key):
        raise SpecError(f"argument {arg!r}", path=key, expected="key=value or " + LIST_FORM)
    if raw.startswith("{{") and raw.endswith("}}") and raw.count("{") == raw.count("}") == 2:
        values = [parse_value(item) for item in raw[2:-2].split(",") if item.strip()]
        if not values:
            raise SpecError(f"empty grid list in {arg!r}", path=key, expected="at least one value")
        _check_distinct(key, values)
        return key, values, None
    if "{" in raw or "}" in raw:
        raise SpecError(f"unbalanced braces in {arg!r}", path=key, expected=LIST_FORM)
    return key, None, parse_value(raw)


def _check_distinct(key: str, values: list[Any]) -> None:
    texts = [dump_canonical({"v": v}) for v in values]
    if len(set(texts)) != len(texts):
        raise SpecError(f"{key} lists a value twice", path=key, expected="distinct values")


def parse_jobman_grid(args: Sequence[str]) -> tuple[Dimension, ...]:
    """The dimensions of ``key={{…}}``/``key=value`` arguments, in argument order."""
    dims: list[Dimension] = []
    seen: set[str] = set()
    for arg in args:
        key, values, fixed = parse_assignment(arg)
        if key in seen:
            raise SpecError(f"{key} is given twice", path=key, expected="each key once")
        seen.add(key)
        dims.append(Dimension((key,), tuple((v,) for v in (values or [fixed]))))
    return tuple(dims)


def parse_jobman(experiment: str, command: str, args: Sequence[str]) -> ExperimentSpec:
    """A one-phase experiment (phase ``main``) running ``command`` over the grid of ``args``."""
    grid = parse_jobman_grid(args)
    check_placeholders(command, {key for dim in grid for key in dim.keys})
    phase = PhaseSpec(name=PHASE_NAME, command=command, task=None, grid=grid)
    phase = PhaseSpec(**{**phase.__dict__, "config": phase_config(phase)})
    text = shlex.join([command, *args])
    return ExperimentSpec(experiment, {}, (phase,), text, "jobman")


def check_placeholders(command: str, params: set[str] | frozenset[str]) -> None:
    """Every ``{name}`` in ``command`` must be a parameter (``{{``/``}}`` are literal braces)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(command) if f is not None]
    except ValueError as exc:
        raise SpecError(f"bad braces in command ({exc})", expected="{name}, or {{ }}") from None
    for name in fields:
        if name not in params:
            raise SpecError(
                f"placeholder {{{name}}} in the command is not a parameter",
                path="command",
                expected="one of " + (", ".join(sorted(params)) or "(no parameters)"),
                hint=did_you_mean(name, params),
            )


def parse_jobman_phase(args: Sequence[str]) -> JobmanPhase:
    """``filters -- group keys -- grid`` → :class:`JobmanPhase`."""
    sections: list[list[str]] = [[]]
    for arg in args:
        if arg == "--":
            sections.append([])
        else:
            sections[-1].append(arg)
    if len(sections) != 3:
        raise SpecError(
            f"{len(sections) - 1} '--' separator(s) in {shlex.join(args)!r}",
            expected="parent filters -- group keys -- grid (two '--')",
        )
    filters, groups, grid = sections
    return JobmanPhase(_filters(filters), _group_keys(groups), parse_jobman_grid(grid))


def _filters(args: list[str]) -> dict[str, list[Any]]:
    if not args:
        raise SpecError("no parent filters", expected="at least phase=NAME before the first '--'")
    out: dict[str, list[Any]] = {}
    for arg in args:
        key, values, fixed = parse_assignment(arg)
        if key in out:
            raise SpecError(f"{key} is given twice", path=key, expected="each key once")
        out[key] = values if values is not None else [fixed]
    return out


def _group_keys(args: list[str]) -> list[str] | None:
    if not args:
        return None
    if args == ["[]"]:
        return []
    for arg in args:
        if not _KEY.match(arg):
            raise SpecError(f"group key {arg!r}", expected="parameter names (or [] for all)")
    return list(args)
