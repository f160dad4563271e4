"""What a ``task: module:function`` job is called with: ``function(params, ctx)``.

``ctx`` is built in the job's own process from the attempt's
``context.json`` (written by the supervisor), so a task never needs the
database: its parents' parameters and results, its folders and its device
are all here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ParentView:
    """A finished parent: its id, phase, the parameters it ran with, and its result."""

    id: int
    phase: str
    params: dict[str, Any]
    result: dict[str, Any] | None


@dataclass
class JobContext:
    """The job's view of itself.

    ``checkpoint_dir`` is the same folder on every attempt of the job, so a
    retried job can resume; ``work_dir`` holds it and the per-attempt logs.
    ``device`` is ``"cuda"`` when GPUs were assigned (``CUDA_VISIBLE_DEVICES``
    already narrows them to the job's own), else ``"cpu"``. ``smoke`` is true
    during ``jobdb smoke``: run one batch and return.
    """

    job_id: int
    attempt: int
    experiment: str
    phase: str
    params: dict[str, Any]
    work_dir: Path
    checkpoint_dir: Path
    device: str
    gpus: list[str]
    parents: list[ParentView] = field(default_factory=list)
    smoke: bool = False
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("jobdb.task"))

    @classmethod
    def from_file(cls, path: Path) -> JobContext:
        data = json.loads(path.read_text())
        logger = logging.getLogger(f"jobdb.job.{data['job_id']}")
        return cls(
            job_id=data["job_id"],
            attempt=data["attempt"],
            experiment=data["experiment"],
            phase=data["phase"],
            params=data["params"],
            work_dir=Path(data["work_dir"]),
            checkpoint_dir=Path(data["checkpoint_dir"]),
            device=data["device"],
            gpus=list(data["gpus"]),
            parents=[ParentView(**p) for p in data["parents"]],
            smoke=bool(data.get("smoke", False)),
            logger=logger,
        )

    def parent_results(self, phase: str | None = None) -> list[dict[str, Any]]:
        """Results of the parents (of one phase), in id order; missing results are skipped."""
        return [p.result for p in self.parents if p.result is not None and phase in (None, p.phase)]
