"""Tools end to end: a spoken request in Chromium → the LLM calls an example tool on the real
SQLite database → the agent says the result. Client-side (the page calls /api/tools) and
server-side (the engine runs the tool) execution."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, start_server, stop_server
from tests.realtime_helpers import silence, voice, words
from tests.test_browser import open_page, wait_for, wait_sessions_zero, write_wav
from tests.test_records_live import _duration, _record

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.models]

ANSWERED = (
    "window.realtalk.events.filter(e => e.type === 'response.done').length >= 2 && "
    "window.realtalk.transcript().some(e => e.role === 'tool') && "
    "window.realtalk.transcript().filter(e => e.role === 'assistant' "
    "&& !e.classes.includes('pending') && e.text).length > 0"
)


def order_status(data_dir: Path, order_id: str) -> str:
    with sqlite3.connect(data_dir / "orders.sqlite3") as db:
        return str(
            db.execute("SELECT status FROM orders WHERE order_id = ?", (order_id,)).fetchone()[0]
        )


def converse(url: str, wav: str) -> tuple[list[dict[str, str]], list[dict[str, object]]]:
    for page in open_page(wav, url):
        page.get_by_role("button", name="Start").click()
        wait_for(page, ANSWERED, 120)
        transcript = page.evaluate("window.realtalk.transcript()")
        events = page.evaluate("window.realtalk.events")
        page.get_by_role("button", name="Stop").click()
        return transcript, events
    raise AssertionError("no page")


@pytest.mark.parametrize("execution", ["client", "server"])
def test_spoken_order_status(tmp_path: Path, execution: str) -> None:
    env = (
        {"REALTALK_SERVER_TOOLS": "lookup_order,cancel_order", "REALTALK_RECORD": "audio"}
        if execution == "server"
        else {}
    )
    server = start_server(tmp_path, f"shop-{execution}", env, ready=True)
    try:
        wav = write_wav(
            tmp_path / "status.wav",
            [
                silence(1500, 48_000),
                voice("What's the status of order 1001?", 48_000, steady=True),
                silence(40_000, 48_000),
            ],
        )
        transcript, events = converse(server.url, wav)
        calls = [e for e in events if e["type"] == "response.function_call_arguments.done"]
        assert calls and calls[0]["name"] == "lookup_order"
        tool_line = next(e for e in transcript if e["role"] == "tool")["text"]
        # Shown as a card: the tool's name, its arguments, then its result.
        assert tool_line.startswith("lookup_orderArguments") and "1001" in tool_line, tool_line
        assert "Result" in tool_line, tool_line
        if execution == "server":
            assert "run by the server" in tool_line
        else:
            assert '"status":"shipped"' in tool_line.replace(" ", "")
        answer = " ".join(e["text"] for e in transcript if e["role"] == "assistant").lower()
        stored = order_status(tmp_path / f"data-shop-{execution}", "1001")
        assert stored == "shipped" and stored in answer
        wait_sessions_zero(server)
        if execution == "server":
            check_webrtc_record(server, answer)
    finally:
        stop_server(server)


def test_spoken_cancellation_changes_the_row(tmp_path: Path) -> None:
    server = start_server(tmp_path, "cancel", ready=True)
    data_dir = tmp_path / "data-cancel"
    try:
        assert order_status(data_dir, "1002") == "processing"
        wav = write_wav(
            tmp_path / "cancel.wav",
            [
                silence(1500, 48_000),
                voice("Please cancel order one zero zero two.", 48_000),
                silence(40_000, 48_000),
            ],
        )
        transcript, events = converse(server.url, wav)
        calls = [e for e in events if e["type"] == "response.function_call_arguments.done"]
        assert calls and calls[0]["name"] == "cancel_order"
        assert order_status(data_dir, "1002") == "cancelled"
        answer = " ".join(e["text"] for e in transcript if e["role"] == "assistant").lower()
        assert "cancel" in answer
    finally:
        stop_server(server)


def check_webrtc_record(server: LiveServer, answer: str) -> None:
    """The call's record: its transcript, the tool call and result, the turn's timings, and
    two audio tracks no longer than the call (WebRTC audio flows in real time)."""
    record = _record(server)
    assert record["transport"] == "webrtc" and record["end_reason"]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for entry in record["entries"]:
        by_kind.setdefault(entry["kind"], []).append(entry)
    assert any("1001" in u["text"] for u in by_kind["user"])
    (call,) = by_kind["tool_call"]
    assert call["name"] == "lookup_order" and "1001" in call["arguments"]
    (result,) = by_kind["tool_result"]
    assert result["call_id"] == call["call_id"] and "shipped" in result["output"]
    spoken = " ".join(r["text"] for r in by_kind["assistant"]).lower()
    assert "shipped" in spoken and set(words(spoken)) & set(words(answer))
    # The turn's first reply is the tool call (no audio); the second speaks the result.
    timings = [t["seconds"] for t in by_kind["latency"]]
    stages = {stage for t in timings for stage, seconds in t.items() if seconds >= 0}
    assert stages >= {
        "end_of_speech_to_commit",
        "stt",
        "llm_first_token",
        "tts_first_audio",
        "commit_to_first_audio",
    }, timings
    length = record["ended_at"] - record["started_at"]
    headers = {"Authorization": f"Bearer {server.api_key}"}
    url = f"{server.url}/api/conversations/{record['id']}"
    durations = {}
    for track in ("user", "agent"):
        got = httpx.get(f"{url}/audio?track={track}", headers=headers, timeout=10)
        assert got.status_code == 200, (track, got.text)
        durations[track] = _duration(got.content)
    # The microphone's audio arrives in real time: its track fits inside the call.
    assert 1.0 < durations["user"] <= length + 0.5, (durations, length)
    # The agent's track holds what the page was played, when it was played: it reaches past
    # the first reply's first audio and ends within the call.
    first_audio = min(r["at"] for r in by_kind["assistant"]) - record["started_at"]
    assert first_audio - 3 < durations["agent"] <= length + 0.5, (durations, length, first_audio)
