"""Transcribing the user's committed audio, and speculatively the speech still in its silence
window, so the transcript is ready sooner when the turn does end there."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

from realtalk.audio.pcm import Int16Array
from realtalk.pipeline.stt import Transcript
from realtalk.protocol.server_events import Event, ServerEvents
from realtalk.session.config import Transcription
from realtalk.session.items import Item

log = logging.getLogger("realtalk.transcription")

Spawn = Callable[[Coroutine[Any, Any, object]], "asyncio.Task[object]"]


class SpeechToText(Protocol):
    async def transcribe(
        self, samples: Int16Array, *, prompt: str | None = None, language: str | None = None
    ) -> Transcript: ...


class InputTranscriber:
    def __init__(
        self,
        stt: SpeechToText,
        events: ServerEvents,
        emit: Callable[[Event | None], None],
        spawn: Spawn,
        settings: Callable[[], Transcription | None],
    ) -> None:
        self._stt = stt
        self._events = events
        self._emit = emit
        self._spawn = spawn
        self._settings = settings
        """The session's current ``input_audio_transcription`` (None: no transcript events)."""
        self._jobs: dict[str, asyncio.Task[object]] = {}
        self._speculation: tuple[int, asyncio.Task[object]] | None = None

    async def _run(self, audio: Int16Array) -> Transcript:
        settings = self._settings()
        return await self._stt.transcribe(
            audio,
            prompt=settings.prompt if settings else None,
            language=settings.language if settings else None,
        )

    def speculate(self, speech_end_ms: int, audio: Int16Array) -> None:
        """Start on the speech that ended at ``speech_end_ms`` (once per such end)."""
        if self._speculation is not None:
            if self._speculation[0] == speech_end_ms:
                return
            self._speculation[1].cancel()
        self._speculation = (speech_end_ms, self._spawn(self._run(audio)))

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
        self._jobs[item.id] = self._spawn(self._transcribe(item, audio, previous, early))

    async def _transcribe(
        self,
        item: Item,
        audio: Int16Array,
        previous: str | None,
        early: asyncio.Task[object] | None,
    ) -> None:
        part = item.content[0]
        settings = self._settings()
        try:
            result = await early if early is not None else await self._run(audio)
            assert isinstance(result, Transcript)
        except Exception as exc:  # reported to the client
            log.warning("transcription failed: %s", type(exc).__name__)
            part.transcript = ""
            if settings is not None:
                self._emit(self._events.transcription_failed(item.id, 0, "Transcription failed."))
            self._emit(self._events.item_done(item, previous))
            return
        part.transcript = result.text
        if settings is not None:
            if result.text:
                self._emit(self._events.transcription_delta(item.id, 0, result.text))
            self._emit(
                self._events.transcription_completed(item.id, 0, result.text, result.audio_seconds)
            )
        self._emit(self._events.item_done(item, previous))

    async def wait(self, items: Iterable[Item]) -> None:
        """Until these items' transcripts are known (the LLM reads text)."""
        for task in [self._jobs[i.id] for i in items if i.id in self._jobs]:
            await asyncio.shield(task)

    def clear(self) -> None:
        self._jobs.clear()
        self._speculation = None
