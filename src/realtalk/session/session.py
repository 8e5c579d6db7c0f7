"""A Realtime session: the coordinator of configuration, conversation, user turns and responses.

Transport-agnostic: a transport feeds client event text (:meth:`receive`) and, for WebRTC,
decoded audio (:meth:`push_audio`); it drains :attr:`outbox` for server events. The audio's
way through a session, module by module: ``user_turns`` (input audio, VAD, turn detection and
the end-of-turn model → typed decisions), ``transcription`` (live partials, the speculative
and final transcripts), ``speculation`` (the reply started in the silence window, held until
the commit), ``responses`` (one reply: LLM → chunker → TTS → events and audio). This module
acts on the decisions: events, barge-in, commits, responses, the idle timer. Every background
task belongs to the session and ends with :meth:`aclose`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Coroutine
from typing import Any, Literal, assert_never

from realtalk import metrics
from realtalk.audio.pcm import INTERNAL_RATE, WIRE_RATE, Int16Array, decode_wire, resample
from realtalk.core import commands as cmd
from realtalk.core.config import SessionConfig
from realtalk.core.items import ContentPart, Item, ResponseRecord, new_id
from realtalk.core.mcp import McpChoice
from realtalk.pipeline.llm import LLMRequest
from realtalk.pipeline.models import Models
from realtalk.protocol import client_events
from realtalk.protocol.errors import ProtocolError
from realtalk.protocol.server_events import Event, ServerEvents
from realtalk.records.recorder import NullRecorder, Recorder
from realtalk.session.conversation import Conversation
from realtalk.session.mcp import McpTools
from realtalk.session.outbox import Outbox, serialize
from realtalk.session.prompt import PromptWindow, system_messages, tool_specs
from realtalk.session.responses import AudioOutput, CancelReason, ResponseRun, settle
from realtalk.session.server_tools import ServerToolCalls
from realtalk.session.speculation import ReplySpeculator, SpeculativeReply
from realtalk.session.transcription import InputTranscriber
from realtalk.session.user_turns import (
    MAX_BUFFER_MS,
    Decision,
    TurnBegan,
    TurnEnded,
    TurnPaused,
    TurnResumed,
    UserTurns,
)
from realtalk.tools import ToolRegistry

log = logging.getLogger("realtalk.session")

Transport = Literal["websocket", "webrtc"]
APPEND_SLICE_MS = 1_000
"""An append's audio goes to VAD this much at a time (a few milliseconds of work each)."""
DECODE_OFF_LOOP_BYTES = 64 * 1024
"""Client events larger than this (or naming tools) are decoded in a worker thread."""


def _heavy(raw: str | bytes) -> bool:
    """Whether to decode an event off the event loop: checking tool schemas takes
    milliseconds each, and large events take long to parse and validate."""
    if len(raw) > DECODE_OFF_LOOP_BYTES:
        return True
    return ('"tools"' if isinstance(raw, str) else b'"tools"') in raw  # type: ignore[operator]


SPECULATE_AFTER_MS = 64
"""Start transcribing (and then replying) this far into a pause, before the turn is over.
Earlier costs more discarded work on mid-sentence pauses; later leaves less of the silence
window to hide the models' time in."""


def read_ahead(llm: object, config: SessionConfig) -> None:
    """Have a local LLM read a session's prompt start (instructions and tools) into its cache
    now, in the background, instead of after the user's first turn (~560 tokens for the page's
    five tools: seconds on a small CPU). A no-op for an LLM that cannot (a remote one)."""
    prefill = getattr(llm, "prefill", None)
    if prefill is None:
        return
    choice = config.tool_choice if isinstance(config.tool_choice, str) else "auto"
    request = LLMRequest(system_messages(config.instructions), tool_specs(config), choice)
    prefill(request)


class RealtimeSession:
    def __init__(
        self,
        *,
        config: SessionConfig,
        generation: Literal["beta", "ga"],
        models: Models,
        session_id: str,
        expires_at: int,
        transport: Transport = "websocket",
        audio_output: AudioOutput | None = None,
        tools: ToolRegistry | None = None,
    ) -> None:
        self.config = config
        self.tools = tools
        """Tools marked for server-side execution run here, with no client round trip."""
        self.generation = generation
        self.models = models
        self.session_id = session_id
        self.transport = transport
        self.audio_output = audio_output
        self.events = ServerEvents(generation, session_id, expires_at)
        self.outbox = Outbox()
        self.recorder: Recorder = NullRecorder()
        """The conversation's record (``realtalk.records``); the transport sets it."""
        self.listeners: list[Outbox] = []
        """Extra copies of every server event (a sideband WebSocket attached to a call)."""
        self.conversation = Conversation()
        self.prompt_window = PromptWindow()
        self.conversation_id = new_id("conv")
        self.user = UserTurns(config, models.vad.stream())
        self._active: ResponseRun | None = None
        self._active_task: asyncio.Task[None] | None = None
        self._side: dict[str, asyncio.Task[None]] = {}
        """Out-of-band responses (``conversation: "none"``) in progress, by response id: they
        may run beside the default conversation's response."""
        self._tasks: set[asyncio.Task[object]] = set()
        self._idle_task: asyncio.Task[None] | None = None
        self.transcriber = InputTranscriber(
            models.stt, self.events, self.emit, self._spawn, lambda: self.config
        )
        self.transcriber.on_stt = lambda seconds: self.recorder.stage("stt", seconds)
        self.server_tools = ServerToolCalls(tools, self._spawn)
        self.speculator = ReplySpeculator(
            conversation=self.conversation,
            config=lambda: self.config,
            spawn=self._spawn,
            may_start=self._may_speculate,
            start=self._start_held,
        )
        self.mcp = McpTools(
            events=self.events, emit=self.emit, spawn=self._spawn, add_item=self.conversation.insert
        )
        self.closed = False
        self.last_run: ResponseRun | None = None

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Queue the opening events."""
        self.emit(self.events.session_created(self.config))
        if self.config.type == "realtime":
            self.emit(self.events.conversation_created(self.conversation_id))
        self.mcp.configure(self.config.mcp)
        self._read_ahead()

    def _read_ahead(self) -> None:
        """Before the first reply: the prompt's fixed start is read while the user is still
        speaking (:func:`read_ahead`). Only while the conversation is empty: later, reading a
        shorter prompt would push the conversation out of the model's cache."""
        if self.config.type == "realtime" and not len(self.conversation) and not self.closed:
            read_ahead(self.models.llm, self.config)

    async def aclose(self) -> None:
        """Stop every task this session owns and free its per-session state."""
        self.closed = True
        held, self.speculator.current = self.speculator.current, None
        held_task = held.task if held is not None else None
        owned = (*self._tasks, *self._side.values(), self._active_task, self._idle_task, held_task)
        tasks = [t for t in owned if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            await settle(task)
        self._tasks.clear()
        self.transcriber.clear()
        self.user.close()

    def emit(self, event: Event | None) -> None:
        if event is not None:
            if event["type"] == "error":
                metrics.ERRORS.labels(event["error"].get("code") or "none").inc()
            text = serialize(event)
            self.outbox.put(text)
            self.recorder.event(event)
            for listener in self.listeners:
                listener.put(text)

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> asyncio.Task[object]:
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def speculate_replies(self) -> bool:
        """Start replies during the silence window (held until commit); off only to compare."""
        return self.speculator.enabled

    @speculate_replies.setter
    def speculate_replies(self, enabled: bool) -> None:
        self.speculator.enabled = enabled

    @property
    def active_response(self) -> ResponseRun | None:
        return self._active

    # ---- client events ------------------------------------------------------------------
    async def receive(self, raw: str | bytes) -> None:
        """Handle one client event; mistakes become ``error`` events, never exceptions."""
        if self.closed:
            self.emit(
                self.events.error(
                    ProtocolError("The session has ended; open a new one.", "session_closed")
                )
            )
            return
        try:
            if _heavy(raw):
                decode = functools.partial(client_events.decode, raw, self.generation, self.config)
                command = await asyncio.to_thread(decode)
            else:
                command = client_events.decode(raw, self.generation, self.config)
            await self.handle(command)
        except ProtocolError as exc:
            self.emit(self.events.error(exc))
        except Exception:
            log.exception("client event failed", extra={"session_id": self.session_id})
            self.emit(
                self.events.error(
                    ProtocolError(
                        "The server failed to handle this event.",
                        "server_error",
                        type="server_error",
                    )
                )
            )

    async def handle(self, command: cmd.Command) -> None:
        try:
            await self._dispatch(command)
        except ProtocolError as exc:
            exc.event_id = exc.event_id or command.event_id
            raise

    async def _dispatch(self, command: cmd.Command) -> None:
        match command:
            case cmd.UpdateSession():
                self._update_config(command.config)
                self.emit(self.events.session_updated(self.config))
                self.mcp.configure(self.config.mcp, command.event_id)
                self._read_ahead()
            case cmd.AppendAudio():
                if self.transport == "webrtc":
                    raise ProtocolError(
                        "Over WebRTC, audio travels on the RTP track; "
                        "input_audio_buffer.append is not accepted.",
                        "invalid_value",
                        "type",
                    )
                await self._append(decode_wire(command.audio, self.config.input_audio_format))
            case cmd.CommitAudio():
                self._commit(manual=True)
            case cmd.ClearAudio():
                self.user.clear()
                self.speculator.drop()
                self.emit(self.events.cleared())
            case cmd.CreateItem():
                self._create_item(command.item, command.previous_item_id)
            case cmd.RetrieveItem():
                self.emit(self.events.item_retrieved(self.conversation.get(command.item_id)))
            case cmd.DeleteItem():
                self.conversation.delete(command.item_id)
                self.emit(self.events.item_deleted(command.item_id))
            case cmd.TruncateItem():
                self._truncate(command)
            case cmd.CreateResponse():
                self._create_response(command.options)
            case cmd.CancelResponse():
                side = self._side.get(command.response_id or "")
                if side is not None:
                    side.cancel()
                    await settle(side)
                    return
                active = self._active
                if active is None or (
                    command.response_id and command.response_id != active.record.id
                ):
                    raise ProtocolError(
                        "Cancellation failed: no active response found"
                        + (f" with id '{command.response_id}'." if command.response_id else "."),
                        "response_cancel_not_active",
                        "response_id",
                    )
                await self.cancel_response("client_cancelled")
            case cmd.ClearOutputAudio():
                if self.transport != "webrtc":
                    raise ProtocolError(
                        "output_audio_buffer.clear is only supported over WebRTC; over a "
                        "WebSocket the client owns playback (use conversation.item.truncate).",
                        "invalid_value",
                        "type",
                    )
                await self.clear_output_audio()
            case _:
                assert_never(command)

    def _update_config(self, config: SessionConfig) -> None:
        self.config = config
        self.user.configure(config)

    # ---- audio in -----------------------------------------------------------------------
    async def _append(self, samples: Int16Array) -> None:
        """A WebSocket append, fed to VAD in slices with the event loop free between them
        (one append may hold minutes of audio)."""
        rate = WIRE_RATE[self.config.input_audio_format]
        held_ms = self.user.buffer.duration_ms + len(samples) * 1000 // rate
        if self.config.turn_detection is None and held_ms > MAX_BUFFER_MS:
            raise ProtocolError(
                f"The input audio buffer holds at most {MAX_BUFFER_MS // 60_000} minutes of "
                "audio: commit or clear it before appending more.",
                "input_audio_buffer_full",
                "audio",
            )
        self.recorder.audio("user", samples, rate)
        step = rate * APPEND_SLICE_MS // 1000
        for start in range(0, len(samples), step):
            if start:
                await asyncio.sleep(0)
                if self.closed:
                    return
            self._on_decisions(self.user.push_wire(samples[start : start + step]))

    def push_audio(self, samples: Int16Array) -> None:
        """16 kHz int16 user audio (already decoded by the transport)."""
        self.recorder.audio("user", samples, INTERNAL_RATE)
        self._on_decisions(self.user.push(samples))

    def _on_decisions(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            self._on_turn(decision)
        user = self.user
        if user.item_id is not None and user.speaking():
            self.transcriber.partial(
                user.item_id, user.timeline_ms - user.speech_start_ms, user.recent
            )

    def _on_turn(self, decision: Decision) -> None:
        config = self.config.turn_detection
        if config is None:
            return
        match decision:
            case TurnBegan():
                self._cancel_idle_timer()
                self.speculator.drop()
                self.transcriber.begin_turn(decision.item_id)
                self.emit(self.events.speech_started(decision.audio_start_ms, decision.item_id))
                if config.interrupt_response and (
                    self._active is not None
                    or (self.audio_output is not None and self.audio_output.is_playing())
                ):
                    self._spawn(self._interrupt())
            case TurnPaused():
                self._on_pause(decision)
            case TurnResumed():
                self.speculator.drop()
            case TurnEnded():
                self._end_turn(decision)
            case _:
                assert_never(decision)

    def _on_pause(self, pause: TurnPaused) -> None:
        """During the silence window: transcribe the speech so far, then (server VAD) start
        the reply, held until the turn is committed; with semantic VAD ask the end-of-turn
        model whether the speaker is done."""
        if pause.silence_ms >= SPECULATE_AFTER_MS:
            audio = self.user.speech(pause.speech_end_ms)
            job = self.transcriber.speculate(pause.speech_end_ms, audio)
            if job is not None:
                log.debug("speculative transcription at %d ms", self.user.timeline_ms)
            if job is not None and self.speculator.enabled:
                self._spawn(self.speculator.start_after(pause.speech_end_ms, pause.item_id, job))
        if self.user.check_due(pause) and self.models.end_of_turn is not None:
            self._spawn(self._check_end_of_turn(pause.speech_end_ms))

    async def _check_end_of_turn(self, speech_end_ms: int) -> None:
        model, eagerness = self.models.end_of_turn, self.user.eagerness
        if model is None or eagerness is None:
            return
        probability = await model.probability(self.user.recent())
        if probability > eagerness.complete_above:
            ended = self.user.end_now(speech_end_ms)
            if ended is not None:
                self._end_turn(ended)

    def _end_turn(self, ended: TurnEnded) -> None:
        config = self.config.turn_detection
        waited_ms = self.user.timeline_ms - ended.speech_end_ms  # on the audio's own clock
        metrics.observe("end_of_speech_to_commit", waited_ms / 1000)
        self.recorder.stage("end_of_speech_to_commit", waited_ms / 1000)
        self.emit(self.events.speech_stopped(ended.audio_end_ms, ended.item_id))
        early = self.transcriber.adopt(ended.speech_end_ms)
        basis = self.speculator.basis(ended.speech_end_ms, ended.item_id, early)
        self._commit(
            manual=False,
            item_id=ended.item_id,
            start_ms=ended.speech_start_ms,
            end_ms=ended.audio_end_ms,
            early=early,
        )
        if config is None or not config.create_response or self._active is not None:
            self.speculator.drop()
            return
        speculation = self.speculator.take(basis)
        log.debug("turn ended at %d ms", ended.audio_end_ms)
        if speculation is not None:
            assert speculation.run is not None and speculation.task is not None
            self._active, self._active_task = speculation.run, speculation.task
            self.last_run = speculation.run
            speculation.run.speculative = True
            speculation.run.committed()
            # After the transcription job's events, as a reply started now would come.
            self._spawn(speculation.release(self.emit))
            return
        self._create_response(cmd.ResponseOptions())

    # ---- speculative replies ------------------------------------------------------------
    def _may_speculate(self, speech_end_ms: int) -> bool:
        """Whether a reply started now would be the one the commit starts."""
        turn = self.config.turn_detection
        return (
            not self.closed
            and turn is not None
            and turn.create_response
            and self._active is None
            and self.user.paused_at() == speech_end_ms
        )

    def _start_held(self, spec: SpeculativeReply, items: list[Item]) -> asyncio.Task[None]:
        run = self._new_run(self.config, cmd.ResponseOptions(), items)
        run.counted_from = None  # counts from the commit (ResponseRun.committed)
        spec.hold(run)
        log.debug("speculative reply started at %d ms", self.user.timeline_ms)
        return asyncio.ensure_future(self._run_response(run, spec))

    def _commit(
        self,
        *,
        manual: bool,
        item_id: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        early: asyncio.Task[object] | None = None,
    ) -> Item:
        buffer = self.user.buffer
        if manual and buffer.duration_ms < 100:
            raise ProtocolError(
                f"Error committing input audio buffer: buffer too small. Expected at least "
                f"100ms of audio, but buffer only has {buffer.duration_ms:.2f}ms of audio.",
                "input_audio_buffer_commit_empty",
                None,
            )
        audio = self.user.take(start_ms, end_ms)
        metrics.TURNS.labels("manual" if manual else "server").inc()
        if manual:
            self.user.reset()
            self.speculator.drop()
        part = ContentPart(
            "input_audio", transcript=None, audio_ms=len(audio) * 1000 // INTERNAL_RATE
        )
        item = Item("message", id=item_id or new_id("item"), role="user", content=[part])
        previous = self.conversation.insert(item)
        self.emit(self.events.committed(item.id, previous))
        self.emit(self.events.item_added(item, previous))
        self.transcriber.start(item, audio, previous, early)
        return item

    # ---- conversation -------------------------------------------------------------------
    def _create_item(self, item: Item, previous_item_id: str | None) -> None:
        self.mcp.check_answer(item)
        previous = self.conversation.insert(item, previous_item_id)
        self.emit(self.events.item_added(item, previous))
        if not self._hear(item, previous, announce=True):
            self.emit(self.events.item_done(item, previous))
        self.mcp.answer(item)  # an approved MCP call runs now

    def _hear(self, item: Item, previous: str | None, *, announce: bool) -> bool:
        """Transcribe the audio a client put in ``item`` (the LLM reads text); ``False`` when
        it has none. The item's ``done`` follows its transcript, as for a committed turn."""
        parts: list[tuple[int, Int16Array]] = []
        fmt = self.config.input_audio_format
        for index, part in enumerate(item.content):
            if part.audio is None:
                continue
            samples = resample(decode_wire(part.audio, fmt), WIRE_RATE[fmt], INTERNAL_RATE)
            part.audio, part.audio_ms = None, len(samples) * 1000 // INTERNAL_RATE
            parts.append((index, samples))
        if not parts:
            return False
        self.transcriber.start_parts(item, parts, previous, announce=announce)
        return True

    def _truncate(self, command: cmd.TruncateItem) -> None:
        end_ms = self.conversation.truncate(
            command.item_id, command.content_index, command.audio_end_ms
        )
        self.emit(self.events.item_truncated(command.item_id, command.content_index, end_ms))

    # ---- responses ----------------------------------------------------------------------
    def _create_response(self, options: cmd.ResponseOptions) -> None:
        if self._active is not None and not options.out_of_band:
            raise ProtocolError(
                f"Conversation already has an active response in progress: "
                f"{self._active.record.id}. Wait until the response is finished before creating "
                "a new one.",
                "conversation_already_has_active_response",
                None,
            )
        config = self.config
        overrides = {
            k: getattr(options, k)
            for k in (
                "audio_output",
                "voice",
                "output_audio_format",
                "tools",
                "mcp",
                "tool_choice",
                "temperature",
                "max_output_tokens",
            )
            if getattr(options, k) is not None
        }
        if overrides:
            config = config.with_changes(**overrides)
        if isinstance(config.tool_choice, McpChoice):
            if not any(s.server_label == config.tool_choice.server_label for s in config.mcp):
                raise ProtocolError(
                    f"tool_choice names the MCP server '{config.tool_choice.server_label}', "
                    "which is not configured.",
                    "invalid_value",
                    "response.tool_choice",
                )
        elif config.tool_choice not in ("auto", "none", "required") and not any(
            t.name == config.tool_choice for t in config.tools
        ):
            raise ProtocolError(
                f"tool_choice names '{config.tool_choice}', which is not a configured tool.",
                "invalid_value",
                "response.tool_choice",
            )
        if options.input is not None:
            items = [self.conversation.get(e) if isinstance(e, str) else e for e in options.input]
            for item in options.input:
                if not isinstance(item, str):
                    self._hear(item, None, announce=False)
        else:
            items = list(self.conversation)
        if options.out_of_band:
            self._start_side(config, options, items)
            return
        run = self._new_run(config, options, items)
        self._active = run
        self.last_run = run
        self._active_task = asyncio.ensure_future(self._run_response(run))

    def _start_side(
        self, config: SessionConfig, options: cmd.ResponseOptions, items: list[Item]
    ) -> None:
        """An out-of-band response: beside any other, except that over WebRTC one voice plays
        at a time."""
        busy = self._active is not None or (
            self.audio_output is not None and self.audio_output.is_playing()
        )
        if config.audio_output and self.audio_output is not None and (busy or self._side):
            raise ProtocolError(
                "Over WebRTC one response's audio plays at a time: an out-of-band response "
                "beside another must be text only (output_modalities ['text']), or wait.",
                "conversation_already_has_active_response",
                "response.output_modalities",
            )
        run = self._new_run(config, options, items)
        task = asyncio.ensure_future(self._run_response(run))
        self._side[run.record.id] = task

    def _new_run(
        self, config: SessionConfig, options: cmd.ResponseOptions, items: list[Item]
    ) -> ResponseRun:
        record = ResponseRecord(
            metadata=options.metadata,
            audio_output=config.audio_output,
            voice=config.voice,
            output_audio_format=config.output_audio_format,
            temperature=config.temperature,
            max_output_tokens=config.max_output_tokens,
            conversation_id=None if options.out_of_band else self.conversation_id,
        )
        run = ResponseRun(
            record=record,
            config=config,
            input_items=items,
            instructions=options.instructions
            if options.instructions is not None
            else config.instructions,
            out_of_band=options.out_of_band,
            events=self.events,
            emit=self.emit,
            models=self.models,
            add_item=self.conversation.insert,
            transcripts=self.transcriber.wait,
            audio_output=self.audio_output,
            # An out-of-band reply's calls are the client's: their outputs have no conversation.
            on_function_call=None if options.out_of_band else self.server_tools.start,
            window=None if options.input is not None else self.prompt_window,
            mcp=self.mcp.turn(config.mcp),
        )
        if self.audio_output is None:
            # WebSocket: the record gets the reply as it is sent. A transport that plays it
            # itself (WebRTC) records what it actually played, when it played it.
            run.on_audio = lambda samples, rate: self.recorder.audio("agent", samples, rate)
        return run

    async def _run_response(self, run: ResponseRun, held: SpeculativeReply | None = None) -> None:
        try:
            await run.run()
            if held is not None:
                await held.released.wait()  # a speculative reply that finished while held
        finally:
            if held is None or held.released.is_set():
                self._after_response(run)

    def _after_response(self, run: ResponseRun) -> None:
        if not run.out_of_band:
            self.recorder.turn(run.record.id, run.timings)
        if self._side.pop(run.record.id, None) is not None:
            return
        if self._active is run:
            self._active = None
            self._active_task = None
        calls = self.server_tools.started(run.record.output)
        if calls:
            self._spawn(self._finish_server_tools(run, calls))
        else:
            self._start_idle_timer(run)

    async def _finish_server_tools(self, run: ResponseRun, calls: list[Item]) -> None:
        for call in calls:
            assert call.call_id is not None
            result = await self.server_tools.result(call.call_id)
            output = Item(
                "function_call_output", call_id=call.call_id, output=json.dumps(result, default=str)
            )
            if not run.out_of_band:
                self._create_item(output, None)
        if run.record.status == "completed" and self._active is None and not self.closed:
            self._create_response(cmd.ResponseOptions())

    async def cancel_response(self, reason: CancelReason) -> None:
        run, task = self._active, self._active_task
        if run is None or task is None:
            return
        run.cancel_reason = reason
        task.cancel()
        await settle(task)

    async def _interrupt(self) -> None:
        """Barge-in: cancel the reply and, over WebRTC, stop its playout where the user cut
        in, truncating the assistant item to what was heard."""
        await self.cancel_response("turn_detected")
        self._cut_playout()

    async def clear_output_audio(self) -> None:
        """WebRTC ``output_audio_buffer.clear``: stop generating and playing at once."""
        await self.cancel_response("client_cancelled")
        if not self._cut_playout() and self.last_run is not None:
            self.emit(self.events.output_audio_buffer("cleared", self.last_run.record.id))

    def _cut_playout(self) -> bool:
        """Cut the WebRTC playout now (our action; :meth:`playout_stopped` is the track
        reporting that a reply finished playing): truncate the item to what was heard and emit
        ``output_audio_buffer.cleared``. False when nothing was playing."""
        output = self.audio_output
        if output is None or not output.is_playing():
            return False
        heard = output.clear()
        if heard is None:
            return False
        response_id, item_id, played_ms = heard
        item = self.conversation.find(item_id)
        if item is not None and item.content and item.content[0].type == "output_audio":
            end_ms = min(played_ms, item.content[0].audio_ms)
            self.conversation.truncate(item_id, 0, end_ms)
            self.emit(self.events.item_truncated(item_id, 0, end_ms))
        self.emit(self.events.output_audio_buffer("cleared", response_id))
        return True

    # ---- idle timeout -------------------------------------------------------------------
    def _start_idle_timer(self, run: ResponseRun | None = None) -> None:
        """The idle timeout counts from the end of playback: over WebRTC from when the track
        stops playing (:meth:`playout_stopped`), over a WebSocket from when the client has had
        time to play the audio it was sent."""
        turn = self.config.turn_detection
        if self.closed or turn is None or turn.idle_timeout_ms is None:
            return
        self._cancel_idle_timer()
        if self.audio_output is not None and self.audio_output.is_playing():
            return  # playout_stopped() starts it
        delay = run.playback_left() if run is not None else 0.0
        self._idle_task = asyncio.ensure_future(self._idle(turn.idle_timeout_ms, delay))

    def playout_stopped(self) -> None:
        """WebRTC: the reply's audio has finished playing."""
        if self._active is None and self._idle_task is None:
            self._start_idle_timer()

    def _cancel_idle_timer(self) -> None:
        if self._idle_task is not None and self._idle_task is not asyncio.current_task():
            self._idle_task.cancel()
        self._idle_task = None

    async def _idle(self, timeout_ms: int, delay_s: float) -> None:
        await asyncio.sleep(delay_s + timeout_ms / 1000)
        quiet = self.user.timed_out(timeout_ms) if self._active is None else None
        if quiet is None:
            return
        start, end = quiet.audio_start_ms, quiet.audio_end_ms
        self.emit(self.events.timeout_triggered(start, end, quiet.item_id))
        self._idle_task = None
        self._commit(manual=False, item_id=quiet.item_id, start_ms=start, end_ms=end)
        self._create_response(cmd.ResponseOptions())
