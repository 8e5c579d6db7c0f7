"""What a client asks the session to do: small typed commands, decoded by ``protocol/``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from realtalk.core.config import FunctionTool, SessionConfig
from realtalk.core.formats import AudioFormat
from realtalk.core.items import Item
from realtalk.core.mcp import McpChoice, McpServer


@dataclass(frozen=True, slots=True)
class UpdateSession:
    event_id: str | None
    config: SessionConfig
    kind: Literal["update_session"] = "update_session"


@dataclass(frozen=True, slots=True)
class AppendAudio:
    event_id: str | None
    audio: bytes
    """Wire bytes in the session's input format."""
    kind: Literal["append_audio"] = "append_audio"


@dataclass(frozen=True, slots=True)
class CommitAudio:
    event_id: str | None
    kind: Literal["commit_audio"] = "commit_audio"


@dataclass(frozen=True, slots=True)
class ClearAudio:
    event_id: str | None
    kind: Literal["clear_audio"] = "clear_audio"


@dataclass(frozen=True, slots=True)
class CreateItem:
    event_id: str | None
    item: Item
    previous_item_id: str | None
    kind: Literal["create_item"] = "create_item"


@dataclass(frozen=True, slots=True)
class RetrieveItem:
    event_id: str | None
    item_id: str
    kind: Literal["retrieve_item"] = "retrieve_item"


@dataclass(frozen=True, slots=True)
class TruncateItem:
    event_id: str | None
    item_id: str
    content_index: int
    audio_end_ms: int
    kind: Literal["truncate_item"] = "truncate_item"


@dataclass(frozen=True, slots=True)
class DeleteItem:
    event_id: str | None
    item_id: str
    kind: Literal["delete_item"] = "delete_item"


@dataclass(frozen=True, slots=True)
class ResponseOptions:
    """Per-response overrides from ``response.create``; ``None`` keeps the session's value."""

    instructions: str | None = None
    audio_output: bool | None = None
    voice: str | None = None
    output_audio_format: AudioFormat | None = None
    tools: tuple[FunctionTool, ...] | None = None
    mcp: tuple[McpServer, ...] | None = None
    tool_choice: str | McpChoice | None = None
    temperature: float | None = None
    max_output_tokens: int | Literal["inf"] | None = None
    out_of_band: bool = False
    """``conversation: "none"``: the response is not added to the conversation."""
    input: tuple[Item | str, ...] | None = None
    """Items for this response only; a ``str`` refers to an existing item by id."""
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CreateResponse:
    event_id: str | None
    options: ResponseOptions
    kind: Literal["create_response"] = "create_response"


@dataclass(frozen=True, slots=True)
class CancelResponse:
    event_id: str | None
    response_id: str | None
    kind: Literal["cancel_response"] = "cancel_response"


@dataclass(frozen=True, slots=True)
class ClearOutputAudio:
    event_id: str | None
    kind: Literal["clear_output_audio"] = "clear_output_audio"


Command = (
    UpdateSession
    | AppendAudio
    | CommitAudio
    | ClearAudio
    | CreateItem
    | RetrieveItem
    | TruncateItem
    | DeleteItem
    | CreateResponse
    | CancelResponse
    | ClearOutputAudio
)
