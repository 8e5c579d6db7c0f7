"""MCP on the wire (GA only): ``type: "mcp"`` tools ⇄ :class:`McpServer`, the MCP item types
⇄ :class:`Item`, and ``tool_choice: {type: "mcp"}``.

Shapes are those of the ``openai`` package (``RealtimeToolsConfigUnion``'s ``Mcp``,
``RealtimeMcpListTools``, ``RealtimeMcpToolCall``, ``RealtimeMcpApprovalRequest`` /
``Response``); tool objects arrive already validated by those types.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from realtalk.core.items import Item
from realtalk.core.mcp import ApprovalFilter, McpChoice, McpDetails, McpServer, ToolFilter
from realtalk.protocol.errors import ProtocolError

SECRET_FIELDS = ("headers", "authorization")
"""Never echoed back (a session object minted by a backend reaches the browser)."""
_LABEL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def refuse_in_beta(tools: Any, param: str) -> None:
    """The beta generation has no MCP tools: say so (its types would only say "function")."""
    for index, tool in enumerate(tools if isinstance(tools, list) else []):
        if isinstance(tool, Mapping) and tool.get("type") == "mcp":
            raise ProtocolError(
                "MCP tools are part of the GA Realtime API only; connect without the "
                "'OpenAI-Beta: realtime=v1' header to use them.",
                "unsupported_value",
                f"{param}[{index}].type",
            )


def parse_mcp_tools(raw: list[Any], param: str) -> tuple[McpServer, ...]:
    """The ``type: "mcp"`` entries of a ``tools`` list (the others are function tools)."""
    servers: list[McpServer] = []
    for index, tool in enumerate(raw):
        if isinstance(tool, Mapping) and tool.get("type") == "mcp":
            servers.append(_server(tool, f"{param}[{index}]"))
    labels = [s.server_label for s in servers]
    for label in labels:
        if labels.count(label) > 1:
            raise ProtocolError(f"Duplicate MCP server_label {label!r}.", param=param)
    return tuple(servers)


def _server(tool: Mapping[str, Any], where: str) -> McpServer:
    label = tool.get("server_label")
    if not isinstance(label, str) or not _LABEL.match(label):
        raise ProtocolError(
            f"Invalid '{where}.server_label': 1-64 letters, digits, '_' or '-'.",
            param=f"{where}.server_label",
        )
    for unsupported in ("connector_id", "tunnel_id"):
        if tool.get(unsupported):
            raise ProtocolError(
                f"'{where}.{unsupported}' is not supported by the embedded engine: it reaches "
                "MCP servers by 'server_url' only.",
                "unsupported_value",
                f"{where}.{unsupported}",
            )
    url = tool.get("server_url")
    if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
        raise ProtocolError(
            f"Invalid '{where}.server_url': an http:// or https:// URL is required.",
            "missing_required_parameter" if url is None else "invalid_value",
            f"{where}.server_url",
        )
    headers = {str(k): str(v) for k, v in (tool.get("headers") or {}).items()}
    token = tool.get("authorization")
    if token and not any(k.lower() == "authorization" for k in headers):
        headers["Authorization"] = f"Bearer {token}"
    return McpServer(
        server_label=label,
        server_url=url,
        allowed_tools=_allowed(tool.get("allowed_tools")),
        require_approval=_approval(tool.get("require_approval")),
        headers=headers,
        server_description=tool.get("server_description"),
        wire=dict(tool),
    )


def _filter(raw: Any) -> ToolFilter | None:
    if raw is None:
        return None
    if isinstance(raw, list):
        return ToolFilter(tool_names=tuple(str(name) for name in raw))
    names = raw.get("tool_names")
    return ToolFilter(
        tool_names=tuple(names) if names is not None else None, read_only=raw.get("read_only")
    )


def _allowed(raw: Any) -> ToolFilter | None:
    allowed = _filter(raw)
    if allowed is not None and allowed.tool_names is None and allowed.read_only is None:
        return None  # an empty filter object restricts nothing
    return allowed


def _approval(raw: Any) -> Literal["always", "never"] | ApprovalFilter:
    if raw in (None, "always"):
        return "always"
    if raw == "never":
        return "never"
    return ApprovalFilter(always=_filter(raw.get("always")), never=_filter(raw.get("never")))


def mcp_tool_object(server: McpServer) -> dict[str, Any]:
    """The tool as the client configured it, without its secrets."""
    return {k: v for k, v in server.wire.items() if k not in SECRET_FIELDS}


def parse_mcp_choice(
    choice: Mapping[str, Any], servers: tuple[McpServer, ...] | None, param: str
) -> McpChoice:
    label = choice.get("server_label")
    if servers is not None and not any(s.server_label == label for s in servers):
        raise ProtocolError(
            f"Invalid '{param}.server_label': {label!r} is not a configured MCP server.",
            param=f"{param}.server_label",
        )
    return McpChoice(str(label), choice.get("name"))


def mcp_choice_object(choice: McpChoice) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "mcp", "server_label": choice.server_label}
    if choice.name is not None:
        body["name"] = choice.name
    return body


def mcp_item_object(item: Item) -> dict[str, Any]:
    """The wire form of an MCP item (these carry no ``object`` or ``status``)."""
    mcp = item.mcp or McpDetails()
    base: dict[str, Any] = {"id": item.id, "type": item.type}
    match item.type:
        case "mcp_list_tools":
            base.update(server_label=mcp.server_label, tools=list(mcp.tools))
        case "mcp_call":
            error = mcp.error
            base.update(
                server_label=mcp.server_label,
                name=item.name or "",
                arguments=item.arguments or "",
                output=item.output,
                error=None
                if error is None
                else {
                    "type": error.kind,
                    "message": error.message,
                    **({"code": error.code} if error.code is not None else {}),
                },
                approval_request_id=mcp.approval_request_id,
            )
        case "mcp_approval_request":
            base.update(
                server_label=mcp.server_label, name=item.name or "", arguments=item.arguments or ""
            )
        case _:
            base.update(
                approval_request_id=mcp.approval_request_id,
                approve=bool(mcp.approve),
                reason=mcp.reason,
            )
    return base


def mcp_item_from_wire(data: Mapping[str, Any], fields: dict[str, Any], param: str) -> Item:
    """A client-created MCP item (shape-checked by the openai types): an approval response,
    or history (a listing, a call, a request) from an earlier conversation."""
    kind = data["type"]
    if kind == "mcp_approval_response":
        details = McpDetails(
            approval_request_id=data.get("approval_request_id"),
            approve=bool(data.get("approve")),
            reason=data.get("reason"),
        )
        if not details.approval_request_id:
            raise ProtocolError(
                f"'{param}.approval_request_id' is required.",
                "missing_required_parameter",
                f"{param}.approval_request_id",
            )
        return Item("mcp_approval_response", mcp=details, **fields)
    details = McpDetails(
        server_label=str(data.get("server_label") or ""),
        tools=[dict(t) for t in data.get("tools") or []],
        approval_request_id=data.get("approval_request_id"),
    )
    return Item(
        kind,
        name=data.get("name"),
        arguments=data.get("arguments"),
        output=data.get("output"),
        mcp=details,
        **fields,
    )
