"""The engine's key endpoints: shapes (checked by the openai package's types), auth, bodies,
expiry, and the official openai client against a live server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from openai import AsyncOpenAI
from openai.types.beta.realtime.session_create_response import SessionCreateResponse
from openai.types.realtime.client_secret_create_response import ClientSecretCreateResponse

from realtalk.app.server import create_app
from realtalk.app.state import ServerState
from realtalk.config import Settings
from realtalk.session.keys import InMemoryKeyStore, KeyRejected, digest_of


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _no_models(_: ServerState) -> None:
    return None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> InMemoryKeyStore:
    return InMemoryKeyStore(clock)


@pytest.fixture
def client(settings: Settings, clock: FakeClock, store: InMemoryKeyStore) -> Iterator[TestClient]:
    app = create_app(settings, clock=clock, key_store=store, warmup=_no_models)
    with TestClient(app) as test_client:
        yield test_client


def auth(settings: Settings) -> dict[str, str]:
    assert settings.api_key is not None
    return {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}


def test_beta_session_mint_matches_openai_type(
    client: TestClient, settings: Settings, clock: FakeClock
) -> None:
    body = {
        "model": "gpt-4o-realtime-preview",
        "modalities": ["text"],
        "instructions": "Be brief.",
        "voice": "verse",
        "input_audio_format": "g711_ulaw",
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 650},
        "tools": [
            {
                "type": "function",
                "name": "lookup_order",
                "description": "Find an order",
                "parameters": {
                    "type": "object",
                    "properties": {"order_id": {"type": "string"}},
                    "required": ["order_id"],
                },
            }
        ],
        "tool_choice": "auto",
        "temperature": 0.7,
        "max_response_output_tokens": 200,
    }
    response = client.post(
        "/v1/realtime/sessions",
        json=body,
        headers={**auth(settings), "OpenAI-Beta": "assistants=v2"},
    )
    assert response.status_code == 200, response.text
    session = SessionCreateResponse.model_validate(response.json())
    assert session.client_secret.value.startswith("ek_")
    assert len(session.client_secret.value) >= 3 + 22  # ≥ 128 bits of urlsafe base64
    assert session.client_secret.expires_at == int(clock.now) + 60
    assert session.modalities == ["text"]
    assert session.voice == "verse"
    assert session.input_audio_format == "g711_ulaw"
    assert session.turn_detection is not None and session.turn_detection.silence_duration_ms == 650
    assert session.tools and session.tools[0].name == "lookup_order"
    assert session.max_response_output_tokens == 200


def test_ga_client_secret_matches_openai_type(
    client: TestClient, settings: Settings, clock: FakeClock
) -> None:
    body = {
        "expires_after": {"anchor": "created_at", "seconds": 120},
        "session": {
            "type": "realtime",
            "model": "gpt-realtime",
            "instructions": "Speak like a pirate.",
            "output_modalities": ["audio"],
            "audio": {
                "input": {"format": {"type": "audio/pcma"}, "turn_detection": None},
                "output": {"voice": "marin", "speed": 1.2},
            },
        },
    }
    response = client.post("/v1/realtime/client_secrets", json=body, headers=auth(settings))
    assert response.status_code == 200, response.text
    minted = ClientSecretCreateResponse.model_validate(response.json())
    assert minted.value.startswith("ek_")
    assert minted.expires_at == int(clock.now) + 120
    assert minted.session.type == "realtime"
    assert minted.session.instructions == "Speak like a pirate."
    audio = minted.session.audio
    assert audio is not None and audio.input is not None and audio.output is not None
    assert audio.input.turn_detection is None
    assert audio.input.format is not None and audio.input.format.type == "audio/pcma"
    assert audio.output.voice == "marin" and audio.output.speed == 1.2


def test_ga_default_ttl_is_ten_minutes(
    client: TestClient, settings: Settings, clock: FakeClock
) -> None:
    response = client.post("/v1/realtime/client_secrets", json={}, headers=auth(settings))
    assert response.status_code == 200, response.text
    assert response.json()["expires_at"] == int(clock.now) + 600


async def test_minted_key_is_bound_stored_hashed_and_expires(
    client: TestClient, settings: Settings, clock: FakeClock, store: InMemoryKeyStore
) -> None:
    response = client.post(
        "/v1/realtime/client_secrets",
        headers=auth(settings),
        json={"session": {"type": "realtime", "instructions": "bound"}},
    )
    value = response.json()["value"]
    minter = client.app.state.realtalk.minter  # type: ignore[attr-defined]
    record = await minter.peek(value)
    assert record.config.instructions == "bound"
    assert record.generation == "ga"
    assert record.digest == digest_of(value)
    # The store keeps only digests: the key's text appears nowhere in it.
    assert value.encode() not in repr(store._records).encode()
    clock.now += 599
    await minter.peek(value)
    clock.now += 1
    with pytest.raises(KeyRejected, match="expired"):
        await minter.peek(value)


async def test_ga_key_opens_sessions_until_it_expires(
    client: TestClient, settings: Settings, clock: FakeClock
) -> None:
    minted = client.post(
        "/v1/realtime/client_secrets",
        json={"expires_after": {"anchor": "created_at", "seconds": 60}},
        headers=auth(settings),
    ).json()
    minter = client.app.state.realtalk.minter  # type: ignore[attr-defined]
    first = await minter.redeem(minted["value"])
    assert first.session_id == minted["session"]["id"]
    clock.now += 59
    second = await minter.redeem(minted["value"])
    assert second.session_id != first.session_id and second.config == first.config
    clock.now += 1
    with pytest.raises(KeyRejected, match="expired"):
        await minter.redeem(minted["value"])


async def test_beta_key_opens_its_one_session(client: TestClient, settings: Settings) -> None:
    value = client.post(
        "/v1/realtime/sessions", json={"model": "gpt-4o-realtime-preview"}, headers=auth(settings)
    ).json()["client_secret"]["value"]
    minter = client.app.state.realtalk.minter  # type: ignore[attr-defined]
    await minter.redeem(value)
    with pytest.raises(KeyRejected, match="already used"):
        await minter.redeem(value)
    with pytest.raises(KeyRejected, match="Unknown"):
        await minter.redeem("ek_" + "x" * 43)
    with pytest.raises(KeyRejected, match="Not an ephemeral key"):
        await minter.redeem("sk-not-ephemeral")


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer wrong"}, "invalid_api_key"),
        ({"Authorization": "Basic abc"}, "missing_api_key"),
    ],
)
def test_bad_auth_is_401_openai_shaped(
    client: TestClient, headers: dict[str, str], code: str
) -> None:
    for path in ("/v1/realtime/sessions", "/v1/realtime/client_secrets"):
        response = client.post(path, json={}, headers=headers)
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["code"] == code
        assert error["type"] == "invalid_request_error"
        assert error["message"] and "param" in error


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/realtime/sessions", {"temperature": "hot"}, "session.temperature"),
        ("/v1/realtime/sessions", {"temperature": 3}, "session.temperature"),
        ("/v1/realtime/sessions", {"voice": "nobody"}, "session.voice"),
        ("/v1/realtime/sessions", {"modalities": ["video"]}, "session.modalities[0]"),
        ("/v1/realtime/sessions", {"input_audio_format": "mp3"}, "session.input_audio_format"),
        (
            "/v1/realtime/sessions",
            {"turn_detection": {"type": "server_vad", "threshold": 2}},
            "session.turn_detection.threshold",
        ),
        (
            "/v1/realtime/sessions",
            {"tools": [{"type": "function", "name": "bad name"}]},
            "session.tools[0].name",
        ),
        (
            "/v1/realtime/sessions",
            {"tools": [{"type": "function", "name": "f", "parameters": {"type": 12}}]},
            "session.tools[0].parameters",
        ),
        ("/v1/realtime/sessions", {"tool_choice": "missing_tool"}, "session.tool_choice"),
        (
            "/v1/realtime/sessions",
            {"max_response_output_tokens": 5000},
            "session.max_response_output_tokens",
        ),
        (
            "/v1/realtime/sessions",
            {"client_secret": {"expires_after": {"anchor": "created_at", "seconds": 5}}},
            "client_secret.expires_after.seconds",
        ),
        (
            "/v1/realtime/client_secrets",
            {"expires_after": {"seconds": 7201}},
            "expires_after.seconds",
        ),
        (
            "/v1/realtime/client_secrets",
            {"expires_after": {"anchor": "now", "seconds": 60}},
            "expires_after.anchor",
        ),
        ("/v1/realtime/client_secrets", {"session": {"instructions": "no type"}}, "session.type"),
        (
            "/v1/realtime/client_secrets",
            {"session": {"type": "realtime", "audio": {"output": {"speed": 3}}}},
            "session.audio.output.speed",
        ),
        (
            "/v1/realtime/client_secrets",
            {
                "session": {
                    "type": "realtime",
                    "audio": {"input": {"format": {"type": "audio/ogg"}}},
                }
            },
            "session.audio.input.format.type",
        ),
        ("/v1/realtime/client_secrets", {"session": "realtime"}, "session"),
    ],
)
def test_bad_body_is_400_naming_the_field(
    client: TestClient, settings: Settings, path: str, body: dict[str, object], param: str
) -> None:
    response = client.post(path, json=body, headers=auth(settings))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert error["code"] and error["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_malformed_json_is_400(client: TestClient, settings: Settings, raw: bytes) -> None:
    response = client.post(
        "/v1/realtime/client_secrets",
        content=raw,
        headers={**auth(settings), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] in ("invalid_json", "invalid_type")


@pytest.mark.live
async def test_official_openai_client_mints_both_generations(live_server) -> None:  # type: ignore[no-untyped-def]
    client = AsyncOpenAI(api_key=live_server.api_key, base_url=f"{live_server.url}/v1")
    beta = await client.beta.realtime.sessions.create(
        model="gpt-4o-realtime-preview",
        voice="alloy",
        modalities=["audio", "text"],
        instructions="Hello from the beta SDK.",
    )
    assert isinstance(beta, SessionCreateResponse)
    assert beta.client_secret.value.startswith("ek_")
    assert beta.instructions == "Hello from the beta SDK."

    ga = await client.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 30},
        session={
            "type": "realtime",
            "model": "gpt-realtime",
            "instructions": "Hello GA.",
            "audio": {"output": {"voice": "cedar"}},
        },
    )
    assert isinstance(ga, ClientSecretCreateResponse)
    assert ga.value.startswith("ek_")
    assert ga.session.instructions == "Hello GA."
    assert ga.expires_at - 30 <= beta.client_secret.expires_at  # 30 s vs the beta 60 s

    bad = AsyncOpenAI(api_key="rt_wrong", base_url=f"{live_server.url}/v1", max_retries=0)
    from openai import AuthenticationError

    with pytest.raises(AuthenticationError) as info:
        await bad.realtime.client_secrets.create(session={"type": "realtime"})
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    await client.close()
    await bad.close()
    # The standard key never shows up in the server's log.
    assert live_server.api_key not in live_server.log_text()
    assert ga.value not in live_server.log_text()
