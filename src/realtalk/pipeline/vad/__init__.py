"""Voice activity detection: speech probabilities per 32 ms frame of 16 kHz audio."""

from __future__ import annotations

from typing import Protocol

from realtalk.audio.pcm import Int16Array


class VADStream(Protocol):
    """One session's stateful detector: push 16 kHz int16 audio, get one speech probability
    per complete frame of ``frame_ms``."""

    frame_ms: int

    def push(self, samples: Int16Array) -> list[float]: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


class VoiceActivityDetector(Protocol):
    """The VAD stage: shared weights, a fresh stream per session."""

    def stream(self) -> VADStream: ...
