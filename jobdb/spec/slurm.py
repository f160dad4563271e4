"""Slurm settings checked when a spec is read, so ``jobdb schedule`` refuses them.

The checks are the Slurm executor's own (:mod:`jobdb.slurm.options`, pure):
what would make a dispatch refuse, or put a broken ``#SBATCH`` line in a
script, is found at schedule time instead, at its line in the file, before
anything is written to the database. Each check reports the key path of
the bad value; here that path becomes the file position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from jobdb.slurm import options
from jobdb.spec.errors import SpecError
from jobdb.spec.located import At, did_you_mean

T = TypeVar("T")


def check_settings(at: At | None) -> None:
    """An experiment's ``settings``: ``sbatch_mode`` and the ``slurm:`` mapping."""
    if at is None or not isinstance(at.value, dict):
        return
    _located(at, lambda: options.from_settings(at.value))


def partition(at: At) -> str:
    """A phase's ``resources.partition``: a value that is safe verbatim in ``#SBATCH``."""
    return _located(at, lambda: options.check_name(at.value, at.path))


def extra(at: At) -> tuple[str, ...]:
    """A phase's ``resources.extra``: a list of single sbatch options (a string is one)."""
    value = [at.value] if isinstance(at.value, str) else at.value
    return _located(at, lambda: options.check_extra(value, at.path))


def _located(at: At, check: Callable[[], T]) -> T:
    """Run a check; its :class:`~jobdb.slurm.options.SettingError` becomes a located SpecError."""
    try:
        return check()
    except options.SettingError as exc:
        raise _spec_error(at, exc) from None


def _spec_error(at: At, exc: options.SettingError) -> SpecError:
    path: Any = exc.path
    if isinstance(at.value, str) and path == (*at.path, 0):
        path = at.path  # a single string given where a list is allowed
    hint = did_you_mean(str(path[-1]), options.SETTING_KEYS) if exc.at_key else None
    return at.doc.error(path, exc.problem, expected=exc.expected, hint=hint, at_key=exc.at_key)
