"""MCP tools as the engine sees them: a remote server's configuration (GA ``tools`` entries of
``type: "mcp"``) and what MCP items carry. Wire shapes live in ``protocol/mcp.py``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class ToolFilter:
    """OpenAI's ``{tool_names, read_only}`` filter: a tool matches when every given
    condition holds (no condition: nothing matches)."""

    tool_names: tuple[str, ...] | None = None
    read_only: bool | None = None

    def matches(self, name: str, read_only: bool) -> bool:
        if self.tool_names is None and self.read_only is None:
            return False
        if self.tool_names is not None and name not in self.tool_names:
            return False
        return self.read_only is None or self.read_only == read_only


@dataclass(frozen=True, slots=True)
class ApprovalFilter:
    """``require_approval: {always: filter, never: filter}``; tools neither names need it."""

    always: ToolFilter | None = None
    never: ToolFilter | None = None


@dataclass(frozen=True, slots=True)
class McpServer:
    """One ``type: "mcp"`` tool: a remote MCP server reached over streamable HTTP."""

    server_label: str
    server_url: str
    allowed_tools: ToolFilter | None = None
    """``None``: every tool the server lists."""
    require_approval: Literal["always", "never"] | ApprovalFilter = "always"
    headers: Mapping[str, str] = field(default_factory=dict)
    server_description: str | None = None
    wire: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """The tool object as the client sent it (echoed in session objects without secrets)."""

    def allows(self, name: str, read_only: bool) -> bool:
        return self.allowed_tools is None or self.allowed_tools.matches(name, read_only)

    def needs_approval(self, name: str, read_only: bool) -> bool:
        rule = self.require_approval
        if isinstance(rule, str):
            return rule == "always"
        if rule.never is not None and rule.never.matches(name, read_only):
            return False
        return True

    def key(self) -> tuple[Any, ...]:
        """What a listing depends on: the same key lists the same tools."""
        headers = tuple(sorted(self.headers.items()))
        return (self.server_label, self.server_url, headers, self.allowed_tools)


@dataclass(frozen=True, slots=True)
class McpChoice:
    """``tool_choice: {type: "mcp", server_label, name}``: call that server's tool (any of
    its tools when ``name`` is None)."""

    server_label: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class CallError:
    """Why an MCP call failed, in the three kinds the protocol names."""

    kind: Literal["protocol_error", "tool_execution_error", "http_error"]
    message: str
    code: int | None = None
    """JSON-RPC error code (protocol) or HTTP status (http); none for a tool's own error."""


@dataclass(slots=True)
class McpDetails:
    """The MCP fields of an item (``mcp_list_tools``, ``mcp_call``, ``mcp_approval_request``,
    ``mcp_approval_response``); the name, arguments and output use :class:`Item`'s own."""

    server_label: str = ""
    tools: list[dict[str, Any]] = field(default_factory=list)
    """``mcp_list_tools``: ``{name, description, input_schema, annotations}`` each."""
    approval_request_id: str | None = None
    approve: bool | None = None
    reason: str | None = None
    """The answer of an ``mcp_approval_response`` (also kept on the ``mcp_call`` it answers)."""
    error: CallError | None = None
    """``mcp_call``: why the call failed."""
