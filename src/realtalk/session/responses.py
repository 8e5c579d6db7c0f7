"""One response: from the conversation to the LLM, through the clause chunker to TTS, out as
events — created → streaming → done / cancelled."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, Protocol

import numpy as np

from realtalk import metrics
from realtalk.audio.pcm import WIRE_RATE, Int16Array, StreamResampler, encode_wire
from realtalk.core.config import SessionConfig
from realtalk.core.items import ContentPart, Item, ResponseRecord, Segment, Usage
from realtalk.pipeline.llm import LLMRequest, TextDelta, ToolCall, ToolSpec
from realtalk.pipeline.models import Models
from realtalk.pipeline.tts.chunker import ClauseChunker
from realtalk.protocol.server_events import Event, ServerEvents
from realtalk.session.mcp import McpTurn
from realtalk.session.prompt import (
    RESERVE,
    PromptWindow,
    item_messages,
    message_tokens,
    system_messages,
    tool_specs,
)

log = logging.getLogger("realtalk.response")

CancelReason = Literal["turn_detected", "client_cancelled"]
DELTA_MS = 100
"""Audio per ``response.audio.delta`` event."""
MAX_TOKENS_INF = 512
"""What ``"inf"`` means for a spoken reply from a small local model."""
LEAD_IN_LEVEL = 200
"""Below this (int16), the start of a reply's first audio is silence, not voice."""
LEAD_IN_KEEP_MS = 10


def trim_lead_in(pcm: Int16Array, rate: int) -> Int16Array:
    """The reply's first audio without the quiet lead-in TTS puts before the voice (Piper:
    30–60 ms), so the listener hears the answer that much sooner."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > LEAD_IN_LEVEL)
    if loud.size == 0:
        return pcm
    return pcm[max(0, int(loud[0]) - rate * LEAD_IN_KEEP_MS // 1000) :]


class AudioOutput(Protocol):
    """Where the assistant's audio goes when a transport plays it itself (WebRTC)."""

    rate: int

    def begin(self, response_id: str, item_id: str) -> None: ...

    async def write(self, samples: Int16Array) -> None: ...

    def end(self) -> None: ...

    def is_playing(self) -> bool: ...

    def clear(self) -> tuple[str, str, int] | None:
        """Stop playout now; (response_id, item_id, ms heard) of what was playing."""
        ...


class ResponseRun:
    def __init__(
        self,
        *,
        record: ResponseRecord,
        config: SessionConfig,
        input_items: list[Item],
        instructions: str,
        out_of_band: bool,
        events: ServerEvents,
        emit: Callable[[Event | None], None],
        models: Models,
        add_item: Callable[[Item], str | None],
        transcripts: Callable[[Iterable[Item]], Awaitable[None]],
        audio_output: AudioOutput | None = None,
        on_function_call: Callable[[Item], None] | None = None,
        gate: Callable[[], Awaitable[None]] | None = None,
        mcp: McpTurn | None = None,
        window: PromptWindow | None = None,
    ) -> None:
        self.record = record
        self.config = config
        self.input_items = input_items
        self.instructions = instructions
        self.out_of_band = out_of_band
        self.events = events
        self.emit = emit
        self.models = models
        self.add_item = add_item
        self.wait_for_transcripts = transcripts
        self.audio_output = audio_output
        self.on_function_call = on_function_call
        self.gate = gate
        """Awaited after each spoken piece (a speculative reply waits there until kept)."""
        self.window = window
        """The session's prompt window (None: this reply's own items, cut as needed)."""
        self.mcp = mcp
        """The reply's MCP tools (``session/mcp.py``): their calls run inside the reply."""
        self.speculative = False
        self.request: LLMRequest | None = None
        self.cancel_reason: CancelReason | None = None
        self._audio_begun = False
        self._first_audio_at: float | None = None
        self._t0 = time.monotonic()
        self.counted_from: float | None = self._t0
        """When the wait for this reply began (its user turn's commit, or response.create);
        None for a speculative reply until its turn is committed (:meth:`committed`)."""
        self.timings: dict[str, float] = {}
        self.on_audio: Callable[[Int16Array, int], None] | None = None
        """Told each piece of audio as it leaves (the conversation record's agent track)."""
        """This reply's stage latencies in seconds, as observed for the metrics (the
        conversation record's turn timings)."""
        self.message: Item | None = None
        self.used_tokens = 0
        self.cut_off = False
        """The LLM stopped at ``max_output_tokens``: the response ends ``incomplete``."""
        self._previous: dict[str, str | None] = {}

    # ---- helpers --------------------------------------------------------------------------
    def _output_index(self, item: Item) -> int:
        return self.record.output.index(item)

    def _start_item(self, item: Item) -> None:
        self.record.output.append(item)
        index = self._output_index(item)
        self.emit(self.events.output_item_added(self.record.id, index, item))
        if not self.out_of_band:
            previous = self._previous[item.id] = self.add_item(item)
            self.emit(self.events.item_added(item, previous))

    def _finish_item(self, item: Item, status: Literal["completed", "incomplete"]) -> None:
        item.status = status
        index = self._output_index(item)
        self.emit(self.events.output_item_done(self.record.id, index, item))
        if not self.out_of_band:
            self.emit(self.events.item_done(item, self._previous.get(item.id)))

    def _ensure_message(self) -> Item:
        if self.message is not None:
            return self.message
        part = ContentPart(
            "output_audio" if self.config.audio_output else "output_text",
            text=None if self.config.audio_output else "",
            transcript="" if self.config.audio_output else None,
        )
        item = Item("message", role="assistant", status="in_progress")
        self.message = item
        self._start_item(item)
        item.content.append(part)
        self.emit(
            self.events.content_part_added(
                self.record.id, item.id, self._output_index(item), 0, part
            )
        )
        return item

    def _messages(self, tools: tuple[ToolSpec, ...], max_tokens: int) -> list[dict[str, Any]]:
        """The system message and as much of the conversation as the context holds."""
        count = self.models.llm.count_tokens
        system = system_messages(self.instructions)
        fixed = message_tokens(system, count) + (
            count(json.dumps([t.parameters for t in tools]))
            + sum(count(t.name + t.description) for t in tools)
            if tools
            else 0
        )
        budget = self.models.llm.context_tokens - max_tokens - fixed - RESERVE
        shown = (self.window or PromptWindow()).fit(
            self.input_items, budget=max(0, budget), truncation=self.config.truncation, count=count
        )
        return system + [m for item in shown for m in item_messages(item)]

    # ---- the run --------------------------------------------------------------------------
    async def run(self) -> None:
        self.emit(self.events.response_created(self.record))
        try:
            await self._run()
        except asyncio.CancelledError:
            if self.message is not None and self.message.status == "in_progress":
                self._close_message("incomplete")
            self._finish("cancelled")
            raise
        except Exception as exc:
            while isinstance(exc, ExceptionGroup) and exc.exceptions:
                exc = exc.exceptions[0]
            log.warning(
                "response failed: %s: %s",
                type(exc).__name__,
                exc,
                extra={"response_id": self.record.id},
            )
            self._finish("failed", error=str(exc))
            return
        self._finish("incomplete" if self.cut_off else "completed")

    async def _run(self) -> None:
        await self.wait_for_transcripts(self.input_items)
        cfg = self.config
        tools = tool_specs(cfg)
        choice = cfg.tool_choice
        if self.mcp is not None:
            await self.mcp.ready()
            tools, choice = self.mcp.offer(tools, choice)
        assert isinstance(choice, str)
        max_tokens = MAX_TOKENS_INF if cfg.max_output_tokens == "inf" else cfg.max_output_tokens
        request: LLMRequest | None = LLMRequest(
            # Off the loop: counting a long conversation's tokens the first time takes a while.
            messages=await asyncio.to_thread(self._messages, tools, max_tokens),
            tools=tools,
            tool_choice=choice,
            temperature=cfg.temperature,
            max_tokens=max_tokens,
        )
        self.request = request
        self._mark("LLM request")
        asked_at: float | None = time.monotonic()
        speech: asyncio.Queue[str | None] = asyncio.Queue()
        chunker = ClauseChunker()
        usage = Usage()
        async with asyncio.TaskGroup() as tasks:
            speaker = tasks.create_task(self._speak(speech)) if cfg.audio_output else None
            try:
                while request is not None:
                    mcp_calls: list[Item] = []  # run here; the reply goes on with their output
                    async for event in self.models.llm.stream(request):
                        if asked_at is not None:
                            self._observe("llm_first_token", time.monotonic() - asked_at)
                            asked_at = None
                        if isinstance(event, TextDelta):
                            await self._on_text(event.text, chunker, speech)
                        elif isinstance(event, ToolCall) and self.mcp and self.mcp.owns(event.name):
                            mcp_calls.append(await self.mcp.call(self, event))
                        elif isinstance(event, ToolCall):
                            await self._on_tool_call(event, chunker, speech)
                        else:
                            usage = Usage(
                                input_text_tokens=usage.input_text_tokens + event.prompt_tokens,
                                cached_tokens=usage.cached_tokens + event.cached_tokens,
                                output_text_tokens=usage.output_text_tokens
                                + event.completion_tokens,
                            )
                            self.used_tokens = event.prompt_tokens + event.completion_tokens
                            self.cut_off = event.stop_reason == "length"
                    request = self.mcp.follow_up(request, mcp_calls) if self.mcp else None
            finally:
                if speaker is not None:
                    for piece in chunker.flush():
                        speech.put_nowait(piece)
                    speech.put_nowait(None)
        self.record.usage = usage
        if self.message is not None:
            self._close_message("incomplete" if self.cut_off else "completed")

    def committed(self) -> None:
        """The user turn this (speculative) reply answers is committed now."""
        if self._first_audio_at is not None:  # held audio goes out as the reply is released
            self._observe("commit_to_first_audio", 0.0)
        else:
            self.counted_from = time.monotonic()

    def _observe(self, stage: metrics.Stage, seconds: float) -> None:
        metrics.observe(stage, seconds)
        self.timings[stage] = max(0.0, seconds)

    def _mark(self, what: str) -> None:
        """Debug timing of the reply's stages (no content)."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s at %.0f ms", self.record.id, what, (time.monotonic() - self._t0) * 1000
            )

    async def _on_text(
        self, text: str, chunker: ClauseChunker, speech: asyncio.Queue[str | None]
    ) -> None:
        if self.message is None:
            self._mark("first text")
        item = self._ensure_message()
        index = self._output_index(item)
        part = item.content[0]
        if self.config.audio_output:
            for piece in chunker.push(text):
                self._mark("piece")
                speech.put_nowait(piece)
        else:
            part.text = (part.text or "") + text
            self.emit(self.events.text_delta(self.record.id, item.id, index, 0, text))
            if self.gate is not None:
                await self.gate()

    async def _on_tool_call(
        self, call: ToolCall, chunker: ClauseChunker, speech: asyncio.Queue[str | None]
    ) -> None:
        item = Item(
            "function_call",
            status="in_progress",
            call_id=call.call_id,
            name=call.name,
            arguments="",
        )
        self._start_item(item)
        index = self._output_index(item)
        # Arguments stream in pieces, as a model serving them token by token would.
        for start in range(0, len(call.arguments), 24):
            delta = call.arguments[start : start + 24]
            item.arguments = (item.arguments or "") + delta
            self.emit(
                self.events.function_arguments_delta(
                    self.record.id, item.id, index, call.call_id, delta
                )
            )
        self.emit(
            self.events.function_arguments_done(
                self.record.id, item.id, index, call.call_id, call.name, call.arguments
            )
        )
        self._finish_item(item, "completed")
        if self.on_function_call is not None:
            self.on_function_call(item)

    async def _speak(self, speech: asyncio.Queue[str | None]) -> None:
        """Synthesize pieces in order; send transcript then audio for each."""
        out_rate = (
            self.audio_output.rate
            if self.audio_output
            else WIRE_RATE[self.config.output_audio_format]
        )
        position = 0
        """Samples of the reply so far: lengths are kept exact, never sums of rounded ms, so a
        client truncating at the length it received (``bytes / 48`` at 24 kHz) is right."""
        while (piece := await speech.get()) is not None:
            resampler = StreamResampler(self.models.tts.sample_rate, out_rate)
            item: Item | None = None
            index = 0
            samples = 0
            text = ""
            asked_at = time.monotonic()
            async for pcm in self.models.tts.stream(
                piece, speed=self.config.speed, voice=self.config.voice
            ):
                if position == 0 and samples == 0:
                    self._observe("tts_first_audio", time.monotonic() - asked_at)
                    pcm = trim_lead_in(pcm, self.models.tts.sample_rate)
                audio = resampler.push(pcm)
                if item is None:
                    self._mark("piece synthesized")
                    item = self._ensure_message()
                    index = self._output_index(item)
                    part = item.content[0]
                    text = piece if not part.transcript else " " + piece
                    part.transcript = (part.transcript or "") + text
                    self.emit(self.events.transcript_delta(self.record.id, item.id, index, 0, text))
                samples += len(audio)
                part.audio_ms = (position + samples) * 1000 // out_rate
                await self._send_audio(item, index, audio, out_rate)
            if item is None:
                continue
            tail = resampler.flush()
            samples += len(tail)
            start_ms = position * 1000 // out_rate
            position += samples
            part.audio_ms = position * 1000 // out_rate
            part.segments.append(Segment(text, start_ms, part.audio_ms))
            await self._send_audio(item, index, tail, out_rate)
            if self.gate is not None:
                await self.gate()

    def playback_left(self) -> float:
        """Seconds until a client playing the reply's audio as it arrived has played it all."""
        if self._first_audio_at is None or self.message is None or not self.message.content:
            return 0.0
        ends = self._first_audio_at + self.message.content[0].audio_ms / 1000
        return max(0.0, ends - time.monotonic())

    async def _send_audio(self, item: Item, index: int, audio: Int16Array, rate: int) -> None:
        if self._first_audio_at is None:
            self._first_audio_at = time.monotonic()
            if self.counted_from is not None:
                self._observe("commit_to_first_audio", self._first_audio_at - self.counted_from)
        if self.on_audio is not None:
            self.on_audio(audio, rate)
        if self.audio_output is not None:
            if not self._audio_begun:
                self._audio_begun = True
                self.audio_output.begin(self.record.id, item.id)
            await self.audio_output.write(audio)
            return
        step = rate * DELTA_MS // 1000
        fmt = self.config.output_audio_format
        for start in range(0, len(audio), step):
            chunk = encode_wire(audio[start : start + step], fmt)
            self.emit(
                self.events.audio_delta(
                    self.record.id, item.id, index, 0, base64.b64encode(chunk).decode("ascii")
                )
            )
            await asyncio.sleep(0)  # let barge-in and other sessions in between deltas

    def _close_message(self, status: Literal["completed", "incomplete"]) -> None:
        item = self.message
        assert item is not None
        index = self._output_index(item)
        part = item.content[0] if item.content else None
        if part is not None:
            if part.type == "output_audio":
                self.emit(self.events.audio_done(self.record.id, item.id, index, 0))
                self.emit(
                    self.events.transcript_done(
                        self.record.id, item.id, index, 0, part.transcript or ""
                    )
                )
                if self.audio_output is not None:
                    self.audio_output.end()
            else:
                self.emit(self.events.text_done(self.record.id, item.id, index, 0, part.text or ""))
            self.emit(self.events.content_part_done(self.record.id, item.id, index, 0, part))
        self._finish_item(item, status)

    def _finish(
        self,
        status: Literal["completed", "cancelled", "failed", "incomplete"],
        error: str | None = None,
    ) -> None:
        record = self.record
        for item in record.output:
            if item.status == "in_progress":
                item.status = "incomplete"
        record.status = status
        if status == "cancelled":
            record.status_details = {
                "type": "cancelled",
                "reason": self.cancel_reason or "client_cancelled",
            }
        elif status == "incomplete":
            record.status_details = {"type": "incomplete", "reason": "max_output_tokens"}
        elif status == "failed":
            record.status_details = {
                "type": "failed",
                "error": {
                    "type": "server_error",
                    "code": "response_failed",
                    "message": f"The response failed: {error}",
                },
            }
        if record.usage is None:
            record.usage = Usage()
        metrics.RESPONSES.labels(status).inc()
        self.emit(self.events.response_done(record))
        self.emit(self.events.rate_limits_updated(self.models.llm.context_tokens, self.used_tokens))


async def settle(task: asyncio.Task[Any]) -> None:
    """Await a task that may have been cancelled, without propagating its cancellation."""
    with contextlib.suppress(asyncio.CancelledError):
        await task
