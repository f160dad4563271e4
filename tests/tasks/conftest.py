"""Shared by the tasks tests: torch on few threads, and a JobContext factory.

The tasks need the ``tasks`` extra (torch, torchaudio); without it each test
module skips itself with :data:`NO_TORCH` as the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from jobdb.runtime.context import JobContext, ParentView

#: Why every test here is skipped when the tasks extra is not installed.
NO_TORCH = "the tasks extra (torch, torchaudio) is not installed: pip install -e '.[tasks]'"

try:
    import torch
except ImportError:
    pass
else:
    torch.set_num_threads(1)  # the machine's cores are shared with other test runs

MakeContext = Callable[..., JobContext]


@pytest.fixture
def make_ctx(tmp_path: Path) -> MakeContext:
    """``make_ctx(phase, parents=[(phase, result)], smoke=False)`` → a JobContext in tmp_path."""
    counter = iter(range(1, 10_000))

    def make(
        phase: str, parents: Sequence[tuple[str, dict[str, Any]]] = (), smoke: bool = False
    ) -> JobContext:
        job_id = next(counter)
        work = tmp_path / "runs" / phase / str(job_id)
        work.mkdir(parents=True)
        views = [ParentView(1000 + i, p, {}, r) for i, (p, r) in enumerate(parents)]
        return JobContext(
            job_id, 1, "test", phase, {}, work, work / "checkpoint", "cpu", [], views, smoke
        )

    return make
