"""Tiny job programs for the Slurm tests: ``python programs.py WHAT [ARGS]``."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def gpus() -> None:
    """Report the devices Slurm gave, and hold them for a while."""
    start = time.time()
    time.sleep(3)
    result = {"gpus": os.environ.get("CUDA_VISIBLE_DEVICES", ""), "start": start}
    Path(os.environ["JOBDB_RESULT_FILE"]).write_text(json.dumps(result))


def checkpointed() -> None:
    """Finish at once when a checkpoint exists; else write one and run past any time limit."""
    mark = Path(os.environ["JOBDB_CHECKPOINT_DIR"]) / "step"
    if mark.exists():
        Path(os.environ["JOBDB_RESULT_FILE"]).write_text(json.dumps({"resumed": True}))
        return
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.write_text("1")
    time.sleep(600)


def sleep() -> None:
    """Run until killed, writing a pid file for the test to find."""
    Path(sys.argv[2]).write_text(str(os.getpid()))
    time.sleep(600)


def gate() -> None:
    """Wait for a file to appear, then exit 0."""
    path = Path(sys.argv[2])
    while not path.exists():
        time.sleep(0.2)


if __name__ == "__main__":
    {"gpus": gpus, "checkpointed": checkpointed, "sleep": sleep, "gate": gate}[sys.argv[1]]()
