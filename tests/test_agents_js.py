"""The OpenAI Agents SDK for JavaScript (``@openai/agents-realtime``) against realtalk, over both
of its transports: WebSocket from Node, and WebRTC from Chromium on another origin with an
ephemeral key. The scripts live in tests/js/ (installed by ``make test``: npm ci there); each
prints a JSON summary that these tests assert on. Every server event is checked twice: by the
SDK's own zod schemas (in the script) and by the ``openai`` package's types (here)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import LiveServer, start_server, stop_server
from tests.realtime_helpers import silence, validate_event, voice, words
from tests.test_browser import CHROMIUM, FLAGS, wait_sessions_zero, write_wav

pytestmark = [pytest.mark.live, pytest.mark.models]

JS_DIR = Path(__file__).parent / "js"
NODE = shutil.which("node") or "node"
INSTRUCTIONS = "You are a friendly assistant."


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    assert (JS_DIR / "node_modules" / "@openai" / "agents-realtime").is_dir(), (
        "the npm packages are missing: run `make js-deps` (make test does)"
    )
    server = start_server(
        tmp_path_factory.mktemp("agents-js"),
        "agentsjs",
        {"REALTALK_INSTRUCTIONS": INSTRUCTIONS},
        ready=True,
    )
    yield server
    stop_server(server)


def run_node(script: str, env: dict[str, str], limit_s: float = 300) -> dict[str, Any]:
    """Run a tests/js script with Node; its last stdout line is the JSON summary."""
    result = subprocess.run(
        [NODE, script],
        cwd=JS_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=limit_s,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr[-4000:]
    summary: dict[str, Any] = json.loads(lines[-1])
    print(json.dumps(summary, indent=1))  # shown by pytest when an assertion fails
    return summary


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_closed_cleanly(engine: LiveServer) -> None:
    """The SDK's close() ended the session on the server, which logged no traceback."""
    wait_sessions_zero(engine)
    assert "Traceback" not in engine.log_text(), engine.log_text()[-4000:]


def assert_events_conform(summary: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """No error, and every server event passes the SDK's schemas and the openai types."""
    assert summary["errors"] == [], summary["errors"]
    assert summary["server_error_events"] == [], summary["server_error_events"]
    schema = summary["schema"]
    assert schema["checked"] == len(events) > 0
    assert schema["invalid"] == [], schema["invalid"]
    # A type the SDK has no schema for would be ignored by it.
    assert schema["unknown_types"] == [], schema["unknown_types"]
    for event in events:
        validate_event(event, "ga")


def test_agents_js_over_websocket(engine: LiveServer, tmp_path: Path) -> None:
    question = tmp_path / "question.pcm"
    pcm = np.concatenate(
        [silence(500), voice("What's the status of order 1001?", steady=True), silence(2000)]
    ).astype("<i2")
    question.write_bytes(pcm.tobytes())
    events_path = tmp_path / "events.jsonl"
    summary = run_node(
        "agents_websocket.mjs",
        {
            "REALTALK_WS_URL": engine.url.replace("http", "ws", 1) + "/v1/realtime",
            "REALTALK_API_KEY": engine.api_key,
            "QUESTION_PCM": str(question),
            "EVENTS_OUT": str(events_path),
        },
    )
    assert summary["ok"], summary.get("failure")
    assert_events_conform(summary, read_events(events_path))
    assert_closed_cleanly(engine)

    # 1. Spoken question → the SDK ran the tool with the right argument → a spoken answer.
    spoken = summary["audio_turn"]
    assert "1001" in spoken["user_transcripts"][0]
    assert summary["tool_calls"] == ["1001"]
    assert summary["session_events"]["agent_tool_start"] == 1
    assert summary["session_events"]["agent_tool_end"] == 1
    assert spoken["status"] == "completed"
    assert spoken["audio_bytes"] > 24_000  # ≥ 0.5 s of pcm16 at 24 kHz, as `audio` events
    assert spoken["audio_done"]
    assert "shipped" in words(spoken["transcript"]), spoken["transcript"]
    assert spoken["agent_end_text"] == spoken["transcript"]

    # 2. session.interrupt() while the story is being spoken: the SDK cancels the response and
    # truncates the item where its (virtual) playback was; realtalk agrees to both.
    story = summary["interrupted_turn"]
    assert story["sent"] == ["response.cancel", "conversation.item.truncate"]
    truncate = story["truncate"]
    assert story["status"] == "cancelled"
    assert story["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert story["truncated"] == {
        "item_id": truncate["item_id"],
        "content_index": truncate["content_index"],
        "audio_end_ms": truncate["audio_end_ms"],
    }
    assert 450 <= truncate["audio_end_ms"] < story["audio_bytes_before"] / 48
    # The SDK re-reads the truncated item: its transcript stops where playback stopped.
    retrieved, full = story["retrieved_transcript"].strip(), story["full_transcript"]
    assert len(retrieved) < len(full) and full.startswith(retrieved), story
    assert story["audio_interrupted"] == 1

    # 3. The session goes on: a plain question gets a spoken answer.
    after = summary["text_turn"]
    assert after["status"] == "completed" and after["function_calls"] == 0
    assert after["audio_bytes"] > 24_000 and after["audio_done"]
    assert "paris" in words(after["transcript"]), after["transcript"]

    # The SDK's own history, built from realtalk's item events, tells the same story.
    history = summary["history"]
    users = [h["text"] for h in history if h["role"] == "user"]
    assert len(users) == 3 and "1001" in users[0] and "story" in users[1] and "capital" in users[2]
    calls = [h for h in history if h["type"] == "function_call"]
    assert [(c["name"], c["status"]) for c in calls] == [("get_order_status", "completed")]
    assert json.loads(calls[0]["output"])["status"] == "shipped"
    cut = [h for h in history if h["role"] == "assistant" and h["status"] == "incomplete"]
    assert [h["text"] for h in cut] == [story["retrieved_transcript"]], history
    assert history[-1] == {**history[-1], "role": "assistant", "status": "completed"}
    assert history[-1]["text"] == after["transcript"]

    # An interrupted reply still ends its audio (response.output_audio.done), so the SDK fires
    # audio_stopped for every reply whose audio started.
    assert story["output_audio_done"], story["events_after_interrupt"]
    assert story["audio_stopped"] == 1
    counts = summary["session_events"]
    assert counts["audio_start"] == counts["audio_stopped"] == 3, counts


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>Agents SDK over WebRTC</title></head>
<body><script src="agents_webrtc.js"></script></body></html>
"""


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[str]:
    """The SDK's browser bundle on a page served from another origin than the engine's."""
    root = tmp_path / "page"
    root.mkdir()
    subprocess.run(
        [
            str(JS_DIR / "node_modules" / ".bin" / "esbuild"),
            "agents_webrtc.mjs",
            "--bundle",
            "--format=iife",
            "--platform=browser",
            "--target=chrome120",
            "--log-level=warning",
            f"--outfile={root / 'agents_webrtc.js'}",
        ],
        cwd=JS_DIR,
        check=True,
    )
    (root / "index.html").write_text(PAGE)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def mint_ephemeral_key(engine: LiveServer) -> str:
    response = httpx.post(
        f"{engine.url}/v1/realtime/client_secrets",
        json={"session": {"type": "realtime", "model": "gpt-realtime"}},
        headers={"Authorization": f"Bearer {engine.api_key}"},
    )
    assert response.status_code == 200, response.text
    key = response.json()["value"]
    assert isinstance(key, str) and key.startswith("ek_")
    return key


def test_agents_js_over_webrtc_from_another_origin(
    engine: LiveServer, other_origin: str, tmp_path: Path
) -> None:
    wav = write_wav(
        tmp_path / "question.wav",
        [
            silence(3000, 48_000),
            # Steady: with Piper's sampling noise on, Whisper heard "1003" as "103" or
            # "1,000-3" in about one take in four.
            voice("What's the status of order 1003?", 48_000, steady=True),
            silence(90_000, 48_000),
        ],
    )
    config = {
        "baseUrl": f"{engine.url}/v1/realtime/calls",
        "ephemeralKey": mint_ephemeral_key(engine),
    }
    console: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[*FLAGS, f"--use-file-for-fake-audio-capture={wav}"],
        )
        try:
            page = browser.new_page()
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
            page.goto(other_origin)
            summary: dict[str, Any] = page.evaluate(
                "config => window.runAgentsWebRTC(config)", config
            )
        finally:
            browser.close()
    events = summary.pop("events")
    print(json.dumps(summary, indent=1), *console, sep="\n")
    assert summary["ok"], summary.get("failure")
    # Cross-origin: the browser sent a CORS preflight for the SDP POST, and it was allowed.
    assert summary["page_origin"] != summary["engine_origin"]
    assert "OPTIONS /v1/realtime/calls" in engine.log_text()
    assert summary["call_id"] and summary["call_id"].startswith("rtc_")
    assert_events_conform(summary, events)
    assert_closed_cleanly(engine)

    # 1. Spoken question over the microphone track → the SDK ran the tool → the answer played.
    spoken = summary["voice_turn"]
    assert any("1003" in t for t in spoken["user_transcripts"]), spoken["user_transcripts"]
    assert summary["tool_calls"] == ["1003"]
    assert summary["session_events"]["agent_tool_start"] == 1
    assert summary["session_events"]["agent_tool_end"] == 1
    assert spoken["status"] == "completed"
    assert spoken["buffer_started"] and spoken["buffer_stopped"] and spoken["output_audio_done"]
    assert spoken["energy_during_reply"] > 0, spoken
    assert "delivered" in words(spoken["transcript"]), spoken["transcript"]

    # 2. session.interrupt() while the story plays: cancel + clear; the playout stops.
    story = summary["interrupted_turn"]
    assert story["sent"] == ["response.cancel", "output_audio_buffer.clear"]
    assert story["status"] == "cancelled"
    assert story["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert story["cleared"] == [story["response_id"]]
    assert story["energy_while_playing"] > 0
    # From 0.75 s to 1.75 s after the clear, the track carries silence.
    assert story["energy_after_clear"] < story["energy_while_playing"] / 50, story["after_clear"]

    # 3. The session goes on.
    after = summary["text_turn"]
    assert after["status"] == "completed" and after["function_calls"] == []
    assert after["buffer_started"] and after["output_audio_done"]
    assert after["energy_during_reply"] > 0
    assert "paris" in words(after["transcript"]), after["transcript"]

    # The SDK's history: the tool's output, the cut reply, the last answer.
    history = summary["history"]
    calls = [h for h in history if h["type"] == "function_call"]
    assert [c["name"] for c in calls] == ["get_order_status"]
    assert json.loads(calls[0]["output"])["status"] == "delivered"
    assert [h["status"] for h in history if h["role"] == "assistant"][-2:] == [
        "incomplete",
        "completed",
    ], history
    assert history[-1]["text"] == after["transcript"]
    assert not [line for line in console if line.startswith("error")], console

    # An interrupted reply still ends its audio (response.output_audio.done): the SDK fires
    # audio_stopped once per reply that spoke.
    assert story["output_audio_done"], story["events_after_interrupt"]
    assert summary["session_events"]["audio_stopped"] == 3
