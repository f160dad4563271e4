"""The retry policy: whether a job that ended badly goes back to ready (pure, no I/O).

A phase's ``retry`` (stored in ``phases.config``) lists the verdicts that are
retried (``on``: ``crashed`` by default, ``failed`` when the program's own
failures are worth another try, ``oom`` for out-of-memory failures) and
``max_attempts``, copied onto each job. Everyone who writes a bad verdict
(the runner, the monitor) asks this module, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobdb.errors import BadInput
from jobdb.states import State

DEFAULT_ON = ("crashed",)


def retried_verdicts(config: Mapping[str, Any] | None) -> frozenset[str]:
    """The verdicts (and reasons such as ``oom``) a phase's policy retries."""
    policy = (config or {}).get("retry") or {}
    return frozenset(policy.get("on") or DEFAULT_ON)


def should_retry(
    config: Mapping[str, Any] | None,
    verdict: State,
    attempt: int,
    max_attempts: int,
    reason: str | None = None,
) -> bool:
    """Whether attempt ``attempt`` ending in ``verdict`` earns another attempt.

    Cancelled jobs are never retried: a person asked for them to stop. An
    ``oom`` reason is retried when the policy names ``oom`` or the verdict.
    """
    if verdict not in (State.FAILED, State.CRASHED) or attempt >= max_attempts:
        return False
    on = retried_verdicts(config)
    return verdict.value in on or (reason == "oom" and "oom" in on)


def retry_factor(attempt: int) -> int:
    """How much ``halve``/``double`` scale attempt ``attempt``: 1, 2, 4, … (×2 per retry)."""
    return 2 ** max(attempt - 1, 0)


def scaled_params(
    config: Mapping[str, Any] | None, params: Mapping[str, Any], attempt: int
) -> dict[str, Any]:
    """``params`` as attempt ``attempt`` runs them, after the policy's halve/double.

    Attempt 1 runs the scheduled values; each retry halves (integers floor,
    never below 1) or doubles them again, so ``halve: batch_size`` with
    ``double: accumulation_steps`` keeps the effective batch size after an
    out-of-memory failure. ``mem`` and ``time`` are resources, not parameters
    (see :func:`scaled_resources`). A non-numeric value is a :class:`BadInput`:
    the attempt cannot start, and says why.
    """
    out = dict(params)
    factor = retry_factor(attempt)
    for key, down in _scalings(config) if factor > 1 else ():
        if key in out:
            out[key] = _scale(key, out[key], factor, down)
    return out


def scaled_resources(config: Mapping[str, Any] | None, attempt: int) -> dict[str, Any]:
    """The phase's resources for attempt ``attempt`` (``mem``/``time`` halved or doubled)."""
    resources = dict((config or {}).get("resources") or {})
    factor = retry_factor(attempt)
    for key, down in _scalings(config) if factor > 1 else ():
        if key == "mem" and resources.get("mem") is not None:
            resources["mem"] = _scale_mem(str(resources["mem"]), factor, down)
        elif key == "time" and resources.get("time") is not None:
            resources["time"] = _scale_time(str(resources["time"]), factor, down)
    return resources


def _scalings(config: Mapping[str, Any] | None) -> list[tuple[str, bool]]:
    """The policy's ``(name, down)`` pairs: ``halve`` names go down, ``double`` names up."""
    policy = (config or {}).get("retry") or {}
    halve, double = policy.get("halve") or (), policy.get("double") or ()
    return [(key, True) for key in halve] + [(key, False) for key in double]


def _scale(key: str, value: Any, factor: int, down: bool) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(f"retry halves/doubles {key!r}, but its value {value!r} is not a number")
    if isinstance(value, int):
        return max(value // factor, 1) if down else value * factor
    return value / factor if down else value * factor


_MEM_UNITS = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def _scale_mem(text: str, factor: int, down: bool) -> str:
    """Memory in Slurm's spelling, scaled, written in whole megabytes (Slurm wants integers)."""
    digits = text.upper().rstrip("B")
    unit = digits[-1] if digits and digits[-1] in "KMGT" else ""
    megabytes = float(digits[: len(digits) - len(unit)]) * _MEM_UNITS[unit]
    scaled = megabytes / factor if down else megabytes * factor
    return f"{max(round(scaled), 1)}M"


def _scale_time(text: str, factor: int, down: bool) -> str:
    """A Slurm time limit (``MM``, ``HH:MM:SS``, ``D-HH:MM:SS``) scaled, as ``D-HH:MM:SS``."""
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:  # "D-HH", "D-HH:MM", "D-HH:MM:SS"
        hours, minutes, seconds = [*parts, 0, 0][:3]
    else:  # "MM", "MM:SS", "HH:MM:SS"
        hours, minutes, seconds = {1: [0, parts[0], 0], 2: [0, *parts]}.get(len(parts), parts)
    total = ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds
    total = max(total // factor, 1) if down else total * factor
    d, rest = divmod(total, 86400)
    return f"{d}-{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
