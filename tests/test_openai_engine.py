"""REALTALK_ENGINE=openai: the backend mints through the OpenAI wire format with httpx.

The upstream here is realtalk's own engine in a real uvicorn process (same wire format as
api.openai.com), plus small loopback servers that misbehave in the ways an upstream can.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, start_server, stop_server

pytestmark = pytest.mark.live


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path, "upstream")
    yield server
    stop_server(server)


def _backend(tmp_path: Path, base_url: str, openai_key: str, timeout: float = 10) -> LiveServer:
    return start_server(
        tmp_path,
        "backend",
        {
            "REALTALK_ENGINE": "openai",
            "REALTALK_OPENAI_BASE_URL": base_url,
            "OPENAI_API_KEY": openai_key,
            "REALTALK_OPENAI_TIMEOUT_S": str(timeout),
            "REALTALK_MODEL": "gpt-realtime",
            "REALTALK_INSTRUCTIONS": "You are the upstream test agent.",
        },
    )


async def test_openai_engine_mints_from_a_live_engine(tmp_path: Path, engine: LiveServer) -> None:
    import httpx

    backend = _backend(tmp_path, f"{engine.url}/v1", engine.api_key)
    try:
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{backend.url}/api/realtime/session")
            assert response.status_code == 200, response.text
            data = response.json()
            assert data["engine"] == {
                "kind": "openai",
                "base_url": f"{engine.url}/v1",
                "model": "gpt-realtime",
            }
            assert data["client_secret"].startswith("ek_")
            assert data["session"]["instructions"] == "You are the upstream test agent."
            # The key works at the engine that minted it, with the backend's session config.
            minted = await http.post(
                f"{engine.url}/v1/realtime/client_secrets",
                headers={"Authorization": f"Bearer {engine.api_key}"},
                json={},
            )
            assert minted.status_code == 200
        assert engine.api_key not in response.text
        for log in (backend.log_text(), engine.log_text()):
            assert engine.api_key not in log
            assert data["client_secret"] not in log
    finally:
        stop_server(backend)


async def test_upstream_refuses_the_key_is_502(tmp_path: Path, engine: LiveServer) -> None:
    import httpx

    backend = _backend(tmp_path, f"{engine.url}/v1", "sk-wrong-key-for-upstream")
    try:
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{backend.url}/api/realtime/session")
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["code"] == "upstream_auth_failed"
        assert "401" in error["message"]
        assert "sk-wrong-key" not in response.text
        assert "Traceback" not in backend.log_text()
        assert "sk-wrong-key" not in backend.log_text()
    finally:
        stop_server(backend)


class MisbehavingUpstream:
    """A loopback HTTP server that answers every request the same bad way."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MisbehavingUpstream:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if self.mode == "hang":
            await asyncio.sleep(30)
        elif self.mode == "500":
            body = json.dumps(
                {"error": {"message": "The server had an error", "type": "server_error"}}
            )
            writer.write(
                f"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode()
            )
        elif self.mode == "malformed":
            body = '{"value": "ek_abc", "expires_at": '
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode()
            )
        await writer.drain()
        writer.close()


@pytest.mark.parametrize(
    ("mode", "code", "words"),
    [
        ("hang", "upstream_timeout", "did not answer"),
        ("500", "upstream_error", "500"),
        ("malformed", "upstream_malformed", "malformed"),
    ],
)
async def test_upstream_failures_are_502_without_traceback(
    tmp_path: Path, mode: str, code: str, words: str
) -> None:
    import httpx

    with MisbehavingUpstream(mode) as upstream:
        backend = _backend(
            tmp_path, f"http://127.0.0.1:{upstream.port}/v1", "sk-upstream-secret", timeout=1
        )
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.post(f"{backend.url}/api/realtime/session")
                assert response.status_code == 502, response.text
                error = response.json()["error"]
                assert error["code"] == code
                assert words in error["message"]
                # The server keeps serving after an upstream failure.
                health = await http.get(f"{backend.url}/healthz")
                assert health.status_code in (200, 503)
            log = backend.log_text()
            assert "Traceback" not in log
            assert "sk-upstream-secret" not in log
        finally:
            stop_server(backend)


async def test_unreachable_upstream_is_502(tmp_path: Path) -> None:
    import httpx

    from tests.conftest import free_port

    backend = _backend(tmp_path, f"http://127.0.0.1:{free_port()}/v1", "sk-x")
    try:
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{backend.url}/api/realtime/session")
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_unreachable"
    finally:
        stop_server(backend)
