"""Which tools a server offers: the examples, plus the application's own (``REALTALK_TOOLS``)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from realtalk.config import Settings
from realtalk.tools.examples import example_registry
from realtalk.tools.registry import Tool, ToolRegistry


class ToolsConfigError(Exception):
    """``REALTALK_TOOLS`` or ``REALTALK_SERVER_TOOLS`` is wrong; the message says how."""


def _import(reference: str) -> Any:
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ToolsConfigError(f"REALTALK_TOOLS: cannot import {module_name!r}: {exc}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ToolsConfigError(f"REALTALK_TOOLS: {module_name!r} has no {attribute!r}") from None


def load_tools(settings: Settings) -> ToolRegistry:
    registry = ToolRegistry()
    if settings.example_tools:
        registry.add(
            *example_registry(
                settings.data_dir,
                weather_url=settings.weather_url,
                weather_timeout_s=settings.weather_timeout_s,
            )
        )
    if settings.tools:
        found = _import(settings.tools)
        if callable(found) and not isinstance(found, (Tool, ToolRegistry)):
            found = found(settings)
        items: Iterable[Any] = found if isinstance(found, (ToolRegistry, list, tuple)) else [found]
        for item in items:
            if not isinstance(item, Tool):
                raise ToolsConfigError(f"REALTALK_TOOLS: {item!r} is not a @tool function")
            registry.add(item)
    for name in settings.server_tools:
        item = registry.get(name)
        if item is None:
            raise ToolsConfigError(f"REALTALK_SERVER_TOOLS: no tool named {name!r}")
        item.execution = "server"
    for item in registry:
        item.timeout_s = min(item.timeout_s, settings.tool_timeout_s)
    return registry
