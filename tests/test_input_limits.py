"""Every client input is bounded, and no input a client can make large stalls the server.

The live tests run the real app in a real uvicorn process (scripted model stages, real
Silero VAD) and measure, from outside, how long ``/healthz`` waits while one client sends
the largest inputs it may: a probe, not a benchmark, so its bound is generous.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.protocol import State
from websockets.uri import parse_uri

from realtalk.protocol.items import MAX_AUDIO_BYTES
from realtalk.protocol.sessions import MAX_INSTRUCTIONS_CHARS, MAX_TOOL_CHARS, MAX_TOOLS
from realtalk.session import user_turns
from realtalk.session.outbox import MAX_PENDING_BYTES
from tests.conftest import LiveServer, stop_server
from tests.realtime_helpers import tone
from tests.scripted_server import start_scripted_server

PROBE_BOUND_S = 0.2
"""The longest /healthz may wait on one client (a generous bound on a shared 2-core machine;
before the fix, 10,000 tools stalled it ~16 s and a 15 MiB append over a second)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_scripted_server(tmp_path_factory.mktemp("limits"))
    yield live
    stop_server(live)


def ws_url(server: LiveServer) -> str:
    return server.url.replace("http://", "ws://") + "/v1/realtime?model=m"


def headers(server: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_key}"}


class Probe:
    """GET /healthz back to back from a thread of its own (so the test's own work, such as
    compressing what it sends, does not count); remembers the slowest answer."""

    def __init__(self, server: LiveServer) -> None:
        self.url = server.url + "/healthz"
        self.slowest = 0.0
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                assert client.get(self.url).status_code == 200
                self.slowest = max(self.slowest, time.perf_counter() - started)
                self.count += 1
                time.sleep(0.005)


async def answer(ws: Any, event_id: str, limit_s: float = 60) -> dict[str, Any]:
    """The next event that answers ``event_id`` (an error naming it, or the first
    non-error event after it)."""
    async with asyncio.timeout(limit_s):
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == "error":
                if event["error"].get("event_id") == event_id:
                    return event
                continue
            return event


def function_tool(index: int, properties: int = 6) -> dict[str, Any]:
    """A realistic tool whose schema differs from every other one's."""
    return {
        "type": "function",
        "name": f"tool_{index}",
        "description": f"Tool number {index}.",
        "parameters": {
            "type": "object",
            "properties": {
                f"field_{index}_{p}": {
                    "type": ["string", "integer", "array"][p % 3],
                    "description": f"Field {p} of tool {index}.",
                    **({"items": {"type": "string"}} if p % 3 == 2 else {}),
                }
                for p in range(properties)
            },
            "required": [f"field_{index}_0"],
        },
    }


@pytest.mark.live
async def test_largest_inputs_do_not_stall_other_clients(server: LiveServer) -> None:
    def update(event_id: str, tools: list[dict[str, Any]]) -> str:
        session = {"type": "realtime", "tools": tools}
        return json.dumps({"type": "session.update", "event_id": event_id, "session": session})

    # 10,000 tools; the most a session may have, each schema new to the server; the largest
    # append (5.5 minutes of pcm16).
    too_many = update("e_many", [function_tool(i, 1) for i in range(10_000)])
    most = update("e_max", [function_tool(100_000 + i) for i in range(MAX_TOOLS)])
    audio = base64.b64encode(bytes(MAX_AUDIO_BYTES)).decode()
    append = json.dumps({"type": "input_audio_buffer.append", "audio": audio})
    clear = json.dumps({"type": "input_audio_buffer.clear", "event_id": "e_clear"})

    async def attempt() -> Probe:
        async with websockets.connect(
            ws_url(server), additional_headers=headers(server), max_size=None
        ) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
            with Probe(server) as probe:
                await asyncio.sleep(0.2)
                await ws.send(too_many)  # refused before any per-tool work
                event = await answer(ws, "e_many")
                assert event["type"] == "error", event
                assert event["error"]["code"] == "array_above_max_length"
                assert event["error"]["param"] == "session.tools"

                await ws.send(most)
                event = await answer(ws, "e_max")
                assert event["type"] == "session.updated", event
                assert len(event["session"]["tools"]) == MAX_TOOLS

                await ws.send(append)  # no answer; the clear after it is answered once done
                await ws.send(clear)
                event = await answer(ws, "e_clear")
                assert event["type"] == "input_audio_buffer.cleared", event
                await asyncio.sleep(0.1)
        assert probe.count > 20
        return probe

    # A stall the server causes shows in every attempt; the shared machine's own hiccups
    # (other processes on two cores) rarely twice.
    slowest = []
    for _ in range(3):
        slowest.append((await attempt()).slowest)
        if slowest[-1] < PROBE_BOUND_S:
            break
    assert min(slowest) < PROBE_BOUND_S, f"/healthz waited {[round(s * 1000) for s in slowest]} ms"


@pytest.mark.live
def test_client_that_never_reads_is_closed(server: LiveServer) -> None:
    """Each session.update echoes ~250 KB of instructions. A client that sends them and does
    not read has its session ended once the server holds MAX_PENDING_BYTES for it, and is
    sent a 1008 close (which waits for the client to read again).

    The client is a plain socket with a small receive buffer driven by websockets' sans-I/O
    protocol, so nothing reads on its behalf (an asyncio client would keep reading into its
    own buffers) and nothing is compressed."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.connect((host, int(port)))
    client = ClientProtocol(parse_uri(ws_url(server)), max_size=None)
    request = client.connect()
    request.headers["Authorization"] = f"Bearer {server.api_key}"
    client.send_request(request)
    sock.sendall(b"".join(client.data_to_send()))
    while client.state is State.CONNECTING:
        client.receive_data(sock.recv(65536))
    assert client.state is State.OPEN

    sock.settimeout(2)  # once the server gives up on the client it stops reading too
    sent = 0
    for index in range(3 * MAX_PENDING_BYTES // MAX_INSTRUCTIONS_CHARS):
        instructions = f"{index} " + "x" * (MAX_INSTRUCTIONS_CHARS - 10)
        event = {
            "type": "session.update",
            "session": {"type": "realtime", "instructions": instructions},
        }
        client.send_text(json.dumps(event).encode())
        try:
            sock.sendall(b"".join(client.data_to_send()))
        except TimeoutError:
            break
        sent += 1
    deadline = time.monotonic() + 30
    while httpx.get(server.url + "/healthz").json()["sessions"]:  # ended while not reading
        assert time.monotonic() < deadline, "the session of a client that does not read lives on"
        time.sleep(0.1)

    sock.settimeout(20)
    updates = 0
    while client.close_rcvd is None:
        data = sock.recv(1 << 20)
        if not data:
            break
        client.receive_data(data)
        updates += sum(
            1
            for frame in client.events_received()
            if isinstance(frame, Frame) and b"session.updated" in frame.data[:64]
        )
    sock.close()
    assert client.close_rcvd is not None, "closed without a close frame"
    assert client.close_rcvd.code == 1008
    assert "not reading" in client.close_rcvd.reason
    assert updates < sent


@pytest.mark.live
def test_large_bodies_are_refused_before_they_are_read(server: LiveServer) -> None:
    """A 100 MB body to an unauthenticated route is answered 413 after its first megabyte;
    so is a chunked body once it passes the route's limit."""

    def exchange(request_head: bytes, body_parts: Iterator[bytes]) -> bytes:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(request_head)
            try:
                for part in body_parts:
                    sock.sendall(part)
            except OSError:
                pass  # the server may close before the client is done sending
            reply = b""
            while b"\r\n\r\n" not in reply:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
            return reply

    declared = exchange(
        b"POST /api/tools/get_weather HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000000\r\n\r\n",
        iter([b"[" * 1024 * 1024]),
    )
    assert declared.startswith(b"HTTP/1.1 413"), declared[:200]

    def chunks() -> Iterator[bytes]:
        for _ in range(64):  # 4 MiB in all, past the 64 KiB a tool call may send
            yield b"10000\r\n" + b" " * 0x10000 + b"\r\n"

    chunked = exchange(
        b"POST /api/tools/get_weather HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        chunks(),
    )
    assert chunked.startswith(b"HTTP/1.1 413"), chunked[:200]
    assert b"request_too_large" in chunked


# ---- in-process sessions -------------------------------------------------------------------


@pytest.fixture
async def session_factory() -> AsyncIterator[Any]:
    from realtalk.core.config import SessionConfig
    from realtalk.session.session import RealtimeSession
    from tests.scripted import scripted_models

    sessions: list[RealtimeSession] = []

    def make(generation: str = "ga", **config: Any) -> RealtimeSession:
        session = RealtimeSession(
            config=SessionConfig(**config),
            generation=generation,  # type: ignore[arg-type]
            models=scripted_models(),
            session_id="sess_limits",
            expires_at=0,
        )
        session.start()
        while not session.outbox.empty():
            session.outbox.get_nowait()
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        await session.aclose()


def drain(session: Any) -> list[dict[str, Any]]:
    events = []
    while not session.outbox.empty():
        events.append(session.outbox.get_nowait())
    return events


async def send(session: Any, event: dict[str, Any]) -> list[dict[str, Any]]:
    await session.receive(json.dumps(event))
    return drain(session)


@pytest.mark.parametrize("generation", ["beta", "ga"])
async def test_session_limits_are_errors(session_factory: Any, generation: str) -> None:
    session = session_factory(generation)
    kind = {"type": "realtime"} if generation == "ga" else {}

    def update(event_id: str, **fields: Any) -> dict[str, Any]:
        return {"type": "session.update", "event_id": event_id, "session": {**kind, **fields}}

    cases = {
        "long": (
            update("long", instructions="x" * (MAX_INSTRUCTIONS_CHARS + 1)),
            "string_above_max_length",
            "session.instructions",
        ),
        "many": (
            update("many", tools=[function_tool(i) for i in range(MAX_TOOLS + 1)]),
            "array_above_max_length",
            "session.tools",
        ),
        "big": (
            update("big", tools=[function_tool(0, MAX_TOOL_CHARS // 50)]),
            "string_above_max_length",
            "session.tools[0]",
        ),
        "deep": (
            update(
                "deep",
                tools=[
                    {
                        "type": "function",
                        "name": "deep",
                        "parameters": json.loads(
                            '{"type":"object","properties":{"a":' * 20 + "{}" + "}}" * 20
                        ),
                    }
                ],
            ),
            "invalid_json",
            "session.tools[0].parameters",
        ),
        "reply": (
            {
                "type": "response.create",
                "event_id": "reply",
                "response": {"instructions": "y" * (MAX_INSTRUCTIONS_CHARS + 1)},
            },
            "string_above_max_length",
            "response.instructions",
        ),
    }
    for event_id, (event, code, param) in cases.items():
        events = await send(session, event)
        assert [e["type"] for e in events] == ["error"], (event_id, events)
        error = events[0]["error"]
        assert (error["code"], error["param"], error["event_id"]) == (code, param, event_id)
        assert error["type"] == "invalid_request_error"
    # Within the limits, the same settings are accepted.
    events = await send(
        session,
        update(
            "fits",
            instructions="x" * MAX_INSTRUCTIONS_CHARS,
            tools=[function_tool(i) for i in range(MAX_TOOLS)],
        ),
    )
    assert [e["type"] for e in events] == ["session.updated"]
    assert len(events[0]["session"]["instructions"]) == MAX_INSTRUCTIONS_CHARS


async def test_input_audio_buffer_is_capped_without_turn_detection(session_factory: Any) -> None:
    """With turn detection off, appends past MAX_BUFFER_MS are refused with an error; the
    buffer keeps what it had, and a commit still takes it."""
    session = session_factory("ga", turn_detection=None, input_audio_format="g711_ulaw")
    minute = 8_000 * 60  # g711 at 8 kHz: one byte per sample
    limit_minutes = user_turns.MAX_BUFFER_MS // 60_000

    def append(event_id: str, minutes: float) -> dict[str, Any]:
        audio = base64.b64encode(b"\xff" * int(minute * minutes)).decode()
        return {"type": "input_audio_buffer.append", "event_id": event_id, "audio": audio}

    assert await send(session, append("a1", limit_minutes - 0.5)) == []
    events = await send(session, append("a2", 1))
    assert [e["type"] for e in events] == ["error"]
    error = events[0]["error"]
    assert (error["code"], error["param"], error["event_id"]) == (
        "input_audio_buffer_full",
        "audio",
        "a2",
    )
    assert session.user.buffer.duration_ms == pytest.approx((limit_minutes - 0.5) * 60_000, abs=200)
    events = await send(session, {"type": "input_audio_buffer.commit", "event_id": "c"})
    assert events[0]["type"] == "input_audio_buffer.committed"
    assert session.user.buffer.duration_ms == 0
    assert "error" not in [e["type"] for e in await send(session, append("a3", 1))]


def test_buffer_keeps_only_the_latest_audio_of_an_endless_turn(monkeypatch: Any) -> None:
    """With turn detection on (and over WebRTC, where there is no event to refuse), a turn
    longer than the cap keeps its latest MAX_BUFFER_MS."""
    from realtalk.core.config import SessionConfig
    from tests.scripted import EnergyVAD

    monkeypatch.setattr(user_turns, "MAX_BUFFER_MS", 3_000)
    monkeypatch.setattr(user_turns, "TRIM_MS", 500)
    turns = user_turns.UserTurns(SessionConfig(), EnergyVAD().stream())
    speech = tone(10_000, rate=16_000)
    for start in range(0, len(speech), 320):
        turns.push(speech[start : start + 320])
        assert turns.buffer.duration_ms <= 3_000 + 20
    assert turns.speaking()
    assert turns.buffer.duration_ms >= 2_500
    assert np.any(turns.recent())
