"""Clients that hold connections open: half-open calls, session caps, slow or huge handshakes.

One live server with small limits (4 sessions, 2 per key, 3 s to connect a call, 2 s for a
request's headers) and real clients: aiortc offerers, websockets, raw sockets.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.conftest import LiveServer, start_server, stop_server
from tests.rtc_client import RtcClient

pytestmark = [pytest.mark.live, pytest.mark.models]

MAX_SESSIONS, PER_KEY, CONNECT_S, HEADER_S = 4, 2, 3, 2
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(
        tmp_path_factory.mktemp("connections"),
        "limits",
        {
            "REALTALK_MAX_SESSIONS": str(MAX_SESSIONS),
            "REALTALK_MAX_SESSIONS_PER_KEY": str(PER_KEY),
            "REALTALK_CALL_CONNECT_TIMEOUT_S": str(CONNECT_S),
            "REALTALK_HEADER_TIMEOUT_S": str(HEADER_S),
        },
        ready=True,
    )
    yield server
    stop_server(server)


@pytest.fixture
async def http(engine: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=engine.url, timeout=30) as client:
        yield client
        # Every test leaves the server with no live session.
        assert await _sessions_within(client, 0, 15), "a session outlived its test"


def _standard(engine: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {engine.api_key}"}


async def _sessions(http: httpx.AsyncClient) -> int:
    return int((await http.get("/healthz")).json()["sessions"])


async def _sessions_within(http: httpx.AsyncClient, count: int, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if await _sessions(http) <= count:
            return True
        await asyncio.sleep(0.2)
    return await _sessions(http) <= count


async def _ga_key(http: httpx.AsyncClient, engine: LiveServer) -> str:
    response = await http.post(
        "/v1/realtime/client_secrets",
        headers=_standard(engine),
        json={"session": {"type": "realtime"}},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["value"])


async def _beta_key(http: httpx.AsyncClient, engine: LiveServer) -> str:
    response = await http.post("/v1/realtime/sessions", headers=_standard(engine), json={})
    assert response.status_code == 200, response.text
    return str(response.json()["client_secret"]["value"])


def _ws_url(engine: LiveServer, query: str = "model=x") -> str:
    return engine.url.replace("http", "ws", 1) + f"/v1/realtime?{query}"


async def _open_ws(engine: LiveServer, key: str, **extra: str) -> ClientConnection:
    ws = await websockets.connect(
        _ws_url(engine), additional_headers={"Authorization": f"Bearer {key}", **extra}
    )
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "session.created"
    return ws


async def _refused_ws(engine: LiveServer, key: str, **extra: str) -> websockets.InvalidStatus:
    with pytest.raises(websockets.InvalidStatus) as info:
        await _open_ws(engine, key, **extra)
    return info.value


async def _post_offer(
    http: httpx.AsyncClient, path: str, key: str, offerer: RtcClient
) -> httpx.Response:
    return await http.post(
        path,
        content=await offerer.offer(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/sdp"},
    )


def _assert_refusal(status: int, headers: Any, body: bytes, expected: int, code: str) -> None:
    assert status == expected
    assert int(headers["Retry-After"]) > 0
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"] and error["param"] is None
    assert error["type"] == ("server_error" if expected == 503 else "rate_limit_error")


async def test_half_open_and_vanished_calls_are_reaped(
    engine: LiveServer, http: httpx.AsyncClient
) -> None:
    # A call that connects, then its process dies: no hangup, no DTLS close, no answer to ICE
    # consent checks (RFC 7675: consent expires after ~30 s).
    vanishing = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tests.rtc_vanishing_client"),
        *(engine.url, await _ga_key(http, engine)),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    healthy = RtcClient()
    offerers = [RtcClient(), RtcClient()]
    try:
        assert vanishing.stdout is not None
        line = await asyncio.wait_for(vanishing.stdout.readline(), 60)
        assert line.strip() == b"connected"
        vanishing.send_signal(signal.SIGKILL)
        await vanishing.wait()
        vanished_at = time.monotonic()
        # A call that connects and stays, beside two that post an offer and never answer.
        ga_key = await _ga_key(http, engine)
        response = await _post_offer(http, "/v1/realtime/calls", ga_key, healthy)
        assert response.status_code == 201, response.text
        healthy_call = response.headers["Location"]
        await healthy.accept(response.text)
        for offerer, path, key in (
            (offerers[0], "/v1/realtime/calls", await _ga_key(http, engine)),
            (offerers[1], "/v1/realtime?model=x", await _beta_key(http, engine)),
        ):
            response = await _post_offer(http, path, key, offerer)
            assert response.status_code == 201, response.text
        assert await _sessions(http) == 4
        # The half-open ones end once the connect timeout passes; the healthy call stays.
        assert await _sessions_within(http, 2, CONNECT_S + 10)
        await asyncio.sleep(1)
        assert await _sessions(http) == 2
        assert engine.log_text().count(f"did not connect within {CONNECT_S} s") == 2
        # The vanished one ends once its ICE consent expires.
        assert await _sessions_within(http, 1, 60 - (time.monotonic() - vanished_at))
        assert (await healthy.until("session.created"))[-1]["type"] == "session.created"
        hangup = await http.post(f"{healthy_call}/hangup", headers=_standard(engine))
        assert hangup.status_code == 200
    finally:
        if vanishing.returncode is None:
            vanishing.kill()
            await vanishing.wait()
        await healthy.close()
        for offerer in offerers:
            await offerer.close()
    # Every place came back: the whole cap opens again.
    assert await _sessions_within(http, 0, 15)
    sockets = [await _open_ws(engine, engine.api_key) for _ in range(MAX_SESSIONS)]
    for ws in sockets:
        await ws.close()


async def test_session_caps_refuse_cleanly_and_free_on_close(
    engine: LiveServer, http: httpx.AsyncClient
) -> None:
    key = await _ga_key(http, engine)
    open_sockets = [await _open_ws(engine, key) for _ in range(PER_KEY)]
    try:
        # Over the key's cap: 429 on both transports; another key still opens sessions.
        refusal = await _refused_ws(engine, key)
        _assert_refusal(
            refusal.response.status_code,
            refusal.response.headers,
            refusal.response.body,
            429,
            "max_sessions_per_key_reached",
        )
        offerer = RtcClient()
        response = await _post_offer(http, "/v1/realtime/calls", key, offerer)
        await offerer.close()
        _assert_refusal(
            response.status_code,
            response.headers,
            response.content,
            429,
            "max_sessions_per_key_reached",
        )
        while len(open_sockets) < MAX_SESSIONS:
            open_sockets.append(await _open_ws(engine, engine.api_key))
        # Over the instance's cap: 503 for every transport and key, and no key is spent.
        beta = await _beta_key(http, engine)
        refusal = await _refused_ws(engine, engine.api_key)
        _assert_refusal(
            refusal.response.status_code,
            refusal.response.headers,
            refusal.response.body,
            503,
            "max_sessions_reached",
        )
        for path, with_key in (
            ("/v1/realtime/calls", await _ga_key(http, engine)),
            ("/v1/realtime?model=x", beta),
        ):
            offerer = RtcClient()
            response = await _post_offer(http, path, with_key, offerer)
            await offerer.close()
            _assert_refusal(
                response.status_code,
                response.headers,
                response.content,
                503,
                "max_sessions_reached",
            )
        assert await _sessions(http) == MAX_SESSIONS
        # A closed session frees its place (and its key's): the refused beta key still works.
        await open_sockets.pop(0).close()
        assert await _sessions_within(http, MAX_SESSIONS - 1, 10)
        open_sockets.append(await _open_ws(engine, beta, **{"OpenAI-Beta": "realtime=v1"}))
        await open_sockets.pop(1).close()
        assert await _sessions_within(http, MAX_SESSIONS - 1, 10)
        open_sockets.append(await _open_ws(engine, key))
    finally:
        for ws in open_sockets:
            await ws.close()
    log = engine.log_text()
    assert "ERROR" not in log and "Traceback" not in log


def _raw(engine: LiveServer, payload: bytes) -> tuple[bytes, float]:
    """Send ``payload``; what the server answers before it closes, and how long it took."""
    host, port = engine.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(payload)
        started = time.monotonic()
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received, time.monotonic() - started


UPGRADE = (
    b"GET /v1/realtime?model=x HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


async def test_oversized_and_unfinished_handshakes_are_closed(
    engine: LiveServer, http: httpx.AsyncClient
) -> None:
    cases = [
        ("a header over 8 KB", UPGRADE + b"X-Padding: " + b"a" * 9000 + b"\r\n\r\n", 431),
        ("a head that never ends", UPGRADE + b"X-Padding: " + b"a" * 40_000, 431),
        ("too many headers", UPGRADE + b"X-A: b\r\n" * 150 + b"\r\n", 431),
        ("headers that never finish", UPGRADE, 408),
        ("a request that never starts", b"", None),
    ]
    results = await asyncio.gather(*(asyncio.to_thread(_raw, engine, case[1]) for case in cases))
    for (what, _, status), (answer, took) in zip(cases, results, strict=True):
        assert took < HEADER_S + 5, f"{what}: held for {took:.1f} s"
        if status is None:
            assert answer == b"", what
            continue
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode()), (what, head)
        assert json.loads(body)["error"]["type"] == "invalid_request_error", what
    # The server goes on: a normal request and a session are served.
    assert (await http.get("/healthz")).status_code == 200
    await (await _open_ws(engine, engine.api_key)).close()


async def test_refused_handshakes_log_one_line_and_no_key(
    engine: LiveServer, http: httpx.AsyncClient
) -> None:
    secrets = ("sk-proj-SECRET0123456789", "ek_SECRET9876543210", engine.api_key)
    marker = "refusal-probe"
    query = (
        f"model={marker}&api_key={secrets[0]}&client_secret={secrets[1]}&key={secrets[2]}"
        f"&intent={secrets[1]}"
    )
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(
            _ws_url(engine, query), additional_headers={"Authorization": "Bearer ek_unknown"}
        ):
            pass
    assert info.value.response.status_code == 401
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(_ws_url(engine, f"model={marker}&token=abc")):
            pass
    assert (await http.get(f"/healthz?key={secrets[2]}&api_key={secrets[0]}")).status_code == 200
    await asyncio.sleep(0.3)
    log = engine.log_text()
    lines = [line for line in log.splitlines() if marker in line]
    assert len(lines) == 2, lines  # one line per refused upgrade…
    assert all(" INFO " in line and '"WebSocket /v1/realtime?' in line for line in lines)
    assert "Traceback" not in log and " ERROR " not in log  # …and no error with a traceback
    for secret in secrets:
        assert secret not in log
    assert "api_key=[redacted]" in log and "key=[redacted]" in log
