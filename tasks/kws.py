"""Keyword spotting with training-set selection (seed 004), as jobdb tasks.

The phases of ``examples/kws.yaml``:

``make_data``
    synthesise three disjoint sets of one-word clips into tar shards:
    *pretrain* (other words, for the encoder), *pool* (keywords and
    non-target words, what strategies select from) and *test* (the same
    words said by voices the pool never had);
``embed``
    MFCC per shard, train the encoder on *pretrain*, embed *pool* and *test*;
``select``
    one strategy × budget × fold: select ``budget`` clips from the pool's
    other folds, train the classifier on them, macro F1 on this fold;
``retrain``
    the winning strategy and budget (jobdb's ``select:``) on the whole pool;
``test``
    macro F1 of that classifier on the test set.

Results carry the paths the next phase reads (``data_dir``, ``embeddings``,
``model``). Only ``embed`` imports torch (lazily): the many small selection
jobs stay NumPy-only and start fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from jobdb.runtime.context import JobContext
from tasks import classifier, corpus, selection, shards

UNKNOWN = "_unknown"
SPLITS = ("pretrain", "pool", "test")


def _upstream(ctx: JobContext, key: str) -> str:
    """A value (a path) from the first parent result that has it."""
    for result in ctx.parent_results():
        if key in result:
            return str(result[key])
    raise ValueError(f"no parent of job {ctx.job_id} has {key!r} in its result")


def vocabulary(params: dict[str, Any]) -> tuple[corpus.Language, list[str], list[str], list[str]]:
    """The language and its (keywords, non-target words, pre-training words), disjoint."""
    k, n, p = (
        int(params.get(key, d))
        for key, d in (("keywords", 4), ("nontarget_words", 8), ("pretrain_words", 16))
    )
    lang = corpus.make_language(params.get("lang", "en"), int(params.get("seed", 0)), k + n + p)
    words = list(lang.lexicon)
    return lang, words[:k], words[k : k + n], words[k + n :]


def split_clips(params: dict[str, Any], split: str, smoke: bool) -> list[corpus.Clip]:
    """The clips of one split; a smoke run keeps one clip per word."""
    seed = int(params.get("seed", 0))
    lang, keywords, nontarget, pretrain = vocabulary(params)
    per_word = 1 if smoke else int(params.get("clips_per_word", 20))
    voices = corpus.make_speakers(
        seed, int(params.get("voices", 16)), "kws-test" if split == "test" else "kws"
    )
    if split == "pretrain":
        return corpus.word_clips(
            lang, pretrain, per_word, seed, voices, {w: w for w in pretrain}, split=split
        )
    labels = {w: w for w in keywords}
    return corpus.word_clips(
        lang, keywords + nontarget, per_word, seed, voices, labels, split=split
    )


def make_data(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Synthesise the three splits into ``<work_dir>/data/<split>/`` shards with manifests."""
    root = ctx.work_dir / "data"
    counts, seconds = {}, 0.0
    for split in SPLITS:
        entries = shards.write_shards(
            split_clips(params, split, ctx.smoke),
            root / split,
            int(params.get("clips_per_shard", 64)),
        )
        counts[split] = len(entries)
        seconds += sum(e.duration for e in entries)
    _, keywords, _, _ = vocabulary(params)
    (root / "classes.json").write_text(json.dumps([*keywords, UNKNOWN]))
    ctx.logger.info("wrote %s clips (%.0f s of audio) to %s", counts, seconds, root)
    return {
        **{f"{s}_clips": n for s, n in counts.items()},
        "audio_seconds": seconds,
        "data_dir": str(root),
    }


def embed(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Features per shard, the encoder trained on *pretrain*, embeddings of *pool* and *test*.

    Training honours ``batch_size`` and ``accumulation_steps`` (an
    out-of-memory retry may halve one and double the other), ``steps``,
    ``lr``, ``mixed_precision``, ``grad_checkpoint`` and
    ``checkpoint_every`` (resumed from ``ctx.checkpoint_dir`` on a retry).
    """
    import torch

    from tasks import encoder, features
    from tasks.seeding import seed_everything
    from tasks.training import TrainConfig

    seed_everything(int(params.get("seed", 0)))
    data = Path(_upstream(ctx, "data_dir"))
    cfg = features.FeatureConfig.from_params(params)
    feats, labels = {}, {}
    for split in SPLITS:
        with shards.ShardReader(data / split) as reader:
            out = ctx.work_dir / "features" / split
            features.extract_shards(
                reader, out, cfg, ctx.device, int(params.get("feature_batch", 64))
            )
            by_key = features.load_features(out)
            feats[split] = [by_key[e.key] for e in reader.entries]
            labels[split] = np.asarray([e.label for e in reader.entries])
    words, pretrain_y = np.unique(labels["pretrain"], return_inverse=True)
    train = TrainConfig.from_params(params, ctx.smoke, steps=150, batch_size=32, lr=3e-3)
    model, fit = encoder.train_encoder(
        feats["pretrain"],
        pretrain_y,
        train,
        ctx.device,
        ctx.checkpoint_dir,
        bool(params.get("grad_checkpoint", False)),
        int(params.get("embedding_dim", 64)),
    )
    path = ctx.work_dir / "embeddings.npz"
    np.savez(
        path,
        pool_x=encoder.embed_all(model, feats["pool"], ctx.device),
        test_x=encoder.embed_all(model, feats["test"], ctx.device),
        pool_y=labels["pool"],
        test_y=labels["test"],
    )
    torch.save(model.state_dict(), ctx.work_dir / "encoder.pt")
    return {
        "encoder_first_loss": fit.losses[0] if fit.losses else float("nan"),
        "encoder_final_loss": fit.final_loss,
        "resumed_from": fit.start_step,
        "encoder_train_acc": encoder.accuracy(model, feats["pretrain"], pretrain_y, ctx.device),
        "pretrain_words": len(words),
        "embeddings": str(path),
    }


def _load(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _iterations(ctx: JobContext) -> int:
    return 5 if ctx.smoke else 300


def select(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """One cross-validation cell: select from the pool's other folds, score on this fold."""
    emb = _load(_upstream(ctx, "embeddings"))
    x, y = emb["pool_x"], emb["pool_y"]
    seed = int(params.get("seed", 0)) * 1000 + int(params.get("selection_seed", 0))
    folds = classifier.stratified_folds(y, int(params.get("n_folds", 5)), seed)
    held = folds == int(params.get("fold", 0))
    candidates = np.flatnonzero(~held)
    budget = min(int(params["budget"]), len(candidates)) if ctx.smoke else int(params["budget"])
    chosen = candidates[
        selection.select(params["strategy"], x[candidates], y[candidates], budget, seed)
    ]
    model = classifier.fit_softmax(x[chosen], y[chosen], _iterations(ctx))
    return {
        "f1": classifier.macro_f1(y[held], model.predict(x[held])),
        "selected": len(chosen),
        "classes_selected": len(np.unique(y[chosen])),
        "embeddings": _upstream(ctx, "embeddings"),
    }


def retrain(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """The chosen strategy and budget applied to the whole pool; the classifier saved."""
    emb_path = _upstream(ctx, "embeddings")
    emb = _load(emb_path)
    x, y = emb["pool_x"], emb["pool_y"]
    seed = int(params.get("seed", 0)) * 1000 + int(params.get("selection_seed", 0))
    budget = min(int(params["budget"]), len(x))
    chosen = selection.select(params["strategy"], x, y, budget, seed)
    model = classifier.fit_softmax(x[chosen], y[chosen], _iterations(ctx))
    path = ctx.work_dir / "classifier.npz"
    model.save(path)
    return {
        "train_f1": classifier.macro_f1(y[chosen], model.predict(x[chosen])),
        "selected": len(chosen),
        "model": str(path),
        "embeddings": emb_path,
    }


def test(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Macro F1 (and accuracy) of the retrained classifier on the held-out test voices."""
    emb = _load(_upstream(ctx, "embeddings"))
    model = classifier.Softmax.load(Path(_upstream(ctx, "model")))
    predicted = model.predict(emb["test_x"])
    return {
        "test_f1": classifier.macro_f1(emb["test_y"], predicted),
        "test_accuracy": float(np.mean(predicted == emb["test_y"])),
        "test_clips": len(predicted),
    }
