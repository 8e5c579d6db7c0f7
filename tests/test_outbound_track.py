"""The outbound WebRTC track: 20 ms frames, continuous audio, silence between, playout
accounting for truncation."""

from __future__ import annotations

import numpy as np

from realtalk.rtc.outbound import FRAME_SAMPLES, RATE, OutboundAudioTrack


async def test_frames_carry_the_audio_in_order_then_silence() -> None:
    transitions: list[tuple[str, str]] = []
    track = OutboundAudioTrack(lambda what, rid: transitions.append((what, rid)))
    ramp = (np.arange(FRAME_SAMPLES * 5 + 100) % 30000).astype(np.int16) + 1  # never zero
    track.begin("resp_1", "item_1")
    await track.write(ramp[:1000])
    await track.write(ramp[1000:])
    track.end()
    frames = [await track.recv() for _ in range(8)]
    samples = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    assert all(f.samples == FRAME_SAMPLES and f.sample_rate == RATE for f in frames)
    assert [f.pts for f in frames] == [i * FRAME_SAMPLES for i in range(8)]  # no gaps, no bursts
    assert np.array_equal(samples[: len(ramp)], ramp)  # every sample, in order
    assert not samples[len(ramp) :].any()  # then silence
    assert transitions == [("started", "resp_1"), ("stopped", "resp_1")]
    assert track.played() == ("resp_1", "item_1", len(ramp) * 1000 // RATE)
    track.stop()


async def test_clear_stops_playout_and_reports_what_was_heard() -> None:
    transitions: list[tuple[str, str]] = []
    track = OutboundAudioTrack(lambda what, rid: transitions.append((what, rid)))
    track.begin("resp_2", "item_2")
    await track.write(np.full(RATE, 1000, dtype=np.int16))  # one second queued
    for _ in range(10):
        await track.recv()  # 200 ms played
    assert track.is_playing()
    assert track.clear() == ("resp_2", "item_2", 200)
    assert not track.is_playing()
    after = await track.recv()
    assert not after.to_ndarray().any()  # silence at once
    assert transitions == [("started", "resp_2")]  # cleared, not stopped
    assert track.clear() is None
    track.stop()


async def test_a_gap_while_synthesizing_is_silence_not_the_end() -> None:
    transitions: list[str] = []
    track = OutboundAudioTrack(lambda what, rid: transitions.append(what))
    track.begin("resp_3", "item_3")
    await track.write(np.full(FRAME_SAMPLES, 500, dtype=np.int16))
    await track.recv()
    await track.recv()  # nothing queued yet: silence, still "playing"
    assert track.is_playing() and transitions == ["started"]
    await track.write(np.full(FRAME_SAMPLES, 500, dtype=np.int16))
    track.end()
    await track.recv()
    await track.recv()
    assert transitions == ["started", "stopped"]
    track.stop()


async def test_on_sent_reports_what_left_not_what_was_cleared() -> None:
    track = OutboundAudioTrack(lambda what, rid: None)
    sent: list[np.ndarray] = []
    track.on_sent = sent.append
    track.begin("resp_4", "item_4")
    ramp = (np.arange(RATE) % 30000).astype(np.int16) + 1  # one second, never zero
    await track.write(ramp)
    for _ in range(10):
        await track.recv()  # 200 ms leave
    track.clear()
    for _ in range(5):
        await track.recv()  # silence: nothing reported
    heard = np.concatenate(sent)
    assert np.array_equal(heard, ramp[: 10 * FRAME_SAMPLES])  # exactly what the listener got
    track.stop()
