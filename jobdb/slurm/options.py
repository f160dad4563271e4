"""Slurm settings: the spec's experiment settings merged with command-line overrides (pure).

An experiment's ``settings`` may hold ``sbatch_mode: array`` (the seed's
InfQuery spelling) and a ``slurm:`` mapping of cluster defaults. A phase's
``resources`` win over those defaults, and command-line options win over
both. Unknown keys and wrong values are refused with the key's path
(:class:`SettingError`): ``jobdb schedule`` points at the line of the spec
(:mod:`jobdb.spec.slurm`), and a dispatch refuses before anything is
claimed or submitted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from jobdb.errors import BadInput

Mode = Literal["single", "array"]
#: Where a setting is: ``("settings", "slurm", "extra", 0)``, or ``("--partition",)``.
KeyPath = tuple[str | int, ...]

#: Keys of ``settings.slurm``.
SETTING_KEYS = frozenset(
    {"partition", "account", "qos", "constraint", "time", "mem", "max_running", "extra", "signal"}
)
#: Seconds before the time limit at which Slurm sends the job SIGUSR1 (``--signal``).
DEFAULT_SIGNAL_LEAD_S = 60
_NAME = re.compile(r"^[A-Za-z0-9_.,:+@%/=-]+$")
#: Slurm's memory sizes (a bare number is megabytes) and time limits (a bare number is minutes).
MEM = re.compile(r"^\d+(?:\.\d+)?[KMGT]?B?$", re.IGNORECASE)
TIME = re.compile(r"^(?:\d+-)?\d+(?::\d{1,2}){0,2}$")
MEM_EXPECTED = "a memory size such as 16G (a bare number is megabytes)"
TIME_EXPECTED = "a time such as 1-12:00:00, 4:00:00 or 90 (minutes)"
NAME_EXPECTED = "letters, digits and _ . , : + @ % / = - only"
EXTRA_EXPECTED = "one sbatch option on one line, starting with -, e.g. --exclusive"
#: sbatch options jobdb sets itself, which an ``extra`` line must not change: why.
RESERVED = {
    "--requeue": "jobdb decides retries itself (Slurm's requeue would run the job twice)",
    "--job-name": "the job name carries the database and job jobdb follows",
    "-J": "the job name carries the database and job jobdb follows",
    "--array": "arrays are --array / settings.sbatch_mode: array",
    "-a": "arrays are --array / settings.sbatch_mode: array",
    "--dependency": "dependencies come from the phases (--slurm-dependencies)",
    "-d": "dependencies come from the phases (--slurm-dependencies)",
    "--comment": "the comment names the submitting process",
    "--output": "jobdb chooses the log path",
    "-o": "jobdb chooses the log path",
}


class SettingError(BadInput):
    """A Slurm setting cannot be used."""

    def __init__(self, path: KeyPath, problem: str, expected: str, *, at_key: bool = False):
        super().__init__(f"{dotted(path)}: {problem}", hint=f"expected {expected}")
        self.path = path
        self.problem = problem
        self.expected = expected
        #: The key itself is wrong (unknown), not its value.
        self.at_key = at_key


def dotted(path: KeyPath) -> str:
    """``("settings", "slurm", "extra", 0)`` → ``settings.slurm.extra[0]``."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


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
    """Read ``settings`` (an experiment's), then apply ``overrides``; SettingError if bad."""
    settings = settings or {}
    mode = settings.get("sbatch_mode", "single")
    if mode not in ("single", "array"):
        raise SettingError(("settings", "sbatch_mode"), repr(mode), "single or array")
    raw = settings.get("slurm") or {}
    where: KeyPath = ("settings", "slurm")
    if not isinstance(raw, Mapping):
        raise SettingError(where, repr(raw), "a mapping of Slurm settings")
    for key in raw:
        if key not in SETTING_KEYS:
            known = "one of " + ", ".join(sorted(SETTING_KEYS))
            raise SettingError((*where, key), f"unknown key {key!r}", known, at_key=True)
    options = SlurmOptions(
        mode=mode,
        partition=_optional(raw, where, "partition", check_name),
        account=_optional(raw, where, "account", check_name),
        qos=_optional(raw, where, "qos", check_name),
        constraint=_optional(raw, where, "constraint", check_line),
        time=_optional(raw, where, "time", check_time),
        mem=_optional(raw, where, "mem", check_mem),
        max_running=_optional(raw, where, "max_running", check_count),
        extra=check_extra(raw.get("extra"), (*where, "extra")),
        signal_lead_s=check_seconds(raw.get("signal", DEFAULT_SIGNAL_LEAD_S), (*where, "signal")),
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
            changes[key] = check_name(value, (f"--{key}",))
    if o.max_running is not None:
        changes["max_running"] = check_count(o.max_running, ("--max-running",))
    if o.extra:
        changes["extra"] = options.extra + check_extra(list(o.extra), ("--sbatch",))
    return replace(options, **changes)


def _optional(raw: Mapping[str, Any], where: KeyPath, key: str, check: Any) -> Any:
    value = raw.get(key)
    return None if value is None else check(value, (*where, key))


def check_name(value: Any, path: KeyPath) -> str:
    """A value that goes into an ``#SBATCH`` line verbatim: no spaces, quotes or newlines."""
    if not isinstance(value, str | int) or isinstance(value, bool) or not _NAME.match(str(value)):
        raise SettingError(path, f"{value!r} is not usable as a Slurm value", NAME_EXPECTED)
    return str(value)


def check_line(value: Any, path: KeyPath) -> str:
    """Free text for one ``#SBATCH`` line (quoted there): a constraint such as ``a100|h100``."""
    if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
        raise SettingError(path, repr(value), "one line of text")
    return value


def check_time(value: Any, path: KeyPath) -> str:
    """A Slurm time limit: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``."""
    if isinstance(value, bool) or not isinstance(value, str | int) or not TIME.match(str(value)):
        raise SettingError(path, f"{value!r} is not a Slurm time limit", TIME_EXPECTED)
    return str(value)


def check_mem(value: Any, path: KeyPath) -> str:
    """A Slurm memory size: a number with an optional K, M, G or T."""
    if isinstance(value, bool) or not isinstance(value, str | int) or not MEM.match(str(value)):
        raise SettingError(path, f"{value!r} is not a Slurm memory size", MEM_EXPECTED)
    return str(value)


def check_count(value: Any, path: KeyPath) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingError(path, repr(value), "a whole number ≥ 1")
    return value


def check_seconds(value: Any, path: KeyPath) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SettingError(path, repr(value), "seconds ≥ 0 (0: no warning signal)")
    return value


def check_extra(value: Any, path: KeyPath) -> tuple[str, ...]:
    """Extra sbatch options: each one line starting with ``-`` (it becomes an ``#SBATCH`` line)."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise SettingError(path, repr(value), "a list of sbatch options")
    for i, item in enumerate(value):
        check_option(item, (*path, i))
    return tuple(value)


def check_option(item: Any, path: KeyPath) -> str:
    """One extra sbatch option: one line, an option, and none that jobdb sets itself."""
    if not isinstance(item, str) or not item.startswith("-") or "\n" in item or "\r" in item:
        raise SettingError(path, f"{item!r} is not one sbatch option", EXTRA_EXPECTED)
    flag = _flag(item)
    if flag in RESERVED:
        raise SettingError(path, f"{item!r}: {RESERVED[flag]}", "an option jobdb does not set")
    return item


def _flag(option: str) -> str:
    """``--job-name=x`` → ``--job-name``; ``-Jx`` and ``-J x`` → ``-J``."""
    if option.startswith("--"):
        return option.split("=", 1)[0].split(" ", 1)[0]
    return option[:2]
