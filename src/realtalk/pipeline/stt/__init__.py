"""Speech to text."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    audio_seconds: float
    """Length of the audio that was transcribed."""
