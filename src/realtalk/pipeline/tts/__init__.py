"""Text to speech, and the chunker that feeds it clause by clause."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from realtalk.audio.pcm import Int16Array


class TextToSpeech(Protocol):
    """The TTS stage, shared by all sessions."""

    sample_rate: int

    def stream(
        self, text: str, *, speed: float = 1.0, voice: str | None = None
    ) -> AsyncIterator[Int16Array]:
        """Speech for ``text`` (a clause or sentence), int16 mono at ``sample_rate``, in
        pieces as they are synthesized. ``voice``: the session's voice name, for a stage that
        has several (the local Piper stage has one and ignores it)."""
        ...
