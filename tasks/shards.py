"""Many small clips packed into tar shards, with a manifest, read the same way on 1 or N machines.

Seed 002's design: a cluster file system is slow at millions of small files,
so clips are packed into tar files (*shards*) and described by one manifest
(``manifest.jsonl``: key, shard, member, byte offset and size, duration,
label, metadata). From the manifest alone a reader can

* sort every clip by duration or shuffle them globally (no audio read);
* fetch one clip by key: ``key → (shard, offset, size)``, one seek and one read;
* split the shards between ranks and data-loader workers, so each reads only
  its own files, sequentially — the case tar is fast at.

A single machine is rank 0 of 1; the interface does not change.
"""

from __future__ import annotations

import itertools
import json
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from tasks import wav
from tasks.corpus import Clip

MANIFEST = "manifest.jsonl"
ORDERS = ("shard", "duration", "shuffle")


@dataclass(frozen=True)
class Entry:
    """Where one clip lives and what it is."""

    key: str
    shard: str
    member: str
    offset: int
    size: int
    duration: float
    label: str
    meta: dict[str, Any] = field(default_factory=dict)


def write_shards(
    clips: Iterable[Clip], out_dir: Path, clips_per_shard: int = 256, prefix: str = "shard"
) -> list[Entry]:
    """Pack ``clips`` into ``<prefix>-00000.tar``… under ``out_dir`` and write the manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    entries: list[Entry] = []
    batch: list[Clip] = []
    for clip in clips:
        batch.append(clip)
        if len(batch) == clips_per_shard:
            entries += _write_one(
                batch, out_dir / f"{prefix}-{len(entries) // clips_per_shard:05d}.tar"
            )
            batch = []
    if batch:
        index = (len(entries) + clips_per_shard - 1) // clips_per_shard
        entries += _write_one(batch, out_dir / f"{prefix}-{index:05d}.tar")
    write_manifest(out_dir, entries)
    return entries


def _write_one(clips: list[Clip], path: Path) -> list[Entry]:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for clip in clips:
            data = wav.encode(clip.audio)
            info = tarfile.TarInfo(f"{clip.key}.wav")
            info.size = len(data)
            tar.addfile(info, _Reader(data))
    # Offsets are read back rather than predicted from header sizes.
    with tarfile.open(path, "r") as tar:
        members = {m.name: m for m in tar.getmembers()}
    return [
        Entry(
            clip.key,
            path.name,
            f"{clip.key}.wav",
            members[f"{clip.key}.wav"].offset_data,
            members[f"{clip.key}.wav"].size,
            clip.duration,
            clip.label,
            clip.meta(),
        )
        for clip in clips
    ]


class _Reader:
    """The minimal file object ``TarFile.addfile`` reads from (avoids a BytesIO copy)."""

    def __init__(self, data: bytes) -> None:
        self._view, self._pos = memoryview(data), 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size < 0 else self._pos + size
        chunk, self._pos = bytes(self._view[self._pos : end]), min(end, len(self._view))
        return chunk


def write_manifest(out_dir: Path, entries: Iterable[Entry]) -> None:
    lines = (json.dumps(asdict(e), sort_keys=True) for e in entries)
    (out_dir / MANIFEST).write_text("".join(line + "\n" for line in lines))


def read_manifest(root: Path) -> list[Entry]:
    with open(root / MANIFEST, encoding="utf-8") as f:
        return [Entry(**json.loads(line)) for line in f if line.strip()]


def part_of(shards: list[str], rank: int, world_size: int) -> list[str]:
    """The shards of ``rank`` among ``world_size`` readers: every ``world_size``-th one.

    Ranks beyond the number of shards get none; give a dataset at least as
    many shards as readers (times data-loader workers).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    return shards[rank::world_size]


class ShardReader:
    """Reads a sharded dataset: order, split, random access, sequential iteration."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.entries = read_manifest(self.root)
        self.index = {e.key: e for e in self.entries}
        if len(self.index) != len(self.entries):
            raise ValueError(f"{self.root / MANIFEST}: duplicate keys")
        self.shards = sorted({e.shard for e in self.entries})
        self._files: dict[str, IO[bytes]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def read_bytes(self, key: str) -> bytes:
        """The WAV bytes of one clip: one seek and one read in an already open shard."""
        entry = self.index[key]
        f = self._files.get(entry.shard)
        if f is None:
            f = self._files[entry.shard] = open(self.root / entry.shard, "rb")
        f.seek(entry.offset)
        return f.read(entry.size)

    def audio(self, key: str) -> np.ndarray:
        return wav.decode(self.read_bytes(key))

    def select(
        self, order: str = "shard", rank: int = 0, world_size: int = 1, seed: int = 0
    ) -> list[Entry]:
        """This rank's clips, ordered by tar position (shard), duration, or shuffled."""
        if order not in ORDERS:
            raise ValueError(f"order {order!r}; expected one of {', '.join(ORDERS)}")
        mine = set(part_of(self.shards, rank, world_size))
        entries = [e for e in self.entries if e.shard in mine]
        if order == "duration":
            return sorted(entries, key=lambda e: (e.duration, e.key))
        if order == "shuffle":
            perm = np.random.default_rng(seed).permutation(len(entries))
            return [entries[i] for i in perm]
        return sorted(entries, key=lambda e: (e.shard, e.offset))

    def iterate(
        self, order: str = "shard", rank: int = 0, world_size: int = 1, seed: int = 0
    ) -> Iterator[tuple[Entry, np.ndarray]]:
        """(entry, audio) for this rank's clips; in shard order each shard is read in one go."""
        entries = self.select(order, rank, world_size, seed)
        if order != "shard":
            for entry in entries:
                yield entry, self.audio(entry.key)
            return
        for shard, group in itertools.groupby(entries, key=lambda e: e.shard):
            data = (self.root / shard).read_bytes()
            for entry in group:
                yield entry, wav.decode(data[entry.offset : entry.offset + entry.size])


def write_files(clips: Iterable[Clip], out_dir: Path) -> list[Path]:
    """One WAV file per clip (the layout shards replace; the benchmark's baseline)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for clip in clips:
        path = out_dir / f"{clip.key}.wav"
        path.write_bytes(wav.encode(clip.audio))
        paths.append(path)
    return paths
