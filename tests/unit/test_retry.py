"""The retry policy: which verdicts come back, and what halve/double change."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobdb.errors import BadInput
from jobdb.retry import scaled_params, scaled_resources, should_retry
from jobdb.states import State

OOM_POLICY = {"retry": {"on": ["oom"], "halve": ["batch_size"], "double": ["accumulation_steps"]}}


@pytest.mark.parametrize(
    ("config", "verdict", "attempt", "reason", "expected"),
    [
        (None, State.CRASHED, 1, None, True),  # the default retries crashes
        (None, State.CRASHED, 3, None, False),  # ... up to max_attempts
        (None, State.FAILED, 1, "exit 3", False),  # ... and never failures
        (None, State.CANCELLED, 1, None, False),  # a person asked it to stop
        ({"retry": {"on": ["failed"]}}, State.FAILED, 1, "exit 3", True),
        ({"retry": {"on": ["oom"]}}, State.FAILED, 1, "oom", True),
        ({"retry": {"on": ["oom"]}}, State.FAILED, 1, "exit 1", False),
        ({"retry": {"on": ["oom"]}}, State.CRASHED, 1, None, False),
        (None, State.DONE, 1, None, False),
    ],
)
def test_should_retry(
    config: dict | None, verdict: State, attempt: int, reason: str | None, expected: bool
) -> None:
    assert should_retry(config, verdict, attempt, 3, reason) is expected


def test_the_first_attempt_runs_the_scheduled_values() -> None:
    params = {"batch_size": 64, "accumulation_steps": 1, "lr": 0.1}
    assert scaled_params(OOM_POLICY, params, 1) == params


def test_each_retry_halves_and_doubles_again() -> None:
    params = {"batch_size": 64, "accumulation_steps": 1, "lr": 0.1}
    assert scaled_params(OOM_POLICY, params, 2) == {
        **params,
        "batch_size": 32,
        "accumulation_steps": 2,
    }
    assert scaled_params(OOM_POLICY, params, 3) == {
        **params,
        "batch_size": 16,
        "accumulation_steps": 4,
    }


@given(
    batch=st.integers(1, 4096).map(lambda b: b * 64),
    accumulation=st.integers(1, 16),
    attempt=st.integers(1, 7),
)
def test_halving_the_batch_and_doubling_accumulation_keeps_the_effective_batch(
    batch: int, accumulation: int, attempt: int
) -> None:
    out = scaled_params(
        OOM_POLICY, {"batch_size": batch, "accumulation_steps": accumulation}, attempt
    )
    assert out["batch_size"] * out["accumulation_steps"] == batch * accumulation


@given(batch=st.integers(1, 10_000), attempt=st.integers(1, 40))
def test_an_integer_never_drops_below_one(batch: int, attempt: int) -> None:
    assert scaled_params(OOM_POLICY, {"batch_size": batch}, attempt)["batch_size"] >= 1


def test_floats_halve_exactly() -> None:
    config = {"retry": {"halve": ["lr"]}}
    assert scaled_params(config, {"lr": 0.1}, 2) == {"lr": 0.05}


def test_a_non_numeric_value_cannot_be_halved() -> None:
    with pytest.raises(BadInput, match=r"'batch_size'.*'big' is not a number"):
        scaled_params(OOM_POLICY, {"batch_size": "big"}, 2)


@pytest.mark.parametrize(
    ("key", "value", "attempt", "expected"),
    [
        ("mem", "16G", 2, "32768M"),
        ("mem", "512", 3, "2048M"),  # a bare integer is megabytes
        ("mem", "1.5G", 2, "3072M"),
        ("time", "90", 2, "0-03:00:00"),  # a bare integer is minutes
        ("time", "1:30", 2, "0-00:03:00"),  # MM:SS
        ("time", "6:00:00", 2, "0-12:00:00"),
        ("time", "1-12", 2, "3-00:00:00"),  # D-HH
        ("time", "2-00:30:00", 3, "8-02:00:00"),
    ],
)
def test_resources_double(key: str, value: str, attempt: int, expected: str) -> None:
    config = {"resources": {key: value, "gpus": 1}, "retry": {"double": [key]}}
    assert scaled_resources(config, attempt) == {key: expected, "gpus": 1}


def test_resources_halve_and_stay_unchanged_on_the_first_attempt() -> None:
    config = {"resources": {"mem": "16G", "time": "60"}, "retry": {"halve": ["mem", "time"]}}
    assert scaled_resources(config, 2) == {"mem": "8192M", "time": "0-00:30:00"}
    assert scaled_resources(config, 1) == {"mem": "16G", "time": "60"}
