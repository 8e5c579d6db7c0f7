"""PCM helpers and the wire formats: ``pcm16`` (24 kHz), ``g711_ulaw`` / ``g711_alaw`` (8 kHz)."""

from __future__ import annotations

import struct
import sys

import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped]

from realtalk.core.formats import FORMATS, AudioFormat

if sys.version_info >= (3, 13):  # audioop left the standard library in 3.13
    import audioop_lts as audioop  # pragma: no cover
else:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

WireFormat = AudioFormat
Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]

WIRE_RATE: dict[WireFormat, int] = {name: spec.rate for name, spec in FORMATS.items()}
INTERNAL_RATE = 16_000
"""The rate VAD and STT work at."""


def bytes_per_ms(fmt: WireFormat) -> float:
    """Bytes of wire audio per millisecond (mono)."""
    spec = FORMATS[fmt]
    return spec.rate * spec.sample_bytes / 1000


def decode_wire(data: bytes, fmt: WireFormat) -> Int16Array:
    """Wire bytes → int16 samples at ``WIRE_RATE[fmt]``."""
    if fmt == "g711_ulaw":
        data = audioop.ulaw2lin(data, 2)
    elif fmt == "g711_alaw":
        data = audioop.alaw2lin(data, 2)
    elif len(data) % 2:
        data = data[:-1]
    samples: Int16Array = np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)
    return samples


def encode_wire(samples: Int16Array, fmt: WireFormat) -> bytes:
    """int16 samples at ``WIRE_RATE[fmt]`` → wire bytes."""
    raw = samples.astype("<i2", copy=False).tobytes()
    if fmt == "g711_ulaw":
        return audioop.lin2ulaw(raw, 2)
    if fmt == "g711_alaw":
        return audioop.lin2alaw(raw, 2)
    return raw


def to_float(samples: Int16Array) -> Float32Array:
    return (samples.astype(np.float32) / 32768.0).astype(np.float32, copy=False)


def to_int16(samples: Float32Array) -> Int16Array:
    out: Int16Array = np.clip(samples * 32768.0, -32768, 32767).astype(np.int16)
    return out


class StreamResampler:
    """Streaming int16 mono resampler (libsoxr); feed chunks, ``flush`` at the end."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")
            if in_rate != out_rate
            else None
        )

    def push(self, samples: Int16Array) -> Int16Array:
        if self._stream is None:
            return samples
        out: Int16Array = self._stream.resample_chunk(samples)
        return out

    def flush(self) -> Int16Array:
        if self._stream is None:
            return np.zeros(0, dtype=np.int16)
        out: Int16Array = self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        return out


def resample(samples: Int16Array, in_rate: int, out_rate: int) -> Int16Array:
    """Resample a whole buffer at once."""
    if in_rate == out_rate:
        return samples
    out: Int16Array = np.asarray(
        soxr.resample(samples, in_rate, out_rate, quality="HQ"), dtype=np.int16
    )
    return out


def rms_dbfs(samples: Int16Array) -> float:
    """Loudness of a buffer in dBFS (−inf for silence)."""
    if samples.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(samples.astype(np.float64)))))
    return 20 * float(np.log10(rms / 32768.0)) if rms > 0 else float("-inf")


def wav_header(rate: int, data_bytes: int | None = None) -> bytes:
    """A 16-bit mono WAV header; ``data_bytes`` None: length unknown (a stream), written as
    0xFFFFFFFF as streaming servers do."""
    size = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return (
        struct.pack("<4sI4s", b"RIFF", riff, b"WAVE")
        + struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16)
        + struct.pack("<4sI", b"data", size)
    )


def wav_bytes(samples: Int16Array, rate: int) -> bytes:
    """A whole 16-bit mono WAV file."""
    data = samples.astype("<i2", copy=False).tobytes()
    return wav_header(rate, len(data)) + data
