"""Speculative replies: start answering during the silence window, show nothing until the turn
is really over.

With server VAD the protocol ends a turn only after ``silence_duration_ms`` of silence. Once the
speculative transcript of the speech so far is ready (``InputTranscriber.speculate``), the
session starts the reply it would start at commit — same transcript, prompt and settings — but
everything the reply does stays here: its events, its audio, the items it would add to the
conversation and the server-side tools it would start. At most the first spoken piece is
synthesized; then the reply waits. When the turn is committed and nothing that the reply was
computed from has changed, :meth:`SpeculativeReply.release` plays all of it back in order, as
if it had been computed then, and lets the reply run on. When speech resumes, the reply is
cancelled and everything held is dropped: no event leaks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from realtalk.audio.pcm import Int16Array
from realtalk.core.config import SessionConfig
from realtalk.core.items import ContentPart, Item
from realtalk.pipeline.stt import Transcript
from realtalk.protocol.server_events import Event
from realtalk.session.conversation import Conversation
from realtalk.session.responses import AudioOutput, ResponseRun, settle

log = logging.getLogger("realtalk.speculation")


@dataclass(frozen=True, slots=True)
class Basis:
    """What a reply is computed from; a speculative reply is kept only if this is unchanged."""

    speech_end_ms: int
    """Which speech the transcript is of (the speculation key)."""
    item_id: str
    """The user item the turn will commit."""
    transcript_job: asyncio.Task[object]
    config: SessionConfig
    conversation: tuple[tuple[Any, ...], ...]
    """:func:`fingerprint` of the conversation before the user item."""


def fingerprint(items: list[Item]) -> tuple[tuple[Any, ...], ...]:
    """Everything of the conversation that reaches the LLM's prompt."""
    return tuple(
        (i.id, i.type, i.role, i.text_for_model(), i.call_id, i.name, i.arguments, i.output)
        for i in items
    )


class HeldAudio:
    """An :class:`AudioOutput` that keeps the reply's audio until release, and makes the reply
    wait after its first piece (so a dropped speculation costs one clause of synthesis)."""

    def __init__(self, output: AudioOutput, released: asyncio.Event) -> None:
        self.rate = output.rate
        self._output = output
        self._released = released
        self._calls: list[tuple[str, Any]] = []

    def begin(self, response_id: str, item_id: str) -> None:
        if self._released.is_set():
            self._output.begin(response_id, item_id)
        else:
            self._calls.append(("begin", (response_id, item_id)))

    async def write(self, samples: Int16Array) -> None:
        if not self._released.is_set():
            self._calls.append(("write", samples))
            await self._released.wait()
            return
        await self._output.write(samples)

    def end(self) -> None:
        if self._released.is_set():
            self._output.end()
        else:
            self._calls.append(("end", None))

    def is_playing(self) -> bool:
        return self._released.is_set() and self._output.is_playing()

    def clear(self) -> tuple[str, str, int] | None:
        return self._output.clear() if self._released.is_set() else None

    async def replay(self) -> None:
        calls, self._calls = self._calls, []
        for name, args in calls:
            if name == "begin":
                self._output.begin(*args)
            elif name == "write":
                await self._output.write(args)
            else:
                self._output.end()


@dataclass
class SpeculativeReply:
    basis: Basis
    insert: Callable[[Item], str | None]
    """The conversation's ``insert`` (deferred until release)."""
    run: ResponseRun | None = None
    task: asyncio.Task[None] | None = None
    audio: HeldAudio | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)
    _events: list[Event] = field(default_factory=list)
    _deferred: list[Callable[[], None]] = field(default_factory=list)
    _emit: Callable[[Event | None], None] | None = None
    _last_id: str | None = None

    def __post_init__(self) -> None:
        self._last_id = self.basis.item_id

    # ---- what the held reply is given instead of the session's own hooks ----------------
    def emit(self, event: Event | None) -> None:
        if event is None:
            return
        if self._emit is not None:
            self._emit(event)
        else:
            self._events.append(event)

    def add_item(self, item: Item) -> str | None:
        """Add the reply's item to the conversation (at release); the id it follows."""
        if self.released.is_set():
            return self.insert(item)
        previous = self._last_id
        self._last_id = item.id
        self._deferred.append(lambda: self._check_insert(item, previous))
        return previous

    def _check_insert(self, item: Item, previous: str | None) -> None:
        actual = self.insert(item)
        if actual != previous:  # the basis check makes this impossible; say so if not
            log.error("speculative item %s follows %s, not %s", item.id, actual, previous)

    def defer(self, action: Callable[[], None]) -> None:
        """Run ``action`` now if released, else at release (in order)."""
        if self.released.is_set():
            action()
        else:
            self._deferred.append(action)

    async def gate(self) -> None:
        """Where the reply waits after its first piece until the turn is committed."""
        await self.released.wait()

    # ---- the session's side ------------------------------------------------------------
    def hold(self, run: ResponseRun) -> None:
        """Give ``run`` this reply's hooks instead of the session's: events, items, audio and
        server-side tool calls are kept here until :meth:`release`."""
        self.run = run
        run.emit = self.emit
        run.add_item = self.add_item
        run.gate = self.gate
        if run.audio_output is not None:
            self.audio = HeldAudio(run.audio_output, self.released)
            run.audio_output = self.audio
        start_tool = run.on_function_call
        if start_tool is not None:
            run.on_function_call = lambda item: self.defer(lambda: start_tool(item))

    async def release(self, emit: Callable[[Event | None], None]) -> None:
        """Play back everything held, in order, then let the reply go on live."""
        for action in self._deferred:
            action()
        self._deferred.clear()
        events, self._events = self._events, []
        for event in events:
            emit(event)
        self._emit = emit
        if self.audio is not None:
            await self.audio.replay()
        self.released.set()
        log.debug("speculative reply kept (%d events held)", len(events))


class ReplySpeculator:
    """The session's speculative reply: started when a pause's transcript is ready, kept or
    dropped when the turn ends."""

    def __init__(
        self,
        *,
        conversation: Conversation,
        config: Callable[[], SessionConfig],
        spawn: Callable[[Coroutine[Any, Any, object]], asyncio.Task[object]],
        may_start: Callable[[int], bool],
        start: Callable[[SpeculativeReply, list[Item]], asyncio.Task[None]],
    ) -> None:
        self._conversation = conversation
        self._config = config
        self._spawn = spawn
        self._may_start = may_start
        self._start = start
        self.enabled = True
        self.current: SpeculativeReply | None = None

    def basis(
        self, speech_end_ms: int, item_id: str, job: asyncio.Task[object] | None
    ) -> Basis | None:
        """What a reply for this turn is computed from (None without a transcript job)."""
        if job is None:
            return None
        return Basis(
            speech_end_ms, item_id, job, self._config(), fingerprint(list(self._conversation))
        )

    async def start_after(
        self, speech_end_ms: int, item_id: str, job: asyncio.Task[object]
    ) -> None:
        """Once the speculative transcript is ready, start the reply a commit would start."""
        try:
            result = await asyncio.shield(job)
        except Exception:  # the commit reports a failed transcription
            return
        if (
            self.current is not None
            or not self._may_start(speech_end_ms)
            or not isinstance(result, Transcript)
            or not result.text
        ):
            return
        basis = self.basis(speech_end_ms, item_id, job)
        assert basis is not None
        user_item = Item(
            "message",
            id=item_id,
            role="user",
            content=[ContentPart("input_audio", transcript=result.text)],
        )
        spec = SpeculativeReply(basis, self._conversation.insert)
        self.current = spec
        spec.task = self._start(spec, [*self._conversation, user_item])

    def take(self, basis: Basis | None) -> SpeculativeReply | None:
        """The held reply if it was computed from exactly ``basis``; else it is dropped."""
        spec, self.current = self.current, None
        if spec is not None and spec.basis == basis:  # a Task compares by identity
            log.debug("speculative reply kept")
            return spec
        if spec is not None:
            log.debug("speculative reply dropped: its basis changed")
        self._discard(spec)
        return None

    def drop(self) -> None:
        spec, self.current = self.current, None
        self._discard(spec)

    def _discard(self, spec: SpeculativeReply | None) -> None:
        """Cancel a reply that will not be used: nothing it held is ever sent."""
        if spec is not None and spec.task is not None:
            spec.task.cancel()
            self._spawn(settle(spec.task))
