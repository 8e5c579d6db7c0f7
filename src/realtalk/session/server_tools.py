"""Tools the engine runs itself: started as soon as the model's call is complete, so a slow
tool blocks neither the reply's audio nor its events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from realtalk.core.items import Item
from realtalk.tools import ToolRegistry

Spawn = Callable[[Coroutine[Any, Any, object]], "asyncio.Task[object]"]


class ServerToolCalls:
    def __init__(self, tools: ToolRegistry | None, spawn: Spawn) -> None:
        self._tools = tools
        self._spawn = spawn
        self._jobs: dict[str, asyncio.Task[object]] = {}

    def start(self, item: Item) -> None:
        """Run the call now if its tool is a server-side one (otherwise the client runs it)."""
        tools = self._tools
        if tools is None or item.call_id is None or item.name not in tools.server_side():
            return
        self._jobs[item.call_id] = self._spawn(tools.call(item.name, item.arguments or "{}"))

    def started(self, output: list[Item]) -> list[Item]:
        """The function calls among ``output`` that run here."""
        return [i for i in output if i.type == "function_call" and i.call_id in self._jobs]

    async def result(self, call_id: str) -> object:
        return await self._jobs.pop(call_id)
