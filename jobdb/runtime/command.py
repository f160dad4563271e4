"""A phase's command template → the argv of one job (pure).

The template is split into words *first* (shell-like quoting, by
:func:`shlex.split`), and only then are ``{name}`` placeholders replaced
inside each word. A parameter value therefore always stays inside the word
it was written in: ``x; rm -rf ~`` is one argument, never a shell command,
and no shell is involved. ``{optim.lr}`` names the parameter ``optim.lr``
as a whole (not an attribute), the way the spec flattens nested keys.
"""

from __future__ import annotations

import json
import math
import shlex
import string
from collections.abc import Mapping
from typing import Any

from jobdb.errors import BadInput

_FORMATTER = string.Formatter()


def render_argv(template: str, params: Mapping[str, Any]) -> list[str]:
    """The argv of ``template`` with each ``{name}`` replaced by ``params[name]``."""
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise BadInput(f"command {template!r}: {exc}") from None
    if not words:
        raise BadInput("the command is empty", hint="give the phase a command or a task")
    return [render_word(word, params) for word in words]


def render_word(word: str, params: Mapping[str, Any]) -> str:
    """One word with its placeholders filled; ``{{``/``}}`` are literal braces."""
    out: list[str] = []
    try:
        pieces = list(_FORMATTER.parse(word))
    except ValueError as exc:
        raise BadInput(f"command word {word!r}: {exc}") from None
    for literal, name, spec, _conversion in pieces:
        out.append(literal)
        if name is None:
            continue
        if name not in params:
            known = ", ".join(sorted(params)) or "(none)"
            raise BadInput(f"placeholder {{{name}}} is not a parameter of this job; known: {known}")
        out.append(format(params[name], spec) if spec else format_value(params[name]))
    return "".join(out)


def format_value(value: Any) -> str:
    """How a parameter value is written on a command line.

    Strings as they are; booleans ``true``/``false`` and null ``null`` (as
    in the spec); integral floats as written (``1.0``); lists and mappings as
    compact JSON, which every language can parse back.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return repr(value) if isinstance(value, float) else str(value)
