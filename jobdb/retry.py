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
