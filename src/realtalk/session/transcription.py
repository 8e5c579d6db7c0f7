"""Transcribing the user's audio: live partials while they speak, speculatively during the
silence window, and the committed item.

While a turn is being spoken, its audio is transcribed again every ``PARTIAL_EVERY_MS`` of new
speech when the STT stage is idle (never queued: a busy machine just gets fewer partials, and
the work never falls behind real time). Words that two consecutive partials agree on are sent
as ``conversation.item.input_audio_transcription.delta`` events at once. Segments that ended
well before the audio does (``LOCK_AFTER_MS``) and were heard the same twice are locked: later
passes, and the final one, transcribe only the audio after them, with their text as the
prompt, so at the end of speech only the tail is left to do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from realtalk import metrics
from realtalk.audio.pcm import INTERNAL_RATE, Int16Array
from realtalk.core.config import SessionConfig, Transcription
from realtalk.core.items import Item
from realtalk.pipeline.remote import RemoteStageError
from realtalk.pipeline.stt import SpeechToText, Transcript
from realtalk.protocol.server_events import Event, ServerEvents

log = logging.getLogger("realtalk.transcription")

Spawn = Callable[[Coroutine[Any, Any, object]], "asyncio.Task[object]"]
PARTIAL_EVERY_MS = 1_000
"""Transcribe a turn in progress again after this much more audio."""
PARTIAL_MIN_MS = 2_000
"""No partial for a turn's first seconds: a short question is over before a partial would
show much, and a partial still running when the speaker stops delays the transcript that
the reply waits for (the STT stage does one job at a time)."""
PARTIAL_MIN_MS_TRANSCRIBING = 1_000
"""In a transcription session the text is the product and no reply waits for it, so
partials start sooner: a turn of a couple of seconds gets one while it is spoken."""
LOCK_AFTER_MS = 1_500
"""A segment that ended this long before the audio did is settled (if heard the same twice)."""


def failure_message(exc: Exception) -> str:
    """What the client is told: a remote stage's reason (safe to show), else nothing more."""
    if isinstance(exc, RemoteStageError):
        return f"Transcription failed: {exc}."
    return "Transcription failed."


@dataclass
class TurnText:
    """What is known of the text of the turn being spoken."""

    item_id: str
    locked_text: str = ""
    locked_samples: int = 0
    """Audio (from the turn's start) covered by ``locked_text``."""
    sent: str = ""
    """Text already sent as deltas."""
    previous: list[str] = field(default_factory=list)
    """The last partial's words (agreement is with these)."""
    previous_segments: tuple[tuple[float, str], ...] = ()
    partial: asyncio.Task[object] | None = None
    partial_at_ms: int = 0


class InputTranscriber:
    def __init__(
        self,
        stt: SpeechToText,
        events: ServerEvents,
        emit: Callable[[Event | None], None],
        spawn: Spawn,
        config: Callable[[], SessionConfig],
    ) -> None:
        self._stt = stt
        self._events = events
        self._emit = emit
        self._spawn = spawn
        self._config = config
        """The session's current configuration."""
        self._jobs: dict[str, asyncio.Task[object]] = {}
        self._speculation: tuple[int, asyncio.Task[object]] | None = None
        self._turn: TurnText | None = None
        self.live_partials = True
        """Transcribe turns while they are spoken (off: only at their end)."""
        self.on_stt: Callable[[float], None] | None = None
        """Told each whole turn's transcription time (the conversation record)."""

    def _settings(self) -> Transcription | None:
        """The session's ``input_audio_transcription`` (None: no transcript events)."""
        return self._config().transcription

    async def _run(self, audio: Int16Array, prompt: str | None = None) -> Transcript:
        settings = self._settings()
        hint = settings.prompt if settings else None
        joined = " ".join(p for p in (hint, prompt) if p) or None
        return await self._stt.transcribe(
            audio, prompt=joined, language=settings.language if settings else None
        )

    async def _run_turn(self, turn: TurnText | None, audio: Int16Array) -> Transcript:
        """The whole turn's text: the locked part as known, the rest transcribed now."""
        began = time.monotonic()
        if turn is None or not turn.locked_samples:
            result = await self._run(audio)
        else:
            tail = await self._run(audio[turn.locked_samples :], turn.locked_text)
            text = " ".join(t for t in (turn.locked_text, tail.text) if t)
            result = Transcript(text, len(audio) / INTERNAL_RATE)
        seconds = time.monotonic() - began
        metrics.observe("stt", seconds)
        if self.on_stt is not None:
            self.on_stt(seconds)
        return result

    # ---- the turn being spoken ----------------------------------------------------------
    def begin_turn(self, item_id: str) -> None:
        self._end_partials()
        self._turn = TurnText(item_id)

    def partial(self, item_id: str, audio_ms: int, audio: Callable[[], Int16Array]) -> None:
        """Maybe transcribe the turn so far (``audio_ms`` long; ``audio`` gives it)."""
        turn, config = self._turn, self._config()
        first_ms = PARTIAL_MIN_MS_TRANSCRIBING if config.type == "transcription" else PARTIAL_MIN_MS
        if (
            turn is None
            or not self.live_partials
            or turn.item_id != item_id
            or config.transcription is None
            or audio_ms < first_ms
            or audio_ms - turn.partial_at_ms < PARTIAL_EVERY_MS
            or (turn.partial is not None and not turn.partial.done())
            or self._stt.busy()
        ):
            return
        turn.partial_at_ms = audio_ms
        log.debug("partial transcription of %d ms", audio_ms)
        turn.partial = self._spawn(self._partial(turn, audio()))

    async def _partial(self, turn: TurnText, audio: Int16Array) -> None:
        start = turn.locked_samples
        try:
            result = await self._run(audio[start:], turn.locked_text or None)
        except Exception as exc:  # a partial is optional
            log.debug("partial transcription failed: %s", type(exc).__name__)
            return
        if self._turn is not turn:
            return
        seconds = (len(audio) - start) / INTERNAL_RATE
        segments = tuple((s.end, s.text.strip()) for s in result.segments)
        # Lock settled segments: ended long enough ago, and heard the same last time.
        for end, text in segments:
            if end > seconds - LOCK_AFTER_MS / 1000 or not any(
                text == t and abs(end - e) < 0.3 for e, t in turn.previous_segments
            ):
                break
            turn.locked_text = " ".join(t for t in (turn.locked_text, text) if t)
            turn.locked_samples = start + int(end * INTERNAL_RATE)
        turn.previous_segments = tuple(
            (e - (turn.locked_samples - start) / INTERNAL_RATE, t)
            for e, t in segments
            if start + int(e * INTERNAL_RATE) > turn.locked_samples
        )
        words = " ".join(t for t in (turn.locked_text, *[t for _, t in segments]) if t).split()
        known = " ".join(turn.locked_text.split())
        # Send what two partials agree on (a word at the audio's edge may still change).
        agreed: list[str] = []
        for mine, theirs in zip(words, turn.previous, strict=False):
            if mine != theirs:
                break
            agreed.append(mine)
        turn.previous = words
        stable = " ".join(agreed)
        if len(known) > len(stable) and known.startswith(stable):
            stable = known
        self._send(turn, stable)

    def _send(self, turn: TurnText, text: str) -> None:
        if not text.startswith(turn.sent) or len(text) <= len(turn.sent):
            return
        delta = text[len(turn.sent) :]
        turn.sent = text
        if self._settings() is not None:
            self._emit(self._events.transcription_delta(turn.item_id, 0, delta))

    def _end_partials(self) -> None:
        if self._turn is not None and self._turn.partial is not None:
            self._turn.partial.cancel()
        self._turn = None

    # ---- the silence window and the commit ------------------------------------------------
    def speculate(self, speech_end_ms: int, audio: Int16Array) -> asyncio.Task[object] | None:
        """Start on the speech that ended at ``speech_end_ms`` (once per such end); the new
        job, or None when one for this speech is already running."""
        if self._speculation is not None:
            if self._speculation[0] == speech_end_ms:
                return None
            self._speculation[1].cancel()
        task = self._spawn(self._run_turn(self._turn, audio))
        task.add_done_callback(lambda _: log.debug("speculative transcript ready"))
        self._speculation = (speech_end_ms, task)
        return task

    def adopt(self, speech_end_ms: int) -> asyncio.Task[object] | None:
        """The speculative job for this turn, if its speech is the turn's; else drop it."""
        speculation, self._speculation = self._speculation, None
        if speculation is None:
            return None
        if speculation[0] == speech_end_ms:
            return speculation[1]
        speculation[1].cancel()
        return None

    def start(
        self,
        item: Item,
        audio: Int16Array,
        previous: str | None,
        early: asyncio.Task[object] | None = None,
    ) -> None:
        """Transcribe a committed user item (or finish with the adopted early job)."""
        turn = self._turn if self._turn is not None and self._turn.item_id == item.id else None
        if turn is None:
            self._end_partials()
        self._jobs[item.id] = self._spawn(self._transcribe(item, audio, previous, early, turn))

    async def _transcribe(
        self,
        item: Item,
        audio: Int16Array,
        previous: str | None,
        early: asyncio.Task[object] | None,
        turn: TurnText | None,
    ) -> None:
        part = item.content[0]
        settings = self._settings()
        if turn is not None and self._turn is turn:
            self._end_partials()
        try:
            result = await early if early is not None else await self._run_turn(turn, audio)
            assert isinstance(result, Transcript)
        except Exception as exc:  # reported to the client
            log.warning("transcription failed: %s", type(exc).__name__)
            part.transcript = ""
            if settings is not None:
                self._emit(self._events.transcription_failed(item.id, 0, failure_message(exc)))
            self._emit(self._events.item_done(item, previous))
            return
        part.transcript = result.text
        if settings is not None:
            sent = turn.sent if turn is not None else ""
            if result.text.startswith(sent) and len(result.text) > len(sent):
                self._emit(self._events.transcription_delta(item.id, 0, result.text[len(sent) :]))
            self._emit(
                self._events.transcription_completed(item.id, 0, result.text, result.audio_seconds)
            )
        self._emit(self._events.item_done(item, previous))

    def start_parts(
        self,
        item: Item,
        parts: list[tuple[int, Int16Array]],
        previous: str | None,
        *,
        announce: bool = True,
    ) -> None:
        """Transcribe audio a client put in an item (``conversation.item.create``), part by
        part; ``announce``: send the transcription events and the item's ``done``."""
        self._jobs[item.id] = self._spawn(self._transcribe_parts(item, parts, previous, announce))

    async def _transcribe_parts(
        self,
        item: Item,
        parts: list[tuple[int, Int16Array]],
        previous: str | None,
        announce: bool,
    ) -> None:
        settings = self._settings() if announce else None
        for index, audio in parts:
            part = item.content[index]
            try:
                result = await self._run(audio)
            except Exception as exc:  # reported to the client
                log.warning("transcription failed: %s", type(exc).__name__)
                part.transcript = ""
                if settings is not None:
                    failed = self._events.transcription_failed(item.id, index, failure_message(exc))
                    self._emit(failed)
                continue
            part.transcript = result.text
            if settings is not None:
                self._emit(self._events.transcription_delta(item.id, index, result.text))
                self._emit(
                    self._events.transcription_completed(
                        item.id, index, result.text, result.audio_seconds
                    )
                )
        if announce:
            self._emit(self._events.item_done(item, previous))

    async def wait(self, items: Iterable[Item]) -> None:
        """Until these items' transcripts are known (the LLM reads text)."""
        for task in [self._jobs[i.id] for i in items if i.id in self._jobs]:
            await asyncio.shield(task)

    def clear(self) -> None:
        self._jobs.clear()
        self._speculation = None
        self._end_partials()
