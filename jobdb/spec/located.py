"""YAML with the position of every key and value, and typed reading that points at them.

Specs are read with PyYAML's safe loader, made closer to YAML 1.2 on three
points that bite experiment files: ``1e-4`` is a float (YAML 1.1 says a
string), ``on``/``off``/``yes``/``no`` are strings (``retry: {on: [crashed]}``
would otherwise have the key ``True``), and ``1:30:00`` is a string (not the
base-60 integer 5400). A key written twice in one mapping is an error rather
than the silent last-one-wins of PyYAML.

:class:`At` is a cursor (document, key path, value) whose ``as_*`` methods
either return the value with the right type or raise a :class:`SpecError`
naming the file, line, column and key path.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from jobdb.spec.errors import SpecError

Key = str | int
KeyPath = tuple[Key, ...]

_REPLACED_TAGS = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans, integers and floats (see module doc)."""


SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _REPLACED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SpecLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
SpecLoader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def render_path(path: KeyPath) -> str:
    """``("phases", 1, "grid", "lr")`` → ``phases[1].grid.lr``."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


@dataclass
class Doc:
    """A parsed YAML document with the start mark of each value and each mapping key."""

    data: Any
    file: str | None
    marks: dict[KeyPath, yaml.Mark]
    key_marks: dict[KeyPath, yaml.Mark]

    def error(
        self,
        path: KeyPath,
        message: str,
        *,
        expected: str | None = None,
        hint: str | None = None,
        at_key: bool = False,
    ) -> SpecError:
        """A :class:`SpecError` at ``path`` (its key when ``at_key``), or its nearest ancestor."""
        mark = self._mark(path, at_key)
        return SpecError(
            message,
            file=self.file,
            line=None if mark is None else mark.line + 1,
            column=None if mark is None else mark.column + 1,
            path=render_path(path),
            expected=expected,
            hint=hint,
        )

    def _mark(self, path: KeyPath, at_key: bool) -> yaml.Mark | None:
        if at_key and path in self.key_marks:
            return self.key_marks[path]
        for end in range(len(path), -1, -1):
            if path[:end] in self.marks:
                return self.marks[path[:end]]
        return None

    @property
    def root(self) -> At:
        return At(self, (), self.data)


def parse_yaml(text: str, file: str | None) -> Doc:
    """Parse one YAML document, turning syntax errors into :class:`SpecError`."""
    loader = SpecLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Doc(None, file, {}, {})
        _check_duplicates(node, file)
        data = loader.construct_document(node)
        doc = Doc(data, file, {}, {})
        _record_marks(loader, node, (), doc, [])
        return doc
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, file) from None
    finally:
        loader.dispose()


def _syntax_error(exc: yaml.MarkedYAMLError, file: str | None) -> SpecError:
    mark = exc.problem_mark or exc.context_mark
    problem = " ".join(p for p in (exc.context, exc.problem) if p)
    return SpecError(
        f"YAML syntax error: {problem or 'cannot parse'}",
        file=file,
        line=None if mark is None else mark.line + 1,
        column=None if mark is None else mark.column + 1,
        expected="valid YAML (check indentation, colons and quotes)",
    )


def _check_duplicates(node: yaml.Node, file: str | None, seen: set[int] | None = None) -> None:
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if isinstance(key_node, yaml.ScalarNode) and key_node.value in keys:
                mark = key_node.start_mark
                raise SpecError(
                    f"duplicate key {key_node.value!r}",
                    file=file,
                    line=mark.line + 1,
                    column=mark.column + 1,
                    expected="each key once per mapping",
                )
            keys.add(key_node.value if isinstance(key_node, yaml.ScalarNode) else "")
            _check_duplicates(value_node, file, seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicates(item, file, seen)


def _record_marks(
    loader: SpecLoader, node: yaml.Node, path: KeyPath, doc: Doc, stack: list[int]
) -> None:
    if id(node) in stack:  # a recursive alias: the marks of the first visit are enough
        return
    doc.marks[path] = node.start_mark
    stack.append(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, str | int) and not isinstance(key, bool):
                doc.key_marks[(*path, key)] = key_node.start_mark
                _record_marks(loader, value_node, (*path, key), doc, stack)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_marks(loader, item, (*path, index), doc, stack)
    stack.pop()


def type_name(value: Any) -> str:
    """How a YAML user would call the type of ``value``."""
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names |= {list: "a list", dict: "a mapping"}
    return names.get(type(value), f"a {type(value).__name__}")


def did_you_mean(word: str, choices: Collection[str]) -> str | None:
    """``did you mean 'x'?`` for the closest of ``choices``, or None."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


@dataclass(frozen=True)
class At:
    """A value in a document together with its key path, for typed reading."""

    doc: Doc
    path: KeyPath
    value: Any

    def error(
        self, message: str, *, expected: str | None = None, hint: str | None = None
    ) -> SpecError:
        return self.doc.error(self.path, message, expected=expected, hint=hint)

    def wrong_type(self, expected: str) -> SpecError:
        return self.error(f"got {type_name(self.value)} ({self.value!r})", expected=expected)

    def get(self, key: Key) -> At | None:
        """The child at ``key`` of a mapping, or None when the key is absent."""
        if not isinstance(self.value, dict) or key not in self.value:
            return None
        return At(self.doc, (*self.path, key), self.value[key])

    def require(self, key: str, expected: str) -> At:
        child = self.get(key)
        if child is None:
            raise self.error(f"missing key {key!r}", expected=expected)
        return child

    def as_mapping(self, allowed: Collection[str] | None = None) -> dict[Any, Any]:
        """The mapping, after checking that every key is one of ``allowed`` (if given)."""
        if not isinstance(self.value, dict):
            raise self.wrong_type("a mapping")
        for key in self.value:
            if allowed is not None and key not in allowed:
                raise self.doc.error(
                    (*self.path, key),
                    f"unknown key {key!r}",
                    expected="one of " + ", ".join(sorted(allowed)),
                    hint=did_you_mean(str(key), allowed),
                    at_key=True,
                )
        return self.value

    def items(self) -> Iterator[tuple[str, At]]:
        for key in self.as_mapping():
            if not isinstance(key, str):
                raise self.doc.error((*self.path, key), f"key {key!r} is not a string")
            yield key, At(self.doc, (*self.path, key), self.value[key])

    def as_list(self, expected: str = "a list") -> list[At]:
        if not isinstance(self.value, list):
            raise self.wrong_type(expected)
        return [At(self.doc, (*self.path, i), v) for i, v in enumerate(self.value)]

    def as_str(self, expected: str = "a string") -> str:
        if not isinstance(self.value, str) or not self.value.strip():
            raise self.wrong_type(expected)
        return self.value

    def as_int(self, minimum: int | None = None) -> int:
        ok = isinstance(self.value, int) and not isinstance(self.value, bool)
        if not ok or (minimum is not None and self.value < minimum):
            raise self.wrong_type("an integer" + ("" if minimum is None else f" ≥ {minimum}"))
        return int(self.value)

    def as_number(self) -> float | int:
        ok = isinstance(self.value, int | float) and not isinstance(self.value, bool)
        if not ok or not math.isfinite(self.value):
            raise self.wrong_type("a finite number")
        return self.value

    def as_names(self, expected: str = "a list of names") -> tuple[str, ...]:
        """A list of non-empty strings (a single string is a list of one)."""
        if isinstance(self.value, str):
            return (self.as_str(expected),)
        return tuple(item.as_str(expected) for item in self.as_list(expected))
