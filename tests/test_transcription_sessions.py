"""Transcription sessions (``type: "transcription"``): minting keys for them, their session
objects (checked by the openai package's types), their events on a scripted timeline, and
what they refuse. The same with the real models and real clients: test_transcription_live.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from openai.types.beta.realtime.transcription_session import TranscriptionSession
from openai.types.realtime.client_secret_create_response import ClientSecretCreateResponse
from openai.types.realtime.realtime_transcription_session_create_request import (
    RealtimeTranscriptionSessionCreateRequest,
)
from openai.types.realtime.realtime_transcription_session_create_response import (
    RealtimeTranscriptionSessionCreateResponse,
)

from realtalk.app.server import create_app
from realtalk.app.state import ServerState
from realtalk.config import Settings
from realtalk.core.config import SessionConfig, TurnDetection
from realtalk.session.keys import InMemoryKeyStore
from realtalk.session.session import RealtimeSession
from tests.realtime_helpers import silence, tone
from tests.scripted import ScriptedSTT, scripted_models
from tests.session_client import Client, Sessions, types

TRANSCRIPTION = {
    "type": "transcription",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "gpt-4o-transcribe", "language": "en", "prompt": "Names"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 600},
            "noise_reduction": {"type": "near_field"},
        }
    },
    "include": ["item.input_audio_transcription.logprobs"],
}


# ---- minting keys ---------------------------------------------------------------------------
async def _no_models(_: ServerState) -> None:
    return None


@pytest.fixture
def http(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, key_store=InMemoryKeyStore(), warmup=_no_models)
    with TestClient(app) as client:
        yield client


def auth(settings: Settings) -> dict[str, str]:
    assert settings.api_key is not None
    return {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}


def test_ga_client_secret_for_a_transcription_session(http: TestClient, settings: Settings) -> None:
    response = http.post(
        "/v1/realtime/client_secrets", headers=auth(settings), json={"session": TRANSCRIPTION}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    parsed = ClientSecretCreateResponse.model_validate(body)
    assert isinstance(parsed.session, RealtimeTranscriptionSessionCreateResponse)
    session = body["session"]
    assert body["value"].startswith("ek_")
    assert session["type"] == "transcription"
    assert session["object"] == "realtime.transcription_session"
    assert session["id"].startswith("sess_")
    audio_in = session["audio"]["input"]
    assert audio_in["transcription"] == {
        "model": "gpt-4o-transcribe",
        "language": "en",
        "prompt": "Names",
    }
    assert audio_in["turn_detection"]["silence_duration_ms"] == 600
    assert "create_response" not in audio_in["turn_detection"]  # nothing about responses
    assert audio_in["noise_reduction"] == {"type": "near_field"}
    assert session["include"] == ["item.input_audio_transcription.logprobs"]
    assert "output_modalities" not in session and "instructions" not in session


def test_ga_transcription_session_fields_are_checked(http: TestClient, settings: Settings) -> None:
    bad = {"type": "transcription", "audio": {"input": {"turn_detection": {"type": "shouting"}}}}
    response = http.post(
        "/v1/realtime/client_secrets", headers=auth(settings), json={"session": bad}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"].startswith("session.audio.input.turn_detection")


def test_beta_transcription_session_mint(http: TestClient, settings: Settings) -> None:
    response = http.post(
        "/v1/realtime/transcription_sessions",
        headers=auth(settings),
        json={
            "input_audio_format": "g711_ulaw",
            "input_audio_transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": {"type": "server_vad", "threshold": 0.6},
            "client_secret": {"expires_at": {"anchor": "created_at", "seconds": 120}},
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    TranscriptionSession.model_validate(body)
    assert body["object"] == "realtime.transcription_session"
    assert body["client_secret"]["value"].startswith("ek_")
    assert 100 <= body["client_secret"]["expires_at"] - time.time() <= 125
    assert body["input_audio_format"] == "g711_ulaw"
    assert body["input_audio_transcription"]["language"] == "en"
    assert body["turn_detection"]["threshold"] == 0.6
    assert body["modalities"] == ["text"]
    missing = http.post("/v1/realtime/transcription_sessions", json={})
    assert missing.status_code == 401


# ---- a transcription session on a scripted timeline -----------------------------------------
@pytest.fixture
async def make_session() -> AsyncIterator[Any]:
    sessions = Sessions()

    def make(generation: str = "ga", stt: ScriptedSTT | None = None, **config: Any) -> Client:
        return sessions.start(
            SessionConfig(**config).as_transcription(), scripted_models(stt=stt), generation
        )

    yield make
    await sessions.aclose()


async def test_ga_turn_is_transcribed_and_never_answered(make_session: Any) -> None:
    client = make_session("ga", stt=ScriptedSTT(["book a table"]))
    (created,) = client.drain()
    assert created["type"] == "session.created"
    RealtimeTranscriptionSessionCreateRequest.model_validate(created["session"])
    await client.audio(np.concatenate([silence(300), tone(1200), silence(800)]))
    events = await client.until("conversation.item.done")
    order = types(events)
    expected = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.done",
    ]
    assert [kind for kind in order if kind in expected] == expected, order
    done = events[-1]["item"]
    assert done["role"] == "user" and done["content"][0]["transcript"] == "book a table"
    await client.audio(silence(1500))
    assert not [e for e in client.drain() if e["type"].startswith("response.")]
    assert client.session.active_response is None


async def test_turn_detection_create_response_is_ignored(make_session: Any) -> None:
    turn = TurnDetection(create_response=True, interrupt_response=True, idle_timeout_ms=5000)
    client = make_session("ga", turn_detection=turn)
    assert client.session.config.turn_detection == TurnDetection(
        create_response=False, interrupt_response=False
    )
    client.drain()
    await client.send(
        {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 0.7}}},
            },
        }
    )
    (updated,) = await client.until("session.updated")
    RealtimeTranscriptionSessionCreateRequest.model_validate(updated["session"])
    assert updated["session"]["audio"]["input"]["turn_detection"]["threshold"] == 0.7
    turn_now = client.session.config.turn_detection
    assert turn_now is not None and not turn_now.create_response
    await client.audio(np.concatenate([tone(800), silence(800)]))
    events = await client.until("conversation.item.done")
    assert not [e for e in events if e["type"].startswith("response.")]


async def test_response_create_is_refused(make_session: Any) -> None:
    client = make_session("ga")
    client.drain()
    event_id = await client.send({"type": "response.create"})
    (error,) = await client.until("error")
    assert error["error"]["event_id"] == event_id
    assert "transcription session" in error["error"]["message"]
    assert client.session.active_response is None


async def test_session_type_is_kept(make_session: Any) -> None:
    client = make_session("ga")
    client.drain()
    await client.send({"type": "session.update", "session": {"type": "realtime"}})
    (error,) = await client.until("error")
    assert "realtime session update event to a transcription session" in error["error"]["message"]
    assert client.session.config.type == "transcription"


async def test_beta_transcription_session_events(make_session: Any) -> None:
    client = make_session("beta", stt=ScriptedSTT(["hello"]))
    (created,) = client.drain()  # no conversation.created: there is no reply to converse with
    assert created["type"] == "transcription_session.created"
    await client.send(
        {
            "type": "transcription_session.update",
            "session": {
                "input_audio_transcription": {"model": "gpt-4o-mini-transcribe", "language": "de"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 400},
            },
        }
    )
    (updated,) = await client.until("transcription_session.updated")
    session = updated["session"]
    assert session["input_audio_transcription"]["language"] == "de"
    assert session["turn_detection"]["silence_duration_ms"] == 400
    assert client.session.config.type == "transcription"
    await client.send({"type": "session.update", "session": {"instructions": "Hi"}})
    assert "not allowed" in (await client.until("error"))[0]["error"]["message"]
    await client.audio(np.concatenate([tone(800), silence(700)]))
    events = await client.until("conversation.item.input_audio_transcription.completed")
    assert "conversation.item.created" in types(events)
    assert events[-1]["transcript"] == "hello"


async def test_a_realtime_session_is_not_turned_into_a_transcription_one() -> None:
    for generation, event in (
        ("beta", {"type": "transcription_session.update", "session": {}}),
        ("ga", {"type": "session.update", "session": {"type": "transcription"}}),
    ):
        session = RealtimeSession(
            config=SessionConfig(),
            generation=generation,  # type: ignore[arg-type]
            models=scripted_models(),
            session_id="sess_test",
            expires_at=0,
        )
        client = Client(session)
        await client.send(event)
        (error,) = await client.until("error")
        message = error["error"]["message"]
        assert message == (
            "Passing a transcription session update event to a realtime session is not allowed."
        )
        assert session.config.type == "realtime"
        await session.aclose()


async def test_manual_turns_are_transcribed(make_session: Any) -> None:
    client = make_session("ga", stt=ScriptedSTT(["by hand"]), turn_detection=None)
    client.drain()
    await client.audio(np.concatenate([tone(600), silence(200)]))
    await client.send({"type": "input_audio_buffer.commit"})
    events = await client.until("conversation.item.done")
    assert types(events) == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.done",
    ]
    assert events[-2]["transcript"] == "by hand"
