"""Fixtures shared by the query contract tests (both backends, through ``store``)."""

from __future__ import annotations

import pytest

from jobdb.store import Store
from tests.factories import make_experiment, make_phase


@pytest.fixture
def phase_id(store: Store) -> int:
    """A phase of a new experiment, for tests that add jobs to it."""
    with store.write() as conn:
        return make_phase(conn, make_experiment(conn))
