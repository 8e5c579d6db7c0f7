"""The app backend's /api/realtime/session: minting for the page, rate limit, CORS, secrets."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from openai.types.realtime.realtime_session_create_response import RealtimeSessionCreateResponse

from realtalk.app.server import create_app
from realtalk.app.state import ServerState
from realtalk.config import Settings
from tests.conftest import with_settings


async def _no_models(_: ServerState) -> None:
    return None


def make_client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings, warmup=_no_models))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with make_client(settings) as test_client:
        yield test_client


def test_page_session_from_embedded_engine(client: TestClient, settings: Settings) -> None:
    response = client.post("/api/realtime/session")
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["client_secret"].startswith("ek_")
    assert data["session_id"].startswith("sess_")
    assert isinstance(data["expires_at"], int)
    assert data["engine"] == {
        "kind": "embedded",
        "base_url": "http://testserver/v1",
        "model": "realtalk-local",
    }
    assert data["session"]["instructions"] == settings.instructions
    assert data["session"]["voice"] == "alloy"
    assert data["session"]["turn_detection"]["type"] == "semantic_vad"  # the page's default
    names = {t["name"] for t in data["session"]["tools"]}
    assert {
        "lookup_order",
        "cancel_order",
        "list_recent_orders",
        "get_time",
        "get_weather",
    } <= names
    assert data["server_tools"] == []
    # The minted key opens the embedded engine with the configured session.
    record = client.app.state.realtalk.minter  # type: ignore[attr-defined]
    assert record is not None


async def test_page_key_is_bound_to_the_default_session(settings: Settings) -> None:
    custom = with_settings(settings, **{"instructions": "Only talk about cheese.", "voice": "ash"})
    with make_client(custom) as client:
        data = client.post("/api/realtime/session").json()
        minter = client.app.state.realtalk.minter  # type: ignore[attr-defined]
        record = await minter.peek(data["client_secret"])
    assert record.config.instructions == "Only talk about cheese."
    assert record.config.voice == "ash"
    RealtimeSessionCreateResponse.model_validate(
        {**data, "type": "realtime", "object": "realtime.session", "id": data["session_id"]}
    )


def test_public_engine_url_overrides_the_request_host(settings: Settings) -> None:
    custom = with_settings(settings, **{"public_engine_url": "https://voice.example.com/v1"})
    with make_client(custom) as client:
        data = client.post("/api/realtime/session").json()
    assert data["engine"]["base_url"] == "https://voice.example.com/v1"


def test_rate_limit_per_client_address(settings: Settings) -> None:
    limited = with_settings(settings, **{"mint_rate_limit": "3/minute"})
    with make_client(limited) as client:
        codes = [client.post("/api/realtime/session").status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        response = client.post("/api/realtime/session")
        assert response.status_code == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert response.json()["error"]["code"] == "rate_limit_exceeded"
        # Another address has its own budget.
        other = TestClient(client.app, client=("203.0.113.9", 5000))
        assert other.post("/api/realtime/session").status_code == 200
        # The engine's own endpoints are not limited by the page limit.
        assert settings.api_key is not None
        engine = client.post(
            "/v1/realtime/client_secrets",
            json={},
            headers={"Authorization": f"Bearer {settings.api_key.get_secret_value()}"},
        )
        assert engine.status_code == 200


def test_cors_backend_is_same_origin_by_default(client: TestClient) -> None:
    preflight = client.options(
        "/api/realtime/session",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    simple = client.post("/api/realtime/session", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_cors_backend_allows_configured_origins(settings: Settings) -> None:
    custom = with_settings(settings, **{"cors_origins": ["https://app.example.com"]})
    with make_client(custom) as client:
        preflight = client.options(
            "/api/realtime/session",
            headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        denied = client.options(
            "/api/realtime/session",
            headers={"Origin": "https://other.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in denied.headers


def test_cors_engine_endpoints_allow_any_origin(client: TestClient) -> None:
    preflight = client.options(
        "/v1/realtime/client_secrets",
        headers={
            "Origin": "https://anywhere.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


def test_cors_engine_endpoints_allow_any_request_header(client: TestClient) -> None:
    # The Agents SDK for JavaScript adds X-OpenAI-Agents-SDK to its SDP POST; other clients
    # add their own. The engine echoes whatever a preflight asks for.
    for path in ("/v1/realtime/calls", "/v1/realtime/client_secrets", "/v1/realtime"):
        preflight = client.options(
            path,
            headers={
                "Origin": "http://localhost:5173",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, "
                "x-openai-agents-sdk, x-anything-else",
            },
        )
        assert preflight.status_code == 200, (path, preflight.text)
        assert preflight.headers["access-control-allow-origin"] == "*"
        allowed = {h.strip() for h in preflight.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "x-openai-agents-sdk", "x-anything-else"} <= {
            h.lower() for h in allowed
        }, allowed


def test_cors_backend_does_not_allow_arbitrary_request_headers(settings: Settings) -> None:
    custom = with_settings(settings, **{"cors_origins": ["https://app.example.com"]})
    with make_client(custom) as client:
        preflight = client.options(
            "/api/realtime/session",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, x-anything-else",
            },
        )
        assert preflight.status_code == 400
        assert (
            "x-anything-else"
            not in preflight.headers.get("access-control-allow-headers", "").lower()
        )


def test_secrets_never_in_responses_or_logs(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    custom = with_settings(settings, **{"openai_api_key": "sk-test-openai-secret-123456"})
    assert custom.api_key is not None
    standard = custom.api_key.get_secret_value()
    caplog.set_level(logging.DEBUG)
    bodies = []
    with make_client(custom) as client:
        for path, kwargs in (
            ("/api/realtime/session", {}),
            (
                "/v1/realtime/client_secrets",
                {"json": {}, "headers": {"Authorization": f"Bearer {standard}"}},
            ),
            (
                "/v1/realtime/sessions",
                {"json": {"voice": "x"}, "headers": {"Authorization": f"Bearer {standard}"}},
            ),
            (
                "/v1/realtime/sessions",
                {"json": {}, "headers": {"Authorization": "Bearer sk-test-openai-secret-123456"}},
            ),
        ):
            response = client.post(path, **kwargs)  # type: ignore[arg-type]
            bodies.append(response.text + str(dict(response.headers)))
        bodies.append(client.get("/healthz").text)
        bodies.append(client.get("/").text)
    everything = "\n".join(bodies) + "\n" + caplog.text
    assert standard not in everything
    assert "sk-test-openai-secret-123456" not in everything
    assert repr(custom).count("sk-test") == 0  # SecretStr hides it in reprs too


def test_healthz_is_503_until_ready_then_200(settings: Settings) -> None:
    import asyncio

    gate = asyncio.Event()

    async def slow_models(_: ServerState) -> None:
        await gate.wait()

    with TestClient(create_app(settings, warmup=slow_models)) as client:
        loading = client.get("/healthz")
        assert loading.status_code == 503
        assert loading.json()["status"] == "loading"
        client.portal.call(gate.set)  # type: ignore[union-attr]
        for _ in range(100):
            ready = client.get("/healthz")
            if ready.status_code == 200:
                break
        assert ready.status_code == 200
        assert ready.json()["status"] == "ok"


def test_healthz_reports_a_failed_model_load(settings: Settings) -> None:
    async def broken(_: ServerState) -> None:
        raise RuntimeError("qwen2.5-0.5b is not ready")

    with TestClient(create_app(settings, warmup=broken)) as client:
        for _ in range(100):
            response = client.get("/healthz")
            if response.json()["status"] != "loading":
                break
        assert response.status_code == 503
        assert response.json() == {
            "status": "failed",
            "sessions": 0,
            "detail": "qwen2.5-0.5b is not ready",
        }


def test_static_page_is_served(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "realtalk" in response.text
