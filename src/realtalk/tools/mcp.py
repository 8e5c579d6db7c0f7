"""Tools on a remote MCP server, reached over streamable HTTP with the ``mcp`` package.

Each listing and each call opens its own MCP session (connect, initialize, one request,
close), inside the caller's task and under one deadline, so nothing outlives the operation:
cancelling the caller closes the connection. Failures become :class:`McpFailure` with an
error in the protocol's three kinds (``protocol_error``, ``tool_execution_error``,
``http_error``); an unreachable server or a deadline is reported as an ``http_error`` with
the status a gateway would give (502, 504).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from realtalk.core.mcp import CallError, McpServer

LIST_TIMEOUT_S = 10.0
"""Longest a server may take to connect and list its tools."""
CALL_TIMEOUT_S = 20.0
"""Longest one tool call may take, connection included."""
OUTPUT_CHARS = 8_000
"""A tool's output beyond this is cut: a small local model's context is 4k tokens."""


@dataclass(frozen=True, slots=True)
class RemoteTool:
    name: str
    description: str
    input_schema: dict[str, Any]
    annotations: dict[str, Any] | None = None

    @property
    def read_only(self) -> bool:
        """The server's ``readOnlyHint`` (a hint: OpenAI's ``read_only`` filter matches it)."""
        return bool((self.annotations or {}).get("readOnlyHint"))


class McpFailure(Exception):
    def __init__(self, error: CallError) -> None:
        super().__init__(error.message)
        self.error = error


@asynccontextmanager
async def _session(server: McpServer, timeout_s: float) -> AsyncIterator[Client]:
    timeout = httpx2.Timeout(timeout_s)
    async with (
        httpx2.AsyncClient(headers=dict(server.headers), timeout=timeout) as http,
        Client(
            streamable_http_client(server.server_url, http_client=http),
            read_timeout_seconds=timeout_s,
        ) as client,
    ):
        yield client


async def list_tools(server: McpServer, timeout_s: float = LIST_TIMEOUT_S) -> list[RemoteTool]:
    """Every tool the server lists (all pages)."""
    tools: list[RemoteTool] = []
    try:
        async with asyncio.timeout(timeout_s), _session(server, timeout_s) as client:
            cursor: str | None = None
            while True:
                page = await client.list_tools(cursor=cursor)
                for tool in page.tools:
                    annotations = (
                        tool.annotations.model_dump(by_alias=True, exclude_none=True)
                        if tool.annotations is not None
                        else None
                    )
                    description = tool.description or ""
                    tools.append(RemoteTool(tool.name, description, tool.input_schema, annotations))
                cursor = page.next_cursor
                if not cursor:
                    return tools
    except Exception as exc:
        raise McpFailure(_classify(exc, server, timeout_s)) from None


async def call_tool(
    server: McpServer, name: str, arguments: Mapping[str, Any], timeout_s: float = CALL_TIMEOUT_S
) -> str:
    """The tool's output as text; a tool that reports an error raises :class:`McpFailure`."""
    try:
        async with asyncio.timeout(timeout_s), _session(server, timeout_s) as client:
            result = await client.call_tool(name, dict(arguments))
    except Exception as exc:
        raise McpFailure(_classify(exc, server, timeout_s)) from None
    pieces = [getattr(block, "text", None) or f"[{block.type}]" for block in result.content]
    text = "\n".join(pieces)
    if not text and result.structured_content is not None:
        text = json.dumps(result.structured_content, default=str)
    if result.is_error:
        raise McpFailure(CallError("tool_execution_error", text or f"The tool {name} failed."))
    return text[:OUTPUT_CHARS]


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _classify(exc: Exception, server: McpServer, timeout_s: float) -> CallError:
    leaf = _leaf(exc)
    where = f"MCP server '{server.server_label}'"
    if isinstance(leaf, TimeoutError | httpx2.TimeoutException):
        return CallError("http_error", f"The {where} did not answer within {timeout_s:g} s.", 504)
    if isinstance(leaf, httpx2.HTTPStatusError):
        status = leaf.response.status_code
        return CallError("http_error", f"The {where} answered HTTP {status}.", status)
    if isinstance(leaf, httpx2.TransportError):
        reason = f"{type(leaf).__name__}: {leaf}"
        return CallError("http_error", f"Could not reach the {where} ({reason}).", 502)
    if isinstance(leaf, MCPError):
        message = f"The {where} returned an error: {leaf.message}"
        return CallError("protocol_error", message, leaf.code)
    return CallError("protocol_error", f"The {where} failed ({type(leaf).__name__}).", -32603)
