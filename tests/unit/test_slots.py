"""GPU devices and CPU slots: never shared, always given back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobdb.runtime.gpus import parse_gpu_list
from jobdb.runtime.slots import Slots


def test_gpu_jobs_get_distinct_devices_and_cpu_jobs_none() -> None:
    slots = Slots(["0", "1", "3"], cpu_slots=1)
    assert slots.take(1, 2) == ("0", "1")
    assert not slots.fits(2)
    assert slots.take(2, 1) == ("3",)
    assert slots.take(3, 0) == ()
    assert not slots.fits(0) and not slots.fits(1)
    slots.give_back(1)
    assert slots.take(4, 2) == ("0", "1")


def test_a_job_that_can_never_fit_is_told_apart() -> None:
    slots = Slots(["0"], cpu_slots=0)
    assert not slots.could_ever_fit(2)
    assert not slots.could_ever_fit(0)
    assert slots.could_ever_fit(1)


def test_devices_listed_twice_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        Slots(["0", "0"], cpu_slots=1)


def test_devices_others_hold_are_skipped_until_they_give_them_back() -> None:
    slots = Slots(["0", "1", "2"], cpu_slots=0)
    assert slots.take(1, 1) == ("0",)
    # Another supervisor's job 7 holds device 1; this one's own job 1 is not "elsewhere".
    slots.in_use_elsewhere([(7, ["1"]), (1, ["0"])])
    assert slots.free_gpus == 1
    assert not slots.fits(2)
    assert slots.take(2, 1) == ("2",)
    slots.give_back(1)
    assert slots.take(3, 1) == ("0",), "its own devices come back as before"
    slots.give_back(2)
    slots.in_use_elsewhere([])  # job 7 ended: the next snapshot no longer lists it
    assert slots.take(4, 2) == ("1", "2")


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3)), max_size=40))
def test_no_device_is_ever_held_twice(steps: list[tuple[bool, int]]) -> None:
    slots = Slots(["0", "1", "2", "3"], cpu_slots=2)
    held: dict[int, tuple[str, ...]] = {}
    for job_id, (release, gpus) in enumerate(steps):
        if release and held:
            slots.give_back(next(iter(held)))
            held.pop(next(iter(held)))
        elif slots.fits(gpus):
            held[job_id] = slots.take(job_id, gpus)
        in_use = [d for devices in held.values() for d in devices]
        assert len(in_use) == len(set(in_use))
        assert slots.free_gpus + len(in_use) == 4


def test_gpu_lists() -> None:
    assert parse_gpu_list("0, 1,3") == ["0", "1", "3"]
    assert parse_gpu_list("none") == [] == parse_gpu_list("")
