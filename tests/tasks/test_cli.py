"""The tasks run by jobdb itself: ``examples/kws.yaml`` end to end, and an OOM seen as ``oom``.

Both go through the real CLI on SQLite (``jobdb schedule`` then ``jobdb
dispatch --watch``), each job in its own process, as a user runs them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.tasks.conftest import NO_TORCH

torch = pytest.importorskip("torch", reason=NO_TORCH)
pytest.importorskip("torchaudio", reason=NO_TORCH)

from jobdb.config import sqlite_url  # noqa: E402
from tests.acceptance.cli import db_arg, jobdb  # noqa: E402
from tests.acceptance.test_run_cli import jobs_by_phase  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

#: examples/kws.yaml → its smallest size: every phase, 2 strategies × 1 budget × 2 folds.
SMALLEST = {
    "clips_per_word: 20": "clips_per_word: 4",
    "voices: 16": "voices: 6",
    "nontarget_words: 8": "nontarget_words: 4",
    "pretrain_words: 16": "pretrain_words: 6",
    "steps: 150": "steps: 10",
    "checkpoint_every: 50": "checkpoint_every: 5",
    "strategy: [random, balanced, kcenter, cluster]": "strategy: [random, kcenter]",
    "budget: [12, 24, 48]": "budget: [8]",
    "folds: 5": "folds: 2",
}


def smallest_kws() -> str:
    """The example with :data:`SMALLEST` applied, as text (PyYAML would read ``on:`` as true)."""
    text = (REPO / "examples" / "kws.yaml").read_text()
    for old, new in SMALLEST.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def run(project: Path, spec: str | dict[str, Any], *dispatch: str) -> str:
    db = db_arg(sqlite_url(project / "jobdb.sqlite"))
    (project / "spec.yaml").write_text(spec if isinstance(spec, str) else json.dumps(spec))
    env = {"OMP_NUM_THREADS": "1"}
    jobdb("schedule", "spec.yaml", "--db", db, cwd=project, env=env)
    proc = jobdb(
        "dispatch",
        "--watch",
        "--db",
        db,
        "--slots",
        "2",
        *dispatch,
        cwd=project,
        env=env,
        check=None,
    )
    return proc.stdout + proc.stderr


def test_the_kws_example_runs_end_to_end(tmp_path: Path) -> None:
    out = run(tmp_path, smallest_kws())
    jobs = jobs_by_phase(sqlite_url(tmp_path / "jobdb.sqlite"))
    states = {phase: [j["state"] for j in js] for phase, js in jobs.items()}
    assert states == {
        "data": ["done"],
        "embed": ["done"],
        "select": ["done"] * 4,
        "retrain": ["done"],
        "test": ["done"],
    }, out
    cells = [j["result"]["f1"] for j in jobs["select"]]
    assert all(0 <= f1 <= 1 for f1 in cells) and len(cells) == 4
    (test,) = jobs["test"]
    assert 0 < test["result"]["test_f1"] <= 1
    (retrain,) = jobs["retrain"]
    assert retrain["result"]["selected"] == 8
    assert (
        jobs["embed"][0]["result"]["encoder_final_loss"]
        < jobs["embed"][0]["result"]["encoder_first_loss"]
    )


OOM_TASK = """
import torch
from tasks.training import TrainConfig, fit

def train(params, ctx):
    cfg = TrainConfig.from_params(params, steps=2)
    if cfg.batch_size > 8:  # what a too-big batch does on a GPU
        def loss_fn(model, idx):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    else:
        def loss_fn(model, idx):
            return model(torch.ones(len(idx), 2)).sum()
    fit(torch.nn.Linear(2, 1), loss_fn, 64, cfg, ctx.device, ctx.checkpoint_dir)
    return {"batch_size": cfg.batch_size, "accumulation_steps": cfg.accumulation_steps}
"""


def test_an_out_of_memory_error_is_recorded_as_oom_and_retried_smaller(tmp_path: Path) -> None:
    (tmp_path / "oomtask.py").write_text(OOM_TASK)
    spec = {
        "name": "oom",
        "phases": [
            {
                "name": "train",
                "task": "oomtask:train",
                "grid": {"batch_size": 16, "accumulation_steps": 1},
                "retry": {
                    "max_attempts": 2,
                    "on": ["oom"],
                    "halve": ["batch_size"],
                    "double": ["accumulation_steps"],
                },
            }
        ],
    }
    out = run(tmp_path, spec)
    (job,) = jobs_by_phase(sqlite_url(tmp_path / "jobdb.sqlite"))["train"]
    assert job["state"] == "done", out
    assert job["result"] == {"batch_size": 8, "accumulation_steps": 2}
    first = Path(job["stderr_path"]).parent.parent / "attempt-1" / "stderr.log"
    assert "torch.OutOfMemoryError: CUDA out of memory" in first.read_text()
