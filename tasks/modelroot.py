"""Build an InfQuery model tree: ``model_root/<lang>/<model>/`` plus evaluation data.

Each model is what seed 000's tasks need: k-means centroids over MFCC
frames (its units, ``kmeans.pt``) and an LSTM over its units (``lm.pt``),
trained on the first N synthetic sentences of its language, where N is the
number in the model's name (``baby50``: 50 sentences, × ``scale``). Models
of one language share their data's prefix, so ``baby100`` has seen
everything ``baby50`` saw and more.

Next to ``model_root`` the builder writes, per language, the evaluation
inputs the seed's YAML names: ``eval/<lang>/data/wav/*.wav`` (words and
non-words said by voices no model heard), ``eval/<lang>/gold.csv`` (the
lexical pairs) and ``eval/<lang>/abx.csv`` (phone segments for ABX).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from tasks import corpus, features, kmeans, lm, wav
from tasks.training import TrainConfig

GOLD_COLUMNS = ["id", "filename", "voice", "frequency", "word", "phones", "length", "correct"]
ABX_COLUMNS = ["filename", "onset", "offset", "phone", "speaker"]
DEFAULT_MODELS = {
    "en": ["baby50", "baby100", "baby200"],
    "fr": ["baby200", "baby3600"],
    "de": ["baby50", "baby100"],
}


@dataclass(frozen=True)
class BuildConfig:
    """How big the models and their data are."""

    seed: int = 0
    scale: float = 1.0
    n_words: int = 30
    n_units: int = 16
    lm_steps: int = 200
    batch_size: int = 16
    train_voices: int = 12
    eval_voices: int = 4
    snr_db: tuple[float, float] | None = (15.0, 35.0)


def sentences_for(model: str, scale: float) -> int:
    """``baby50`` → 50 × scale training sentences (at least 8)."""
    match = re.search(r"(\d+)$", model)
    if match is None:
        raise ValueError(f"model name {model!r} must end with its number of sentences, e.g. baby50")
    return max(8, round(int(match.group(1)) * scale))


def build(
    root: Path, models: dict[str, list[str]], cfg: BuildConfig, device: str = "cpu"
) -> dict[str, Any]:
    """Train every model of ``models`` into ``root/models`` and write ``root/eval``; a summary."""
    summary: dict[str, Any] = {}
    for name, names in models.items():
        lang = corpus.make_language(name, cfg.seed, cfg.n_words)
        write_eval(root / "eval" / name, lang, cfg)
        voices = corpus.make_speakers(cfg.seed, cfg.train_voices, f"{name}-train")
        needed = max(sentences_for(m, cfg.scale) for m in names)
        clips = corpus.sentences(lang, needed, cfg.seed, voices, cfg.snr_db)
        feats = features.extract([c.audio for c in clips], features.FeatureConfig(), device)
        for model in names:
            out = root / "models" / name / model
            summary[f"{name}/{model}"] = train_model(
                out, feats[: sentences_for(model, cfg.scale)], cfg, device
            )
    (root / "build.json").write_text(
        json.dumps({"config": asdict(cfg), "models": summary}, indent=2)
    )
    return summary


def train_model(
    out: Path, feats: list[torch.Tensor], cfg: BuildConfig, device: str
) -> dict[str, Any]:
    """k-means units over the frames, then an LSTM over the deduplicated unit sequences."""
    out.mkdir(parents=True, exist_ok=True)
    km = kmeans.fit_kmeans(torch.cat(feats), cfg.n_units, seed=cfg.seed, device=device)
    torch.save(
        {"centroids": km.centroids.cpu(), "features": asdict(features.FeatureConfig())},
        out / "kmeans.pt",
    )
    lm_cfg = lm.LMConfig(cfg.n_units)
    seqs = [lm.dedup(km.assign(f).tolist(), lm_cfg.min_run) for f in feats]
    train = TrainConfig(steps=cfg.lm_steps, batch_size=cfg.batch_size, lr=1e-2, seed=cfg.seed)
    model, fit = lm.train_lm(seqs, lm_cfg, train, device)
    lm.save_lm(model, out / "lm.pt")
    info = {
        "sentences": len(feats),
        "frames": int(sum(f.shape[0] for f in feats)),
        "inertia": km.history[-1],
        "lm_first_loss": fit.losses[0],
        "lm_final_loss": fit.final_loss,
    }
    (out / "model.json").write_text(json.dumps(info, indent=2))
    return info


def write_eval(folder: Path, lang: corpus.Language, cfg: BuildConfig) -> None:
    """The language's lexical pairs as WAV files, ``gold.csv`` and ``abx.csv``."""
    voices = corpus.make_speakers(cfg.seed, cfg.eval_voices, f"{lang.name}-eval")
    items = corpus.lexical_items(lang, cfg.seed, voices)
    (folder / "data" / "wav").mkdir(parents=True, exist_ok=True)
    freq = dict(zip(lang.lexicon, lang.frequencies(), strict=True))
    gold, abx = [], []
    for clip in items:
        (folder / "data" / "wav" / f"{clip.key}.wav").write_bytes(wav.encode(clip.audio))
        pair = re.sub(r"\D", "", clip.key.rsplit("-", 1)[1])
        text = clip.words[0]
        word = lang.lexicon[int(pair)]
        gold.append(
            [
                pair,
                clip.key,
                clip.speaker,
                f"{freq[word]:.6f}",
                text,
                " ".join(text),
                len(text),
                int(clip.label == "word"),
            ]
        )
        abx += [
            [clip.key, f"{on:.4f}", f"{off:.4f}", p, clip.speaker] for p, on, off in clip.alignment
        ]
    _write_csv(folder / "gold.csv", GOLD_COLUMNS, gold)
    _write_csv(folder / "abx.csv", ABX_COLUMNS, abx)


def _write_csv(path: Path, columns: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)


def parse_models(specs: list[str]) -> dict[str, list[str]]:
    """``["en:baby50,baby100", "fr:baby200"]`` → ``{"en": [...2 models], "fr": ["baby200"]}``."""
    models: dict[str, list[str]] = {}
    for spec in specs:
        lang, sep, names = spec.partition(":")
        if not sep or not names:
            raise ValueError(f"{spec!r}: expected LANG:MODEL[,MODEL…]")
        models.setdefault(lang, []).extend(n for n in names.split(",") if n)
    return models


def main(argv: list[str] | None = None) -> int:
    """``scripts/build-model-root [OUT] [--models en:baby50,baby100 …] [--scale S]``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="build/infquery", help="folder to write")
    parser.add_argument("--models", nargs="*", help="LANG:MODEL,… (default: the seed's selection)")
    parser.add_argument("--scale", type=float, default=1.0, help="sentences per model-name unit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lm-steps", type=int, default=BuildConfig.lm_steps)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    models = parse_models(args.models) if args.models else DEFAULT_MODELS
    cfg = BuildConfig(seed=args.seed, scale=args.scale, lm_steps=args.lm_steps)
    summary = build(Path(args.out), models, cfg, args.device)
    for name, info in summary.items():
        print(f"{name:16} {info['sentences']:5d} sentences  lm loss "
              f"{info['lm_first_loss']:.2f} → {info['lm_final_loss']:.2f}")  # fmt: skip
    print(f"model_root: {Path(args.out) / 'models'}")
    return 0
