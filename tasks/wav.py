"""16-bit PCM WAV in and out of memory, with the standard library.

torchaudio 2.9+ moved audio I/O to TorchCodec; the tasks only need mono
16-bit WAV, which :mod:`wave` reads and writes without another dependency.
"""

from __future__ import annotations

import io
import wave

import numpy as np

from tasks.synth import SAMPLE_RATE


def encode(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Float samples in [-1, 1] → the bytes of a mono 16-bit WAV file."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    """The bytes of a mono 16-bit WAV file → float32 samples in [-1, 1]."""
    with wave.open(io.BytesIO(data), "rb") as src:
        if src.getsampwidth() != 2 or src.getnchannels() != 1:
            raise ValueError("expected mono 16-bit PCM WAV")
        frames = src.readframes(src.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32767
