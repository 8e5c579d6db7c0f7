"""The language model stage: chat messages + tools in, text deltas or tool calls out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LLMRequest:
    messages: list[dict[str, Any]]
    """OpenAI Chat Completions messages (system / user / assistant with tool_calls / tool)."""
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "auto"
    """``auto``, ``none``, ``required`` or a tool's name."""
    temperature: float = 0.8
    """On OpenAI's Realtime scale (0.6–1.2)."""
    max_tokens: int = 512


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    kind: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str
    """A JSON object as text."""
    kind: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True, slots=True)
class Finished:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    stop_reason: Literal["stop", "length"] = "stop"
    kind: Literal["finished"] = "finished"


LLMEvent = TextDelta | ToolCall | Finished


class LLM(Protocol):
    context_tokens: int

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in a prompt (exact where the model's tokenizer is at hand,
        else a safe overestimate): for keeping prompts inside the context."""
        ...

    def stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        """Yield deltas and tool calls, then one :class:`Finished`. Closing the iterator
        (or cancelling its consumer) stops generation."""
        ...
