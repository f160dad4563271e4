"""Starting a job's program, waiting for it, and judging how it ended.

Each program runs in its own session (so its process group id is its pid
and a whole tree of processes can be stopped at once), with stdin closed and
stdout/stderr going straight to the attempt's log files: the supervisor
holds no pipe, so a program keeps running and logging even if its
supervisor dies. Exits are noticed through pidfds (Linux) in a selector
that also wakes on signals; elsewhere the reaper polls.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobdb.procs import ENV_ATTEMPT, ENV_JOB_ID
from jobdb.runtime.launch import Launch
from jobdb.runtime.slots import visible_devices
from jobdb.states import State

#: How much of stderr a failed job's ``error`` keeps.
ERROR_TAIL_LINES = 20
ERROR_TAIL_BYTES = 4000
#: Phrases that mark an out-of-memory failure (PyTorch's messages, CUDA's).
OOM_MARKERS = ("CUDA out of memory", "OutOfMemoryError", "CUBLAS_STATUS_ALLOC_FAILED")


@dataclass
class Child:
    """A running program and what its supervisor knows about it."""

    launch: Launch
    devices: tuple[str, ...]
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    #: Set when the supervisor itself stopped the program, and why.
    stopped_because: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: the verdict to record and its details."""

    verdict: State
    reason: str
    exit_code: int | None = None
    error: str | None = None
    result: dict[str, Any] | None = None


def job_env(launch: Launch, devices: Sequence[str], base: Mapping[str, str]) -> dict[str, str]:
    """The environment of a job's program: ours plus the job's identity, files and devices."""
    env = dict(base)
    env.update(
        {
            ENV_JOB_ID: str(launch.job_id),
            ENV_ATTEMPT: str(launch.attempt),
            "JOBDB_RESULT_FILE": str(launch.result_path),
            "JOBDB_WORK_DIR": str(launch.work_dir),
            "JOBDB_CHECKPOINT_DIR": str(launch.checkpoint_dir),
            "JOBDB_CONTEXT_FILE": str(launch.context_path),
            "JOBDB_PARAMS": json.dumps(launch.params, sort_keys=True),
            "CUDA_VISIBLE_DEVICES": visible_devices(devices),
        }
    )
    return env


def spawn(launch: Launch, devices: Sequence[str], base_env: Mapping[str, str]) -> Child | Outcome:
    """Start the program; an :class:`Outcome` (failed) when it cannot even start."""
    with open(launch.stdout_path, "ab") as out, open(launch.stderr_path, "ab") as err:
        for note in launch.notes:
            out.write(f"jobdb: {note}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(
                launch.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=job_env(launch, devices, base_env),
                start_new_session=True,
            )
        except OSError as exc:
            message = f"cannot start {launch.argv[0]!r}: {exc.strerror or exc}"
            err.write(f"jobdb: {message}\n".encode())
            return Outcome(State.FAILED, "cannot start", error=message)
    return Child(launch, tuple(devices), proc)


def judge(child: Child) -> Outcome:
    """The verdict for a program that has exited (``child.proc.returncode`` is set)."""
    code = child.proc.returncode
    launch = child.launch
    if child.stopped_because is not None:
        return Outcome(State.CRASHED, child.stopped_because, exit_code=code)
    if code < 0:
        name = _signal_name(-code)
        return Outcome(
            State.CRASHED, f"killed by {name}", exit_code=128 - code, error=_tail(launch)
        )
    if code != 0:
        tail = _tail(launch)
        reason = "oom" if any(m in (tail or "") for m in OOM_MARKERS) else f"exit {code}"
        return Outcome(State.FAILED, reason, exit_code=code, error=tail)
    return _read_result(launch.result_path)


def _read_result(path: Path) -> Outcome:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Outcome(State.DONE, "exit 0", exit_code=0)
    except OSError as exc:
        return Outcome(State.FAILED, "unreadable result", exit_code=0, error=f"{path}: {exc}")
    try:
        # NaN/Infinity are not JSON and no database stores them in JSON: record null.
        result = json.loads(text, parse_constant=lambda _name: None) if text.strip() else None
    except json.JSONDecodeError as exc:
        message = f"$JOBDB_RESULT_FILE is not valid JSON ({exc}); it starts with {text[:200]!r}"
        return Outcome(State.FAILED, "invalid result", exit_code=0, error=message)
    if result is not None and not isinstance(result, dict):
        message = (
            f"$JOBDB_RESULT_FILE must hold a JSON object of metrics, not {type(result).__name__}"
        )
        return Outcome(State.FAILED, "invalid result", exit_code=0, error=message)
    return Outcome(State.DONE, "exit 0", exit_code=0, result=result)


def _tail(launch: Launch) -> str | None:
    """The last lines of the attempt's stderr, for the job's ``error``."""
    try:
        with open(launch.stderr_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - ERROR_TAIL_BYTES))
            data = f.read()
    except OSError:
        return None
    lines = data.decode(errors="replace").splitlines()[-ERROR_TAIL_LINES:]
    return "\n".join(lines) or None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Reaper:
    """Waits until a child exits, a signal arrives, or a timeout passes."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._children: dict[int, Child] = {}
        self._fds: dict[int, int] = {}
        self._use_pidfd = hasattr(os, "pidfd_open")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._old_wakeup: int | None = None

    def __enter__(self) -> Reaper:
        with contextlib.suppress(ValueError):  # only possible in the main thread
            self._old_wakeup = signal.set_wakeup_fd(
                self._wake_w.fileno(), warn_on_full_buffer=False
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old_wakeup is not None:
            signal.set_wakeup_fd(self._old_wakeup)
        for fd in self._fds.values():
            os.close(fd)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    @property
    def children(self) -> dict[int, Child]:
        """Running children by job id."""
        return self._children

    def add(self, child: Child) -> None:
        self._children[child.launch.job_id] = child
        if self._use_pidfd:
            try:
                fd = os.pidfd_open(child.pid)
            except OSError:
                self._use_pidfd = False
                return
            self._fds[child.pid] = fd
            self._selector.register(fd, selectors.EVENT_READ, child)

    def wait(self, timeout: float) -> list[Child]:
        """Children that exited (reaped), waiting at most ``timeout`` seconds for one."""
        exited = self._poll()
        if exited or timeout <= 0:
            return exited
        if self._use_pidfd or not self._children:
            self._selector.select(timeout)
        else:
            self._selector.select(min(timeout, 0.01))
        self._drain_wakeups()
        return self._poll()

    def _poll(self) -> list[Child]:
        exited = [c for c in self._children.values() if c.proc.poll() is not None]
        for child in exited:
            del self._children[child.launch.job_id]
            fd = self._fds.pop(child.pid, None)
            if fd is not None:
                self._selector.unregister(fd)
                os.close(fd)
        return exited

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self._wake_r.recv(512):
                pass
