"""The process of a ``task: module:function`` job: import, call, write the result.

Run as ``python -m jobdb.runtime.taskmain`` by the supervisor with
``$JOBDB_CONTEXT_FILE`` naming the attempt's context. The function's
returned mapping becomes the job's result (``$JOBDB_RESULT_FILE``); an
exception prints its traceback to stderr and exits 1, so the supervisor
records the job as failed with the traceback's last lines.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jobdb.runtime.context import JobContext


def load(spec: str) -> Callable[[dict[str, Any], JobContext], Any]:
    """``package.module:function`` → the function (a clear error when it is not there)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"jobdb: task {spec!r} must be 'module:function'")
    module = importlib.import_module(module_name)
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise SystemExit(f"jobdb: task {spec!r} is not callable")
    return target


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    context_file = Path(os.environ["JOBDB_CONTEXT_FILE"])
    task = json.loads(context_file.read_text())["task"]
    sys.path.insert(0, os.getcwd())
    ctx = JobContext.from_file(context_file)
    try:
        result = load(task)(dict(ctx.params), ctx)
    except Exception as exc:
        # Start the traceback at the task: this module's own frame is noise to its author.
        frames = exc.__traceback__.tb_next if exc.__traceback__ else None
        traceback.print_exception(type(exc), exc, frames)
        return 1
    if result is not None:
        if not isinstance(result, Mapping):
            print(f"jobdb: task returned {type(result).__name__}, not a dict", file=sys.stderr)
            return 1
        Path(os.environ["JOBDB_RESULT_FILE"]).write_text(json.dumps(dict(result), default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
