"""End of turn: does the user's speech so far sound finished, or are they only pausing?

A semantic check beside the VAD's silence timer: after a short pause, a model that hears the
words and the intonation tells "What's the weather in Paris?" (done) from "I'd like to order a
pizza and, um" (more to come), so the reply can start early or wait longer.
"""

from __future__ import annotations

from typing import Protocol

from realtalk.audio.pcm import Int16Array


class EndOfTurn(Protocol):
    """The end-of-turn stage, shared by all sessions."""

    async def probability(self, samples: Int16Array) -> float:
        """16 kHz int16 mono audio of the user's turn so far (ending with the short trailing
        silence); the probability that the turn is complete."""
        ...
