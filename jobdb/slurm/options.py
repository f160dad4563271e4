"""Slurm settings: the spec's experiment settings merged with command-line overrides (pure).

An experiment's ``settings`` may hold ``sbatch_mode: array`` (the seed's
InfQuery spelling) and a ``slurm:`` mapping of cluster defaults. A phase's
``resources`` win over those defaults, and command-line options win over
both. Unknown keys and wrong types are refused with the key's path, before
anything is claimed or submitted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from jobdb.errors import BadInput

Mode = Literal["single", "array"]

#: Keys of ``settings.slurm``.
SETTING_KEYS = frozenset(
    {"partition", "account", "qos", "constraint", "time", "mem", "max_running", "extra", "signal"}
)
#: Seconds before the time limit at which Slurm sends the job SIGUSR1 (``--signal``).
DEFAULT_SIGNAL_LEAD_S = 60
_NAME = re.compile(r"^[A-Za-z0-9_.,:+@%/=-]+$")


@dataclass(frozen=True)
class SlurmOptions:
    """Cluster-wide choices for one experiment's submissions."""

    mode: Mode = "single"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time: str | None = None
    mem: str | None = None
    #: Array throttle: at most this many tasks of one array run at once (``%N``).
    max_running: int | None = None
    #: Further ``#SBATCH`` options, as the user wrote them.
    extra: tuple[str, ...] = ()
    #: Seconds of warning (SIGUSR1) before the time limit; 0 disables ``--signal``.
    signal_lead_s: int = DEFAULT_SIGNAL_LEAD_S


@dataclass(frozen=True)
class Overrides:
    """What the command line says; None keeps the spec's choice."""

    array: bool | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    max_running: int | None = None
    extra: tuple[str, ...] = ()


def from_settings(
    settings: Mapping[str, Any] | None, overrides: Overrides | None = None
) -> SlurmOptions:
    """Read ``settings`` (an experiment's), then apply ``overrides``; BadInput on a bad value."""
    settings = settings or {}
    mode = settings.get("sbatch_mode", "single")
    if mode not in ("single", "array"):
        raise BadInput(f"settings.sbatch_mode: {mode!r}", hint="expected single or array")
    raw = settings.get("slurm") or {}
    if not isinstance(raw, Mapping):
        raise BadInput(f"settings.slurm: {raw!r}", hint="expected a mapping of Slurm settings")
    unknown = sorted(set(raw) - SETTING_KEYS)
    if unknown:
        raise BadInput(
            f"settings.slurm: unknown key {unknown[0]!r}",
            hint="known: " + ", ".join(sorted(SETTING_KEYS)),
        )
    options = SlurmOptions(
        mode=mode,
        partition=_name(raw, "partition"),
        account=_name(raw, "account"),
        qos=_name(raw, "qos"),
        constraint=_text(raw, "constraint"),
        time=_name(raw, "time"),
        mem=_name(raw, "mem"),
        max_running=_count(raw.get("max_running"), "settings.slurm.max_running"),
        extra=_extra(raw.get("extra"), "settings.slurm.extra"),
        signal_lead_s=_seconds(raw.get("signal", DEFAULT_SIGNAL_LEAD_S)),
    )
    return apply(options, overrides or Overrides())


def apply(options: SlurmOptions, o: Overrides) -> SlurmOptions:
    """Command-line overrides on top of the spec's settings."""
    changes: dict[str, Any] = {}
    if o.array is not None:
        changes["mode"] = "array" if o.array else "single"
    for key in ("partition", "account", "qos"):
        value = getattr(o, key)
        if value is not None:
            changes[key] = check_name(value, f"--{key}")
    if o.max_running is not None:
        changes["max_running"] = _count(o.max_running, "--max-running")
    if o.extra:
        changes["extra"] = options.extra + _extra(list(o.extra), "--sbatch")
    return replace(options, **changes)


def check_name(value: Any, where: str) -> str:
    """A value that goes into an ``#SBATCH`` line verbatim: no spaces, quotes or newlines."""
    if not isinstance(value, str | int) or isinstance(value, bool) or not _NAME.match(str(value)):
        raise BadInput(
            f"{where}: {value!r} is not usable as a Slurm value",
            hint="letters, digits and _ . , : + @ % / = - only",
        )
    return str(value)


def _name(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return None if value is None else check_name(value, f"settings.slurm.{key}")


def _text(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or "\n" in value or "\r" in value:
        raise BadInput(f"settings.slurm.{key}: {value!r}", hint="expected one line of text")
    return value


def _count(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInput(f"{where}: {value!r}", hint="expected a whole number ≥ 1")
    return value


def _seconds(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadInput(f"settings.slurm.signal: {value!r}", hint="expected seconds ≥ 0")
    return value


def _extra(value: Any, where: str) -> tuple[str, ...]:
    """Extra sbatch options: each one line starting with ``-`` (it becomes an ``#SBATCH`` line)."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise BadInput(f"{where}: {value!r}", hint="expected a list of sbatch options")
    for item in value:
        if not item.startswith("-") or "\n" in item or "\r" in item:
            raise BadInput(
                f"{where}: {item!r} is not one sbatch option",
                hint="e.g. --exclusive or --constraint=a100 (one line, starting with -)",
            )
    return tuple(value)
