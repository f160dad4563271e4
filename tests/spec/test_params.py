"""Canonical parameters and their hash: the identity of a job within its phase."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobdb.spec.params import canonical, canonical_json, params_hash

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: abs(f) < 2.0**53),
    st.text(max_size=5),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)
param_dicts = st.dictionaries(st.text(max_size=6), values, max_size=6)


@given(param_dicts, st.randoms())
def test_hash_ignores_key_order(params: dict[str, Any], rnd: Any) -> None:
    keys = list(params)
    rnd.shuffle(keys)
    assert params_hash({k: params[k] for k in keys}) == params_hash(params)


@given(st.integers(-(2**53) + 1, 2**53 - 1))
def test_integral_float_equals_int(n: int) -> None:
    assert params_hash({"x": float(n)}) == params_hash({"x": n})
    assert params_hash({"x": [float(n)]}) == params_hash({"x": [n]})


@given(param_dicts)
def test_canonical_is_idempotent_and_round_trips(params: dict[str, Any]) -> None:
    once = canonical(params)
    assert canonical(once) == once
    assert json.loads(canonical_json(params)) == once


def test_bools_are_not_numbers() -> None:
    assert params_hash({"x": True}) != params_hash({"x": 1})
    assert canonical({"x": 1.0, "y": True}) == {"x": 1, "y": True}
    assert isinstance(canonical({"x": 1.0})["x"], int)


def test_nested_keys_sorted_and_compact_json() -> None:
    assert canonical_json({"b": 1, "a": {"d": 2.0, "c": (1, 2)}}) == '{"a":{"c":[1,2],"d":2},"b":1}'
    assert canonical({"x": -0.0}) == {"x": 0}


def test_large_integral_floats_are_refused() -> None:
    """JSONB would read 1e20 back as an int and SQLite as a float: refuse the ambiguity."""
    for value in (1e300, 2.0**60, -1e20):
        with pytest.raises(ValueError, match="too large for a float parameter"):
            canonical({"x": value})


@pytest.mark.parametrize("bad", [math.nan, math.inf, object()])
def test_non_json_values_are_refused(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        canonical({"x": bad})


def test_hash_is_sha256_hex_of_canonical_json() -> None:
    import hashlib

    text = canonical_json({"lr": 0.1, "é": "ü"})
    assert params_hash({"é": "ü", "lr": 0.1}) == hashlib.sha256(text.encode()).hexdigest()
    assert "é" in text  # UTF-8, not \u escapes
