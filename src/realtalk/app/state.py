"""What the running server holds: settings, the standard key, the key minter, readiness."""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import Request

from realtalk.app.call_directory import CallDirectory
from realtalk.app.capacity import SessionSlots
from realtalk.config import Settings
from realtalk.core.config import FunctionTool, SessionConfig, Transcription, TurnDetection
from realtalk.pipeline.models import Models
from realtalk.records import NullRecorder, Recorder, RecordStore, SessionRecorder
from realtalk.records.audio import AudioTracks
from realtalk.session.keys import KeyMinter
from realtalk.tools import ToolRegistry

Readiness = Literal["loading", "ready", "failed"]


@dataclass
class ServerState:
    settings: Settings
    api_key: str
    minter: KeyMinter
    slots: SessionSlots
    """Session places, in all and per key (``app.capacity``)."""
    readiness: Readiness = "loading"
    readiness_detail: str = ""
    live_sessions: set[object] = field(default_factory=set)
    models: Models | None = None
    tools: ToolRegistry = field(default_factory=ToolRegistry)
    calls: dict[str, Any] = field(default_factory=dict)
    """Live WebRTC calls by id (``app.realtime_rtc.Call``)."""
    ending: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a drain's time is up: the WebSocket sessions still open end (``app.drain``)."""
    directory: CallDirectory | None = None
    """The calls of every instance sharing Redis (None: this process alone)."""
    records: RecordStore | None = None
    """Conversation records (None: ``REALTALK_RECORD=off``)."""

    def recorder(
        self, record_id: str, session_id: str, transport: str, generation: str
    ) -> Recorder:
        """A new session's record (a no-op with records off)."""
        if self.records is None:
            return NullRecorder()
        s = self.settings
        stages = {
            "model": self.engine_model(),
            "stt": s.stt_model + (f" @ {s.stt_base_url}" if s.stt_base_url else ""),
            "llm": s.llm_model + (f" @ {s.llm_base_url}" if s.llm_base_url else ""),
            "tts": s.tts_voice + (f" @ {s.tts_base_url}" if s.tts_base_url else ""),
            "end_of_turn": s.end_of_turn_model,
        }
        tracks = None
        if s.record == "audio":
            from realtalk.rtc.audio_files import AudioEncoder  # PyAV lives in rtc/

            tracks = AudioTracks(
                self.records.audio_dir,
                record_id,
                lambda rate: AudioEncoder("opus", rate),
                # A WebSocket client plays the reply itself: hold it until played, to cut.
                hold=transport == "websocket",
            )
        return SessionRecorder(
            self.records,
            record_id,
            session_id,
            transport=transport,
            generation=generation,
            stages=stages,
            tracks=tracks,
        )

    def is_standard_key(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self.api_key.encode())

    def default_session(self, *, with_tools: bool = False) -> SessionConfig:
        """The session configuration a new session starts from, before the client's own.

        ``with_tools``: include the application's tools (the page's sessions); API clients
        bring their own."""
        s = self.settings
        turn: TurnDetection | None = None
        kind = s.page_turn_detection if with_tools else s.turn_detection
        if kind != "none":
            turn = TurnDetection(
                type=kind,
                threshold=s.vad_threshold,
                prefix_padding_ms=s.vad_prefix_padding_ms,
                silence_duration_ms=s.vad_silence_duration_ms,
            )
        return SessionConfig(
            model=self.engine_model(),
            instructions=s.instructions,
            voice=s.voice,
            transcription=Transcription(
                model=s.transcription_model, prompt=self._stt_prompt() if with_tools else None
            )
            if s.input_transcription
            else None,
            turn_detection=turn,
            tools=tuple(
                FunctionTool(t["name"], t["description"], t["parameters"])
                for t in self.tools.schemas()
            )
            if with_tools
            else (),
        )

    def engine_unavailable(self) -> str | None:
        """Why the embedded engine cannot take a session now (None when it can)."""
        if self.settings.engine != "embedded":
            return (
                "This server sends pages to OpenAI (REALTALK_ENGINE=openai); its embedded "
                "engine is off."
            )
        if self.models is not None:
            return None
        if self.readiness == "failed":
            return f"The engine's models failed to load: {self.readiness_detail}"
        return "The engine's models are still loading; see /healthz."

    def _stt_prompt(self) -> str | None:
        if self.settings.transcription_prompt:
            return self.settings.transcription_prompt
        if self.settings.example_tools:
            return "Order numbers are written as digits, like order 1001."
        return None

    def engine_model(self) -> str:
        if self.settings.model:
            return self.settings.model
        return "gpt-realtime" if self.settings.engine == "openai" else "realtalk-local"


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.realtalk
    return state
