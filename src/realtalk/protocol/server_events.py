"""Server events: the only place that knows their names and shapes in each generation.

``ServerEvents(generation)`` builds plain dicts ready for ``json.dumps``; every one validates
against the ``openai`` package's server event union of that generation (see the tests).
"""

from __future__ import annotations

import secrets
from typing import Any

from realtalk.core.config import SessionConfig
from realtalk.core.formats import ga_format_object
from realtalk.core.items import ContentPart, Item, ResponseRecord
from realtalk.protocol.errors import ProtocolError
from realtalk.protocol.items import Generation, item_object, part_object
from realtalk.protocol.sessions import session_object

Event = dict[str, Any]

_NAMES: dict[str, tuple[str, str]] = {
    # internal name: (beta, GA)
    "item_added": ("conversation.item.created", "conversation.item.added"),
    "audio_delta": ("response.audio.delta", "response.output_audio.delta"),
    "audio_done": ("response.audio.done", "response.output_audio.done"),
    "transcript_delta": (
        "response.audio_transcript.delta",
        "response.output_audio_transcript.delta",
    ),
    "transcript_done": ("response.audio_transcript.done", "response.output_audio_transcript.done"),
    "text_delta": ("response.text.delta", "response.output_text.delta"),
    "text_done": ("response.text.done", "response.output_text.done"),
}


def new_event_id() -> str:
    return "event_" + secrets.token_hex(10)


class ServerEvents:
    def __init__(self, generation: Generation, session_id: str, expires_at: int) -> None:
        self.generation = generation
        self.session_id = session_id
        self.expires_at = expires_at

    def _name(self, internal: str) -> str:
        beta, ga = _NAMES[internal]
        return beta if self.generation == "beta" else ga

    @staticmethod
    def _event(kind: str, **fields: Any) -> Event:
        return {"type": kind, "event_id": new_event_id(), **fields}

    # session
    def session_created(self, config: SessionConfig) -> Event:
        return self._event("session.created", session=self._session(config))

    def session_updated(self, config: SessionConfig) -> Event:
        return self._event("session.updated", session=self._session(config))

    def transcription_session_updated(self, config: SessionConfig) -> Event:
        session = self._session(config)
        return self._event(
            "transcription_session.updated",
            session={
                "client_secret": {"value": "", "expires_at": self.expires_at},
                "input_audio_format": session.get("input_audio_format"),
                "input_audio_transcription": session.get("input_audio_transcription"),
                "turn_detection": session.get("turn_detection"),
                "modalities": ["text"],
            },
        )

    def _session(self, config: SessionConfig) -> dict[str, Any]:
        return session_object(self.generation, config, self.session_id, self.expires_at)

    def conversation_created(self, conversation_id: str) -> Event | None:
        if self.generation != "beta":
            return None
        return self._event(
            "conversation.created",
            conversation={"id": conversation_id, "object": "realtime.conversation"},
        )

    def error(self, exc: ProtocolError) -> Event:
        return self._event("error", error=exc.body())

    # input audio buffer
    def speech_started(self, audio_start_ms: int, item_id: str) -> Event:
        return self._event(
            "input_audio_buffer.speech_started", audio_start_ms=audio_start_ms, item_id=item_id
        )

    def speech_stopped(self, audio_end_ms: int, item_id: str) -> Event:
        return self._event(
            "input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms, item_id=item_id
        )

    def committed(self, item_id: str, previous_item_id: str | None) -> Event:
        return self._event(
            "input_audio_buffer.committed", item_id=item_id, previous_item_id=previous_item_id
        )

    def cleared(self) -> Event:
        return self._event("input_audio_buffer.cleared")

    def timeout_triggered(
        self, audio_start_ms: int, audio_end_ms: int, item_id: str
    ) -> Event | None:
        if self.generation == "beta":
            return None  # a GA event: beta clients never had it
        return self._event(
            "input_audio_buffer.timeout_triggered",
            audio_start_ms=audio_start_ms,
            audio_end_ms=audio_end_ms,
            item_id=item_id,
        )

    # conversation
    def item_added(self, item: Item, previous_item_id: str | None) -> Event:
        return self._event(
            self._name("item_added"),
            item=item_object(item, self.generation),
            previous_item_id=previous_item_id,
        )

    def item_done(self, item: Item, previous_item_id: str | None) -> Event | None:
        if self.generation == "beta":
            return None
        return self._event(
            "conversation.item.done",
            item=item_object(item, self.generation),
            previous_item_id=previous_item_id,
        )

    def item_retrieved(self, item: Item) -> Event:
        return self._event("conversation.item.retrieved", item=item_object(item, self.generation))

    def item_deleted(self, item_id: str) -> Event:
        return self._event("conversation.item.deleted", item_id=item_id)

    def item_truncated(self, item_id: str, content_index: int, audio_end_ms: int) -> Event:
        return self._event(
            "conversation.item.truncated",
            item_id=item_id,
            content_index=content_index,
            audio_end_ms=audio_end_ms,
        )

    def transcription_delta(self, item_id: str, content_index: int, delta: str) -> Event:
        return self._event(
            "conversation.item.input_audio_transcription.delta",
            item_id=item_id,
            content_index=content_index,
            delta=delta,
        )

    def transcription_completed(
        self, item_id: str, content_index: int, transcript: str, seconds: float
    ) -> Event:
        return self._event(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=content_index,
            transcript=transcript,
            usage={"type": "duration", "seconds": round(seconds, 3)},
        )

    def transcription_failed(self, item_id: str, content_index: int, message: str) -> Event:
        return self._event(
            "conversation.item.input_audio_transcription.failed",
            item_id=item_id,
            content_index=content_index,
            error={
                "type": "transcription_error",
                "code": "transcription_failed",
                "message": message,
                "param": None,
            },
        )

    # responses
    def response_created(self, response: ResponseRecord) -> Event:
        return self._event("response.created", response=self.response_object(response))

    def response_done(self, response: ResponseRecord) -> Event:
        return self._event("response.done", response=self.response_object(response))

    def response_object(self, response: ResponseRecord) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": response.id,
            "object": "realtime.response",
            "status": response.status,
            "status_details": response.status_details,
            "output": [item_object(item, self.generation) for item in response.output],
            "conversation_id": response.conversation_id,
            "metadata": response.metadata,
            "max_output_tokens": response.max_output_tokens,
            "usage": None,
        }
        if response.usage is not None:
            u = response.usage
            body["usage"] = {
                "total_tokens": u.input_tokens + u.output_tokens,
                "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens,
                "input_token_details": {
                    "cached_tokens": u.cached_tokens,
                    "text_tokens": u.input_text_tokens,
                    "audio_tokens": u.input_audio_tokens,
                },
                "output_token_details": {
                    "text_tokens": u.output_text_tokens,
                    "audio_tokens": u.output_audio_tokens,
                },
            }
        if self.generation == "beta":
            body.update(
                modalities=["text", "audio"] if response.audio_output else ["text"],
                voice=response.voice,
                output_audio_format=response.output_audio_format,
                temperature=response.temperature,
            )
        else:
            body.update(
                output_modalities=["audio"] if response.audio_output else ["text"],
                audio={
                    "output": {
                        "format": ga_format_object(response.output_audio_format),
                        "voice": response.voice,
                    }
                },
            )
        return body

    def output_item_added(self, response_id: str, output_index: int, item: Item) -> Event:
        return self._event(
            "response.output_item.added",
            response_id=response_id,
            output_index=output_index,
            item=item_object(item, self.generation),
        )

    def output_item_done(self, response_id: str, output_index: int, item: Item) -> Event:
        return self._event(
            "response.output_item.done",
            response_id=response_id,
            output_index=output_index,
            item=item_object(item, self.generation),
        )

    def _part(self, part: ContentPart) -> dict[str, Any]:
        wire = part_object(part, "beta")  # content_part events use "text"/"audio" in both
        if part.type == "output_audio":
            wire["transcript"] = part.transcript or ""
        return wire

    def content_part_added(
        self,
        response_id: str,
        item_id: str,
        output_index: int,
        content_index: int,
        part: ContentPart,
    ) -> Event:
        return self._event(
            "response.content_part.added",
            response_id=response_id,
            item_id=item_id,
            output_index=output_index,
            content_index=content_index,
            part=self._part(part),
        )

    def content_part_done(
        self,
        response_id: str,
        item_id: str,
        output_index: int,
        content_index: int,
        part: ContentPart,
    ) -> Event:
        return self._event(
            "response.content_part.done",
            response_id=response_id,
            item_id=item_id,
            output_index=output_index,
            content_index=content_index,
            part=self._part(part),
        )

    def _content_event(
        self,
        internal: str,
        response_id: str,
        item_id: str,
        output_index: int,
        content_index: int,
        **fields: Any,
    ) -> Event:
        return self._event(
            self._name(internal),
            response_id=response_id,
            item_id=item_id,
            output_index=output_index,
            content_index=content_index,
            **fields,
        )

    def audio_delta(
        self, response_id: str, item_id: str, output_index: int, content_index: int, delta_b64: str
    ) -> Event:
        return self._content_event(
            "audio_delta", response_id, item_id, output_index, content_index, delta=delta_b64
        )

    def audio_done(
        self, response_id: str, item_id: str, output_index: int, content_index: int
    ) -> Event:
        return self._content_event("audio_done", response_id, item_id, output_index, content_index)

    def transcript_delta(
        self, response_id: str, item_id: str, output_index: int, content_index: int, delta: str
    ) -> Event:
        return self._content_event(
            "transcript_delta", response_id, item_id, output_index, content_index, delta=delta
        )

    def transcript_done(
        self, response_id: str, item_id: str, output_index: int, content_index: int, transcript: str
    ) -> Event:
        return self._content_event(
            "transcript_done",
            response_id,
            item_id,
            output_index,
            content_index,
            transcript=transcript,
        )

    def text_delta(
        self, response_id: str, item_id: str, output_index: int, content_index: int, delta: str
    ) -> Event:
        return self._content_event(
            "text_delta", response_id, item_id, output_index, content_index, delta=delta
        )

    def text_done(
        self, response_id: str, item_id: str, output_index: int, content_index: int, text: str
    ) -> Event:
        return self._content_event(
            "text_done", response_id, item_id, output_index, content_index, text=text
        )

    def function_arguments_delta(
        self, response_id: str, item_id: str, output_index: int, call_id: str, delta: str
    ) -> Event:
        return self._event(
            "response.function_call_arguments.delta",
            response_id=response_id,
            item_id=item_id,
            output_index=output_index,
            call_id=call_id,
            delta=delta,
        )

    def function_arguments_done(
        self,
        response_id: str,
        item_id: str,
        output_index: int,
        call_id: str,
        name: str,
        arguments: str,
    ) -> Event:
        event = self._event(
            "response.function_call_arguments.done",
            response_id=response_id,
            item_id=item_id,
            output_index=output_index,
            call_id=call_id,
            arguments=arguments,
        )
        if self.generation == "ga":
            event["name"] = name
        return event

    def rate_limits_updated(self, context_tokens: int, used_tokens: int) -> Event:
        """A local engine has no request quota; its real limit is the LLM's context window,
        reported as the ``tokens`` budget left for the conversation."""
        return self._event(
            "rate_limits.updated",
            rate_limits=[
                {
                    "name": "tokens",
                    "limit": context_tokens,
                    "remaining": max(0, context_tokens - used_tokens),
                    "reset_seconds": 0.0,
                },
            ],
        )

    # WebRTC output buffer
    def output_audio_buffer(self, what: str, response_id: str) -> Event:
        assert what in ("started", "stopped", "cleared")
        return self._event(f"output_audio_buffer.{what}", response_id=response_id)
