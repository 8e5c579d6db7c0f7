"""Turn detection: speech probabilities on a timeline in, speech start/stop decisions out.

A pure state machine (no I/O, no clock of its own) so it can be tested on scripted timelines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from realtalk.session.config import TurnDetection

log = logging.getLogger("realtalk.turns")

TurnState = Literal["quiet", "speaking"]

MIN_SPEECH_MS = 64
"""Speech shorter than this (a click, a cough's onset) does not start a turn."""
HYSTERESIS = 0.15
"""Speech ends below ``threshold - HYSTERESIS``: word gaps dip but do not end a turn."""

# semantic_vad has no semantic model here yet: its eagerness picks a silence window.
SEMANTIC_SILENCE_MS = {"low": 1200, "medium": 700, "auto": 700, "high": 400}


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


TurnEvent = SpeechStarted | SpeechStopped | Pause


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
        if config.type == "semantic_vad":
            self.silence_duration_ms = SEMANTIC_SILENCE_MS[config.eagerness]
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
        self._silence_ms = 0
        return None
