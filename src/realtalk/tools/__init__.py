"""Function calling on the server side: the tool registry, schemas from type hints, execution."""

from realtalk.tools.registry import Tool, ToolError, ToolRegistry, tool

__all__ = ["Tool", "ToolError", "ToolRegistry", "tool"]
