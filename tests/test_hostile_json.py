"""JSON nested far too deep, integers of thousands of digits, NaN and bytes that are not
UTF-8: an ``invalid_request_error`` event (the session goes on) or a 400, never a 500, a
dropped connection or a traceback in the log."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi.testclient import TestClient

from realtalk.app.server import create_app
from realtalk.app.state import ServerState
from realtalk.config import Settings
from realtalk.core.config import SessionConfig
from realtalk.session.session import RealtimeSession
from tests.scripted import scripted_models


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


HOSTILE: dict[str, str | bytes] = {
    # Past the interpreter's recursion limit: json.loads itself raised RecursionError.
    "nested_1000": '{"event_id":"evt_h","type":"session.update","session":' + deep(1000) + "}",
    # Parses, then broke whatever recursed over it next (validators, serializers).
    "nested_300": '{"event_id":"evt_h","type":"session.update","session":{"instructions":'
    + deep(300)
    + "}}",
    "int_5000_digits": '{"event_id":"evt_h","type":"session.update","session":{"temperature":'
    + "9" * 5000
    + "}}",
    "nan": '{"event_id":"evt_h","type":"session.update","session":{"temperature":NaN}}',
    "not_utf8": b'{"event_id":"evt_h","type":"session.update","session":{"instructions":"\xff"}}',
}
SESSION_UPDATE = {"type": "session.update", "event_id": "evt_ok", "session": {"type": "realtime"}}


@pytest.fixture
async def sessions() -> AsyncIterator[list[RealtimeSession]]:
    made: list[RealtimeSession] = []
    yield made
    for session in made:
        await session.aclose()


@pytest.mark.parametrize("generation", ["beta", "ga"])
@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_hostile_event_is_an_error_and_the_session_goes_on(
    sessions: list[RealtimeSession], generation: str, name: str
) -> None:
    session = RealtimeSession(
        config=SessionConfig(),
        generation=generation,  # type: ignore[arg-type]
        models=scripted_models(),
        session_id="sess_hostile",
        expires_at=0,
    )
    sessions.append(session)
    await session.receive(HOSTILE[name])
    event = session.outbox.get_nowait()
    assert event["type"] == "error", event
    error = event["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_json"
    assert error["event_id"] == "evt_h"
    assert session.outbox.empty()
    update = dict(SESSION_UPDATE, session={} if generation == "beta" else {"type": "realtime"})
    await session.receive(json.dumps(update))
    assert session.outbox.get_nowait()["type"] == "session.updated"


async def _scripted(state: ServerState) -> None:
    state.models = scripted_models()


@pytest.fixture
def app_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, warmup=_scripted)) as client:
        yield client


def auth(settings: Settings) -> dict[str, str]:
    assert settings.api_key is not None
    return {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}


def test_hostile_events_over_a_websocket(
    app_client: TestClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with app_client.websocket_connect("/v1/realtime?model=m", headers=auth(settings)) as ws:
        assert ws.receive_json()["type"] == "session.created"
        for name, raw in HOSTILE.items():
            if isinstance(raw, bytes):
                ws.send_bytes(raw)
            else:
                ws.send_text(raw)
            event = ws.receive_json()
            assert event["type"] == "error", (name, event)
            assert (event["error"]["code"], event["error"]["event_id"]) == ("invalid_json", "evt_h")
        ws.send_text(json.dumps(SESSION_UPDATE))
        assert ws.receive_json()["type"] == "session.updated"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


JSON_ROUTES = [
    "/v1/realtime/sessions",
    "/v1/realtime/client_secrets",
    "/v1/realtime/transcription_sessions",
    "/api/tools/get_time",
]


@pytest.mark.parametrize("route", JSON_ROUTES)
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_bodies_are_400(
    app_client: TestClient,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    route: str,
    name: str,
) -> None:
    raw = HOSTILE[name]
    body = raw if isinstance(raw, bytes) else raw.encode()
    response = app_client.post(
        route, content=body, headers={**auth(settings), "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_json"
    assert error["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_page_session_route_never_fails_on_a_body(
    app_client: TestClient, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """``/api/realtime/session`` takes no body: whatever is sent, it answers as usual."""
    raw = HOSTILE[name]
    body = raw if isinstance(raw, bytes) else raw.encode()
    response = app_client.post(
        "/api/realtime/session", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


OFFER = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


@pytest.mark.parametrize(
    ("parts", "param"),
    [
        ({"sdp": b"v=0\r\n\xff\xfe"}, "sdp"),
        ({"sdp": OFFER.encode(), "session": b'{"instructions": "\xff"}'}, "session"),
        (
            {"sdp": OFFER.encode(), "session": ('{"type":"realtime","x":' + deep(1000) + "}")},
            "session",
        ),
        (
            {"sdp": OFFER.encode(), "session": ('{"type":"realtime","x":' + deep(300) + "}")},
            "session",
        ),
        ({"sdp": OFFER.encode(), "session": '{"temperature":' + "9" * 5000 + "}"}, "session"),
    ],
)
def test_hostile_multipart_calls_are_400(
    app_client: TestClient,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    parts: dict[str, str | bytes],
    param: str,
) -> None:
    # As files, the way a backend may upload them (plain form fields are decoded by Starlette).
    files = {name: (name, value, "application/octet-stream") for name, value in parts.items()}
    response = app_client.post("/v1/realtime/calls", files=files, headers=auth(settings))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
