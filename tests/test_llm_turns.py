"""Sessions share the local LLM without stalling one another (issue 10, point 8): a cancel
during a long prompt's evaluation ends the response at once, the socket keeps reading (and
answering pings) meanwhile, the model is free within a batch, and a long prompt holds the
model for another session for a slice at most. Real LLM, live server, real WebSocket clients.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets

from realtalk.pipeline.llm import LLMRequest
from realtalk.pipeline.llm.local import LlamaLLM
from realtalk.pipeline.weights import resolve_model
from tests.conftest import MODEL_DIR, LiveServer, start_server, stop_server

pytestmark = [pytest.mark.live, pytest.mark.models]

NOTES_PER_MESSAGE = 23
MESSAGES = 6
"""~3,500 prompt tokens in all (about 25 a note): most of the 4,096-token context, ~10 s of
prompt evaluation on two quiet cores."""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("llm-turns"), "llmturns", ready=True)
    yield server
    stop_server(server)


@asynccontextmanager
async def connect(engine: LiveServer, **options: Any) -> AsyncIterator[Any]:
    url = engine.url.replace("http", "ws") + "/v1/realtime?model=realtalk-local"
    headers = {"Authorization": f"Bearer {engine.api_key}"}
    async with websockets.connect(url, additional_headers=headers, **options) as ws:
        await send(ws, "session.update", session={"type": "realtime", **TEXT_ONLY})
        await until(ws, "session.updated")
        yield ws


TEXT_ONLY = {
    "output_modalities": ["text"],
    "audio": {"input": {"turn_detection": None}},
    "max_output_tokens": 24,
}


async def send(ws: Any, kind: str, **fields: Any) -> None:
    await ws.send(json.dumps({"type": kind, **fields}))


async def until(ws: Any, kind: str, limit_s: float = 120) -> dict[str, Any]:
    async with asyncio.timeout(limit_s):
        while True:
            event = json.loads(await ws.recv())
            assert event["type"] != "error", event
            if event["type"] == kind:
                return event


def notes(tag: str, first: int, last: int) -> str:
    return " ".join(
        f"Note {i} of {tag}: the parcel for order {1000 + i} left the {tag} depot on "
        f"day {i % 28 + 1}."
        for i in range(first, last)
    )


async def within(limit_s: float, condition: Callable[[], bool]) -> bool:
    """Whether ``condition`` becomes true within ``limit_s``."""
    for _ in range(int(limit_s / 0.01)):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()


async def test_a_stopped_generation_frees_the_model_within_a_batch() -> None:
    llm = LlamaLLM(resolve_model(MODEL_DIR, "llm", "qwen2.5-0.5b"))
    text = notes("plover", 0, NOTES_PER_MESSAGE * MESSAGES)
    stream = llm.stream(LLMRequest([{"role": "user", "content": text}], max_tokens=8))
    first = asyncio.ensure_future(anext(stream))
    assert await within(10, llm.llama.turns.busy)  # the prompt's evaluation has begun
    await asyncio.sleep(0.5)
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    stopped_at = time.monotonic()
    await stream.aclose()
    assert time.monotonic() - stopped_at < 0.1  # closing never waits for the thread
    # Free after a batch of 64 tokens, not after the rest of a ~3,500-token prompt (~10 s).
    assert await within(3, lambda: not llm.llama.turns.busy())
    assert 0 < llm.llama.n_tokens < 3000


async def say(ws: Any, role: str, text: str) -> None:
    kind = "input_text" if role == "user" else "output_text"
    item = {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}
    await send(ws, "conversation.item.create", item=item)
    await until(ws, "conversation.item.done")


async def long_conversation(ws: Any, tag: str, question: str) -> None:
    """A conversation of ~3,500 tokens whose every token is new to the model's cache."""
    await send(
        ws, "session.update", session={"type": "realtime", "instructions": f"You are {tag}."}
    )
    await until(ws, "session.updated")
    for m in range(MESSAGES):
        text = notes(tag, m * NOTES_PER_MESSAGE, (m + 1) * NOTES_PER_MESSAGE)
        await say(ws, "user" if m % 2 == 0 else "assistant", text)
    await say(ws, "user", question)


async def first_text_s(ws: Any) -> float:
    """Seconds from ``response.create`` to the reply's first text."""
    began = time.monotonic()
    await send(ws, "response.create")
    await until(ws, "response.output_text.delta")
    elapsed = time.monotonic() - began
    assert (await until(ws, "response.done"))["response"]["status"] == "completed"
    return elapsed


async def test_cancel_during_a_long_prompt_ends_at_once_and_frees_the_model(
    engine: LiveServer,
) -> None:
    async with connect(engine) as other, connect(engine) as ws:
        await long_conversation(ws, "kestrel", "Summarise the notes.")
        await send(ws, "response.create")
        await until(ws, "response.created")
        cancelled_at = time.monotonic()
        await send(ws, "response.cancel")
        done = await until(ws, "response.done")
        assert time.monotonic() - cancelled_at < 5  # not the ~10 s the prompt needs
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "client_cancelled"
        # The model is free soon after: another session's reply starts (its own prompt is
        # a few dozen tokens), instead of waiting for the cancelled prompt's evaluation.
        await say(other, "user", "Say hello.")
        assert await first_text_s(other) < 8


async def stream_silence(ws: Any) -> None:
    """What a client with an open microphone sends: 100 ms of audio every 100 ms."""
    chunk = base64.b64encode(bytes(4800)).decode()
    while True:
        await send(ws, "input_audio_buffer.append", audio=chunk)
        await asyncio.sleep(0.1)


async def test_keepalive_pings_are_answered_while_a_cancel_completes(engine: LiveServer) -> None:
    async with connect(engine, ping_interval=0.5, ping_timeout=2) as ws:
        await long_conversation(ws, "osprey", "Summarise the notes.")
        await send(ws, "response.create")
        await until(ws, "response.created")
        await send(ws, "response.cancel")
        microphone = asyncio.ensure_future(stream_silence(ws))
        try:
            assert (await until(ws, "response.done"))["response"]["status"] == "cancelled"
            await asyncio.sleep(3)  # pings and audio go on
            await send(ws, "session.update", session={"type": "realtime", "instructions": "Hi."})
            await until(ws, "session.updated")  # the connection is alive and read
        finally:
            microphone.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await microphone


async def test_a_long_prompt_holds_the_model_for_others_a_slice_at_most(
    engine: LiveServer,
) -> None:
    async with connect(engine) as other, connect(engine) as ws:
        await say(other, "user", "Say hello.")
        await long_conversation(
            ws, "heron", "Ignore the notes. Reply with exactly one word: pineapple."
        )
        await send(ws, "response.create")
        await until(ws, "response.created")
        # The short reply goes first, although the long prompt was there before it.
        assert await first_text_s(other) < 8
        # The long one then finishes where it was handed over, with its context intact.
        done = await until(ws, "response.done")
        assert done["response"]["status"] == "completed"
        text = done["response"]["output"][0]["content"][0]["text"]
        assert "pineapple" in text.lower()
