"""Turn detection: speech probabilities on a timeline in, speech start/stop decisions out.

A pure state machine (no I/O, no clock of its own) so it can be tested on scripted timelines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from realtalk.core.config import TurnDetection

log = logging.getLogger("realtalk.turns")

TurnState = Literal["quiet", "speaking"]

MIN_SPEECH_MS = 64
"""Speech shorter than this (a click, a cough's onset) does not start a turn."""
HYSTERESIS = 0.15
"""Speech ends below ``threshold - HYSTERESIS``: word gaps dip but do not end a turn."""

SEMANTIC_CHECK_MS = 192
"""semantic_vad: ask the end-of-turn model once the speaker has paused this long, and again
after each further ``SEMANTIC_CHECK_MS`` of silence."""


@dataclass(frozen=True, slots=True)
class Eagerness:
    complete_above: float
    """The end-of-turn model's probability above which the turn is over."""
    longest_silence_ms: int
    """The turn ends after this much silence whatever the model says."""


EAGERNESS = {
    "high": Eagerness(0.3, 600),
    "auto": Eagerness(0.5, 1000),
    "medium": Eagerness(0.5, 1000),
    "low": Eagerness(0.7, 2000),
}


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio_start_ms: int
    """Includes ``prefix_padding_ms`` before the first speech frame (as OpenAI reports it)."""
    kind: Literal["speech_started"] = "speech_started"


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    audio_end_ms: int
    """Includes the silence window that ended the turn (as OpenAI reports it)."""
    speech_end_ms: int
    """Where the voice itself stopped."""
    kind: Literal["speech_stopped"] = "speech_stopped"


@dataclass(frozen=True, slots=True)
class Pause:
    """The speaker has been silent ``silence_ms`` but the turn is not over yet (a hint for
    work that can start early)."""

    speech_end_ms: int
    silence_ms: int
    kind: Literal["pause"] = "pause"


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    """Speech came back during a pause: the turn goes on, and early work for it is stale."""

    kind: Literal["speech_resumed"] = "speech_resumed"


TurnEvent = SpeechStarted | SpeechStopped | Pause | SpeechResumed


class TurnDetector:
    def __init__(self, config: TurnDetection, frame_ms: int = 32) -> None:
        self.frame_ms = frame_ms
        self.state: TurnState = "quiet"
        self.configure(config)
        self._speech_run_ms = 0
        self._silence_ms = 0
        self._speech_end_ms = 0

    def configure(self, config: TurnDetection) -> None:
        self.threshold = config.threshold
        self.prefix_padding_ms = config.prefix_padding_ms
        self.eagerness: Eagerness | None = None
        if config.type == "semantic_vad":
            self.eagerness = EAGERNESS[config.eagerness]
            self.silence_duration_ms = self.eagerness.longest_silence_ms
        else:
            self.silence_duration_ms = config.silence_duration_ms

    def _set_state(self, state: TurnState) -> None:
        if state != self.state:
            log.debug("turn %s -> %s", self.state, state)
            self.state = state

    def reset(self) -> None:
        self._set_state("quiet")
        self._speech_run_ms = self._silence_ms = 0

    def feed(self, probability: float, frame_end_ms: int) -> TurnEvent | None:
        """One VAD frame ending at ``frame_end_ms`` on the session's audio timeline."""
        if self.state == "quiet":
            if probability >= self.threshold:
                self._speech_run_ms += self.frame_ms
                if self._speech_run_ms >= MIN_SPEECH_MS:
                    first_speech_ms = frame_end_ms - self._speech_run_ms
                    self._set_state("speaking")
                    self._silence_ms = 0
                    return SpeechStarted(max(0, first_speech_ms - self.prefix_padding_ms))
            else:
                self._speech_run_ms = 0
            return None
        if probability < max(0.01, self.threshold - HYSTERESIS):
            if self._silence_ms == 0:
                self._speech_end_ms = frame_end_ms - self.frame_ms
            self._silence_ms += self.frame_ms
            if self._silence_ms >= self.silence_duration_ms:
                self._set_state("quiet")
                self._speech_run_ms = 0
                return SpeechStopped(frame_end_ms, self._speech_end_ms)
            return Pause(self._speech_end_ms, self._silence_ms)
        if self._silence_ms:
            self._silence_ms = 0
            return SpeechResumed()
        return None

    def paused_at(self) -> int | None:
        """Where the voice stopped, while the speaker is pausing (else None)."""
        if self.state == "speaking" and self._silence_ms:
            return self._speech_end_ms
        return None

    def end(self, frame_end_ms: int) -> SpeechStopped | None:
        """End the turn now (the end-of-turn model says it is complete), if still paused."""
        if self.paused_at() is None:
            return None
        self._set_state("quiet")
        self._speech_run_ms = 0
        return SpeechStopped(frame_end_ms, self._speech_end_ms)
