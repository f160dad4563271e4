"""Formant speech synthesis at 16 kHz, from phone symbols and a speaker.

Not natural speech, but speech-like where the tasks need it: vowels are
harmonic series of a moving pitch shaped by three formant resonances,
fricatives are band-passed noise, stops are a closure then a burst, nasals a
low murmur. A speaker scales pitch, formants (vocal tract length) and rate,
so the same phone differs between speakers the way ABX and k-means care
about. Everything is vectorised NumPy: one second of audio costs about a
millisecond, so corpora are generated on the fly instead of stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
_NYQUIST_MARGIN = 7_000.0


@dataclass(frozen=True)
class Phone:
    """A phone-like unit: its kind and the acoustic targets that make it distinct."""

    symbol: str
    kind: str  # vowel | nasal | fricative | stop
    formants: tuple[float, float, float] = (0.0, 0.0, 0.0)
    noise_center: float = 0.0
    noise_width: float = 0.0
    duration: float = 0.1  # seconds at rate 1.0
    voiced: bool = True


def _vowel(symbol: str, f1: float, f2: float, f3: float) -> Phone:
    return Phone(symbol, "vowel", (f1, f2, f3), duration=0.14)


def _fricative(symbol: str, center: float, width: float) -> Phone:
    return Phone(symbol, "fricative", noise_center=center, noise_width=width, duration=0.11)


def _stop(symbol: str, center: float) -> Phone:
    return Phone(symbol, "stop", noise_center=center, noise_width=center / 2, duration=0.07)


def _nasal(symbol: str, f2: float) -> Phone:
    return Phone(symbol, "nasal", (280.0, f2, 2500.0), duration=0.08)


#: Every phone any language may use; single characters so words are plain strings.
PHONES: dict[str, Phone] = {
    p.symbol: p
    for p in (
        _vowel("i", 280, 2250, 2890),
        _vowel("e", 400, 2000, 2550),
        _vowel("E", 550, 1770, 2490),
        _vowel("a", 730, 1220, 2600),
        _vowel("O", 570, 840, 2410),
        _vowel("o", 450, 800, 2830),
        _vowel("u", 310, 870, 2250),
        _vowel("y", 250, 1750, 2150),
        _vowel("2", 370, 1500, 2200),
        _vowel("V", 620, 1170, 2390),
        _fricative("s", 5500, 1800),
        _fricative("S", 2900, 1000),
        _fricative("f", 4000, 3500),
        _fricative("x", 1500, 700),
        _fricative("h", 2500, 4000),
        _stop("p", 900),
        _stop("t", 4200),
        _stop("k", 2200),
        _nasal("m", 1000),
        _nasal("n", 1700),
    )
}


@dataclass(frozen=True)
class Speaker:
    """A voice: mean pitch, vocal-tract scale (formants), speaking rate, breathiness."""

    id: str
    f0: float
    tract: float
    rate: float
    breath: float


def make_speaker(identity: str, rng: np.random.Generator) -> Speaker:
    """A random adult voice; about half low-pitched, half high-pitched with shorter tracts."""
    high = bool(rng.random() < 0.5)
    f0 = rng.uniform(170, 250) if high else rng.uniform(90, 140)
    tract = (1.15 if high else 1.0) * rng.uniform(0.95, 1.05)
    return Speaker(
        identity,
        float(f0),
        float(tract),
        float(rng.uniform(0.8, 1.25)),
        float(rng.uniform(0.0, 0.08)),
    )


def resonance_gain(freqs: np.ndarray, formants: tuple[float, ...]) -> np.ndarray:
    """|H(f)| of a cascade of second-order resonances (bandwidth ~ 60 Hz + 6 % of F)."""
    gain = np.ones_like(freqs)
    for center in formants:
        bandwidth = 60.0 + 0.06 * center
        ratio = freqs / center
        gain /= np.sqrt((1 - ratio**2) ** 2 + (freqs * bandwidth / center**2) ** 2)
    return gain


def _fade(n: int, ramp: int = 80) -> np.ndarray:
    """A raised-cosine on/off ramp, so phone joins do not click."""
    env = np.ones(n)
    ramp = min(ramp, n // 2)
    if ramp > 0:
        rise = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp))
        env[:ramp], env[n - ramp :] = rise, rise[::-1]
    return env


def voiced(n: int, formants: tuple[float, ...], f0: float, rng: np.random.Generator) -> np.ndarray:
    """A harmonic series on a slightly falling, jittered pitch, shaped by ``formants``."""
    t = np.arange(n) / SAMPLE_RATE
    contour = f0 * (1.04 - 0.08 * t / max(t[-1], 1e-3)) * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(contour) / SAMPLE_RATE + rng.uniform(0, 2 * np.pi)
    harmonics = np.arange(1, int(_NYQUIST_MARGIN // (f0 * 1.05)) + 1)
    amps = resonance_gain(harmonics * f0, formants) / harmonics  # 1/k: glottal source tilt
    wave = (amps[:, None] * np.sin(harmonics[:, None] * phase[None, :])).sum(axis=0)
    return _unit_rms(wave)


def band_noise(n: int, center: float, width: float, rng: np.random.Generator) -> np.ndarray:
    """White noise kept within a Gaussian band around ``center`` (Hz), via the FFT."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum *= np.exp(-0.5 * ((freqs - center) / max(width, 1.0)) ** 2)
    return _unit_rms(np.fft.irfft(spectrum, n))


def _unit_rms(wave: np.ndarray) -> np.ndarray:
    return wave / (np.sqrt(np.mean(wave**2)) + 1e-9)


def phone_wave(phone: Phone, speaker: Speaker, rng: np.random.Generator) -> np.ndarray:
    """One phone spoken by ``speaker``; duration scaled by the speaker's rate and jittered."""
    n = int(phone.duration / speaker.rate * rng.uniform(0.85, 1.15) * SAMPLE_RATE)
    formants = tuple(f * speaker.tract for f in phone.formants)
    center = phone.noise_center * (0.5 + 0.5 * speaker.tract)
    if phone.kind == "vowel":
        wave = voiced(n, formants, speaker.f0, rng)
        wave += speaker.breath * 4 * band_noise(n, 1500, 1500, rng)
        return 0.5 * _unit_rms(wave) * _fade(n)
    if phone.kind == "nasal":
        return 0.2 * voiced(n, formants, speaker.f0, rng) * _fade(n)
    if phone.kind == "fricative":
        return 0.15 * band_noise(n, center, phone.noise_width, rng) * _fade(n, 240)
    closure = np.zeros(int(0.6 * n))
    burst = 0.3 * band_noise(n - closure.size, center, phone.noise_width, rng)
    return np.concatenate([closure, burst * np.exp(-np.linspace(0, 5, burst.size))])


def utterance(
    words: list[list[str]], speaker: Speaker, rng: np.random.Generator, snr_db: float | None
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """Speak ``words`` (lists of phone symbols) with short pauses; return audio and alignment.

    The alignment lists ``(phone, start s, end s)``: ABX needs where each phone is.
    """
    pieces: list[np.ndarray] = [np.zeros(int(0.05 * SAMPLE_RATE))]
    alignment: list[tuple[str, float, float]] = []
    cursor = pieces[0].size
    for w, word in enumerate(words):
        if w:
            pause = np.zeros(int(rng.uniform(0.03, 0.12) * SAMPLE_RATE))
            pieces.append(pause)
            cursor += pause.size
        for symbol in word:
            wave = phone_wave(PHONES[symbol], speaker, rng)
            alignment.append((symbol, cursor / SAMPLE_RATE, (cursor + wave.size) / SAMPLE_RATE))
            pieces.append(wave)
            cursor += wave.size
    pieces.append(np.zeros(int(0.05 * SAMPLE_RATE)))
    audio = np.concatenate(pieces)
    if snr_db is not None:
        audio = audio + background_noise(audio, snr_db, rng)
    return (0.3 * audio / (np.abs(audio).max() + 1e-9)).astype(np.float32), alignment


def background_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Pink-ish noise (1/sqrt(f) spectrum) at ``snr_db`` below the speech power."""
    spectrum = np.fft.rfft(rng.standard_normal(audio.size))
    freqs = np.fft.rfftfreq(audio.size, 1 / SAMPLE_RATE)
    noise = np.fft.irfft(spectrum / np.sqrt(np.maximum(freqs, 20.0)), audio.size)
    speech_power = np.mean(audio**2)
    return noise * np.sqrt(speech_power / (np.mean(noise**2) + 1e-12) / 10 ** (snr_db / 10))
