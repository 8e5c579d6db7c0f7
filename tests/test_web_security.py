"""Requests from other websites cannot act on /api, and the mint rate limit counts the real
client: forwarding headers are trusted only from configured proxies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from realtalk.app.server import create_app
from realtalk.app.state import ServerState
from realtalk.config import ConfigError, Settings, load_settings
from tests.conftest import start_server, stop_server, with_settings

EVIL = "https://evil.example"
ORDER = '{"order_id": "1002"}'  # processing: cancel_order would change it


async def _no_models(_: ServerState) -> None:
    return None


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, warmup=_no_models)) as test_client:
        yield test_client


def status_of(client: TestClient, order_id: str) -> str:
    response = client.post("/api/tools/lookup_order", json={"order_id": order_id})
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "invalid_request_error"
    assert error["message"]


# What a page on another site can send without a CORS preflight: a form or text/plain POST.
def test_a_cross_site_simple_post_cannot_cancel_an_order(client: TestClient) -> None:
    for headers in (
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
        {"Origin": EVIL, "Content-Type": "text/plain;charset=UTF-8"},  # no Fetch Metadata
        {"Origin": "null", "Content-Type": "application/x-www-form-urlencoded"},  # sandboxed
        {"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},  # Origin stripped
        {"Origin": "https://shop.example", "Sec-Fetch-Site": "same-site"},  # another subdomain
    ):
        response = client.post("/api/tools/cancel_order", content=ORDER, headers=headers)
        assert_refused(response, 403, "cross_site_request")
        assert "REALTALK_CORS_ORIGINS" in response.json()["error"]["message"]
    # Even with a JSON content type (which needs a preflight the backend's CORS denies).
    response = client.post("/api/tools/cancel_order", content=ORDER, headers={"Origin": EVIL})
    assert_refused(response, 403, "cross_site_request")
    assert status_of(client, "1002") == "processing"


def test_json_routes_need_a_json_body(client: TestClient) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        for origin in ({}, {"Origin": "http://testserver"}):  # curl, and the page itself
            response = client.post(
                "/api/tools/cancel_order",
                content=ORDER,
                headers={"Content-Type": content_type, **origin},
            )
            assert_refused(response, 415, "unsupported_media_type")
            assert "application/json" in response.json()["error"]["message"]
    no_type = client.post("/api/tools/cancel_order", content=ORDER)  # a body, no content type
    assert_refused(no_type, 415, "unsupported_media_type")
    minted = client.post("/api/realtime/session", headers={"Content-Type": "text/plain"})
    assert_refused(minted, 415, "unsupported_media_type")
    assert status_of(client, "1002") == "processing"


def test_same_origin_and_clients_without_origin_may_act(client: TestClient) -> None:
    json_type = {"Content-Type": "application/json; charset=utf-8"}
    for headers in (
        {},  # curl, a backend: not a browser's cross-site request
        {"Origin": "http://testserver"},  # the page served by this server (older browsers)
        {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
        # Behind a proxy that rewrote Host, the browser's own Sec-Fetch-Site still says it.
        {"Origin": "https://voice.example.com", "Sec-Fetch-Site": "same-origin"},
    ):
        response = client.post(
            "/api/tools/lookup_order", content=ORDER, headers=json_type | headers
        )
        assert response.status_code == 200, (headers, response.text)
    cancelled = client.post(
        "/api/tools/cancel_order",
        content=ORDER,
        headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"} | json_type,
    )
    assert cancelled.status_code == 200, cancelled.text
    assert status_of(client, "1002") == "cancelled"
    # A body-less mint needs no content type (curl -X POST); the page sends JSON anyway.
    assert client.post("/api/realtime/session").status_code == 200
    assert client.post("/api/realtime/session", json={}).status_code == 200
    # Reads are not state-changing: CORS already keeps their answers from other sites.
    assert client.get("/api/tools", headers={"Origin": EVIL}).status_code == 200


def test_configured_origins_may_act(settings: Settings) -> None:
    custom = with_settings(settings, cors_origins=["https://app.example.com"])
    with TestClient(create_app(custom, warmup=_no_models)) as client:
        allowed = client.post(
            "/api/tools/cancel_order",
            content=ORDER,
            headers={
                "Origin": "https://app.example.com",
                "Sec-Fetch-Site": "cross-site",
                "Content-Type": "application/json",
            },
        )
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        minted = client.post(
            "/api/realtime/session", json={}, headers={"Origin": "https://app.example.com"}
        )
        assert minted.status_code == 200, minted.text
        other = client.post(
            "/api/realtime/session", json={}, headers={"Origin": "https://other.example"}
        )
        assert_refused(other, 403, "cross_site_request")
        # A configured origin sending text/plain still gets the 415, readable by its page.
        plain = client.post(
            "/api/tools/lookup_order",
            content=ORDER,
            headers={"Origin": "https://app.example.com", "Content-Type": "text/plain"},
        )
        assert_refused(plain, 415, "unsupported_media_type")
        assert plain.headers["access-control-allow-origin"] == "https://app.example.com"


def test_engine_endpoints_are_credentialed_by_the_key_not_the_origin(
    client: TestClient, settings: Settings
) -> None:
    # Any origin may call /v1/realtime* (like OpenAI's API) because a page must attach the
    # key in a header, which it cannot do without knowing it; without the key nothing happens.
    assert settings.api_key is not None
    key = settings.api_key.get_secret_value()
    anonymous = client.post(
        "/v1/realtime/client_secrets",
        content="{}",
        headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
    )
    assert anonymous.status_code == 401
    keyed = client.post(
        "/v1/realtime/client_secrets",
        json={},
        headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Authorization": f"Bearer {key}"},
    )
    assert keyed.status_code == 200, keyed.text


# ---- forwarding headers and the mint rate limit ----------------------------------------------


def test_trusted_proxies_setting() -> None:
    assert load_settings().trusted_proxies == []
    parsed = load_settings(trusted_proxies="127.0.0.1, 10.1.2.3/8,::1")
    assert parsed.trusted_proxies == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    for bad in ("proxy.local", "*", "10.0.0.0/33"):
        with pytest.raises(ConfigError, match="REALTALK_TRUSTED_PROXIES"):
            load_settings(trusted_proxies=bad)


def mint(server_url: str, forwarded_for: str | None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return httpx.post(f"{server_url}/api/realtime/session", headers=headers).status_code


@pytest.mark.live
def test_a_spoofed_forwarded_for_does_not_bypass_the_mint_limit(tmp_path: Path) -> None:
    # The client connects straight to uvicorn (127.0.0.1, no proxy configured): whatever it
    # writes in X-Forwarded-For is its own invention and must not give it a fresh budget.
    server = start_server(
        tmp_path,
        "direct",
        env={"REALTALK_MINT_RATE_LIMIT": "2/minute", "REALTALK_MODEL_DIR": str(tmp_path / "no")},
    )
    try:
        codes = [mint(server.url, f"198.51.100.{n}") for n in range(1, 5)]
    finally:
        stop_server(server)
    assert codes == [200, 200, 429, 429]


@pytest.mark.live
def test_forwarded_for_from_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    # The test client plays a reverse proxy on 127.0.0.1 that appends the address it saw.
    server = start_server(
        tmp_path,
        "proxied",
        env={
            "REALTALK_MINT_RATE_LIMIT": "2/minute",
            "REALTALK_TRUSTED_PROXIES": "127.0.0.1,10.0.0.0/8",
            "REALTALK_MODEL_DIR": str(tmp_path / "no"),
        },
    )
    try:
        first = [mint(server.url, "198.51.100.1") for _ in range(3)]
        # Another client behind the proxy has its own budget…
        other = mint(server.url, "198.51.100.2")
        # …but a client cannot invent one by prepending addresses: the right-most address
        # the trusted proxies did not add is the client (10.0.0.5 is an inner proxy).
        spoofed = [mint(server.url, f"203.0.113.{n}, 198.51.100.1, 10.0.0.5") for n in (1, 2)]
    finally:
        stop_server(server)
    assert first == [200, 200, 429]
    assert other == 200
    assert spoofed == [429, 429]
