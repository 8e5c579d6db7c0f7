"""Conversation items as the engine keeps them (wire shapes live in ``protocol/items.py``)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Literal

from realtalk.core.formats import AudioFormat

ItemType = Literal["message", "function_call", "function_call_output"]
Role = Literal["user", "assistant", "system"]
ItemStatus = Literal["completed", "incomplete", "in_progress"]
PartType = Literal["input_text", "input_audio", "output_text", "output_audio"]


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


@dataclass(slots=True)
class Segment:
    """A spoken piece of an assistant reply and where its audio lies in the part (ms)."""

    text: str
    start_ms: int
    end_ms: int


@dataclass(slots=True)
class ContentPart:
    type: PartType
    text: str | None = None
    transcript: str | None = None
    audio_ms: int = 0
    """Length of the audio this part carries (input or output), in milliseconds."""
    segments: list[Segment] = field(default_factory=list)
    """Output audio only: the transcript piece by piece, with audio positions."""
    audio: bytes | None = None
    """Input audio a client put in an item (wire bytes, the session's input format), kept
    until it is transcribed."""

    def transcript_until(self, audio_end_ms: int) -> str:
        """The transcript of what was heard up to ``audio_end_ms``."""
        kept: list[str] = []
        for seg in self.segments:
            if seg.end_ms <= audio_end_ms:
                kept.append(seg.text)
            elif seg.start_ms < audio_end_ms:
                words = seg.text.split(" ")
                share = (audio_end_ms - seg.start_ms) / max(1, seg.end_ms - seg.start_ms)
                kept.append(" ".join(words[: int(len(words) * share)]))
        return "".join(kept).strip()


@dataclass(slots=True)
class Item:
    type: ItemType
    id: str = field(default_factory=lambda: new_id("item"))
    role: Role | None = None
    status: ItemStatus = "completed"
    content: list[ContentPart] = field(default_factory=list)
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None

    def text_for_model(self) -> str:
        """What the LLM sees of a message: its text or transcripts, in order."""
        pieces = [p.text if p.text is not None else (p.transcript or "") for p in self.content]
        return " ".join(piece for piece in pieces if piece).strip()


ResponseStatus = Literal["in_progress", "completed", "cancelled", "failed", "incomplete"]


@dataclass(slots=True)
class Usage:
    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    cached_tokens: int = 0
    output_text_tokens: int = 0
    output_audio_tokens: int = 0

    @property
    def input_tokens(self) -> int:
        return self.input_text_tokens + self.input_audio_tokens

    @property
    def output_tokens(self) -> int:
        return self.output_text_tokens + self.output_audio_tokens


@dataclass(slots=True)
class ResponseRecord:
    """One response's public state, as ``response.created`` / ``response.done`` show it."""

    id: str = field(default_factory=lambda: new_id("resp"))
    status: ResponseStatus = "in_progress"
    status_details: dict[str, object] | None = None
    output: list[Item] = field(default_factory=list)
    usage: Usage | None = None
    metadata: dict[str, object] | None = None
    audio_output: bool = True
    voice: str = "alloy"
    output_audio_format: AudioFormat = "pcm16"
    temperature: float = 0.8
    max_output_tokens: int | str = "inf"
    conversation_id: str | None = None
