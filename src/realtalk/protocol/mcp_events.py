"""Server events of MCP tools (GA only: the beta generation has none)."""

from __future__ import annotations

from typing import Literal

from realtalk.protocol.server_events import Event, new_event_id

Stage = Literal["in_progress", "completed", "failed"]


def list_tools(stage: Stage, item_id: str) -> Event:
    """``mcp_list_tools.in_progress / completed / failed``."""
    return {"type": f"mcp_list_tools.{stage}", "event_id": new_event_id(), "item_id": item_id}


def call(stage: Stage, item_id: str, output_index: int) -> Event:
    """``response.mcp_call.in_progress / completed / failed``."""
    return {
        "type": f"response.mcp_call.{stage}",
        "event_id": new_event_id(),
        "item_id": item_id,
        "output_index": output_index,
    }


def arguments_delta(response_id: str, item_id: str, output_index: int, delta: str) -> Event:
    return {
        "type": "response.mcp_call_arguments.delta",
        "event_id": new_event_id(),
        "response_id": response_id,
        "item_id": item_id,
        "output_index": output_index,
        "delta": delta,
    }


def arguments_done(response_id: str, item_id: str, output_index: int, arguments: str) -> Event:
    return {
        "type": "response.mcp_call_arguments.done",
        "event_id": new_event_id(),
        "response_id": response_id,
        "item_id": item_id,
        "output_index": output_index,
        "arguments": arguments,
    }
