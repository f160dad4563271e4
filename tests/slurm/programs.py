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


def once() -> None:
    """Append a line to a file per run; the first run then hangs (until killed), later ones end.

    The file counts how many times the job really ran, whoever started it.
    """
    runs = Path(sys.argv[2])
    with runs.open("a") as f:
        f.write(f"{os.getpid()}\n")
    if len(runs.read_text().splitlines()) == 1:
        time.sleep(600)


def fail_once() -> None:
    """Append a line to a file per run; the first run fails (exit 3), later ones end well."""
    runs = Path(sys.argv[2])
    with runs.open("a") as f:
        f.write(f"{os.getpid()}\n")
    if len(runs.read_text().splitlines()) == 1:
        sys.exit(3)


def gate() -> None:
    """Wait for a file to appear, then exit 0."""
    path = Path(sys.argv[2])
    while not path.exists():
        time.sleep(0.2)


PROGRAMS = {
    "gpus": gpus,
    "checkpointed": checkpointed,
    "sleep": sleep,
    "gate": gate,
    "once": once,
    "fail_once": fail_once,
}

if __name__ == "__main__":
    PROGRAMS[sys.argv[1]]()
