"""Sync tools run on a bounded pool of their own (issue 10, point 3): a tool that never returns
costs only its own slot, never the threads transcription, the LLM and speech run on; once every
slot is taken a new call fails at once with a tool error."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from realtalk.tools import ToolRegistry, tool
from realtalk.tools.pool import ToolPool
from tests.conftest import start_server, stop_server
from tests.realtime_helpers import silence, speech

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POOL = min(32, (os.cpu_count() or 1) + 4)
"""asyncio's default executor: where every blocking call went before tools had their own."""


async def test_a_full_pool_is_a_tool_error_and_timed_out_calls_keep_their_slot() -> None:
    released = threading.Event()

    @tool(timeout_s=0.2)
    def stuck() -> str:
        """Never returns until released."""
        released.wait()
        return "done"

    @tool
    def quick() -> str:
        """Returns at once."""
        return "quick"

    registry = ToolRegistry(pool=ToolPool(2))
    registry.add(stuck, quick)
    try:
        for _ in range(2):  # each times out for the model; its thread stays taken
            result = await registry.call("stuck", "{}")
            assert "did not finish within 0.2 seconds" in result["error"]
        assert registry.pool.taken == 2
        busy = await asyncio.wait_for(registry.call("quick", "{}"), 1)
        assert "tool pool is busy" in busy["error"]
    finally:
        released.set()
    for _ in range(100):
        if registry.pool.taken == 0:
            break
        await asyncio.sleep(0.02)
    assert await registry.call("quick", "{}") == "quick"
    registry.pool.close()


async def _until(ws: Any, kind: str, limit_s: float) -> dict[str, Any]:
    async with asyncio.timeout(limit_s):
        while True:
            event = json.loads(await ws.recv())
            assert event["type"] != "error", event
            if event["type"] == kind:
                return event


@pytest.mark.live
@pytest.mark.models
async def test_hung_tools_do_not_starve_a_spoken_reply(tmp_path: Path) -> None:
    release = tmp_path / "release"
    server = start_server(
        tmp_path,
        "tools",
        env={
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "HANG_RELEASE_FILE": str(release),
            "REALTALK_TOOLS": "tests.hang_tools:tools",
            "REALTALK_TOOL_TIMEOUT_S": "1",
            "REALTALK_TOOL_WORKERS": str(DEFAULT_POOL),
        },
        ready=True,
    )
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            # As many hung calls as asyncio's default pool has threads: each times out for
            # its caller and keeps its thread.
            hung = await asyncio.gather(
                *(http.post("/api/tools/hang", json={"label": str(i)}) for i in range(DEFAULT_POOL))
            )
            for response in hung:
                assert response.status_code == 200
                assert "did not finish" in response.json()["error"]

            url = server.url.replace("http", "ws") + "/v1/realtime?model=realtalk-local"
            headers = {"Authorization": f"Bearer {server.api_key}"}
            async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
                await ws.send(
                    json.dumps(
                        {
                            "type": "session.update",
                            "session": {
                                "type": "realtime",
                                "instructions": "Answer in one short sentence.",
                                "audio": {
                                    "input": {
                                        "turn_detection": None,
                                        "transcription": {"model": "whisper-1"},
                                    }
                                },
                            },
                        }
                    )
                )
                await _until(ws, "session.updated", 10)
                question = speech("What color is the sky on a clear day?")
                audio = np.concatenate([question, silence(300)])
                chunk = base64.b64encode(audio.astype("<i2").tobytes()).decode()
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
                await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
                heard = await _until(
                    ws, "conversation.item.input_audio_transcription.completed", 90
                )
                assert "sky" in heard["transcript"].lower()  # speech-to-text ran
                await ws.send(json.dumps({"type": "response.create"}))
                await _until(ws, "response.output_audio.delta", 90)  # the LLM and TTS ran
                done = await _until(ws, "response.done", 90)
                assert done["response"]["status"] == "completed"

            # Every tool thread is still taken: one more call is refused at once.
            extra = await http.post("/api/tools/hang", json={"label": "extra"})
            assert extra.status_code == 503
            error = extra.json()["error"]
            assert error["code"] == "tool_pool_busy" and "tool pool is busy" in error["message"]
            assert extra.headers["retry-after"]
    finally:
        release.touch()
        stop_server(server)
