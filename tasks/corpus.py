"""Synthetic languages, lexicons and corpora, all derived from a seed.

A *language* is a phone inventory and a lexicon of words built from its
syllables (CV, with an optional final consonant). Each word has a paired
*non-word*: the same phones in another order (consonants swapped among
consonant slots, vowels among vowel slots), so a lexical test cannot be won
by counting phones: the model has to know the word. Word frequencies follow
Zipf's law, like a real vocabulary.

Every clip is generated from ``rng(seed, purpose, index)``, so clip ``i`` is
the same whichever process, shard or order produces it.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tasks.seeding import rng
from tasks.synth import SAMPLE_RATE, Speaker, make_speaker, utterance

#: Phone inventories (vowels, consonants) of the synthetic languages.
INVENTORIES: dict[str, tuple[str, str]] = {
    "en": ("ieaouV", "ptksSmnf"),
    "fr": ("ieEaouy2", "ptksSmnf"),
    "de": ("ieaouy", "ptksxmnfh"),
}

# Purposes: one key per kind of random draw, so adding one never shifts another.
_LEXICON, _SPEAKER, _SENTENCE, _LEXICAL, _WORD = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class Language:
    """A phone inventory, its words and, index for index, their non-words."""

    name: str
    vowels: str
    consonants: str
    lexicon: tuple[str, ...]
    nonwords: tuple[str, ...]

    @property
    def phones(self) -> str:
        return self.vowels + self.consonants

    def frequencies(self) -> np.ndarray:
        """Zipf weights of the lexicon (word 0 most frequent), summing to 1."""
        weights = 1.0 / np.arange(1, len(self.lexicon) + 1)
        return np.asarray(weights / weights.sum())


@dataclass
class Clip:
    """One utterance: its audio and everything the tasks may ask about it."""

    key: str
    audio: np.ndarray
    label: str
    words: tuple[str, ...]
    speaker: str
    alignment: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.audio.size / SAMPLE_RATE

    def meta(self) -> dict[str, object]:
        """The JSON-able description a manifest keeps next to the audio."""
        return {
            "label": self.label,
            "words": list(self.words),
            "speaker": self.speaker,
            "alignment": [list(a) for a in self.alignment],
        }


def language_seed(name: str) -> int:
    """A stable number for a language name (``hash()`` changes between processes)."""
    return zlib.crc32(name.encode())


def make_language(name: str, seed: int, n_words: int = 40) -> Language:
    """The language ``name`` (one of :data:`INVENTORIES`) with ``n_words`` distinct words."""
    if name not in INVENTORIES:
        raise ValueError(f"unknown language {name!r}; known: {', '.join(sorted(INVENTORIES))}")
    vowels, consonants = INVENTORIES[name]
    r = rng(seed, _LEXICON, language_seed(name))
    words: dict[str, None] = {}
    while len(words) < n_words:
        words[_random_word(vowels, consonants, r)] = None
    lexicon = tuple(words)
    nonwords = tuple(nonword(w, vowels, set(lexicon), r) for w in lexicon)
    return Language(name, vowels, consonants, lexicon, nonwords)


def _random_word(vowels: str, consonants: str, r: np.random.Generator) -> str:
    syllables = int(r.integers(2, 4))
    word = "".join(r.choice(list(consonants)) + r.choice(list(vowels)) for _ in range(syllables))
    return word + (str(r.choice(list(consonants))) if r.random() < 0.3 else "")


def nonword(word: str, vowels: str, lexicon: set[str], r: np.random.Generator) -> str:
    """The word's phones reordered within their slots; not the word, not in the lexicon."""
    slots = (
        [i for i, p in enumerate(word) if p in vowels],
        [i for i, p in enumerate(word) if p not in vowels],
    )
    for _ in range(50):
        letters = list(word)
        for slot in slots:
            for i, j in zip(slot, r.permutation(slot), strict=True):
                letters[i] = word[j]
        candidate = "".join(letters)
        if candidate != word and candidate not in lexicon:
            return candidate
    # Every reordering is taken (a word like "tata"): change one vowel instead.
    i = slots[0][0]
    other = next(v for v in vowels if v != word[i] and word[:i] + v + word[i + 1 :] not in lexicon)
    return word[:i] + other + word[i + 1 :]


def make_speakers(seed: int, n: int, prefix: str) -> list[Speaker]:
    """``n`` voices named ``<prefix>000``…; different prefixes give different voices."""
    base = language_seed(prefix)
    return [make_speaker(f"{prefix}{i:03d}", rng(seed, _SPEAKER, base, i)) for i in range(n)]


def _snr(r: np.random.Generator, snr_db: tuple[float, float] | None) -> float | None:
    return None if snr_db is None else float(r.uniform(*snr_db))


def sentences(
    lang: Language,
    n: int,
    seed: int,
    voices: Sequence[Speaker],
    snr_db: tuple[float, float] | None = (10.0, 30.0),
    first: int = 0,
) -> list[Clip]:
    """Utterances of 2–4 words drawn by frequency: the training speech of a model.

    ``first`` offsets the clip indices, so ``sentences(..., n=50)`` is a prefix
    of ``sentences(..., n=100)``: a bigger model sees the smaller one's data too.
    """
    out = []
    for i in range(first, first + n):
        r = rng(seed, _SENTENCE, language_seed(lang.name), i)
        voice = voices[int(r.integers(len(voices)))]
        count = int(r.integers(2, 5))
        words = tuple(str(w) for w in r.choice(lang.lexicon, size=count, p=lang.frequencies()))
        audio, alignment = utterance([list(w) for w in words], voice, r, _snr(r, snr_db))
        key = f"{lang.name}-s{i:06d}"
        out.append(Clip(key, audio, "sentence", words, voice.id, alignment))
    return out


def lexical_items(
    lang: Language,
    seed: int,
    voices: Sequence[Speaker],
    snr_db: tuple[float, float] | None = None,
) -> list[Clip]:
    """Each word and its non-word, said by the same voice; ``label`` is word/nonword."""
    out = []
    for i, (word, non) in enumerate(zip(lang.lexicon, lang.nonwords, strict=True)):
        voice = voices[i % len(voices)]
        for label, text in (("word", word), ("nonword", non)):
            r = rng(seed, _LEXICAL, language_seed(lang.name), i, label == "word")
            audio, alignment = utterance([list(text)], voice, r, _snr(r, snr_db))
            key = f"{lang.name}-{label}{i:04d}"
            out.append(Clip(key, audio, label, (text,), voice.id, alignment))
    return out


def word_clips(
    lang: Language,
    words: Sequence[str],
    per_word: int,
    seed: int,
    voices: Sequence[Speaker],
    label_of: dict[str, str],
    snr_db: tuple[float, float] | None = (5.0, 25.0),
    split: str = "train",
) -> list[Clip]:
    """``per_word`` one-word clips of each word; ``label_of`` maps a word to its class."""
    out = []
    split_key = language_seed(split)
    for w, word in enumerate(words):
        for j in range(per_word):
            r = rng(seed, _WORD, language_seed(lang.name), split_key, w, j)
            voice = voices[int(r.integers(len(voices)))]
            audio, alignment = utterance([list(word)], voice, r, _snr(r, snr_db))
            key = f"{split}-{word}-{j:04d}"
            out.append(
                Clip(key, audio, label_of.get(word, "_unknown"), (word,), voice.id, alignment)
            )
    return out
