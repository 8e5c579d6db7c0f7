"""Running realtalk behind a load balancer: ``/readyz`` and the session cap, the graceful drain
on SIGTERM, ``/metrics`` and JSON logs. Real ``realtalk serve`` processes, real clients."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection

from realtalk.logs import JsonLogFormatter
from tests.conftest import LiveServer, start_server, stop_server
from tests.realtime_helpers import silence, speech
from tests.rtc_client import RtcClient

CAP = 2
DRAIN_S = 4
SPOKEN = "What colour is the sky on a clear day?"
STAGES = (
    "end_of_speech_to_commit",
    "stt",
    "llm_first_token",
    "tts_first_audio",
    "commit_to_first_audio",
)


def test_json_log_lines_carry_structured_fields() -> None:
    record = logging.LogRecord(
        "realtalk.ws", logging.INFO, "x.py", 1, "session %s", ("opened",), None
    )
    record.session_id = "sess_1"
    line = json.loads(JsonLogFormatter().format(record))
    assert line["message"] == "session opened" and line["session_id"] == "sess_1"
    assert (line["level"], line["logger"]) == ("INFO", "realtalk.ws")
    assert line["time"].endswith("+00:00")


def _ws_url(server: LiveServer) -> str:
    return server.url.replace("http", "ws") + "/v1/realtime"


async def _open_ws(server: LiveServer) -> ClientConnection:
    ws = await websockets.connect(
        _ws_url(server), additional_headers={"Authorization": f"Bearer {server.api_key}"}
    )
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "session.created"
    return ws


async def _refusal(server: LiveServer) -> tuple[int, Any, dict[str, Any]]:
    with pytest.raises(websockets.InvalidStatus) as info:
        await _open_ws(server)
    response = info.value.response
    return response.status_code, response.headers, json.loads(response.body)["error"]


async def _until(ws: ClientConnection, kind: str, limit_s: float = 120) -> list[dict[str, Any]]:
    events = []
    async with asyncio.timeout(limit_s):
        while True:
            events.append(json.loads(await ws.recv()))
            if events[-1]["type"] == kind:
                return events


def _b64(samples: np.ndarray) -> str:
    return base64.b64encode(samples.astype("<i2").tobytes()).decode()


@pytest.mark.live
@pytest.mark.models
class TestCapacityAndMetrics:
    @pytest.fixture(scope="class")
    def server(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
        server = start_server(
            tmp_path_factory.mktemp("ops"),
            "ops",
            {"REALTALK_MAX_SESSIONS": str(CAP), "REALTALK_LOG_FORMAT": "json"},
            ready=True,
        )
        yield server
        stop_server(server)

    async def test_readyz_reports_capacity_and_turns_503_at_the_cap(
        self, server: LiveServer
    ) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 200
            assert ready.json() == {
                "status": "ready",
                "sessions": 0,
                "max_sessions": CAP,
                "capacity_left": CAP,
                "draining": False,
            }
            first = await _open_ws(server)
            assert (await http.get("/readyz")).json()["capacity_left"] == CAP - 1
            second = await _open_ws(server)
            full = await http.get("/readyz")
            assert full.status_code == 503
            assert full.json()["status"] == "full" and full.json()["capacity_left"] == 0
            assert (await http.get("/healthz")).status_code == 200  # liveness is unchanged
            status, headers, error = await _refusal(server)
            assert (status, error["code"], error["type"]) == (
                503,
                "max_sessions_reached",
                "server_error",
            )
            assert int(headers["Retry-After"]) > 0
            # The sessions at the cap go on: a bad event is an error event, not a close.
            await first.send("{not json")
            assert (await _until(first, "error"))[-1]["error"]["code"] == "invalid_json"
            await first.close()
            await second.close()
            deadline = time.monotonic() + 10
            while (await http.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "the places were not given back"
                await asyncio.sleep(0.1)

    async def test_metrics_count_a_spoken_turn_and_logs_are_json(self, server: LiveServer) -> None:
        audio = np.concatenate([silence(300), speech(SPOKEN), silence(1200)])
        async with websockets.connect(
            _ws_url(server),
            additional_headers={"Authorization": f"Bearer {server.api_key}"},
            max_size=None,
        ) as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "session.update",
                        "session": {
                            "type": "realtime",
                            "instructions": "Answer in one short sentence.",
                            "audio": {"input": {"transcription": {"model": "whisper-1"}}},
                        },
                    }
                )
            )
            for start in range(0, len(audio), 4800):
                await ws.send(
                    json.dumps(
                        {
                            "type": "input_audio_buffer.append",
                            "audio": _b64(audio[start : start + 4800]),
                        }
                    )
                )
            events = await _until(ws, "response.done")
        assert events[-1]["response"]["status"] == "completed"
        assert any(e["type"] == "response.output_audio.delta" for e in events)

        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            refused = await http.get("/metrics")
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")
            wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            text = (
                await http.get("/metrics", headers={"Authorization": f"Bearer {server.api_key}"})
            ).text
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

        def value(name: str, **labels: str) -> float:
            return samples.get((name, tuple(sorted(labels.items()))), 0.0)

        for stage in STAGES:
            assert value("realtalk_stage_seconds_count", stage=stage) > 0, stage
            assert value("realtalk_stage_seconds_sum", stage=stage) >= 0, stage
        assert value("realtalk_turns_total", detection="server") >= 1
        assert value("realtalk_responses_total", status="completed") >= 1
        assert value("realtalk_sessions_started_total", transport="websocket") >= 1
        assert (
            value("realtalk_sessions_ended_total", transport="websocket", reason="client_closed")
            >= 1
        )
        assert value("realtalk_sessions_live", transport="websocket") == 0

        lines = server.log_text().splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert len(records) > 5 and all(
            {"time", "level", "logger", "message"} <= set(r) for r in records
        )
        opened = [r for r in records if r["message"] == "session opened"]
        assert opened and all(r["session_id"].startswith("sess_") for r in opened)
        # What the user said never reaches the log.
        assert "sky" not in server.log_text().lower()


@pytest.fixture
def draining(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path, "drain", {"REALTALK_DRAIN_S": str(DRAIN_S)}, ready=True)
    yield server
    if server.process.poll() is None:
        stop_server(server)


@pytest.fixture
def long_drain(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path, "long", {"REALTALK_DRAIN_S": "120"}, ready=True)
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


async def _exit_status(server: LiveServer, limit_s: float) -> int | None:
    try:
        return await asyncio.to_thread(server.process.wait, limit_s)
    except subprocess.TimeoutExpired:
        return None


@pytest.mark.live
@pytest.mark.models
async def test_sigterm_drains_then_ends_sessions_cleanly_and_exits_0(
    draining: LiveServer,
) -> None:
    ws = await _open_ws(draining)
    call = RtcClient()
    try:
        async with httpx.AsyncClient(base_url=draining.url, timeout=20) as http:
            answer = await http.post(
                "/v1/realtime/calls",
                content=await call.offer(),
                headers={
                    "Authorization": f"Bearer {draining.api_key}",
                    "Content-Type": "application/sdp",
                },
            )
            assert answer.status_code == 201, answer.text
            await call.accept(answer.text)
            await call.until("session.created")
            os.kill(draining.process.pid, signal.SIGTERM)
            signalled = time.monotonic()
            await asyncio.sleep(0.3)
            # Draining: not ready, and no new session on either transport.
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["draining"] is True and ready.json()["status"] == "draining"
            status, headers, error = await _refusal(draining)
            assert (status, error["code"]) == (503, "server_shutting_down")
            assert int(headers["Retry-After"]) > 0
            late = RtcClient()
            refused = await http.post(
                "/v1/realtime/calls",
                content=await late.offer(),
                headers={
                    "Authorization": f"Bearer {draining.api_key}",
                    "Content-Type": "application/sdp",
                },
            )
            await late.close()
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "server_shutting_down"
        # The live sessions go on meanwhile.
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {"type": "realtime", "instructions": "Be brief."},
                }
            )
        )
        assert (await _until(ws, "session.updated", 5))[-1]["type"] == "session.updated"
        # At the drain's end: the error event, then a clean close (1001, going away).
        events = await _until(ws, "error", DRAIN_S + 10)
        assert events[-1]["error"]["code"] == "server_shutting_down"
        assert "restarting" in events[-1]["error"]["message"]
        assert events[-1]["error"]["type"] == "server_error"
        ended_at = time.monotonic() - signalled
        assert DRAIN_S - 0.5 <= ended_at <= DRAIN_S + 10
        with pytest.raises(websockets.ConnectionClosedOK) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        rtc_error = (await call.until("error", 10))[-1]
        assert rtc_error["error"]["code"] == "server_shutting_down"
        # The process then exits 0, with nothing left behind to complain about.
        assert await _exit_status(draining, 20) == 0
        log = draining.log_text()
        assert "Traceback" not in log and "Task was destroyed" not in log
    finally:
        await ws.close()
        await call.close()


@pytest.mark.live
@pytest.mark.models
async def test_a_drain_ends_early_when_the_last_session_does(long_drain: LiveServer) -> None:
    ws = await _open_ws(long_drain)
    os.kill(long_drain.process.pid, signal.SIGTERM)
    await asyncio.sleep(0.5)
    assert long_drain.process.poll() is None, "the live session holds the drain open"
    await ws.close()
    assert await _exit_status(long_drain, 20) == 0  # well before its 120 s
