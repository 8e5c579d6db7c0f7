"""The OpenAI Agents SDK's realtime runner against realtalk's WebSocket engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimeRunner

from tests.conftest import LiveServer, start_server, stop_server

pytestmark = [pytest.mark.live, pytest.mark.models]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("agents"), "agents", ready=True)
    yield server
    stop_server(server)


def assistant_text(history: list[Any]) -> str:
    texts = []
    for item in history:
        if getattr(item, "role", None) != "assistant":
            continue
        for part in getattr(item, "content", []) or []:
            texts.append(getattr(part, "transcript", None) or getattr(part, "text", None) or "")
    return " ".join(texts)


async def test_realtime_agent_calls_a_function_tool_and_speaks_the_result(
    engine: LiveServer,
) -> None:
    calls: list[str] = []

    @function_tool
    def lookup_order(order_id: str) -> str:
        """Look up the status of a customer's order by its order number."""
        calls.append(order_id)
        return json.dumps({"order_id": order_id, "status": "shipped", "arrives": "Tuesday"})

    agent = RealtimeAgent(
        name="Shop assistant",
        tools=[lookup_order],
        instructions="You are a shop assistant. Use the tools to answer.",
    )
    runner = RealtimeRunner(agent)
    url = engine.url.replace("http", "ws", 1) + "/v1/realtime?model=gpt-realtime"
    session = await runner.run(model_config={"url": url, "api_key": engine.api_key})
    seen: list[str] = []
    errors: list[Any] = []
    audio_bytes = 0
    history: list[Any] = []
    async with session:
        await session.send_message("What's the status of order 1001?")
        async with asyncio.timeout(120):
            async for event in session:
                seen.append(event.type)
                if event.type == "error":
                    errors.append(event.error)
                elif event.type == "audio":
                    audio_bytes += len(event.audio.data)
                elif event.type == "history_updated":
                    history = list(event.history)
                elif (
                    event.type == "agent_end"
                    and "tool_end" in seen
                    and "audio_end" in seen[seen.index("tool_end") :]
                ):
                    break
    assert not errors, errors
    assert calls == ["1001"]
    assert seen.index("tool_start") < seen.index("tool_end")
    assert audio_bytes > 24_000  # the answer was spoken (≥ 0.5 s of 24 kHz pcm16)
    assert "shipped" in assistant_text(history).lower()
