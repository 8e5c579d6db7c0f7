"""The user's side of the audio: input audio in, voice activity and turn detection, typed
decisions out.

``UserTurns`` owns the input audio buffer, the session's VAD stream and the
:class:`TurnDetector`, and the session's audio timeline. It does no I/O and emits no events:
the session acts on its decisions (events, barge-in, speculation, commit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from realtalk.audio.pcm import INTERNAL_RATE, WIRE_RATE, Int16Array, StreamResampler
from realtalk.core.config import SessionConfig, TurnDetection
from realtalk.core.items import new_id
from realtalk.pipeline.vad import VADStream
from realtalk.session.input_audio import InputAudioBuffer
from realtalk.session.turns import (
    SEMANTIC_CHECK_MS,
    Eagerness,
    Pause,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    TurnDetector,
)

QUIET_KEEP_MS = 2_000
"""While nobody speaks, keep this much audio (for prefix padding), drop the rest."""
MAX_BUFFER_MS = 10 * 60_000
"""The input audio buffer holds at most this much (19.2 MB at 16 kHz). Past it, the oldest
audio of a turn goes; with turn detection off, a WebSocket append that would pass it is
refused instead, so the client learns to commit."""
TRIM_MS = 30_000
"""Past ``MAX_BUFFER_MS``, this much more goes at once, so long turns are not copied per frame."""
SPEECH_TAIL_MS = 160
"""Audio kept after the last speech frame when transcribing a turn before it has ended."""


@dataclass(frozen=True, slots=True)
class TurnBegan:
    item_id: str
    audio_start_ms: int
    kind: Literal["began"] = "began"


@dataclass(frozen=True, slots=True)
class TurnPaused:
    item_id: str
    speech_end_ms: int
    silence_ms: int
    kind: Literal["paused"] = "paused"


@dataclass(frozen=True, slots=True)
class TurnResumed:
    item_id: str
    kind: Literal["resumed"] = "resumed"


@dataclass(frozen=True, slots=True)
class TurnEnded:
    item_id: str
    speech_start_ms: int
    audio_end_ms: int
    """Includes the silence that ended the turn (as OpenAI reports it)."""
    speech_end_ms: int
    kind: Literal["ended"] = "ended"


@dataclass(frozen=True, slots=True)
class TurnTimedOut:
    """``idle_timeout_ms`` of quiet after a reply: the quiet becomes the user's turn."""

    item_id: str
    audio_start_ms: int
    audio_end_ms: int
    kind: Literal["timed_out"] = "timed_out"


Decision = TurnBegan | TurnPaused | TurnResumed | TurnEnded


class UserTurns:
    def __init__(self, config: SessionConfig, vad: VADStream) -> None:
        self.buffer = InputAudioBuffer()
        self.vad = vad
        self.detector: TurnDetector | None = None
        self.timeline_ms = 0
        """End of the last VAD frame on the session's audio timeline."""
        self.item_id: str | None = None
        """The user item of the turn in progress."""
        self.speech_start_ms = 0
        self._checked_at_ms = 0
        self._input_format = config.input_audio_format
        self._resampler = StreamResampler(WIRE_RATE[self._input_format], INTERNAL_RATE)
        self.configure(config)

    def configure(self, config: SessionConfig) -> None:
        if config.input_audio_format != self._input_format:
            self._input_format = config.input_audio_format
            self._resampler = StreamResampler(WIRE_RATE[self._input_format], INTERNAL_RATE)
        turn: TurnDetection | None = config.turn_detection
        if turn is None:
            self.detector = None
        elif self.detector is None:
            self.detector = TurnDetector(turn, self.vad.frame_ms)
        else:
            self.detector.configure(turn)

    @property
    def eagerness(self) -> Eagerness | None:
        """semantic_vad's settings (None with server VAD or no turn detection)."""
        return self.detector.eagerness if self.detector is not None else None

    # ---- audio in ------------------------------------------------------------------------
    def push_wire(self, samples: Int16Array) -> list[Decision]:
        """Audio at the session's input format's rate (WebSocket appends)."""
        return self.push(self._resampler.push(samples))

    def push(self, samples: Int16Array) -> list[Decision]:
        """16 kHz int16 user audio."""
        decisions: list[Decision] = []
        if samples.size == 0:
            return decisions
        self.buffer.append(samples)
        for probability in self.vad.push(samples):
            self.timeline_ms += self.vad.frame_ms
            if self.detector is not None:
                decision = self._decide(self.detector.feed(probability, self.timeline_ms))
                if decision is not None:
                    decisions.append(decision)
        if self.detector is not None and self.detector.state == "quiet":
            self.buffer.drop_before(self.buffer.end_ms - QUIET_KEEP_MS)
        elif self.buffer.duration_ms > MAX_BUFFER_MS:
            self.buffer.drop_before(self.buffer.end_ms - MAX_BUFFER_MS + TRIM_MS)
        return decisions

    def _decide(
        self, event: SpeechStarted | SpeechStopped | Pause | SpeechResumed | None
    ) -> Decision | None:
        match event:
            case None:
                return None
            case SpeechStarted():
                self.item_id = new_id("item")
                self.speech_start_ms = event.audio_start_ms
                self._checked_at_ms = 0
                return TurnBegan(self.item_id, event.audio_start_ms)
            case Pause():
                return TurnPaused(self._item(), event.speech_end_ms, event.silence_ms)
            case SpeechResumed():
                self._checked_at_ms = 0
                return TurnResumed(self._item())
            case SpeechStopped():
                return self._ended(event)

    def _item(self) -> str:
        if self.item_id is None:
            self.item_id = new_id("item")
        return self.item_id

    def _ended(self, event: SpeechStopped) -> TurnEnded:
        ended = TurnEnded(
            self._item(), self.speech_start_ms, event.audio_end_ms, event.speech_end_ms
        )
        self.item_id = None
        return ended

    # ---- the end-of-turn model (semantic_vad) ----------------------------------------------
    def check_due(self, pause: TurnPaused) -> bool:
        """Whether to ask the end-of-turn model now (every ``SEMANTIC_CHECK_MS`` of a pause)."""
        if self.eagerness is None or pause.silence_ms < self._checked_at_ms + SEMANTIC_CHECK_MS:
            return False
        self._checked_at_ms = pause.silence_ms
        return True

    def end_now(self, speech_end_ms: int) -> TurnEnded | None:
        """The model says the turn is complete: end it, if it is still the same pause."""
        if self.detector is None or self.detector.paused_at() != speech_end_ms:
            return None
        stopped = self.detector.end(self.timeline_ms)
        return self._ended(stopped) if stopped is not None else None

    def speaking(self) -> bool:
        """In a turn, with the voice on (not pausing)."""
        detector = self.detector
        return detector is not None and detector.state == "speaking" and self.paused_at() is None

    def paused_at(self) -> int | None:
        return self.detector.paused_at() if self.detector is not None else None

    def timed_out(self, timeout_ms: int) -> TurnTimedOut | None:
        """The idle timer ran out: the last ``timeout_ms`` of audio as a turn, unless the
        user is speaking."""
        if self.detector is not None and self.detector.state == "speaking":
            return None
        end_ms = self.buffer.end_ms
        return TurnTimedOut(new_id("item"), max(self.buffer.start_ms, end_ms - timeout_ms), end_ms)

    # ---- the buffer --------------------------------------------------------------------------
    def speech(self, speech_end_ms: int) -> Int16Array:
        """The turn's audio so far, up to a little past where the voice stopped."""
        return self.buffer.view(self.speech_start_ms, speech_end_ms + SPEECH_TAIL_MS)

    def recent(self) -> Int16Array:
        """The turn's audio up to now (speech and any pause: for the end-of-turn model and
        live partial transcripts)."""
        return self.buffer.view(self.speech_start_ms, None)

    def take(self, start_ms: int | None, end_ms: int | None) -> Int16Array:
        return self.buffer.take(start_ms, end_ms)

    def reset(self) -> None:
        """Forget the turn in progress (after a manual commit or a clear)."""
        self.vad.reset()
        if self.detector is not None:
            self.detector.reset()
        self.item_id = None

    def clear(self) -> None:
        self.buffer.clear()
        self.reset()

    def close(self) -> None:
        self.vad.close()
