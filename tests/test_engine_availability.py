"""The engine endpoints refuse clearly (and spend no key) when the engine cannot serve."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from realtalk.app.server import create_app
from realtalk.app.state import ServerState
from realtalk.config import Settings
from tests.conftest import with_settings


def _mint(client: TestClient, settings: Settings) -> str:
    assert settings.api_key is not None
    response = client.post(
        "/v1/realtime/client_secrets",
        json={},
        headers={"Authorization": f"Bearer {settings.api_key.get_secret_value()}"},
    )
    return str(response.json()["value"])


def test_while_models_load_the_engine_says_so_and_keeps_the_key(settings: Settings) -> None:
    gate = asyncio.Event()

    async def loading(_: ServerState) -> None:
        await gate.wait()

    with TestClient(create_app(settings, warmup=loading)) as client:
        key = _mint(client, settings)
        with pytest.raises(WebSocketDenialResponse) as info:
            with client.websocket_connect(
                "/v1/realtime", headers={"Authorization": f"Bearer {key}"}
            ):
                pass
        assert info.value.status_code == 503
        assert "still loading" in info.value.json()["error"]["message"]
        response = client.post(
            "/v1/realtime/calls",
            content=b"v=0\r\n",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/sdp"},
        )
        assert response.status_code == 503
        minter = client.app.state.realtalk.minter  # type: ignore[attr-defined]
        assert client.portal.call(minter.peek, key) is not None  # type: ignore[union-attr]
        client.portal.call(gate.set)  # type: ignore[union-attr]


def test_engine_openai_has_no_embedded_engine(settings: Settings) -> None:
    custom = with_settings(settings, engine="openai", openai_api_key="sk-test")
    with TestClient(create_app(custom)) as client:
        assert custom.api_key is not None
        with pytest.raises(WebSocketDenialResponse) as info:
            with client.websocket_connect(
                "/v1/realtime",
                headers={"Authorization": f"Bearer {custom.api_key.get_secret_value()}"},
            ):
                pass
        assert info.value.status_code == 503
        assert "REALTALK_ENGINE=openai" in info.value.json()["error"]["message"]
