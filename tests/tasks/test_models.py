"""Features, k-means, the unit LM and ABX: the numbers that say each works."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.tasks.conftest import NO_TORCH

torch = pytest.importorskip("torch", reason=NO_TORCH)
pytest.importorskip("torchaudio", reason=NO_TORCH)

from tasks import abx, corpus, features, kmeans, lm, shards  # noqa: E402
from tasks.training import TrainConfig  # noqa: E402


def audios(n: int = 6) -> list[np.ndarray]:
    lang = corpus.make_language("fr", seed=0, n_words=n)
    voices = corpus.make_speakers(0, 2, "f")
    return [c.audio for c in corpus.word_clips(lang, list(lang.lexicon), 1, 0, voices, {})]


def test_batched_features_match_one_clip_at_a_time() -> None:
    cfg = features.FeatureConfig(cmvn=False)
    clips = audios()
    batched = features.extract(clips, cfg, batch_size=8)
    single = [features.extract([a], cfg)[0] for a in clips]
    for b, s, a in zip(batched, single, clips, strict=True):
        assert b.shape == s.shape == (a.size // cfg.hop + 1, cfg.n_mfcc)
        # Only the last frames differ: there the STFT sees padding instead of reflection.
        assert torch.allclose(b[:-3], s[:-3], atol=1e-3)


def test_features_are_saved_per_shard(tmp_path: Path) -> None:
    lang = corpus.make_language("en", seed=0, n_words=4)
    clips = corpus.word_clips(lang, list(lang.lexicon), 2, 0, corpus.make_speakers(0, 2, "e"), {})
    shards.write_shards(clips, tmp_path / "ds", clips_per_shard=3)
    with shards.ShardReader(tmp_path / "ds") as reader:
        counts = features.extract_shards(
            reader, tmp_path / "feats", features.FeatureConfig(kind="logmel")
        )
    assert sum(counts.values()) == 8 and len(list((tmp_path / "feats").glob("shard-*.pt"))) == 3
    loaded = features.load_features(tmp_path / "feats")
    assert set(loaded) == {c.key for c in clips} and loaded[clips[0].key].shape[1] == 40


def blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(5, 4, generator=gen) * 10
    labels = torch.arange(500) % 5
    return centers[labels] + torch.randn(500, 4, generator=gen), labels


def test_kmeans_reduces_inertia_and_finds_the_blobs() -> None:
    frames, labels = blobs()
    km = kmeans.fit_kmeans(frames, 5, seed=0)
    assert km.history == sorted(km.history, reverse=True) and km.history[-1] < km.history[0]
    assert km.inertia(frames) < 1.5 * 4  # ≈ the noise variance per dimension x 4 dimensions
    assigned = km.assign(frames)
    # Each blob maps to exactly one cluster.
    assert all(len(assigned[labels == b].unique()) == 1 for b in range(5))
    assert torch.equal(kmeans.fit_kmeans(frames, 5, seed=0).centroids, km.centroids)


def test_dedup_merges_runs_and_drops_flicker() -> None:
    assert lm.dedup([3, 3, 5, 7, 7, 3]) == [3, 5, 7, 3]
    assert lm.dedup([3, 3, 5, 7, 7, 3], min_run=2) == [3, 7]


def test_lm_loss_falls_and_prefers_what_it_saw() -> None:
    r = np.random.default_rng(0)
    words = [list(r.integers(0, 8, 5)) for _ in range(4)]
    seqs = [[u for i in r.integers(0, 4, 3) for u in words[i]] for _ in range(64)]
    model, fit = lm.train_lm(seqs, lm.LMConfig(8), TrainConfig(steps=80, batch_size=16, lr=1e-2))
    assert fit.final_loss < 0.6 * fit.losses[0]
    seen = lm.log_probs(model, [words[0] + words[1]])[0]
    scrambled = lm.log_probs(model, [list(r.permutation(words[0] + words[1]))])[0]
    assert seen > scrambled


def test_dtw_and_abx_error_at_the_extremes() -> None:
    a = np.random.default_rng(0).normal(size=(6, 3))
    assert abx.distance(a, a) < 1e-6
    assert abx.distance(a, np.repeat(a, 2, axis=0)) < 1e-6  # a slower copy aligns perfectly
    onehot = np.eye(3)
    segs = [
        abx.Segment(
            p, s, np.tile(onehot[i], (4, 1)) + 0.01 * np.random.default_rng(k).normal(size=(4, 3))
        )
        for k, (i, p, s) in enumerate([(i, "aeo"[i], spk) for spk in "xyz" for i in range(3)] * 2)
    ]
    items = abx.triplets(segs, 50, seed=0)
    assert len(items) == 50 and abx.abx_error(segs, items) == 0.0
    noise = [
        abx.Segment(s.phone, s.speaker, np.random.default_rng(k).normal(size=(4, 3)))
        for k, s in enumerate(segs)
    ]
    assert 0.25 < abx.abx_error(noise, abx.triplets(noise, 200, seed=1)) < 0.75
