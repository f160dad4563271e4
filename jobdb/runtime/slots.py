"""Who may run where on this machine: GPU devices and CPU slots (pure).

A job asking ``gpus: N`` takes N free devices, pinned with
``CUDA_VISIBLE_DEVICES``, and gives them back when it ends; no two jobs
ever share a device. A job asking no GPU takes one CPU slot and sees no GPU
at all (an empty ``CUDA_VISIBLE_DEVICES``), so it cannot grab one by
accident.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass
class Slots:
    """The free GPU devices and CPU slots of one supervisor, and who holds what."""

    gpus: list[str]
    cpu_slots: int
    _free_gpus: list[str] = field(init=False)
    _free_cpu: int = field(init=False)
    _held: dict[int, tuple[str, ...]] = field(init=False, default_factory=dict)
    _elsewhere: frozenset[str] = field(init=False, default=frozenset())

    def __post_init__(self) -> None:
        if len(set(self.gpus)) != len(self.gpus):
            raise ValueError(f"GPU devices listed twice: {','.join(self.gpus)}")
        self._free_gpus = list(self.gpus)
        self._free_cpu = self.cpu_slots

    @property
    def free_gpus(self) -> int:
        return len(self._available())

    def in_use_elsewhere(self, holders: Iterable[tuple[int, Sequence[str]]]) -> None:
        """Note the devices that ``(job, devices)`` holders other than this supervisor's
        jobs use now: they are not handed out until a later call no longer lists them.

        Unlike :meth:`occupy` this is a snapshot, replaced at each call: a
        long-running supervisor learns from the database, turn by turn, which
        devices the others took and gave back (it never sees their programs exit).
        """
        self._elsewhere = frozenset(
            device for job_id, devices in holders if job_id not in self._held for device in devices
        )

    def _available(self) -> list[str]:
        return [g for g in self._free_gpus if g not in self._elsewhere]

    @property
    def free_cpu(self) -> int:
        return self._free_cpu

    @property
    def busy(self) -> int:
        return len(self._held)

    def fits(self, gpus: int) -> bool:
        """Whether a job asking ``gpus`` devices (0: a CPU slot) could start now."""
        return self._free_cpu > 0 if gpus == 0 else gpus <= len(self._available())

    def could_ever_fit(self, gpus: int) -> bool:
        """Whether such a job could start here at all (once everything is free)."""
        return self.cpu_slots > 0 if gpus == 0 else gpus <= len(self.gpus)

    def take(self, job_id: int, gpus: int) -> tuple[str, ...]:
        """Hand ``job_id`` its devices (empty for a CPU job); :meth:`fits` must hold."""
        if not self.fits(gpus):
            raise ValueError(f"job {job_id} asks for {gpus} GPU(s); not free")
        if gpus == 0:
            self._free_cpu -= 1
            devices: tuple[str, ...] = ()
        else:
            devices = tuple(self._available()[:gpus])
            self._free_gpus = [g for g in self._free_gpus if g not in devices]
        self._held[job_id] = devices
        return devices

    def occupy(self, job_id: int, devices: Sequence[str]) -> None:
        """Count a job started by someone else on this machine (its devices, or a CPU slot)."""
        busy = [d for d in devices if d in self._free_gpus]
        if devices:
            self._free_gpus = [g for g in self._free_gpus if g not in set(busy)]
        else:
            self._free_cpu = max(0, self._free_cpu - 1)
        self._held[job_id] = tuple(busy)

    def give_back(self, job_id: int) -> None:
        devices = self._held.pop(job_id)
        if devices:
            # Keep the configured order so allocation stays predictable.
            self._free_gpus = [g for g in self.gpus if g in set(self._free_gpus) | set(devices)]
        else:
            self._free_cpu += 1


def visible_devices(devices: Sequence[str]) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` value for a job's devices (empty: no GPU)."""
    return ",".join(devices)
