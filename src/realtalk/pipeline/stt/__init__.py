"""Speech to text: 16 kHz int16 mono audio in, a transcript with timed segments out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from realtalk.audio.pcm import Int16Array


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    """Seconds from the start of the transcribed audio."""
    end: float
    text: str


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    audio_seconds: float
    """Length of the audio that was transcribed."""
    segments: tuple[Segment, ...] = ()
    """Timed pieces of ``text`` (empty when the engine gives no timestamps)."""


class SpeechToText(Protocol):
    """The STT stage, shared by all sessions."""

    async def transcribe(
        self, samples: Int16Array, *, prompt: str | None = None, language: str | None = None
    ) -> Transcript:
        """Transcribe 16 kHz int16 mono audio; ``prompt`` is earlier text that conditions the
        decoder (Whisper's initial prompt)."""
        ...

    def busy(self) -> bool:
        """True while a transcription runs or waits (optional work should then be skipped)."""
        ...
