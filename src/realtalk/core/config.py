"""The session's configuration as the engine sees it: one model for both protocol generations.

``protocol/`` translates the beta (flat) and GA (nested) wire shapes to and from this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from realtalk.core.formats import AudioFormat

TurnType = Literal["server_vad", "semantic_vad"]


@dataclass(frozen=True, slots=True)
class TurnDetection:
    type: TurnType = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = None
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"


@dataclass(frozen=True, slots=True)
class Transcription:
    model: str = "whisper-1"
    language: str | None = None
    prompt: str | None = None


@dataclass(frozen=True, slots=True)
class FunctionTool:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class Truncation:
    """How the prompt is kept inside the LLM's context (GA ``truncation``)."""

    type: Literal["auto", "disabled", "retention_ratio"] = "auto"
    retention_ratio: float = 0.8
    """After a cut, the conversation keeps at most this share of its token budget."""
    post_instructions: int | None = None
    """The conversation's token budget after instructions and tools (None: the context's)."""


ECHOED = ("noise_reduction", "tracing", "prompt", "include", "parallel_tool_calls", "reasoning")
"""Settings accepted and echoed back as the client set them, but not acted on."""


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Everything a client can set on a Realtime session."""

    model: str = "realtalk-local"
    instructions: str = ""
    voice: str = "alloy"
    audio_output: bool = True
    """True: the reply is spoken (with a transcript). False: text only."""
    input_audio_format: AudioFormat = "pcm16"
    output_audio_format: AudioFormat = "pcm16"
    transcription: Transcription | None = field(default_factory=Transcription)
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    tools: tuple[FunctionTool, ...] = ()
    tool_choice: str = "auto"
    """``auto``, ``none``, ``required`` or the name of one function."""
    temperature: float = 0.8
    max_output_tokens: int | Literal["inf"] = "inf"
    speed: float = 1.0
    truncation: Truncation = field(default_factory=Truncation)
    echoed: Mapping[str, Any] = field(default_factory=dict)
    """``ECHOED`` settings by name, as the client set them."""

    def with_changes(self, **changes: Any) -> SessionConfig:
        return replace(self, **changes)
