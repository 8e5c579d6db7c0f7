"""WebRTC transport with a real aiortc client (no browser) against a live server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import LiveServer, start_server, stop_server
from tests.realtime_helpers import assert_reply_closed, silence, speech, validate_event, words
from tests.rtc_client import RtcClient

pytestmark = [pytest.mark.live, pytest.mark.models]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("rtc"), "rtc", ready=True)
    yield server
    stop_server(server)


_OPEN: list[tuple[RtcClient, str | None]] = []
"""Calls a test opened: hung up and closed afterwards even when the test fails."""


@pytest.fixture
async def http(engine: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=engine.url, timeout=30) as client:
        yield client
    async with httpx.AsyncClient(base_url=engine.url) as client:
        while _OPEN:
            rtc, location = _OPEN.pop()
            if location:
                await client.post(f"{location}/hangup", headers=standard(engine))
            await rtc.close()
        # Every test leaves the server with no live session.
        for _ in range(150):
            if (await client.get("/healthz")).json()["sessions"] == 0:
                break
            await asyncio.sleep(0.1)
        assert (await client.get("/healthz")).json()["sessions"] == 0


def standard(engine: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {engine.api_key}"}


async def ga_key(http: httpx.AsyncClient, engine: LiveServer, **session: Any) -> str:
    response = await http.post(
        "/v1/realtime/client_secrets",
        headers=standard(engine),
        json={"session": {"type": "realtime", **session}},
    )
    return str(response.json()["value"])


async def connect_ga(http: httpx.AsyncClient, key: str) -> tuple[RtcClient, httpx.Response]:
    client = RtcClient()
    response = await http.post(
        "/v1/realtime/calls",
        content=await client.offer(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/sdp"},
    )
    assert response.status_code == 201, response.text
    _OPEN.append((client, response.headers["Location"]))
    await client.accept(response.text)
    return client, response


async def hang_up(http: httpx.AsyncClient, engine: LiveServer, response: httpx.Response) -> None:
    location = response.headers["Location"]
    done = await http.post(f"{location}/hangup", headers=standard(engine))
    assert done.status_code == 200


def mic(text: str, lead_ms: int = 400, tail_ms: int = 200) -> np.ndarray:
    return np.concatenate(
        [silence(lead_ms, 48_000), speech(text, 48_000), silence(tail_ms, 48_000)]
    )


async def test_ga_call_spoken_turn(engine: LiveServer, http: httpx.AsyncClient) -> None:
    key = await ga_key(http, engine, instructions="Answer in one short sentence.")
    client, response = await connect_ga(http, key)
    assert response.headers["content-type"].startswith("application/sdp")
    assert response.headers["Location"].startswith("/v1/realtime/calls/rtc_")
    client.mic.say(mic("What is the capital of France?"))
    events = await client.until("output_audio_buffer.stopped")
    for event in events:
        validate_event(event, "ga")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "session.created"
    for kind in (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.output_audio_transcript.done",
        "output_audio_buffer.started",
        "response.done",
    ):
        assert kind in kinds, kind
    assert kinds.index("response.done") < kinds.index("output_audio_buffer.stopped")
    # Audio travels only on the RTP track.
    assert "response.output_audio.delta" not in kinds
    heard = next(
        e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"
    )
    assert {"capital", "france"} <= words(heard["transcript"])
    audio = client.audio()
    assert np.abs(audio).max() > 1000  # the reply reached the client as sound
    assert len(audio) / 16_000 > 0.5
    await hang_up(http, engine, response)
    await client.close()


async def test_beta_sdp_endpoint_uses_beta_names(
    engine: LiveServer, http: httpx.AsyncClient
) -> None:
    minted = (
        await http.post(
            "/v1/realtime/sessions",
            headers=standard(engine),
            json={
                "modalities": ["audio", "text"],
                "voice": "ash",
                "instructions": "Answer in one short sentence.",
            },
        )
    ).json()
    client = RtcClient()
    response = await http.post(
        "/v1/realtime?model=gpt-4o-realtime-preview",
        content=await client.offer(),
        headers={
            "Authorization": f"Bearer {minted['client_secret']['value']}",
            "Content-Type": "application/sdp",
        },
    )
    assert response.status_code in (200, 201), response.text
    _OPEN.append((client, response.headers.get("Location")))
    await client.accept(response.text)
    client.mic.say(mic("Hello, how are you?"))
    events = await client.until("output_audio_buffer.stopped")
    for event in events:
        validate_event(event, "beta")
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["session.created", "conversation.created"]
    assert "response.audio_transcript.delta" in kinds and "conversation.item.created" in kinds
    assert "response.audio.delta" not in kinds
    await client.close()


async def test_multipart_call_from_a_backend(engine: LiveServer, http: httpx.AsyncClient) -> None:
    client = RtcClient()
    session = {
        "type": "realtime",
        "instructions": "You are the multipart agent.",
        "audio": {"output": {"voice": "coral"}},
    }
    response = await http.post(
        "/v1/realtime/calls",
        headers=standard(engine),
        files={
            "sdp": (None, await client.offer(), "application/sdp"),
            "session": (None, json.dumps(session), "application/json"),
        },
    )
    assert response.status_code == 201, response.text
    _OPEN.append((client, response.headers["Location"]))
    await client.accept(response.text)
    created = (await client.until("session.created"))[-1]
    validate_event(created, "ga")
    assert created["session"]["instructions"] == "You are the multipart agent."
    assert created["session"]["audio"]["output"]["voice"] == "coral"
    assert (await http.get("/healthz")).json()["sessions"] == 1
    await hang_up(http, engine, response)
    await client.close()


async def test_bad_offers_and_keys_leave_nothing_open(
    engine: LiveServer, http: httpx.AsyncClient
) -> None:
    key = await ga_key(http, engine)
    for body, expect in (
        (b"hello", "not an SDP offer"),
        (b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no audio"),
        (b"v=0\r\nm=audio garbage\r\n", "not valid"),
    ):
        response = await http.post(
            "/v1/realtime/calls",
            content=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/sdp"},
        )
        assert response.status_code == 400, response.text
        assert expect in response.json()["error"]["message"]
        key = await ga_key(http, engine)  # a key that reached the offer check is spent
    offerer = RtcClient()
    _OPEN.append((offerer, None))
    offer = await offerer.offer()
    for bad, reason in (("ek_nope", "Unknown"), ("sk-wrong", "Not an ephemeral key")):
        response = await http.post(
            "/v1/realtime/calls",
            content=offer,
            headers={"Authorization": f"Bearer {bad}", "Content-Type": "application/sdp"},
        )
        assert response.status_code == 401 and reason in response.json()["error"]["message"]
    response = await http.post(
        "/v1/realtime/calls", content=offer, headers={"Content-Type": "application/sdp"}
    )
    assert response.status_code == 401
    client, ok = await connect_ga(http, key)
    again = await http.post(
        "/v1/realtime/calls",
        content=offer,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/sdp"},
    )
    assert again.status_code == 201, again.text  # a GA key opens calls until it expires
    await hang_up(http, engine, again)
    missing = await http.post("/v1/realtime/calls/rtc_nope/hangup", headers=standard(engine))
    assert missing.status_code == 404
    await hang_up(http, engine, ok)
    await client.close()


async def test_cors_preflight_for_browser_calls(
    engine: LiveServer, http: httpx.AsyncClient
) -> None:
    response = await http.options(
        "/v1/realtime/calls",
        headers={
            "Origin": "https://some.app",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    actual = await http.post(
        "/v1/realtime/calls",
        content=b"v=0",
        headers={"Origin": "https://some.app", "Content-Type": "application/sdp"},
    )
    assert actual.headers["access-control-allow-origin"] == "*"
    assert "location" in actual.headers["access-control-expose-headers"].lower()


async def test_barge_in_truncates_at_the_played_position(
    engine: LiveServer, http: httpx.AsyncClient
) -> None:
    key = await ga_key(http, engine, instructions="Tell long, detailed stories.")
    client, response = await connect_ga(http, key)
    client.mic.say(mic("Tell me a long story about a brave knight and a dragon."))
    started = (await client.until("output_audio_buffer.started"))[-1]
    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.sleep(2.0)
    client.mic.say(mic("Stop!", lead_ms=0, tail_ms=600))
    events = await client.until("output_audio_buffer.cleared")
    interrupted = loop.time() - began
    for event in events:
        validate_event(event, "ga")
    kinds = [e["type"] for e in events]
    assert "input_audio_buffer.speech_started" in kinds
    # The story was still being generated: the reply is cancelled with its items closed.
    response_done = assert_reply_closed(client.all_events, "ga")
    assert response_done["status_details"]["reason"] == "turn_detected"
    truncated = next(e for e in events if e["type"] == "conversation.item.truncated")
    # Cut where the listener was: some of the story was heard, and no more than the time it
    # had been playing (gaps while speech is synthesized count as not played).
    assert 300 <= truncated["audio_end_ms"] <= interrupted * 1000 + 300
    cleared = events[-1]
    assert cleared["response_id"] == started["response_id"]
    await hang_up(http, engine, response)
    await client.close()


async def test_output_audio_buffer_clear_and_large_events(
    engine: LiveServer, http: httpx.AsyncClient
) -> None:
    key = await ga_key(http, engine)
    client, response = await connect_ga(http, key)
    await client.until("session.created")
    long_instructions = "Be helpful. " * 4000  # a ~48 KB event each way
    client.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "instructions": long_instructions,
                "audio": {"input": {"turn_detection": None}},
            },
        }
    )
    updated = (await client.until("session.updated"))[-1]
    assert updated["session"]["instructions"] == long_instructions
    # Far beyond the local model's context window: the response fails with a reason.
    client.send({"type": "response.create"})
    failed = (await client.until("response.done"))[-1]["response"]
    assert failed["status"] == "failed"
    assert "context" in failed["status_details"]["error"]["message"]
    client.send(
        {"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief."}}
    )
    await client.until("session.updated")
    client.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Count from one to one hundred."}],
            },
        }
    )
    client.send({"type": "response.create"})
    await client.until("output_audio_buffer.started")
    client.send({"type": "output_audio_buffer.clear", "event_id": "evt_clear"})
    events = await client.until("output_audio_buffer.cleared")
    assert not [e for e in events if e["type"] == "error"]
    for event in events:
        validate_event(event, "ga")
    # Still counting when cleared: generation stops and the reply's items are closed.
    closed = assert_reply_closed(client.all_events, "ga")
    assert closed["status_details"]["reason"] == "client_cancelled"
    client.send({"type": "input_audio_buffer.append", "audio": "AAAA", "event_id": "evt_rtp"})
    error = (await client.until("error"))[-1]["error"]
    assert error["event_id"] == "evt_rtp" and "RTP" in error["message"]
    await hang_up(http, engine, response)
    await client.close()


async def test_peer_closing_ends_the_session(engine: LiveServer, http: httpx.AsyncClient) -> None:
    key = await ga_key(http, engine)
    client, _ = await connect_ga(http, key)
    await client.until("session.created")
    assert (await http.get("/healthz")).json()["sessions"] == 1
    await client.close()  # no hangup: the server notices the peer went away


def test_session_duration_cap(tmp_path: Path) -> None:
    server = start_server(tmp_path, "short", {"REALTALK_SESSION_MAX_S": "10"}, ready=True)

    async def run() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=server.url) as http:
            client, _ = await connect_ga(http, await ga_key(http, server))
            events = await client.until("error", limit_s=30)
            for _ in range(100):
                if (await http.get("/healthz")).json()["sessions"] == 0:
                    break
                await asyncio.sleep(0.1)
            assert (await http.get("/healthz")).json()["sessions"] == 0
            await client.close()
            return events

    try:
        events = asyncio.run(run())
    finally:
        stop_server(server)
    assert events[-1]["error"]["code"] == "session_expired"


async def test_sideband_websocket_attaches_to_a_call(
    engine: LiveServer, http: httpx.AsyncClient
) -> None:
    import websockets

    client, response = await connect_ga(http, await ga_key(http, engine))
    await client.until("session.created")
    call_id = response.headers["Location"].rsplit("/", 1)[-1]
    base = engine.url.replace("http", "ws", 1) + "/v1/realtime"
    auth = {"Authorization": f"Bearer {engine.api_key}"}
    async with websockets.connect(f"{base}?call_id={call_id}", additional_headers=auth) as side:
        await side.send(
            json.dumps(
                {
                    "type": "session.update",
                    "event_id": "evt_side",
                    "session": {"type": "realtime", "instructions": "Set by the backend."},
                }
            )
        )
        from_side = json.loads(await asyncio.wait_for(side.recv(), 10))
        validate_event(from_side, "ga")
        assert from_side["session"]["instructions"] == "Set by the backend."
        on_channel = (await client.until("session.updated"))[-1]
        assert on_channel["event_id"] == from_side["event_id"]  # the same event, both ways
        await hang_up(http, engine, response)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(side.recv(), 10)  # the sideband ends with the call
    for url, headers, status in (
        (f"{base}?call_id=rtc_missing", auth, 404),
        (f"{base}?call_id={call_id}", {}, 401),
    ):
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(url, additional_headers=headers):
                pass
        assert info.value.response.status_code == status
    await client.close()
