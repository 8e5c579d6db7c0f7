"""What a session tells its record, at the points the metrics are counted: every server event
it emits (transcripts, items, replies, errors) and each turn's stage timings. The recorder
only queues rows for the store's writer thread; it never raises into the session."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from realtalk.audio.pcm import Int16Array
from realtalk.records.audio import AudioTracks, Track
from realtalk.records.store import RecordStore

log = logging.getLogger("realtalk.records")

_ITEM_ADDED = {"conversation.item.added", "conversation.item.created"}


class Recorder(Protocol):
    def event(self, event: dict[str, Any]) -> None: ...

    def stage(self, stage: str, seconds: float) -> None: ...

    def turn(self, response_id: str, timings: dict[str, float]) -> None: ...

    def audio(self, track: Track, samples: Int16Array, rate: int) -> None: ...

    def close(self, reason: str) -> None: ...


class NullRecorder:
    """Recording off."""

    def event(self, event: dict[str, Any]) -> None:
        pass

    def stage(self, stage: str, seconds: float) -> None:
        pass

    def turn(self, response_id: str, timings: dict[str, float]) -> None:
        pass

    def audio(self, track: Track, samples: Int16Array, rate: int) -> None:
        pass

    def close(self, reason: str) -> None:
        pass


class SessionRecorder:
    """One session's record in a :class:`RecordStore`."""

    def __init__(
        self,
        store: RecordStore,
        record_id: str,
        session_id: str,
        *,
        transport: str,
        generation: str,
        stages: dict[str, str],
        tracks: AudioTracks | None = None,
    ) -> None:
        self.store = store
        self.tracks = tracks
        """The conversation's audio (``REALTALK_RECORD=audio``)."""
        self.record_id = record_id
        self._seq = 0
        self._pending: dict[str, float] = {}
        """The user turn's timings (end of speech → commit, STT) until its reply ends."""
        self._closed = False
        store.begin(record_id, session_id, transport, generation, stages)

    def _add(self, kind: str, data: dict[str, Any]) -> None:
        self._seq += 1
        self.store.entry(self.record_id, self._seq, kind, data)

    def event(self, event: dict[str, Any]) -> None:
        if self._closed:
            return
        try:
            self._event(event)
        except Exception:  # a record must never break the conversation
            log.exception("records: could not record %s", event.get("type"))

    def _event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "conversation.item.input_audio_transcription.completed":
            self._add(
                "user",
                {"item_id": event["item_id"], "text": event.get("transcript", ""), "via": "audio"},
            )
        elif kind in _ITEM_ADDED:
            item = event["item"]
            if item.get("type") == "function_call_output":
                self._add(
                    "tool_result", {"call_id": item.get("call_id"), "output": item.get("output")}
                )
            elif item.get("type") == "message" and item.get("role") == "user":
                text = " ".join(
                    c.get("text", "")
                    for c in item.get("content", [])
                    if c.get("type") == "input_text"
                )
                if text:
                    self._add("user", {"item_id": item.get("id"), "text": text, "via": "text"})
        elif kind == "response.done":
            self._response(event["response"])
        elif kind == "response.output_item.added":
            if self.tracks is not None and self.tracks.hold:
                item = event["item"]
                if item.get("type") == "message":
                    self.tracks.mark(item["id"])
        elif kind == "conversation.item.truncated":
            if self.tracks is not None and self.tracks.hold:
                self.tracks.cut(event["item_id"], int(event.get("audio_end_ms") or 0))
            self._add(
                "truncated",
                {"item_id": event.get("item_id"), "audio_end_ms": event.get("audio_end_ms")},
            )
        elif kind == "error":
            error = event["error"]
            self._add(
                "error",
                {k: error.get(k) for k in ("type", "code", "message", "param", "event_id")},
            )

    def _response(self, response: dict[str, Any]) -> None:
        status = response.get("status")
        reason = (response.get("status_details") or {}).get("reason")
        for item in response.get("output", []):
            if item.get("type") == "function_call":
                self._add(
                    "tool_call",
                    {
                        "response_id": response.get("id"),
                        "item_id": item.get("id"),
                        "call_id": item.get("call_id"),
                        "name": item.get("name"),
                        "arguments": item.get("arguments"),
                    },
                )
            elif item.get("type") == "message":
                text = " ".join(
                    c.get("transcript") or c.get("text") or ""
                    for c in item.get("content", [])
                    if c.get("type") in ("audio", "output_audio", "text", "output_text")
                )
                self._add(
                    "assistant",
                    {
                        "response_id": response.get("id"),
                        "item_id": item.get("id"),
                        "text": text,
                        "status": status,
                        "interrupted": status == "cancelled",
                        "reason": reason,
                    },
                )

    def stage(self, stage: str, seconds: float) -> None:
        self._pending[stage] = max(0.0, seconds)

    def turn(self, response_id: str, timings: dict[str, float]) -> None:
        if self._closed:
            return
        merged = {**self._pending, **timings}
        self._pending = {}
        if merged:
            self._add("latency", {"response_id": response_id, "seconds": merged})

    def audio(self, track: Track, samples: Int16Array, rate: int) -> None:
        if self.tracks is not None and not self._closed:
            self.tracks.add(track, samples, rate)

    def close(self, reason: str) -> None:
        if not self._closed:
            self._closed = True
            self.store.end(self.record_id, reason)
            if self.tracks is not None:
                self.tracks.close()
