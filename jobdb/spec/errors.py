"""The one error a bad spec raises, pointing at the place in the file.

A user who mistypes a key in a 200-line spec wants to jump to it: the message
starts with ``file:line:column`` (1-based, as editors expect), then the key
path (``phases[1].grid.lr``), then what is wrong and what was expected.
"""

from __future__ import annotations

from jobdb.errors import BadInput


class SpecError(BadInput):
    """The experiment spec is invalid."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        path: str = "",
        expected: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        self.expected = expected

    @property
    def location(self) -> str:
        """``file:line:column`` with whatever parts are known (may be empty)."""
        parts = [self.file or ("<spec>" if self.line is not None else None)]
        parts += [str(n) for n in (self.line, self.column) if n is not None]
        return ":".join(p for p in parts if p)

    def __str__(self) -> str:
        # The hint is not part of str(): the CLI error boundary prints
        # ``exc.hint`` on its own line, and would otherwise print it twice.
        head = ": ".join(p for p in (self.location, self.path) if p)
        body = self.message
        if self.expected is not None:
            body += f"; expected {self.expected}"
        return f"{head}: {body}" if head else body

    def render(self) -> str:
        """The whole one-screen message, hint line included (for tests and non-CLI callers)."""
        return str(self) if not self.hint else f"{self}\n  hint: {self.hint}"
