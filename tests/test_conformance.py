"""OpenAI-documented behaviours, tried with the real ``openai`` client against the live engine
and its real models: audio in created items, images refused, out-of-band responses beside
the default one, truncation, max_output_tokens, echoed settings, no leaked server prompt."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import websockets
from openai import AsyncOpenAI

from tests.conftest import LiveServer, start_server, stop_server
from tests.realtime_helpers import silence, validate_event, voice, words

pytestmark = [pytest.mark.live, pytest.mark.models]

SERVER_PROMPT = "Names: Zorblax, Quintavius."


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(
        tmp_path_factory.mktemp("conformance"),
        "conformance",
        {"REALTALK_TRANSCRIPTION_PROMPT": SERVER_PROMPT},
        ready=True,
    )
    yield server
    stop_server(server)


def connect(engine: LiveServer) -> Any:
    client = AsyncOpenAI(api_key=engine.api_key, base_url=f"{engine.url}/v1")
    return client.realtime.connect(model="realtalk-local")


async def collect(connection: Any, until: str, limit_s: float = 120) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(limit_s):
        async for event in connection:
            raw = event.to_dict()
            validate_event(raw, "ga")
            events.append(raw)
            if raw["type"] == until:
                return events
    raise AssertionError(f"connection closed before {until}")


def user_text(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def test_audio_in_a_created_item_is_heard_by_the_model(engine: LiveServer) -> None:
    said = np.concatenate(
        [silence(300), voice("My favourite animal is the giraffe."), silence(300)]
    )
    audio = base64.b64encode(said.astype("<i2").tobytes()).decode()
    async with connect(engine) as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["text"],
                "instructions": "Answer in one short sentence.",
                "audio": {"input": {"turn_detection": None}},
            }
        )
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_audio", "audio": audio}],
            }
        )
        heard = await collect(conn, "conversation.item.done")
        await conn.conversation.item.create(item=user_text("Which animal did I just name?"))
        await conn.response.create()
        events = await collect(conn, "response.done")
    completed = [
        e for e in heard if e["type"] == "conversation.item.input_audio_transcription.completed"
    ]
    assert len(completed) == 1 and "giraffe" in words(completed[0]["transcript"])
    assert heard[-1]["item"]["content"][0]["transcript"] == completed[0]["transcript"]
    answer = events[-1]["response"]["output"][0]["content"][0]["text"]
    assert "giraffe" in words(answer)


async def test_an_image_is_a_clear_error_and_the_session_goes_on(engine: LiveServer) -> None:
    async with connect(engine) as conn:
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_image", "image_url": "data:image/png;base64,AAAA"}],
            },
            event_id="evt_image",
        )
        error = (await collect(conn, "error"))[-1]["error"]
        assert error["event_id"] == "evt_image" and error["code"] == "unsupported_content_type"
        assert "cannot see images" in error["message"]
        await conn.conversation.item.create(item=user_text("Hello"))
        assert (await collect(conn, "conversation.item.done"))[-1]["item"]["role"] == "user"


async def test_out_of_band_response_runs_beside_the_default_one(engine: LiveServer) -> None:
    async with connect(engine) as conn:
        await conn.session.update(
            session={"type": "realtime", "audio": {"input": {"turn_detection": None}}}
        )
        await conn.conversation.item.create(item=user_text("Count from one to twenty."))
        await conn.response.create()
        created = (await collect(conn, "response.created"))[-1]["response"]["id"]
        await conn.response.create(
            response={
                "conversation": "none",
                "output_modalities": ["text"],
                "instructions": "Classify the sentiment as positive or negative. One word.",
                "metadata": {"purpose": "sentiment"},
                "input": [user_text("I love this product, it is wonderful!")],
            }
        )
        events: list[dict[str, Any]] = []
        done: dict[str, dict[str, Any]] = {}
        while len(done) < 2:
            events += await collect(conn, "response.done")
            response = events[-1]["response"]
            done[response["id"]] = response
    assert not [e for e in events if e["type"] == "error"]
    side = next(r for r in done.values() if r["id"] != created)
    assert side["conversation_id"] is None and side["metadata"] == {"purpose": "sentiment"}
    assert side["status"] == done[created]["status"] == "completed"
    # Accepted while the default one was still in progress (one local LLM takes their
    # generations in turn, so which finishes first is not the point).
    side_created = next(
        i
        for i, e in enumerate(events)
        if e["type"] == "response.created" and e["response"]["id"] == side["id"]
    )
    default_done = next(
        i
        for i, e in enumerate(events)
        if e["type"] == "response.done" and e["response"]["id"] == created
    )
    assert side_created < default_done
    assert "positive" in words(side["output"][0]["content"][0]["text"])


async def test_truncation_keeps_a_long_conversation_inside_the_context(engine: LiveServer) -> None:
    """About 5,000 tokens of conversation in a 4,096-token context: with truncation the reply
    is made from the recent part; with truncation disabled it fails, as OpenAI's does."""
    filler = "The quick brown fox jumps over the lazy dog near the river bank. " * 30
    async with connect(engine) as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["text"],
                "max_output_tokens": 16,
                "truncation": "disabled",
                "audio": {"input": {"turn_detection": None}},
            }
        )
        for index in range(12):
            await conn.conversation.item.create(item=user_text(f"Note {index}. {filler}"))
        await conn.conversation.item.create(item=user_text("Say hello."))
        await collect(conn, "conversation.item.done")
        await conn.response.create()
        failed = (await collect(conn, "response.done"))[-1]["response"]
        assert failed["status"] == "failed"
        await conn.session.update(session={"type": "realtime", "truncation": "auto"})
        updated = (await collect(conn, "session.updated"))[-1]["session"]
        assert updated["truncation"] == "auto"
        await conn.response.create()
        done = (await collect(conn, "response.done"))[-1]["response"]
    assert done["status"] in ("completed", "incomplete")
    assert done["output"][0]["content"][0]["text"]
    assert done["usage"]["input_tokens"] < 4096


async def test_max_output_tokens_cut_off_is_incomplete(engine: LiveServer) -> None:
    async with connect(engine) as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["text"],
                "audio": {"input": {"turn_detection": None}},
            }
        )
        await conn.conversation.item.create(item=user_text("Tell me a long story about a cat."))
        await conn.response.create(response={"max_output_tokens": 5})
        events = await collect(conn, "response.done")
    done = events[-1]["response"]
    assert done["status"] == "incomplete"
    assert done["status_details"] == {"type": "incomplete", "reason": "max_output_tokens"}
    assert done["output"][0]["status"] == "incomplete"
    assert done["usage"]["output_tokens"] == 5


async def test_accepted_but_ignored_fields_are_echoed_as_set(engine: LiveServer) -> None:
    session = {
        "type": "realtime",
        "tracing": {"workflow_name": "support", "group_id": "g1"},
        "prompt": {"id": "pmpt_123", "version": "2", "variables": {"city": "Paris"}},
        "include": ["item.input_audio_transcription.logprobs"],
        "parallel_tool_calls": False,
        "truncation": {"type": "retention_ratio", "retention_ratio": 0.5},
        "audio": {
            "input": {
                "noise_reduction": {"type": "near_field"},
                "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
            }
        },
    }
    async with connect(engine) as conn:
        created = (await collect(conn, "session.created"))[-1]["session"]
        await conn.session.update(session=session)  # type: ignore[arg-type]
        updated = (await collect(conn, "session.updated"))[-1]["session"]
    # The server's own transcription prompt is the page's: an API session never shows it.
    assert created["audio"]["input"]["transcription"]["prompt"] is None
    assert SERVER_PROMPT not in json.dumps(created)
    for name in ("tracing", "prompt", "include", "parallel_tool_calls", "truncation"):
        assert updated[name] == session[name], name
    audio_in = updated["audio"]["input"]
    assert audio_in["noise_reduction"] == {"type": "near_field"}
    assert audio_in["transcription"] == {
        "model": "gpt-4o-transcribe",
        "language": "en",
        "prompt": None,
    }


async def test_beta_echoes_and_no_server_prompt(engine: LiveServer) -> None:
    url = engine.url.replace("http", "ws", 1) + "/v1/realtime?model=gpt-4o-realtime-preview"
    headers = {"Authorization": f"Bearer {engine.api_key}", "OpenAI-Beta": "realtime=v1"}
    async with websockets.connect(url, additional_headers=headers) as ws:
        created = json.loads(await ws.recv())
        validate_event(created, "beta")
        assert SERVER_PROMPT not in json.dumps(created)
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "input_audio_noise_reduction": {"type": "far_field"},
                        "tracing": "auto",
                        "input_audio_transcription": {"model": "whisper-1"},
                    },
                }
            )
        )
        while (event := json.loads(await ws.recv()))["type"] != "session.updated":
            pass
    validate_event(event, "beta")
    session = event["session"]
    assert session["input_audio_noise_reduction"] == {"type": "far_field"}
    assert session["tracing"] == "auto"
    assert session["input_audio_transcription"]["prompt"] is None
