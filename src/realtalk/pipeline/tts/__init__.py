"""Text to speech, and the chunker that feeds it clause by clause."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from realtalk.audio.pcm import Int16Array


class TextToSpeech(Protocol):
    """The TTS stage, shared by all sessions."""

    sample_rate: int

    def stream(self, text: str, *, speed: float = 1.0) -> AsyncIterator[Int16Array]:
        """Speech for ``text`` (a clause or sentence), int16 mono at ``sample_rate``, in
        pieces as they are synthesized."""
        ...
