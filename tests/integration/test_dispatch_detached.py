"""``jobdb dispatch`` without ``--watch``: what it claims counts against the next dispatch.

The detached ``jobdb run`` a dispatch hands each job to is replaced by a real
``sleep`` that never starts the job: that is the moment (the runner still
importing Python) when a second dispatch used to see the slots free, because
the host and devices were recorded only when the job started running.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from jobdb.procs import HOST
from jobdb.runtime import service
from jobdb.runtime.slots import Slots
from jobdb.runtime.tally import Options
from jobdb.states import State
from jobdb.store import Store
from tests.factories import attempts, jobs, make_experiment, make_jobs, make_phase, phases


@pytest.fixture
def never_starting(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Hand jobs to sleeping processes (alive, so no dispatcher releases their jobs)."""
    spawned: list[subprocess.Popen[bytes]] = []

    def spawn(*_: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
        spawned.append(proc)
        return proc

    monkeypatch.setattr(service, "_spawn_run", spawn)
    yield spawned
    for proc in spawned:
        proc.kill()
        proc.wait()


def _phase(store: Store, n: int, gpus: int) -> int:
    with store.write() as conn:
        phase_id = make_phase(conn, make_experiment(conn))
        config = {"resources": {"gpus": gpus}} if gpus else {}
        conn.execute(update(phases).where(phases.c.id == phase_id).values(config=config))
        make_jobs(conn, phase_id, n)
    return phase_id


def _dispatch(store: Store, tmp_path: Path, gpus: list[str], cpu_slots: int) -> list[int]:
    options = Options(actor="test-dispatch", runs_dir=tmp_path)
    handed = service.dispatch_detached(
        store, Slots(gpus, cpu_slots), options, db_url="unused", runs=tmp_path
    )
    return [item.job_id for item in handed]


def _placed(store: Store) -> list[tuple[str, str | None, str | None]]:
    with store.read() as conn:
        rows = conn.execute(
            select(jobs.c.state, jobs.c.host, jobs.c.gpus)
            .where(jobs.c.state != State.READY.value)
            .order_by(jobs.c.id)
        )
        return [(s, h, g) for s, h, g in rows]


def test_a_second_dispatch_sees_the_slots_of_jobs_not_yet_started(
    store: Store, tmp_path: Path, never_starting: list[subprocess.Popen[bytes]]
) -> None:
    _phase(store, 3, gpus=0)
    assert len(_dispatch(store, tmp_path, [], cpu_slots=2)) == 2
    assert _dispatch(store, tmp_path, [], cpu_slots=2) == [], "both slots are held"
    assert _placed(store) == [("queued", HOST, None)] * 2


def test_a_second_dispatch_never_hands_out_a_device_already_handed_out(
    store: Store, tmp_path: Path, never_starting: list[subprocess.Popen[bytes]]
) -> None:
    _phase(store, 4, gpus=1)
    assert len(_dispatch(store, tmp_path, ["0", "1", "2"], cpu_slots=0)) == 3
    assert _placed(store) == [("queued", HOST, "0"), ("queued", HOST, "1"), ("queued", HOST, "2")]
    never_starting[1].kill()  # its jobdb run died before starting: the job goes back
    never_starting[1].wait()
    assert len(_dispatch(store, tmp_path, ["0", "1", "2"], cpu_slots=0)) == 1
    devices = sorted(g for _, _, g in _placed(store) if g is not None)
    assert devices == ["0", "1", "2"], "the freed device, and only it, was handed out again"


def test_two_dispatchers_at_once_start_no_more_than_fits(
    store: Store, tmp_path: Path, never_starting: list[subprocess.Popen[bytes]]
) -> None:
    _phase(store, 8, gpus=0)
    together = threading.Barrier(2)
    handed: list[list[int]] = []

    def dispatch() -> None:
        together.wait()
        handed.append(_dispatch(store, tmp_path, [], cpu_slots=2))

    threads = [threading.Thread(target=dispatch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(h) for h in handed) == [0, 2]


def test_a_supervisor_never_hands_out_a_device_a_detached_run_holds(
    store: Store, tmp_path: Path, never_starting: list[subprocess.Popen[bytes]]
) -> None:
    """``dispatch --watch`` (or a worker) on a host where a detached dispatch placed a job."""
    _phase(store, 4, gpus=1)
    assert len(_dispatch(store, tmp_path, ["0"], cpu_slots=0)) == 1  # device 0, not started
    options = Options(actor="test-watch", runs_dir=tmp_path, share_host_gpus=True)
    engine = service.run_engine(store, Slots(["0", "1"], 0), options)
    assert engine.tally.started == 3
    with store.read() as conn:
        ran = conn.execute(
            select(attempts.c.gpus).where(attempts.c.state == State.DONE.value)
        ).scalars()
        assert list(ran) == ["1", "1", "1"], "device 0 is the detached run's until it ends"
    assert _placed(store)[0] == ("queued", HOST, "0")
