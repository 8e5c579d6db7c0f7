"""The input audio buffer: uncommitted user audio (16 kHz int16) on the session's timeline."""

from __future__ import annotations

import numpy as np

from realtalk.audio.pcm import INTERNAL_RATE, Int16Array

_SAMPLES_PER_MS = INTERNAL_RATE // 1000


class InputAudioBuffer:
    """Audio since the last commit or clear. Times are milliseconds since the session's first
    audio, the timeline ``audio_start_ms`` / ``audio_end_ms`` are reported on."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._start_sample = 0

    @property
    def start_ms(self) -> int:
        return self._start_sample // _SAMPLES_PER_MS

    @property
    def end_ms(self) -> int:
        return self.end_sample // _SAMPLES_PER_MS

    @property
    def end_sample(self) -> int:
        return self._start_sample + len(self._data) // 2

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms

    def append(self, samples: Int16Array) -> None:
        self._data += samples.astype("<i2", copy=False).tobytes()

    def view(self, start_ms: int | None = None, end_ms: int | None = None) -> Int16Array:
        """A copy of the audio between two timeline points (clamped to what is buffered)."""
        first = self._offset(start_ms, 0)
        last = self._offset(end_ms, len(self._data) // 2)
        return np.frombuffer(bytes(self._data[first * 2 : last * 2]), dtype="<i2").astype(np.int16)

    def take(self, start_ms: int | None = None, end_ms: int | None = None) -> Int16Array:
        """Remove and return the audio up to ``end_ms`` (from ``start_ms``)."""
        audio = self.view(start_ms, end_ms)
        self.drop_before(end_ms if end_ms is not None else self.end_ms)
        return audio

    def drop_before(self, ms: int) -> None:
        cut = self._offset(ms, 0)
        del self._data[: cut * 2]
        self._start_sample += cut

    def clear(self) -> None:
        self.drop_before(self.end_ms + 1)

    def _offset(self, ms: int | None, default: int) -> int:
        if ms is None:
            return default
        return max(0, min(len(self._data) // 2, ms * _SAMPLES_PER_MS - self._start_sample))
