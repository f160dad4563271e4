"""Canonical job parameters and their hash: what makes scheduling idempotent.

A job is identified within its phase by the hash of its parameters, so two
specs that mean the same grid point must produce the same bytes:

* keys are sorted (at every depth), so key order in the spec does not matter;
* a float with an integral value becomes an int, so ``1`` and ``1.0`` (and
  ``-0.0`` and ``0``) are the same parameter; YAML and the command line spell
  numbers loosely and a user means the number, not its type. An integral
  float of 2**53 or more is refused: PostgreSQL's JSONB would give it back as
  an integer and SQLite as a float, and a parameter must read back as it was
  hashed on both (write such a value as an integer or a string);
* booleans are not numbers: ``true`` and ``1`` are different parameters;
* tuples become lists; NaN and infinities are refused (JSON has no spelling
  for them, and NaN is not even equal to itself);
* the JSON text uses ``separators=(",", ":")`` and UTF-8 (``ensure_ascii``
  off), and the hash is the SHA-256 hex digest of that text.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

_EXACT_FLOAT_LIMIT = 2.0**53


def canonical_value(value: Any) -> Any:
    """One parameter value in canonical form (see the module docstring)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _canonical_float(value)
    if isinstance(value, Mapping):
        return canonical(value)
    if isinstance(value, list | tuple):
        return [canonical_value(v) for v in value]
    raise TypeError(f"{type(value).__name__} is not a JSON value: {value!r}")


def _canonical_float(value: float) -> int | float:
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    if value.is_integer():
        if abs(value) >= _EXACT_FLOAT_LIMIT:
            raise ValueError(
                f"{value!r} is too large for a float parameter (write an integer or a string)"
            )
        return int(value)
    return value


def canonical(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with keys sorted at every depth and numbers normalised."""
    for key in params:
        if not isinstance(key, str):
            raise TypeError(f"parameter names must be strings, not {key!r}")
    return {key: canonical_value(params[key]) for key in sorted(params)}


def canonical_json(params: Mapping[str, Any]) -> str:
    """The canonical JSON text of ``params``: what is stored and hashed."""
    return dump_canonical(canonical(params))


def dump_canonical(params: Mapping[str, Any]) -> str:
    """JSON text of parameters that are already canonical (the fast path of :func:`expand`)."""
    return json.dumps(
        params, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def params_hash(params: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of :func:`canonical_json`: a job's identity within its phase."""
    return hash_text(canonical_json(params))


def hash_text(text: str) -> str:
    """SHA-256 hex digest of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode()).hexdigest()
