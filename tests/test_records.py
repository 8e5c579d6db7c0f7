"""Conversation records: the store (retention with an injected clock, delete, a store that
cannot write), and the records API's key checks against a live server (no models)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from realtalk.config import Settings
from realtalk.records import RecordStore, SessionRecorder
from tests.conftest import LiveServer, start_server, stop_server
from tests.realtime_helpers import decode_audio_file

DAY = 86_400.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _record(store: RecordStore, record_id: str) -> SessionRecorder:
    rec = SessionRecorder(
        store, record_id, "sess_1", transport="websocket", generation="ga", stages={"llm": "x"}
    )
    rec.event(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "item_u",
            "transcript": "Hello there.",
        }
    )
    rec.stage("stt", 0.2)
    rec.event(
        {
            "type": "response.done",
            "response": {
                "id": "resp_1",
                "status": "cancelled",
                "status_details": {"type": "cancelled", "reason": "client_cancelled"},
                "output": [
                    {
                        "type": "function_call",
                        "id": "item_f",
                        "call_id": "call_1",
                        "name": "get_time",
                        "arguments": '{"city": "Paris"}',
                    },
                    {
                        "type": "message",
                        "id": "item_a",
                        "role": "assistant",
                        "content": [{"type": "output_audio", "transcript": "Hi, how"}],
                    },
                ],
            },
        }
    )
    rec.turn("resp_1", {"llm_first_token": 0.1})
    rec.close("client_closed")
    return rec


def test_store_keeps_the_timeline_and_deletes_every_trace(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "records.sqlite3")
    store.start()
    try:
        _record(store, "conv_a")
        assert store.flush()
        found = store.get("conv_a")
        assert found is not None
        assert found["end_reason"] == "client_closed" and found["ended_at"] is not None
        kinds = [e["kind"] for e in found["entries"]]
        assert kinds == ["user", "tool_call", "assistant", "latency"]
        assistant = found["entries"][2]
        assert assistant["interrupted"] is True and assistant["text"] == "Hi, how"
        assert found["entries"][3]["seconds"] == {"stt": 0.2, "llm_first_token": 0.1}
        store.audio_dir.mkdir()
        for name in ("conv_a.user.ogg", "conv_a.both.ogg", "conv_b.user.ogg"):
            (store.audio_dir / name).write_bytes(b"OggS")
        # An id is matched literally: "*" or "conv_?" names no conversation's files.
        assert not store.delete("*") and not store.delete("conv_?")
        assert len(list(store.audio_dir.iterdir())) == 3
        assert store.delete("conv_a")
        assert store.get("conv_a") is None
        assert [f.name for f in store.audio_dir.iterdir()] == ["conv_b.user.ogg"]
        assert not store.delete("conv_a")
    finally:
        store.stop()


def test_retention_deletes_old_records_with_an_injected_clock(tmp_path: Path) -> None:
    clock = Clock(1_000 * DAY)
    store = RecordStore(tmp_path / "records.sqlite3", clock=clock)
    store.start()
    try:
        _record(store, "conv_old")
        clock.now += 20 * DAY
        _record(store, "conv_new")
        assert store.flush()
        clock.now += 11 * DAY  # conv_old is 31 days old, conv_new 11
        assert store.purge(30) == 1
        assert store.get("conv_old") is None
        assert store.get("conv_new") is not None
        assert [c["id"] for c in store.page()] == ["conv_new"]
    finally:
        store.stop()


def test_a_store_that_cannot_write_drops_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    store = RecordStore(blocker / "records.sqlite3")  # its folder cannot be created
    store.start()
    try:
        with caplog.at_level(logging.ERROR, logger="realtalk.records"):
            began = time.monotonic()
            for n in range(200):
                _record(store, f"conv_{n}")  # never raises, never waits on the disk
            assert time.monotonic() - began < 5
            assert store.flush()
        assert store.dropped >= 200
        assert "cannot open" in caplog.text
    finally:
        store.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("records"), "records")
    yield live
    stop_server(live)


@pytest.mark.live
def test_records_api_refuses_missing_and_ephemeral_keys(server: LiveServer) -> None:
    standard = {"Authorization": f"Bearer {server.api_key}"}
    minted = httpx.post(
        f"{server.url}/v1/realtime/client_secrets", headers=standard, json={}, timeout=10
    )
    assert minted.status_code == 200, minted.text
    ephemeral = {"Authorization": f"Bearer {minted.json()['value']}"}
    for method, path in [
        ("GET", "/api/conversations"),
        ("GET", "/api/conversations/conv_x"),
        ("GET", "/api/conversations/conv_x/audio"),
        ("DELETE", "/api/conversations/conv_x"),
    ]:
        for headers in ({}, ephemeral, {"Authorization": "Bearer wrong"}):
            answer = httpx.request(method, server.url + path, headers=headers, timeout=10)
            assert answer.status_code == 401, (method, path, answer.text)
            error = answer.json()["error"]
            assert error["code"] in ("invalid_api_key", "missing_api_key") and error["type"]
    listing = httpx.get(f"{server.url}/api/conversations", headers=standard, timeout=10)
    assert listing.status_code == 200 and listing.json()["data"] == []
    missing = httpx.get(f"{server.url}/api/conversations/conv_x", headers=standard, timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "conversation_not_found"
    bad = httpx.get(f"{server.url}/api/conversations?limit=0", headers=standard, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"
    bad = httpx.get(f"{server.url}/api/conversations?before=soon", headers=standard, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "before"


def test_audio_tracks_lie_on_one_timeline(tmp_path: Path) -> None:
    import numpy as np

    from realtalk.records.audio import AudioTracks
    from realtalk.rtc.audio_files import AudioEncoder

    clock = Clock(100.0)
    tracks = AudioTracks(tmp_path, "conv_t", lambda rate: AudioEncoder("opus", rate), clock)
    tone = (np.sin(np.arange(24_000) / 24_000 * 2 * np.pi * 300) * 8000).astype(np.int16)
    tracks.add("user", tone, 24_000)  # 0-1 s
    clock.now += 2.0
    tracks.add("agent", tone[:16_000], 16_000)  # 2-3 s: starts after 2 s of silence
    tracks.close()
    tracks.join()
    for name, seconds in (("conv_t.user.ogg", 1.0), ("conv_t.agent.ogg", 3.0)):
        pcm, rate = decode_audio_file((tmp_path / name).read_bytes())
        assert abs(len(pcm) / rate - seconds) < 0.1, (name, len(pcm) / rate)


def test_both_tracks_mix_into_one_stereo_file(tmp_path: Path) -> None:
    import io

    import numpy as np

    from realtalk.records.audio import AudioTracks
    from realtalk.rtc.audio_files import AudioEncoder, write_stereo

    clock = Clock(0.0)
    tracks = AudioTracks(tmp_path, "conv_m", lambda rate: AudioEncoder("opus", rate), clock)
    tone = (np.sin(np.arange(16_000) / 16_000 * 2 * np.pi * 300) * 8000).astype(np.int16)
    tracks.add("user", tone, 16_000)  # 0-1 s
    clock.now = 2.0
    tracks.add("agent", np.concatenate([tone, tone, tone]), 16_000)  # 2-5 s: the longer track
    tracks.close()
    tracks.join()

    def level(path_a: Path | None, path_b: Path | None) -> tuple[np.ndarray, int]:
        out = io.BytesIO()
        write_stereo(path_a, path_b, out, 16_000)
        pcm, rate = decode_audio_file(out.getvalue())
        assert pcm.shape[1] == 2
        return np.abs(pcm), rate

    user, agent = tmp_path / "conv_m.user.ogg", tmp_path / "conv_m.agent.ogg"
    pcm, rate = level(user, agent)
    assert abs(len(pcm) / rate - 5.0) < 0.1, len(pcm) / rate  # the longer track's length

    def loud(channel: int, start: float, end: float) -> float:
        return float(pcm[int(start * rate) : int(end * rate), channel].mean())

    assert loud(0, 0.1, 0.9) > 0.1 and loud(1, 0.1, 0.9) < 0.005  # the user, left
    assert loud(1, 2.1, 4.9) > 0.1 and loud(0, 2.1, 4.9) < 0.005  # the agent, right
    # One track alone (a text-only conversation has no agent audio): the other side is silent.
    pcm, rate = level(user, None)
    assert abs(len(pcm) / rate - 1.0) < 0.1 and pcm[:, 1].max() < 0.005
    # A track cut short (the server died while writing it) mixes up to where it can be read.
    data = agent.read_bytes()
    agent.write_bytes(data[: len(data) // 2])
    pcm, rate = level(user, agent)
    assert 1.0 < len(pcm) / rate < 5.0, len(pcm) / rate


def test_audio_tracks_keep_paced_frames_continuous_and_real_gaps_silent(tmp_path: Path) -> None:
    import numpy as np

    from realtalk.records.audio import AudioTracks
    from realtalk.rtc.audio_files import AudioEncoder

    clock = Clock(0.0)
    tracks = AudioTracks(tmp_path, "conv_j", lambda rate: AudioEncoder("opus", rate), clock)
    frame = (np.sin(np.arange(320) / 16_000 * 2 * np.pi * 400) * 8000).astype(np.int16)  # 20 ms
    late = [0.0, 0.004, 0.011, 0.0, 0.025, 0.002] * 25  # 3 s of frames, each a little late
    for i, jitter in enumerate(late):
        clock.now = i * 0.02 + jitter
        tracks.add("agent", frame, 16_000)
    clock.now = 5.0  # then 2 s of nothing: a real gap
    tracks.add("agent", frame, 16_000)
    tracks.close()
    tracks.join()
    samples, rate = decode_audio_file((tmp_path / "conv_j.agent.ogg").read_bytes())
    pcm = samples[:, 0]
    assert abs(len(pcm) / rate - 5.02) < 0.1, len(pcm) / rate
    # The paced frames are one continuous tone: no silence slipped in for their lateness.
    level = np.abs(pcm[int(0.1 * rate) : int(2.9 * rate)])  # decoded as float, ±1.0
    windows = level[: len(level) // 240 * 240].reshape(-1, 240).mean(axis=1)  # 5 ms each
    assert windows.min() > 0.5 * windows.max(), (windows.min(), windows.max())
    assert np.abs(pcm[int(3.2 * rate) : int(4.8 * rate)]).max() < 0.01  # the gap is silence


def test_audio_tracks_that_cannot_write_drop_and_go_on(tmp_path: Path) -> None:
    import numpy as np

    from realtalk.records.audio import AudioTracks
    from realtalk.rtc.audio_files import AudioEncoder

    blocker = tmp_path / "file"
    blocker.write_text("")
    tracks = AudioTracks(blocker / "audio", "conv_x", lambda rate: AudioEncoder("opus", rate))
    for _ in range(50):
        tracks.add("user", np.zeros(1600, dtype=np.int16), 16_000)
    tracks.close()
    tracks.join()
    assert not (blocker / "audio").exists()


def test_pages_run_newest_first_and_filter_by_start(tmp_path: Path) -> None:
    clock = Clock(1_000 * DAY)
    store = RecordStore(tmp_path / "records.sqlite3", clock=clock)
    store.start()
    try:
        for n in range(5):
            _record(store, f"conv_{n}")
            clock.now += DAY
        assert store.flush()
        first = store.page(limit=2)
        assert [c["id"] for c in first] == ["conv_4", "conv_3"]
        after = store.page(before=first[-1]["started_at"], limit=2)
        assert [c["id"] for c in after] == ["conv_2", "conv_1"]
        window = store.page(after=1_000 * DAY, before=1_003 * DAY)
        assert [c["id"] for c in window] == ["conv_2", "conv_1"]
    finally:
        store.stop()


def test_the_stereo_mix_is_kept_once_and_served_on_a_full_disk(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import numpy as np
    from fastapi.testclient import TestClient

    from realtalk.app import records_api
    from realtalk.app.server import create_app
    from realtalk.app.state import ServerState
    from realtalk.records.audio import AudioTracks
    from realtalk.rtc.audio_files import AudioEncoder

    async def no_models(_: ServerState) -> None:
        return None

    assert settings.api_key is not None
    key = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}
    tone = (np.sin(np.arange(16_000) / 16_000 * 2 * np.pi * 300) * 8000).astype(np.int16)
    with TestClient(create_app(settings, warmup=no_models)) as client:
        state = client.app.state.realtalk  # type: ignore[attr-defined]
        store: RecordStore = state.records
        for record_id in ("conv_kept", "conv_full"):
            _record(store, record_id)
            tracks = AudioTracks(
                store.audio_dir, record_id, lambda rate: AudioEncoder("opus", rate)
            )
            tracks.add("user", tone, 16_000)
            tracks.close()
            tracks.join()
        assert store.flush()

        def channels(body: bytes) -> int:
            return int(decode_audio_file(body)[0].shape[1])

        got = client.get("/api/conversations/conv_kept/audio", headers=key)
        assert got.status_code == 200 and channels(got.content) == 2
        assert (store.audio_dir / "conv_kept.both.ogg").exists()  # kept for the next request
        assert client.get("/api/conversations/conv_kept", headers=key).json()["audio"] == [
            "conv_kept.user.ogg"
        ]

        def full_disk(*_: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(records_api, "_mix_to", full_disk)
        got = client.get("/api/conversations/conv_full/audio", headers=key)
        assert got.status_code == 200 and channels(got.content) == 2  # served all the same
        assert not (store.audio_dir / "conv_full.both.ogg").exists()
        missing = client.get("/api/conversations/conv_full/audio?track=agent", headers=key)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "audio_not_found"


def test_a_websocket_reply_is_held_until_played_and_cut_where_the_client_stopped(
    tmp_path: Path,
) -> None:
    """Over a WebSocket the reply arrives faster than real time and the client plays it from
    its arrival: the agent track lays it end to end there, and when the client truncates the
    item, the audio it never played is not written."""
    import numpy as np

    from realtalk.records.audio import AudioTracks
    from realtalk.rtc.audio_files import AudioEncoder

    store = RecordStore(tmp_path / "records.sqlite3")
    store.start()
    clock = Clock(0.0)
    tone = (np.sin(np.arange(24_000) / 24_000 * 2 * np.pi * 300) * 8000).astype(np.int16)

    def agent_seconds(record_id: str, cut_ms: int | None) -> float:
        tracks = AudioTracks(
            tmp_path, record_id, lambda rate: AudioEncoder("opus", rate), clock, hold=True
        )
        recorder = SessionRecorder(
            store,
            record_id,
            "sess_1",
            transport="websocket",
            generation="ga",
            stages={},
            tracks=tracks,
        )
        clock.now = tracks._t0 + 1.0
        recorder.event(
            {
                "type": "response.output_item.added",
                "response_id": "resp_1",
                "output_index": 0,
                "item": {"id": "item_a", "type": "message", "role": "assistant", "content": []},
            }
        )
        for _ in range(4):  # four seconds of reply, all sent within 1 s: played 1-5 s
            recorder.audio("agent", tone, 24_000)
        clock.now += 0.5  # 0.5 s has played when the client stops it
        if cut_ms is not None:
            recorder.event(
                {
                    "type": "conversation.item.truncated",
                    "item_id": "item_a",
                    "content_index": 0,
                    "audio_end_ms": cut_ms,
                }
            )
        recorder.close("client_closed")
        tracks.join()
        pcm, rate = decode_audio_file((tmp_path / f"{record_id}.agent.ogg").read_bytes())
        return len(pcm) / rate

    try:
        assert abs(agent_seconds("conv_cut", 500) - 1.5) < 0.1  # 1 s of silence + 0.5 s heard
        # Not cut (the client played on, even after hanging up): all of it, end to end.
        assert abs(agent_seconds("conv_whole", None) - 5.0) < 0.1
    finally:
        store.stop()
