"""A spoken conversation over WebSocket with the real models leaves a record: both sides'
transcripts, a tool call and its result, a cancelled reply marked interrupted, turn timings;
the API returns and deletes it. A server whose record store cannot write still converses."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import LiveServer, start_server, stop_server
from tests.realtime_helpers import decode_audio_file, silence, speech, words
from tests.test_realtime_live import LOOKUP_TOOL, client_for, collect, say, send_audio

pytestmark = [pytest.mark.live, pytest.mark.models]


async def _converse(server: LiveServer) -> tuple[float, float]:
    """Holds the conversation; returns the seconds of user audio it sent and of agent audio it
    received."""
    heard: list[dict[str, Any]] = []
    async with client_for(server).realtime.connect(model="realtalk-local") as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "tools": [LOOKUP_TOOL],
                "instructions": "You are a shop assistant. Use tools to answer questions.",
                "audio": {"input": {"transcription": {"model": "whisper-1"}}},
            }
        )
        # A tool call and its result.
        await say(conn, "What's the status of order 1001?")
        await conn.response.create(response={"tool_choice": "required"})
        events = await collect(conn, "response.done", 120)
        heard += events
        call = next(e for e in events if e["type"] == "response.function_call_arguments.done")
        await conn.conversation.item.create(
            item={
                "type": "function_call_output",
                "call_id": call["call_id"],
                "output": json.dumps({"order_id": "1001", "status": "shipped"}),
            }
        )
        await conn.response.create()
        heard += await collect(conn, "response.done", 120)
        # A spoken turn (server VAD commits it and answers).
        said = np.concatenate(
            [silence(400), speech("What is the capital of France?"), silence(900)]
        )
        await send_audio(conn, said)
        heard += await collect(conn, "response.done", 120)
        # A reply cancelled as it speaks.
        await say(conn, "Tell me a long story about a dragon.")
        await conn.response.create()
        heard += await collect(conn, "response.output_audio.delta", 120)
        await conn.response.cancel()
        events = await collect(conn, "response.done", 60)
        heard += events
        assert events[-1]["response"]["status"] == "cancelled"
    pcm_bytes = sum(
        len(base64.b64decode(e["delta"]))
        for e in heard
        if e["type"] == "response.output_audio.delta"
    )
    return len(said) / 24_000, pcm_bytes / 2 / 24_000


def _record(server: LiveServer) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listing = httpx.get(f"{server.url}/api/conversations", headers=headers, timeout=10)
        assert listing.status_code == 200, listing.text
        data = listing.json()["data"]
        if data and data[0]["ended_at"] is not None:
            found = httpx.get(
                f"{server.url}/api/conversations/{data[0]['id']}", headers=headers, timeout=10
            )
            assert found.status_code == 200, found.text
            body: dict[str, Any] = found.json()
            return body
        time.sleep(0.2)
    raise AssertionError("no ended conversation recorded")


def _duration(ogg: bytes) -> float:
    pcm, rate = decode_audio_file(ogg)
    return len(pcm) / rate


def _layout(ogg: bytes) -> tuple[int, float]:
    """An audio file's channel count and duration."""
    pcm, rate = decode_audio_file(ogg)
    return pcm.shape[1], len(pcm) / rate


def test_a_spoken_conversation_is_recorded_and_deleted(tmp_path: Path) -> None:
    server = start_server(tmp_path, "recorded", {"REALTALK_RECORD": "audio"}, ready=True)
    try:
        user_seconds, agent_seconds = asyncio.run(_converse(server))
        record = _record(server)
        assert record["transport"] == "websocket" and record["generation"] == "ga"
        assert record["end_reason"] == "client_closed"
        assert record["stages"]["llm"]
        entries = record["entries"]
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            by_kind.setdefault(entry["kind"], []).append(entry)
        users = by_kind["user"]
        (heard,) = [u for u in users if u["via"] == "audio"]
        assert {"capital", "france"} <= words(heard["text"])
        assert any("1001" in u["text"] for u in users if u["via"] == "text")
        (tool_call,) = by_kind["tool_call"]
        assert tool_call["name"] == "lookup_order"
        assert json.loads(tool_call["arguments"]) == {"order_id": "1001"}
        (result,) = by_kind["tool_result"]
        assert result["call_id"] == tool_call["call_id"] and "shipped" in result["output"]
        replies = by_kind["assistant"]
        assert replies[0]["text"] and not any(r["interrupted"] for r in replies[:-1])
        assert replies[-1]["interrupted"] and replies[-1]["reason"] == "client_cancelled"
        latencies = by_kind["latency"]
        spoken = next(t["seconds"] for t in latencies if "stt" in t["seconds"])
        for stage in (
            "end_of_speech_to_commit",
            "stt",
            "llm_first_token",
            "tts_first_audio",
            "commit_to_first_audio",
        ):
            assert stage in spoken and spoken[stage] >= 0, (stage, spoken)
        assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
        assert all(record["started_at"] <= e["at"] <= record["ended_at"] for e in entries)

        headers = {"Authorization": f"Bearer {server.api_key}"}
        url = f"{server.url}/api/conversations/{record['id']}"
        assert sorted(record["audio"]) == [f"{record['id']}.agent.ogg", f"{record['id']}.user.ogg"]
        length = record["ended_at"] - record["started_at"]
        durations = {}
        for track in ("user", "agent"):
            got = httpx.get(f"{url}/audio?track={track}", headers=headers, timeout=10)
            assert got.status_code == 200 and got.content[:4] == b"OggS"
            seconds = _duration(got.content)
            # Each track runs from the record's start to its last sound. Both sides' audio
            # travels faster than real time over a WebSocket, so a track may run past the
            # conversation's end, by at most its own audio's length.
            own = agent_seconds if track == "agent" else user_seconds
            most, least = length + 0.5 + own, own
            assert least - 0.1 <= seconds <= most, (track, seconds, length, agent_seconds)
            durations[track] = seconds
        # By default both sides in one stereo file, the user left and the agent right, as long
        # as the longer track; mixed once and kept beside the tracks.
        audio_dir = tmp_path / "data-recorded" / "records-audio"
        assert len(list(audio_dir.iterdir())) == 2
        mixed = httpx.get(f"{url}/audio", headers=headers, timeout=30)
        assert mixed.status_code == 200 and mixed.headers["content-type"] == "audio/ogg"
        channels, seconds = _layout(mixed.content)
        assert channels == 2 and abs(seconds - max(durations.values())) < 0.1, seconds
        assert len(list(audio_dir.iterdir())) == 3
        again = httpx.get(f"{url}/audio?track=both", headers=headers, timeout=30)
        assert again.content == mixed.content
        assert httpx.get(url, headers=headers, timeout=10).json()["audio"] == record["audio"]
        bad = httpx.get(f"{url}/audio?track=stereo", headers=headers, timeout=10)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "track"
        assert httpx.delete(url, headers=headers, timeout=10).status_code == 200
        assert httpx.get(url, headers=headers, timeout=10).status_code == 404
        assert httpx.get(f"{url}/audio", headers=headers, timeout=10).status_code == 404
        assert list(audio_dir.iterdir()) == []
        listing = httpx.get(f"{server.url}/api/conversations", headers=headers, timeout=10)
        assert listing.json()["data"] == []
    finally:
        stop_server(server)


async def _short_text_turn(server: LiveServer) -> str:
    async with client_for(server).realtime.connect(model="realtalk-local") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await say(conn, "Say hello.")
        await conn.response.create()
        events = await collect(conn, "response.done", 120)
    done = events[-1]["response"]
    assert done["status"] == "completed"
    return str(done["output"][0]["content"][0]["text"])


def test_a_failing_record_store_does_not_break_the_conversation(tmp_path: Path) -> None:
    # The records file is a folder: SQLite cannot open it; every write fails.
    (tmp_path / "data-broken" / "records.sqlite3").mkdir(parents=True)
    server = start_server(tmp_path, "broken", ready=True)
    try:
        assert asyncio.run(_short_text_turn(server))
        assert "records: cannot open" in server.log_text()
    finally:
        stop_server(server)
