"""The InfQuery steps of seed 000 as jobdb tasks: ``quantize | proba | lexical`` and ``abx``.

jobdb maps an InfQuery file onto one phase per step, each calling
``tasks.infquery:<step>(params, ctx)`` with the model's ``lang``, ``model``,
``model_root``, the file's ``input``/``output`` sections and the step's
options (``quantize_options``, ``pseudo_probabilities_options``, …). A step
hands its output to the next through its result (``units_file``,
``proba_file``), which the child reads from ``ctx.parents``.

Input paths as the seed writes them (``root_dir: data/wav``, ``csv:
gold.csv``) are read from the working directory when they exist there, else
from the evaluation set that ``scripts/build-model-root`` wrote for the
model's language (``<model_root>/../eval/<lang>/``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jobdb.runtime.context import JobContext
from tasks import abx as abx_metric
from tasks import features, kmeans, lm, wav
from tasks.seeding import seed_everything

SMOKE_FILES = 4


def model_dir(params: dict[str, Any]) -> Path:
    return Path(params["model_root"]) / params["lang"] / params["model"]


def resolve(params: dict[str, Any], relative: str) -> Path:
    """An input path: as given if it exists (from the working directory), else in the eval set."""
    path = Path(relative)
    if path.is_absolute() or path.exists():
        return path
    return Path(params["model_root"]).parent / "eval" / params["lang"] / relative


def audio_files(params: dict[str, Any]) -> list[Path]:
    """The ``input.audio`` files: ``root_dir`` globbed for ``ext`` (``method: glob``), sorted."""
    spec = (params.get("input") or {}).get("audio") or {}
    if spec.get("method", "glob") != "glob":
        raise ValueError(f"input.audio.method {spec['method']!r}: only glob is supported")
    root = resolve(params, spec.get("root_dir", "data/wav"))
    files = sorted(root.glob(f"*{spec.get('ext', '.wav')}"))
    if not files:
        raise FileNotFoundError(f"no {spec.get('ext', '.wav')} files in {root}")
    return files


def load_kmeans(
    params: dict[str, Any], device: str
) -> tuple[kmeans.KMeans, features.FeatureConfig]:
    saved = torch.load(model_dir(params) / "kmeans.pt", map_location=device, weights_only=True)
    return kmeans.KMeans(saved["centroids"].to(device), []), features.FeatureConfig(
        **saved["features"]
    )


def _parent_result(ctx: JobContext, key: str) -> str:
    for result in ctx.parent_results():
        if key in result:
            return str(result[key])
    raise ValueError(f"no parent of job {ctx.job_id} has {key!r} in its result")


def quantize(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Audio → features → the model's units (nearest centroid per frame), saved for ``proba``.

    Options: ``batch_size`` (clips per feature batch), ``max_size_seq``
    (frames kept per utterance), ``strict`` (fail on an empty file instead of
    skipping it). ``convert_audio_to`` is accepted and unused: inputs are WAV.
    """
    seed_everything(int(params.get("seed", 0)))
    opts = params.get("quantize_options") or {}
    files = audio_files(params)
    if ctx.smoke:  # a few files spread over the list, so word/non-word pairs can survive
        files = files[:: max(1, len(files) // SMOKE_FILES)][:SMOKE_FILES]
    audios = [wav.decode(f.read_bytes()) for f in files]
    empty = [f.name for f, a in zip(files, audios, strict=True) if a.size == 0]
    if empty and opts.get("strict", False):
        raise ValueError(f"empty audio files: {', '.join(empty)}")
    kept = [(f, a) for f, a in zip(files, audios, strict=True) if a.size > 0]
    km, cfg = load_kmeans(params, ctx.device)
    feats = features.extract([a for _, a in kept], cfg, ctx.device, int(opts.get("batch_size", 16)))
    limit = int(opts.get("max_size_seq", 10**9))
    units = {f.stem: km.assign(x[:limit]) for (f, _), x in zip(kept, feats, strict=True)}
    out = ctx.work_dir / "units.pt"
    torch.save(units, out)
    frames = torch.cat([x[:limit] for x in feats])
    ctx.logger.info("quantized %d files into %d frames", len(units), frames.shape[0])
    used = int(torch.cat(list(units.values())).unique().numel())
    return {
        "utterances": len(units),
        "skipped": len(empty),
        "frames": int(frames.shape[0]),
        "inertia": km.inertia(frames),
        "units_used": used,
        "units_file": str(out),
    }


def proba(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Units → pseudo-log-probability per utterance under the model's LSTM, saved as CSV.

    ``batch_size`` is honoured; ``decoding_span_size`` and
    ``inner_batch_size`` are options of masked (BERT) models and unused by an LSTM.
    """
    opts = params.get("pseudo_probabilities_options") or {}
    units: dict[str, torch.Tensor] = torch.load(
        _parent_result(ctx, "units_file"), weights_only=True
    )
    names = sorted(units)[: SMOKE_FILES if ctx.smoke else None]
    model = lm.load_lm(model_dir(params) / "lm.pt", ctx.device)
    seqs = [lm.dedup(units[n].tolist(), model.cfg.min_run) for n in names]
    scores = lm.log_probs(model, seqs, ctx.device, int(opts.get("batch_size", 256)))
    out = ctx.work_dir / "pseudo_proba.csv"
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "units", "logprob"])
        writer.writerows(
            [n, len(s), f"{p:.6f}"] for n, s, p in zip(names, seqs, scores, strict=True)
        )
    per_unit = float(np.mean([p / (len(s) + 1) for s, p in zip(seqs, scores, strict=True)]))
    return {
        "utterances": len(names),
        "mean_logprob": float(np.mean(scores)),
        "mean_logprob_per_unit": per_unit,
        "proba_file": str(out),
    }


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def lexical_pairs(
    gold: list[dict[str, str]], scores: dict[str, float]
) -> list[tuple[dict[str, str], bool]]:
    """(word row, did the word score higher than its non-word) for each complete pair."""
    pairs: dict[str, dict[str, dict[str, str]]] = {}
    for row in gold:
        if row["filename"] in scores:
            pairs.setdefault(row["id"], {})["word" if row["correct"] == "1" else "nonword"] = row
    return [
        (p["word"], scores[p["word"]["filename"]] > scores[p["nonword"]["filename"]])
        for p in pairs.values()
        if len(p) == 2
    ]


def lexical(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Accuracy of giving the word a higher pseudo-probability than its paired non-word.

    ``output.lexical.by`` (e.g. ``length``) adds the accuracy per value of that
    column to ``lexical.csv`` in the work folder (kept when ``keep`` is true).
    """
    spec = (params.get("input") or {}).get("lexical") or {}
    gold = read_csv(resolve(params, spec.get("csv", "gold.csv")))
    scores = {
        r["filename"]: float(r["logprob"])
        for r in read_csv(Path(_parent_result(ctx, "proba_file")))
    }
    pairs = lexical_pairs(gold, scores)
    if not pairs and not ctx.smoke:
        raise ValueError("no complete word/non-word pair among the scored files")
    out_spec = (params.get("output") or {}).get("lexical") or {}
    by = out_spec.get("by", "length")
    groups: dict[str, list[bool]] = {}
    for row, ok in pairs:
        groups.setdefault(row.get(by, "all"), []).append(ok)
    out = ctx.work_dir / "lexical.csv"
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([by, "pairs", "accuracy"])
        writer.writerows([k, len(v), f"{np.mean(v):.4f}"] for k, v in sorted(groups.items()))
    accuracy = float(np.mean([ok for _, ok in pairs])) if pairs else float("nan")
    return {
        "lexical_accuracy": accuracy,
        "pairs": len(pairs),
        "lexical_file": str(out),
    }


def abx(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """ABX error of the model's unit posteriors, next to raw MFCCs as the baseline.

    A frame's representation is the softmax over centroids of minus its
    squared distances (a posteriorgram); ``abx_options``: ``triplets``
    (default 300), ``across_speakers`` (default true).
    """
    opts = params.get("abx_options") or {}
    spec = (params.get("input") or {}).get("abx") or {}
    rows = read_csv(resolve(params, spec.get("csv", "abx.csv")))
    km, cfg = load_kmeans(params, ctx.device)
    segments, baseline = _segments(params, rows, km, cfg, ctx.device)
    n = 10 if ctx.smoke else int(opts.get("triplets", 300))
    items = abx_metric.triplets(
        segments, n, int(params.get("seed", 0)), bool(opts.get("across_speakers", True))
    )
    return {
        "abx_error": abx_metric.abx_error(segments, items),
        "abx_error_mfcc": abx_metric.abx_error(baseline, items),
        "triplets": len(items),
    }


def _segments(
    params: dict[str, Any],
    rows: list[dict[str, str]],
    km: kmeans.KMeans,
    cfg: features.FeatureConfig,
    device: str,
) -> tuple[list[abx_metric.Segment], list[abx_metric.Segment]]:
    """Per phone occurrence: (posteriorgram segment, MFCC segment)."""
    audio_spec = (params.get("input") or {}).get("audio") or {}
    root = resolve(params, audio_spec.get("root_dir", "data/wav"))
    names = sorted({r["filename"] for r in rows})
    audios = [
        wav.decode((root / f"{n}{audio_spec.get('ext', '.wav')}").read_bytes()) for n in names
    ]
    feats = dict(zip(names, features.extract(audios, cfg, device), strict=True))
    post, base = [], []
    for r in rows:
        x = feats[r["filename"]]
        lo = int(float(r["onset"]) * 16000 / cfg.hop)
        hi = max(lo + 1, int(float(r["offset"]) * 16000 / cfg.hop))
        frames = x[lo:hi]
        _, dist = kmeans.nearest(frames.to(device), km.centroids)
        d2 = torch.cdist(frames.to(device), km.centroids) ** 2
        posterior = torch.softmax(-d2 / dist.mean().clamp_min(1e-6), dim=1).cpu().numpy()
        post.append(abx_metric.Segment(r["phone"], r["speaker"], posterior))
        base.append(abx_metric.Segment(r["phone"], r["speaker"], frames.numpy()))
    return post, base
