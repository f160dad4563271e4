"""The ``grid:`` and ``folds:`` sections of a phase → dimensions.

``grid`` is a mapping; each entry is one of:

* a list → one dimension, one value per job (write ``[[1, 2]]`` to fix a
  list value, ``[{a: 1}]`` to fix a mapping value);
* ``{range: [start, stop, step]}``, ``{linspace: [start, stop, num]}`` or
  ``{logspace: [start, stop, num, base]}`` (base 10 by default; like numpy,
  the bounds are exponents) → one dimension of generated numbers, each
  rounded to 12 significant digits so that ``0.1 * 3`` reads ``0.3``;
* ``zip:`` a mapping of equal-length lists, or a list of such mappings →
  one dimension per group whose values go together (``lr[i]`` with ``bs[i]``);
* any other mapping → nested keys, flattened to dotted names (``optim.lr``);
* anything else → a fixed value shared by all jobs.

``folds: K`` (or ``folds: {count: K, key: outer_fold}``) adds the dimension
``fold`` = 0..K-1 last (so a configuration's folds are consecutive jobs) and
the fixed ``n_folds`` = K (``n_<key>s`` for another key name).
"""

from __future__ import annotations

import math
from typing import Any

from jobdb.spec.located import At, type_name
from jobdb.spec.model import Dimension
from jobdb.spec.params import canonical_value, dump_canonical

HELPERS = ("range", "linspace", "logspace")
JSON_EXPECTED = "a JSON value (string, number, boolean, null, list or mapping); quote dates"


def parse_grid(grid: At | None, folds: At | None) -> tuple[tuple[Dimension, ...], int | None]:
    """The dimensions of a phase's grid (fold dimension last) and its fold count."""
    dims: list[Dimension] = []
    if grid is not None and grid.value is not None:
        grid.as_mapping()
        _collect(grid, "", dims)
    count = None
    if folds is not None:
        count, key = _parse_folds(folds)
        n_key = "n_folds" if key == "fold" else f"n_{key}s"
        dims += [Dimension((n_key,), ((count,),)), Dimension((key,), _rows(range(count)))]
    _check_unique_keys(dims, grid or folds)
    return tuple(dims), count


def _collect(at: At, prefix: str, dims: list[Dimension]) -> None:
    for key, child in at.items():
        name = prefix + key
        if key == "zip":
            dims.extend(_zip_groups(child, prefix))
        elif isinstance(child.value, list):
            dims.append(Dimension((name,), _rows(list_values(child))))
        elif _helper(child) is not None:
            dims.append(Dimension((name,), _rows(helper_values(child))))
        elif isinstance(child.value, dict) and child.value:
            _collect(child, name + ".", dims)
        else:
            dims.append(Dimension((name,), ((json_value(child),),)))


def _rows(values: Any) -> tuple[tuple[Any, ...], ...]:
    return tuple((v,) for v in values)


def _helper(at: At) -> str | None:
    if isinstance(at.value, dict) and len(at.value) == 1:
        (key,) = at.value
        return key if key in HELPERS else None
    return None


def json_value(at: At) -> Any:
    """The canonical form of a JSON value, or a SpecError pointing at what is not JSON."""
    value = at.value
    if isinstance(value, list):
        return [json_value(item) for item in at.as_list()]
    if isinstance(value, dict):
        return {key: json_value(child) for key, child in sorted(at.items())}
    if isinstance(value, float) and not math.isfinite(value):
        raise at.error(f"got {value!r}", expected="a finite number")
    if value is None or isinstance(value, str | int | float):
        try:
            return canonical_value(value)
        except ValueError as exc:
            raise at.error(
                str(exc), expected="a number below 2**53, an integer or a string"
            ) from None

    raise at.error(f"got {type_name(value)} ({value!r})", expected=JSON_EXPECTED)


def list_values(at: At) -> list[Any]:
    """The values of a grid list: not empty, each a JSON value, none repeated."""
    items = at.as_list()
    if not items:
        raise at.error("empty grid list", expected="at least one value (write [[]] to fix [])")
    values = [json_value(item) for item in items]
    _check_distinct(items, values)
    return values


def _check_distinct(items: list[At], values: list[Any]) -> None:
    seen: set[str] = set()
    for item, value in zip(items, values, strict=True):
        text = dump_canonical({"v": value})
        if text in seen:
            raise item.error(f"value {value!r} appears twice", expected="distinct values")
        seen.add(text)


def helper_values(at: At) -> list[Any]:
    """The numbers of a ``range``/``linspace``/``logspace`` helper."""
    name = _helper(at)
    assert name is not None
    arg = at.get(name)
    assert arg is not None
    nums = [item.as_number() for item in arg.as_list(f"a list of numbers for {name}")]
    values = _range(arg, nums) if name == "range" else _space(arg, nums, name == "logspace")
    if not values:
        raise arg.error(
            f"{name} {nums} has no values, so the spec would create no jobs",
            expected=f"a {name} with at least one value",
        )
    return [canonical_value(float(f"{v:.12g}")) for v in values]


def _range(at: At, nums: list[float | int]) -> list[float]:
    if not 1 <= len(nums) <= 3:
        raise at.wrong_type("[stop], [start, stop] or [start, stop, step]")
    start, stop, step = ([0, *nums, 1] if len(nums) == 1 else [*nums, 1])[:3]
    if step == 0:
        raise at.error("range step is 0", expected="a non-zero step")
    count = max(0, math.ceil((stop - start) / step - 1e-9))
    return [start + i * step for i in range(count)]


def _space(at: At, nums: list[float | int], log: bool) -> list[float]:
    if len(nums) not in ((3, 4) if log else (3,)):
        raise at.wrong_type("[start, stop, num]" + (" or [start, stop, num, base]" if log else ""))
    start, stop, num = nums[:3]
    if not isinstance(num, int) or num < 0:
        raise at.error(f"num is {num!r}", expected="a whole number of values ≥ 0")
    points = [start + (stop - start) * i / max(num - 1, 1) for i in range(num)]
    base = nums[3] if len(nums) == 4 else 10
    return [base**p for p in points] if log else points


def _zip_groups(at: At, prefix: str) -> list[Dimension]:
    groups = at.as_list() if isinstance(at.value, list) else [at]
    return [_zip_group(group, prefix) for group in groups]


def _zip_group(at: At, prefix: str) -> Dimension:
    columns: dict[str, list[Any]] = {}
    for key, child in at.items():
        is_helper = _helper(child) is not None
        if not is_helper and not isinstance(child.value, list):
            raise child.wrong_type("a list (zip groups lists of equal length)")
        columns[prefix + key] = helper_values(child) if is_helper else _column(child)
    if not columns:
        raise at.error("empty zip group", expected="a mapping of equal-length lists")
    lengths = {key: len(values) for key, values in columns.items()}
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{key} has {n}" for key, n in lengths.items())
        raise at.error(f"zip lists of unequal length ({sizes})", expected="lists of equal length")
    rows = tuple(zip(*columns.values(), strict=True))
    if len({dump_canonical(dict(zip(columns, row, strict=True))) for row in rows}) != len(rows):
        raise at.error("a zip group has the same row twice", expected="distinct rows")
    return Dimension(tuple(columns), rows)


def _column(at: At) -> list[Any]:
    """One zip column: values may repeat (only the zipped rows must be distinct)."""
    items = at.as_list()
    if not items:
        raise at.error("empty grid list", expected="at least one value")
    return [json_value(item) for item in items]


def _parse_folds(at: At) -> tuple[int, str]:
    if isinstance(at.value, dict):
        at.as_mapping({"count", "key"})
        key_at = at.get("key")
        key = "fold" if key_at is None else key_at.as_str("a parameter name")
        return at.require("count", "an integer ≥ 2").as_int(2), key
    return at.as_int(2), "fold"


def _check_unique_keys(dims: list[Dimension], at: At | None) -> None:
    seen: set[str] = set()
    for dim in dims:
        for key in dim.keys:
            if key in seen and at is not None:
                raise at.error(f"parameter {key!r} is set twice", expected="each name once")
            seen.add(key)
