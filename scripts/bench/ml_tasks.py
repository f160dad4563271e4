"""T1: throughput of the tasks/ building blocks — features, shard reading, training precision.

Three measurements, each the median of ``--runs``:

- **features**: MFCC (torchaudio) of ``--feature-clips`` one-word clips,
  batched (64 clips per padded, length-sorted batch) vs one clip per call,
  on the CPU and, when there is one, on the GPU; clips per second.
- **reading**: ``--clips`` small WAV clips (0.3–0.9 s, 16-bit, 16 kHz) read
  as bytes from tar shards (256 clips each; ``tasks.shards``: sequentially
  per shard, and by key in a shuffled order) vs one file per clip; clips
  per second, *cold* (page cache dropped before each run) and *warm*
  (everything cached). The audio of 200 synthesised clips is reused under
  10,000 keys: reading speed does not depend on what the samples say.
  Cold runs drop the page cache with ``echo 3 > /proc/sys/vm/drop_caches``
  when permitted, else evict each file with ``posix_fadvise(DONTNEED)``;
  the output says which.
- **training**: optimizer steps per second of the keyword encoder
  (``tasks.encoder``, batch 32) with fp32 vs mixed precision (bf16
  autocast on CPU, fp16 autocast + GradScaler on CUDA).

Progress goes to stderr, the markdown table to stdout::

    python scripts/bench/ml_tasks.py [--runs 5] [--clips 10000] [--threads 2]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from common import git_revision, log, machine, markdown_table, median, timed

from tasks import corpus, encoder, features, shards
from tasks.training import TrainConfig

Row = list[object]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clips", type=int, default=10_000, help="clips for the reading benchmark")
    parser.add_argument("--feature-clips", type=int, default=1_000)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    return parser.parse_args(argv)


def unique_clips(n: int = 200) -> list[corpus.Clip]:
    lang = corpus.make_language("en", seed=0, n_words=20)
    voices = corpus.make_speakers(0, 10, "bench")
    return corpus.word_clips(lang, list(lang.lexicon), n // 20, seed=0, voices=voices, label_of={})


def many_clips(base: list[corpus.Clip], n: int) -> list[corpus.Clip]:
    """``n`` clips with distinct keys, reusing the audio of ``base``."""
    return [
        corpus.Clip(f"c{i:06d}", base[i % len(base)].audio, "x", base[i % len(base)].words, "s")
        for i in range(n)
    ]


# --- reading -----------------------------------------------------------------


def drop_caches(paths: Sequence[Path]) -> str:
    """Empty the page cache (all of it if allowed, else just these files); how it was done."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "drop_caches"
    except OSError:
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        return "posix_fadvise(DONTNEED) per file"


def read_files(paths: Sequence[Path]) -> int:
    return sum(len(p.read_bytes()) for p in paths)


def read_shards_sequential(root: Path) -> int:
    """Each shard in one read; each clip a zero-copy view of it (what a decoder takes)."""
    total = 0
    with shards.ShardReader(root) as reader:
        for shard, entries in itertools.groupby(reader.select("shard"), key=lambda e: e.shard):
            data = memoryview((root / shard).read_bytes())
            total += sum(len(data[e.offset : e.offset + e.size]) for e in entries)
    return total


def read_shards_by_key(root: Path) -> int:
    with shards.ShardReader(root) as reader:
        keys = [e.key for e in reader.select("shuffle", seed=1)]
        return sum(len(reader.read_bytes(k)) for k in keys)


def bench_reading(clips: list[corpus.Clip], runs: int, folder: Path) -> tuple[list[Row], str]:
    files = shards.write_files(clips, folder / "files")
    shards.write_shards(clips, folder / "shards", clips_per_shard=256)
    shard_paths = sorted((folder / "shards").glob("*.tar"))
    cases: dict[str, Callable[[], int]] = {
        "one file per clip": lambda: read_files(files),
        "tar shards, sequential": lambda: read_shards_sequential(folder / "shards"),
        "tar shards, by key (shuffled)": lambda: read_shards_by_key(folder / "shards"),
    }
    times: dict[tuple[str, str], list[float]] = {}
    how = ""
    for run in range(runs):
        for temperature in ("cold", "warm"):
            names = list(cases)
            for name in names[run % 3 :] + names[: run % 3]:  # rotate who goes first
                if temperature == "cold":
                    how = drop_caches([*files, *shard_paths])
                else:
                    cases[name]()
                with timed() as t:
                    cases[name]()
                times.setdefault((name, temperature), []).append(t.seconds)
        log(f"reading: run {run + 1}/{runs} done")
    rows: list[Row] = []
    for temperature in ("cold", "warm"):
        base = median(times[("one file per clip", temperature)])
        for name in cases:
            seconds = median(times[(name, temperature)])
            rows.append(
                [
                    f"read {len(clips):,} clips: {name}",
                    temperature,
                    f"{len(clips) / seconds:,.0f} clips/s",
                    f"{base / seconds:.2f}×",
                ]
            )
    return rows, how


# --- features and training ----------------------------------------------------


def bench_features(audios: list[np.ndarray], runs: int, device: str) -> list[Row]:
    cfg = features.FeatureConfig()
    transform = features.make_transform(cfg, device)
    single = [
        _time(lambda: [features.batch_features(transform, [a], cfg, device) for a in audios])
        for _ in range(runs)
    ]
    batched = [
        _time(lambda: features.extract(audios, cfg, device, batch_size=64)) for _ in range(runs)
    ]
    rate = {k: len(audios) / median(v) for k, v in (("one", single), ("batched", batched))}
    return [
        [
            f"MFCC, {len(audios):,} clips, one per call",
            device,
            f"{rate['one']:,.0f} clips/s",
            "1.00×",
        ],
        [
            f"MFCC, {len(audios):,} clips, batches of 64",
            device,
            f"{rate['batched']:,.0f} clips/s",
            f"{rate['batched'] / rate['one']:.2f}×",
        ],
    ]


def _time(fn: Callable[[], object]) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    with timed() as t:
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    return t.seconds


def bench_training(
    feats: list[torch.Tensor], labels: np.ndarray, steps: int, runs: int, device: str
) -> list[Row]:
    rates = {}
    for mixed in (False, True):
        cfg = TrainConfig(steps=steps, batch_size=32, mixed_precision=mixed)
        encoder.train_encoder(
            feats, labels, TrainConfig(steps=2, mixed_precision=mixed), device
        )  # warm-up
        rates[mixed] = [
            steps / _time(functools.partial(_train, feats, labels, cfg, device))
            for _ in range(runs)
        ]
    precision = "fp16 + GradScaler" if device == "cuda" else "bf16 autocast"
    fp32, amp = median(rates[False]), median(rates[True])
    return [
        ["encoder training, batch 32, fp32", device, f"{fp32:.1f} steps/s", "1.00×"],
        [
            f"encoder training, batch 32, {precision}",
            device,
            f"{amp:.1f} steps/s",
            f"{amp / fp32:.2f}×",
        ],
    ]


def _train(feats: list[torch.Tensor], labels: np.ndarray, cfg: TrainConfig, device: str) -> None:
    encoder.train_encoder(feats, labels, cfg, device)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    base = unique_clips()
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="jobdb-t1-", dir=os.environ.get("BENCH_TMP")) as folder:
        reading, how = bench_reading(many_clips(base, args.clips), args.runs, Path(folder))
    rows += reading
    audios = [c.audio for c in many_clips(base, args.feature_clips)]
    feats = features.extract([c.audio for c in base], features.FeatureConfig())
    labels = np.unique([c.words[0] for c in base], return_inverse=True)[1]
    for device in devices:
        log(f"features and training on {device}")
        rows += bench_features(audios, args.runs, device)
        rows += bench_training(feats, labels, args.train_steps, args.runs, device)
    command = shlex.join(["python", "scripts/bench/ml_tasks.py", *(argv or sys.argv[1:])])
    print(f"T1 — tasks/ throughput; median of {args.runs} runs; cold cache by {how}")
    print(
        f"`{command}` at jobdb {git_revision()} on {machine()}, torch {torch.__version__}, "
        f"{args.threads} torch threads\n"
    )
    print(markdown_table(["what", "where", "throughput", "vs first row"], rows))


if __name__ == "__main__":
    main()
