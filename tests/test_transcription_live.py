"""Transcription sessions with the real models and real clients, against a live server: the
official openai SDK over WebSocket (GA, ``?intent=transcription``), a beta client with a key
from ``POST /v1/realtime/transcription_sessions``, and an aiortc WebRTC call. A ~5 s
utterance is spoken in real time; the user's words arrive as deltas while they are still
speaking, then as the completed transcript; no response is ever created; every event
validates against the openai package's types for its generation.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from openai import AsyncOpenAI

from tests.conftest import LiveServer, start_server, stop_server
from tests.realtime_helpers import silence, validate_event, voice, words
from tests.rtc_client import RtcClient

pytestmark = [pytest.mark.live, pytest.mark.models]

UTTERANCE = (
    "I would like to book a table for four people tomorrow evening, somewhere quiet near the river."
)
DELTA = "conversation.item.input_audio_transcription.delta"
COMPLETED = "conversation.item.input_audio_transcription.completed"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("transcription"), "transcription", ready=True)
    yield server
    stop_server(server)


def spoken(rate: int) -> np.ndarray:
    """The utterance (about 4.7 s) after a short silence."""
    return np.concatenate([silence(400, rate), voice(UTTERANCE, rate, steady=True)])


def b64(samples: np.ndarray) -> str:
    return base64.b64encode(samples.astype("<i2").tobytes()).decode()


async def speak(append: Callable[[str], Awaitable[object]], samples: np.ndarray) -> float:
    """Append 24 kHz audio in 100 ms chunks at real-time pace, then 1.2 s of silence; the
    perf_counter when the last spoken sample was sent."""
    loop = asyncio.get_running_loop()
    started, sent_ms, spoken_at = loop.time(), 0, 0.0
    for part in (samples, silence(1200)):
        for start in range(0, len(part), 2400):
            await append(b64(part[start : start + 2400]))
            sent_ms += 100
            await asyncio.sleep(max(0.0, started + sent_ms / 1000 - loop.time()))
        spoken_at = spoken_at or time.perf_counter()
    return spoken_at


def check_transcribed(
    events: list[dict[str, Any]], generation: str, arrivals: list[float], spoken_at: float
) -> str:
    """The turn's events: valid, in order, partial text before the speech ended, no reply."""
    for event in events:
        validate_event(event, generation)
    order = [e["type"] for e in events]
    assert not [k for k in order if k.startswith(("response.", "output_audio_buffer."))], order
    started = order.index("input_audio_buffer.speech_started")
    stopped = order.index("input_audio_buffer.speech_stopped")
    committed = order.index("input_audio_buffer.committed")
    added = order.index(
        "conversation.item.created" if generation == "beta" else "conversation.item.added"
    )
    completed = order.index(COMPLETED)
    assert started < stopped < committed < added < completed, order
    if generation == "ga":
        assert completed < order.index("conversation.item.done"), order
    item_id = events[completed]["item_id"]
    deltas = [i for i, kind in enumerate(order) if kind == DELTA]
    assert all(events[i]["item_id"] == item_id for i in deltas)
    # Partial text while the user is still speaking, not one delta at the end.
    while_speaking = [i for i in deltas if arrivals[i] < spoken_at]
    assert while_speaking, (order, [arrivals[i] - spoken_at for i in deltas])
    early = "".join(events[i]["delta"] for i in while_speaking)
    assert words(early) & {"like", "book", "table", "four"}, early
    transcript = str(events[completed]["transcript"])
    assert {"book", "table", "river"} <= words(transcript), transcript
    return transcript


async def test_ga_websocket_with_the_openai_sdk(engine: LiveServer) -> None:
    client = AsyncOpenAI(api_key=engine.api_key, base_url=f"{engine.url}/v1")
    events: list[dict[str, Any]] = []
    arrivals: list[float] = []
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:

        async def read_until(kind: str) -> None:
            async with asyncio.timeout(60):
                async for event in conn:
                    events.append(event.to_dict())
                    arrivals.append(time.perf_counter())
                    if event.type == kind:
                        return

        await read_until("session.created")
        assert events[0]["session"]["type"] == "transcription"
        await conn.session.update(
            session={
                "type": "transcription",
                "audio": {
                    "input": {
                        "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                    }
                },
            }
        )
        await read_until("session.updated")
        updated = events[-1]["session"]
        assert updated["type"] == "transcription"
        assert updated["audio"]["input"]["transcription"]["model"] == "gpt-4o-transcribe"
        reader = asyncio.ensure_future(read_until("conversation.item.done"))
        spoken_at = await speak(
            lambda audio: conn.input_audio_buffer.append(audio=audio), spoken(24_000)
        )
        await reader
        check_transcribed(events, "ga", arrivals, spoken_at)
        await conn.response.create(event_id="evt_no_reply")
        await read_until("error")
    error = events[-1]["error"]
    assert error["event_id"] == "evt_no_reply" and "transcription session" in error["message"]
    validate_event(events[-1], "ga")


async def test_beta_transcription_session_key_and_update(engine: LiveServer) -> None:
    client = AsyncOpenAI(api_key=engine.api_key, base_url=f"{engine.url}/v1")
    minted = await client.beta.realtime.transcription_sessions.create(
        input_audio_transcription={"model": "whisper-1"},
        turn_detection={"type": "server_vad", "silence_duration_ms": 500},
    )
    url = engine.url.replace("http", "ws") + "/v1/realtime?intent=transcription"
    headers = {
        "Authorization": f"Bearer {minted.client_secret.value}",
        "OpenAI-Beta": "realtime=v1",
    }
    events: list[dict[str, Any]] = []
    arrivals: list[float] = []
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:

        async def read_until(kind: str) -> None:
            async with asyncio.timeout(60):
                while True:
                    events.append(json.loads(await ws.recv()))
                    arrivals.append(time.perf_counter())
                    if events[-1]["type"] == kind:
                        return

        await read_until("transcription_session.created")
        assert events[0]["session"]["input_audio_transcription"]["model"] == "whisper-1"
        await ws.send(
            json.dumps(
                {
                    "type": "transcription_session.update",
                    "session": {
                        "input_audio_transcription": {"model": "whisper-1", "language": "en"}
                    },
                }
            )
        )
        await read_until("transcription_session.updated")
        assert events[-1]["session"]["input_audio_transcription"]["language"] == "en"
        reader = asyncio.ensure_future(read_until(COMPLETED))
        spoken_at = await speak(
            lambda audio: ws.send(
                json.dumps({"type": "input_audio_buffer.append", "audio": audio})
            ),
            spoken(24_000),
        )
        await reader
    check_transcribed(events, "beta", arrivals, spoken_at)


async def test_intent_transcription_with_the_standard_key(engine: LiveServer) -> None:
    url = engine.url.replace("http", "ws") + "/v1/realtime?intent=transcription"
    for beta in (True, False):
        headers = {"Authorization": f"Bearer {engine.api_key}"}
        if beta:
            headers["OpenAI-Beta"] = "realtime=v1"
        async with websockets.connect(url, additional_headers=headers) as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        validate_event(first, "beta" if beta else "ga")
        if beta:
            assert first["type"] == "transcription_session.created"
        else:
            assert first["type"] == "session.created"
            assert first["session"]["type"] == "transcription"


async def test_webrtc_call_with_a_transcription_key(engine: LiveServer) -> None:
    standard = {"Authorization": f"Bearer {engine.api_key}"}
    async with httpx.AsyncClient(base_url=engine.url, timeout=30) as http:
        minted = await http.post(
            "/v1/realtime/client_secrets",
            headers=standard,
            json={
                "session": {
                    "type": "transcription",
                    "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"}}},
                }
            },
        )
        assert minted.status_code == 200, minted.text
        rtc = RtcClient()
        response = await http.post(
            "/v1/realtime/calls",
            content=await rtc.offer(),
            headers={
                "Authorization": f"Bearer {minted.json()['value']}",
                "Content-Type": "application/sdp",
            },
        )
        try:
            assert response.status_code == 201, response.text
            await rtc.accept(response.text)
            rtc.mic.say(spoken(48_000))
            events = await rtc.until("conversation.item.done", 60)
            assert rtc.mic.finished_at is not None
            arrivals = [rtc.arrivals[e["event_id"]] for e in events]
            assert events[0]["type"] == "session.created"
            assert events[0]["session"]["type"] == "transcription"
            check_transcribed(events, "ga", arrivals, rtc.mic.finished_at)
            rtc.send({"type": "response.create", "event_id": "evt_no_reply"})
            error = (await rtc.until("error", 10))[-1]
            assert error["error"]["event_id"] == "evt_no_reply"
            assert not np.abs(rtc.audio()).max(initial=0) > 1000  # nothing was spoken back
        finally:
            location = response.headers.get("Location")
            if location:
                await http.post(f"{location}/hangup", headers=standard)
            await rtc.close()
        for _ in range(100):
            if (await http.get("/healthz")).json()["sessions"] == 0:
                break
            await asyncio.sleep(0.1)
        assert (await http.get("/healthz")).json()["sessions"] == 0
