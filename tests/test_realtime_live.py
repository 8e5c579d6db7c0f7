"""The Realtime engine over WebSocket with the real local models, against a live server.

Speech is generated at test time with espeak-ng; the official openai SDK (GA) and a raw
websockets client (beta) talk to a uvicorn process, and every server event is validated
against the openai package's types for the connection's generation.
"""

from __future__ import annotations

import asyncio
import base64
import difflib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from openai import AsyncOpenAI

from realtalk.audio.pcm import resample
from tests.conftest import MODEL_DIR, LiveServer, start_server, stop_server
from tests.realtime_helpers import silence, speech, validate_event, words

pytestmark = [pytest.mark.live, pytest.mark.models]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("engine"), "realtime", ready=True)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def whisper() -> Any:
    from realtalk.pipeline import weights
    from realtalk.pipeline.stt.whisper import WhisperSTT

    return WhisperSTT(weights.resolve_model(MODEL_DIR, "stt", "whisper-base"), cpu_threads=1)


LOOKUP_TOOL = {
    "type": "function",
    "name": "lookup_order",
    "description": "Look up the status of a customer's order by its order id.",
    "parameters": {
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    },
}


def client_for(engine: LiveServer) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=engine.api_key, base_url=f"{engine.url}/v1")


async def collect(connection: Any, until: str, limit_s: float = 90) -> list[dict[str, Any]]:
    """Raw events from an SDK connection, each validated (GA), up to ``until``."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(limit_s):
        async for event in connection:
            raw = event.to_dict()
            validate_event(raw, "ga")
            events.append(raw)
            if raw["type"] == until:
                return events
    raise AssertionError(f"connection closed before {until}")


async def say(connection: Any, text: str) -> None:
    """A typed user message (``conversation.item.create``)."""
    await connection.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )


async def shop_session(connection: Any, instructions: str) -> None:
    """A text-only session that offers ``LOOKUP_TOOL``."""
    await connection.session.update(
        session={
            "type": "realtime",
            "output_modalities": ["text"],
            "tools": [LOOKUP_TOOL],
            "instructions": instructions,
        }
    )


def b64(samples: np.ndarray) -> str:
    return base64.b64encode(samples.astype("<i2").tobytes()).decode()


async def send_audio(connection: Any, samples: np.ndarray) -> None:
    for start in range(0, len(samples), 4800):
        await connection.input_audio_buffer.append(audio=b64(samples[start : start + 4800]))


def similar(a: str, b: str) -> float:
    """How alike two transcripts are (0-1), ignoring case and punctuation."""

    def norm(text: str) -> str:
        return " ".join(sorted(words(text)))

    return difflib.SequenceMatcher(None, norm(a), norm(b)).ratio()


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_text_in_text_out(engine: LiveServer) -> None:
    async with client_for(engine).realtime.connect(model="realtalk-local") as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["text"],
                "instructions": "Answer in one short sentence.",
            }
        )
        await say(conn, "What color is the sky on a clear day?")
        await conn.response.create()
        events = await collect(conn, "response.done")
    assert kinds(events)[0] == "session.created"
    done = events[-1]["response"]
    assert done["status"] == "completed"
    text = done["output"][0]["content"][0]["text"]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == text and "blue" in text.lower()
    assert done["usage"]["output_tokens"] > 0 and done["usage"]["input_tokens"] > 0


async def test_spoken_turn_with_server_vad(engine: LiveServer, whisper: Any) -> None:
    question = "What is the capital of France?"
    audio = np.concatenate([silence(600), speech(question), silence(1200)])
    async with client_for(engine).realtime.connect(model="realtalk-local") as conn:
        await conn.session.update(
            session={"type": "realtime", "instructions": "Answer in one complete sentence."}
        )
        await send_audio(conn, audio)
        events = await collect(conn, "response.done")
    order = kinds(events)
    for kind in (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "response.created",
        "conversation.item.input_audio_transcription.completed",
        "response.output_audio.delta",
        "response.output_audio_transcript.done",
    ):
        assert kind in order, kind
    assert (
        order.index("input_audio_buffer.speech_started")
        < order.index("input_audio_buffer.speech_stopped")
        < order.index("input_audio_buffer.committed")
    )
    heard = next(
        e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"
    )
    assert {"capital", "france"} <= words(heard["transcript"])
    reply = events[-1]["response"]["output"][0]["content"][0]["transcript"]
    assert reply
    pcm = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.int16)
    assert len(samples) > 24_000 * 0.5
    back = await whisper.transcribe(resample(samples, 24_000, 16_000))
    assert similar(back.text, reply) >= 0.6, (back.text, reply)


async def test_function_call_round_trip(engine: LiveServer) -> None:
    async with client_for(engine).realtime.connect(model="realtalk-local") as conn:
        await shop_session(conn, "You are a shop assistant. Use tools to answer questions.")
        await say(conn, "What's the status of order 1001?")
        await conn.response.create()
        events = await collect(conn, "response.done")
        done_args = next(e for e in events if e["type"] == "response.function_call_arguments.done")
        assert done_args["name"] == "lookup_order"
        assert json.loads(done_args["arguments"]) == {"order_id": "1001"}
        await conn.conversation.item.create(
            item={
                "type": "function_call_output",
                "call_id": done_args["call_id"],
                "output": json.dumps(
                    {"order_id": "1001", "status": "shipped", "delivery": "Tuesday"}
                ),
            }
        )
        await conn.response.create()
        events = await collect(conn, "response.done")
    answer = events[-1]["response"]["output"][0]["content"][0]["text"]
    assert "shipped" in answer.lower()


async def test_the_prompt_start_is_read_while_the_user_is_silent(engine: LiveServer) -> None:
    """A session's instructions and tools are read into the model's cache right after
    session.update, so the first reply finds them there (response.done's cached tokens)."""

    async def first_reply(pause_s: float) -> dict[str, Any]:
        async with client_for(engine).realtime.connect(model="realtalk-local") as conn:
            # Unique: no earlier prompt in the model's cache starts the same way.
            await shop_session(conn, f"Session {time.time_ns()}. You are a shop assistant.")
            await collect(conn, "session.updated")
            await asyncio.sleep(pause_s)  # the user has not said anything yet
            await say(conn, "Say hello.")
            await conn.response.create()
            events = await collect(conn, "response.done")
        usage: dict[str, Any] = events[-1]["response"]["usage"]
        return usage

    later = await first_reply(8.0)
    print("cached tokens after a pause:", later)
    # Only the user's turn was read with the reply: nothing but the read-ahead can have put
    # these unique instructions in the cache. (Asked at once, the reply reads most of it
    # itself: a read-ahead gets a batch or two in before the reply stops it.)
    assert later["input_token_details"]["cached_tokens"] >= later["input_tokens"] - 20, later


async def test_the_pages_prompt_start_is_read_at_server_start(tmp_path: Path) -> None:
    """A fresh server reads the page's prompt start (its instructions and tools) once the
    models are loaded: a visitor who asks at once finds it in the cache."""
    server = start_server(tmp_path, "fresh", ready=True)
    try:
        await asyncio.sleep(10)  # the read-ahead (~560 tokens) ends while nobody is here
        async with httpx.AsyncClient() as http:
            minted = await http.post(
                f"{server.url}/api/realtime/session", json={}, headers={"Origin": server.url}
            )
        assert minted.status_code == 200, minted.text
        key = minted.json()["client_secret"]
        client = AsyncOpenAI(api_key=key, base_url=f"{server.url}/v1")
        async with client.realtime.connect(model="realtalk-local") as conn:
            await say(conn, "Hello!")
            await conn.response.create(response={"output_modalities": ["text"]})
            events = await collect(conn, "response.done")
        usage = events[-1]["response"]["usage"]
        print("first reply of a fresh server:", usage)
        assert usage["input_tokens"] > 400  # the page's five tools
        assert usage["input_token_details"]["cached_tokens"] >= usage["input_tokens"] - 20
    finally:
        stop_server(server)


async def test_barge_in_cancels_with_turn_detected(engine: LiveServer) -> None:
    async with client_for(engine).realtime.connect(model="realtalk-local") as conn:
        await conn.session.update(
            session={"type": "realtime", "instructions": "Answer with a long, detailed story."}
        )
        await send_audio(
            conn,
            np.concatenate(
                [silence(400), speech("Tell me a long story about a dragon."), silence(900)]
            ),
        )
        await collect(conn, "response.output_audio.delta")
        await send_audio(conn, np.concatenate([speech("Stop, please stop."), silence(900)]))
        events = await collect(conn, "response.done")
    assert "input_audio_buffer.speech_started" in kinds(events)
    done = events[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"]["reason"] == "turn_detected"


async def test_manual_commit_and_active_response_error(engine: LiveServer) -> None:
    async with client_for(engine).realtime.connect(model="realtalk-local") as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["text"],
                "audio": {"input": {"turn_detection": None}},
            }
        )
        await send_audio(
            conn, np.concatenate([silence(300), speech("Good morning!"), silence(500)])
        )
        await conn.input_audio_buffer.commit()
        committed = await collect(conn, "input_audio_buffer.committed")
        assert "input_audio_buffer.speech_started" not in kinds(committed)
        await conn.response.create()
        await conn.response.create(event_id="evt_second")
        events = await collect(conn, "response.done")
    errors = [e["error"] for e in events if e["type"] == "error"]
    assert errors and errors[0]["code"] == "conversation_already_has_active_response"
    assert errors[0]["event_id"] == "evt_second"
    heard = next(
        e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"
    )
    assert "morning" in words(heard["transcript"])
    assert events[-1]["response"]["status"] == "completed"


async def test_beta_connection_audio_turn(engine: LiveServer) -> None:
    url = engine.url.replace("http", "ws") + "/v1/realtime?model=gpt-4o-realtime-preview"
    headers = {"Authorization": f"Bearer {engine.api_key}", "OpenAI-Beta": "realtime=v1"}
    events: list[dict[str, Any]] = []
    audio = np.concatenate([silence(500), speech("Hello, who are you?"), silence(1200)])
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {"instructions": "Answer in one short sentence.", "voice": "verse"},
                }
            )
        )
        for start in range(0, len(audio), 4800):
            await ws.send(
                json.dumps(
                    {"type": "input_audio_buffer.append", "audio": b64(audio[start : start + 4800])}
                )
            )
        async with asyncio.timeout(90):
            while True:
                event = json.loads(await ws.recv())
                validate_event(event, "beta")
                events.append(event)
                if event["type"] == "response.done":
                    break
    order = kinds(events)
    assert order[:2] == ["session.created", "conversation.created"]
    for kind in (
        "input_audio_buffer.committed",
        "conversation.item.created",
        "response.audio.delta",
        "response.audio_transcript.delta",
        "response.audio_transcript.done",
        "response.audio.done",
    ):
        assert kind in order, kind
    assert events[-1]["response"]["status"] == "completed"
    assert events[-1]["response"]["voice"] == "verse"


async def test_ephemeral_key_config_and_refusals(engine: LiveServer) -> None:
    async with httpx.AsyncClient() as http:
        minted = (
            await http.post(
                f"{engine.url}/v1/realtime/client_secrets",
                headers={"Authorization": f"Bearer {engine.api_key}"},
                json={"session": {"type": "realtime", "instructions": "You are Captain Test."}},
            )
        ).json()
    key = minted["value"]
    url = engine.url.replace("http", "ws") + "/v1/realtime?model=realtalk-local"
    # Browser-style auth: the key travels as a subprotocol.
    async with websockets.connect(
        url,
        subprotocols=[  # type: ignore[list-item]
            "realtime",
            f"openai-insecure-api-key.{key}",
        ],
    ) as ws:
        assert ws.subprotocol == "realtime"
        created = json.loads(await ws.recv())
        validate_event(created, "ga")
        assert created["session"]["instructions"] == "You are Captain Test."
        assert created["session"]["id"] == minted["session"]["id"]
    # A GA key opens sessions until it expires, each a new one with the key's config.
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        created = json.loads(await ws.recv())
        assert created["session"]["instructions"] == "You are Captain Test."
        assert created["session"]["id"] != minted["session"]["id"]
    async with httpx.AsyncClient() as http:
        beta = (
            await http.post(
                f"{engine.url}/v1/realtime/sessions",
                headers={"Authorization": f"Bearer {engine.api_key}"},
                json={"model": "gpt-4o-realtime-preview"},
            )
        ).json()["client_secret"]["value"]
    beta_headers = {"Authorization": f"Bearer {beta}", "OpenAI-Beta": "realtime=v1"}
    async with websockets.connect(url, additional_headers=beta_headers) as ws:
        validate_event(json.loads(await ws.recv()), "beta")
    for bad, reason in (
        (beta, "already used"),
        ("ek_unknown", "Unknown"),
        ("rt_wrong_standard_key", "Not an ephemeral key"),
    ):
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(
                url, additional_headers={"Authorization": f"Bearer {bad}"}
            ):
                pass
        assert info.value.response.status_code == 401
        body = json.loads(info.value.response.body or b"{}")
        assert reason in body["error"]["message"]
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(url):
            pass
    assert info.value.response.status_code == 401


async def test_bad_input_over_the_wire_keeps_the_session(engine: LiveServer) -> None:
    url = engine.url.replace("http", "ws") + "/v1/realtime?model=realtalk-local"
    async with websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {engine.api_key}"}, max_size=None
    ) as ws:
        json.loads(await ws.recv())
        await ws.send("{broken")
        await ws.send(
            json.dumps(
                {
                    "type": "input_audio_buffer.append",
                    "event_id": "evt_big",
                    "audio": base64.b64encode(bytes(16 * 1024 * 1024)).decode(),
                }
            )
        )
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "event_id": "evt_ok",
                    "session": {"type": "realtime", "instructions": "Hi"},
                }
            )
        )
        got = [json.loads(await ws.recv()) for _ in range(3)]
    for event in got:
        validate_event(event, "ga")
    assert got[0]["error"]["code"] == "invalid_json"
    assert got[1]["error"]["code"] == "audio_too_large"
    assert got[1]["error"]["event_id"] == "evt_big"
    assert got[2]["type"] == "session.updated"
