"""The body of a claiming process for test_claim_race (imported by spawned children).

Kept apart from the test module so that a child imports only jobdb, not pytest.
"""

from __future__ import annotations

import random
import time
import traceback
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from sqlalchemy.engine import URL

from jobdb.queries import claim
from jobdb.store import connect


def claim_until_empty(
    url: URL,
    index: int,
    seed: int,
    results: Queue[tuple[int, list[int], str | None]],
    barrier: Barrier | None = None,
) -> None:
    """Claim batches of 1 to 3 jobs until none is left; report (index, ids, error)."""
    claimed: list[int] = []
    error: str | None = None
    rng = random.Random(seed)
    try:
        store = connect(url, ensure_schema=False)
        try:
            # The connection is open (and configured) before the start signal.
            with store.engine.connect() as conn:
                if barrier is not None:
                    barrier.wait(timeout=120)
                while True:
                    with conn.begin():
                        batch = claim(conn, rng.randint(1, 3), actor=f"worker-{index}")
                    if not batch:
                        break
                    claimed.extend(job.id for job in batch)
                    # A pause of up to a millisecond, as a worker starting its jobs would
                    # make. Without any, SQLite's busy handler (which sleeps 1-100 ms
                    # between tries) can leave the whole queue to one process.
                    time.sleep(rng.random() / 1000)
        finally:
            store.dispose()
    except BaseException as exc:  # reported to the test, which fails on any error
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    results.put((index, claimed, error))
