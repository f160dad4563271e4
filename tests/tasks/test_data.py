"""Synthetic corpus and tar shards: deterministic, random access, ranks that partition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.tasks.conftest import NO_TORCH

pytest.importorskip("torch", reason=NO_TORCH)
pytest.importorskip("torchaudio", reason=NO_TORCH)

from tasks import corpus, shards, wav
from tasks.loaders import ShardStream


def clips(n: int = 12) -> list[corpus.Clip]:
    lang = corpus.make_language("en", seed=1, n_words=6)
    voices = corpus.make_speakers(1, 3, "t")
    return corpus.word_clips(lang, list(lang.lexicon), n // 6, seed=1, voices=voices, label_of={})


def test_the_corpus_is_a_function_of_its_seed() -> None:
    one, two = clips(), clips()
    assert [c.key for c in one] == [c.key for c in two]
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(one, two, strict=True))
    lang = corpus.make_language("en", seed=2, n_words=6)
    other = corpus.word_clips(lang, list(lang.lexicon), 2, 2, corpus.make_speakers(2, 3, "t"), {})
    assert not np.array_equal(one[0].audio, other[0].audio)


def test_nonwords_are_reorderings_outside_the_lexicon() -> None:
    for name in corpus.INVENTORIES:
        lang = corpus.make_language(name, seed=0, n_words=30)
        assert len(set(lang.lexicon)) == 30
        for word, non in zip(lang.lexicon, lang.nonwords, strict=True):
            assert non != word and non not in lang.lexicon
            assert len(non) == len(word) and set(non) <= set(lang.phones)


def test_alignment_covers_each_phone_in_order() -> None:
    clip = clips()[0]
    phones = [a[0] for a in clip.alignment]
    assert "".join(phones) == clip.words[0]
    starts = [a[1] for a in clip.alignment]
    assert starts == sorted(starts) and clip.alignment[-1][2] <= clip.duration


def test_wav_round_trip_keeps_16_bit_precision() -> None:
    audio = clips()[0].audio
    assert np.abs(wav.decode(wav.encode(audio)) - audio).max() < 1 / 16000


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, list[corpus.Clip]]:
    data = clips(24)
    shards.write_shards(data, tmp_path / "ds", clips_per_shard=5)
    return tmp_path / "ds", data


def test_random_access_by_key_returns_the_clip(dataset: tuple[Path, list[corpus.Clip]]) -> None:
    root, data = dataset
    with shards.ShardReader(root) as reader:
        assert len(reader) == 24 and len(reader.shards) == 5
        for clip in reversed(data):  # out of order: seeks, not a scan
            assert np.allclose(reader.audio(clip.key), clip.audio, atol=1e-4)
            assert reader.index[clip.key].duration == pytest.approx(clip.duration)


def test_ranks_partition_the_shards(dataset: tuple[Path, list[corpus.Clip]]) -> None:
    root, data = dataset
    with shards.ShardReader(root) as reader:
        parts = [reader.select("shard", rank, 2) for rank in range(2)]
        keys = [{e.key for e in part} for part in parts]
        assert keys[0].isdisjoint(keys[1]) and keys[0] | keys[1] == {c.key for c in data}
        assert {e.shard for e in parts[0]}.isdisjoint({e.shard for e in parts[1]})
        with pytest.raises(ValueError, match="rank 2"):
            reader.select("shard", 2, 2)


def test_orders_sorted_shuffled_and_sequential(dataset: tuple[Path, list[corpus.Clip]]) -> None:
    root, data = dataset
    with shards.ShardReader(root) as reader:
        durations = [e.duration for e in reader.select("duration")]
        assert durations == sorted(durations)
        shuffled = [e.key for e in reader.select("shuffle", seed=3)]
        assert shuffled == [e.key for e in reader.select("shuffle", seed=3)]
        assert shuffled != [e.key for e in reader.select("shard")]
        streamed = {entry.key: audio for entry, audio in reader.iterate("shard")}
    assert set(streamed) == {c.key for c in data}
    assert all(np.allclose(streamed[c.key], c.audio, atol=1e-4) for c in data)


def test_shard_stream_reads_each_clip_once_per_rank_split(
    dataset: tuple[Path, list[corpus.Clip]],
) -> None:
    root, data = dataset
    seen = [key for rank in range(3) for key, _, _ in ShardStream(root, rank, 3)]
    assert sorted(seen) == sorted(c.key for c in data)
