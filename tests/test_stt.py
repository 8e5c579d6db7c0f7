"""The Whisper stage: the fitted window's decoding rules, and the real model on both paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from realtalk.pipeline import weights
from realtalk.pipeline.stt import whisper
from realtalk.pipeline.stt.whisper import WhisperSTT, _repeats, _timed_segments
from tests.conftest import MODEL_DIR
from tests.realtime_helpers import silence, voice


@dataclass
class Tokens:
    """Whisper's token layout in miniature: text ids < eot < timestamp ids."""

    eot: int = 100
    timestamp_begin: int = 200

    def decode(self, ids: list[int]) -> str:
        return "".join(f" w{i}" for i in ids)


def ts(seconds: float) -> int:
    return 200 + round(seconds / 0.02)


def test_segments_split_at_timestamps_and_stop_at_the_audio_end() -> None:
    ids = [ts(0.0), 1, 2, ts(1.0), ts(1.0), 3, ts(2.4), ts(2.6), 4, 5, ts(3.0)]
    segments = _timed_segments(ids, Tokens(), seconds=2.5)  # type: ignore[arg-type]
    assert [(s.start, s.end, s.text) for s in segments] == [
        (0.0, 1.0, " w1 w2"),
        (1.0, 2.4, " w3"),
    ]  # the segment that starts at 2.6 s, in the padding, is dropped


def test_an_unclosed_segment_ends_with_the_audio() -> None:
    segments = _timed_segments([ts(0.0), 1, 2, 100], Tokens(), seconds=1.5)  # type: ignore[arg-type]
    assert [(s.start, s.end, s.text) for s in segments] == [(0.0, 1.5, " w1 w2")]


def test_a_decoder_loop_is_recognised() -> None:
    assert _repeats("How far is it? How far is it?")
    assert not _repeats("How far is it? Tell me how far.")
    assert not _repeats("one zero zero zero zero two, order one zero zero two please")


@pytest.fixture(scope="module")
def stt() -> WhisperSTT:
    return WhisperSTT(weights.resolve_model(MODEL_DIR, "stt", "whisper-base"))


@pytest.fixture
def full_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per transcription that took the 30-second path."""
    calls: list[int] = []
    full = WhisperSTT._full
    monkeypatch.setattr(WhisperSTT, "_full", lambda self, *a: calls.append(1) or full(self, *a))
    return calls


def turn(text: str) -> np.ndarray:
    """As the session gives a turn: 300 ms before the voice, 160 ms after."""
    return np.concatenate([silence(300, 16_000), voice(text, 16_000), silence(160, 16_000)])


@pytest.mark.models
def test_fitted_window_transcribes_a_short_turn(stt: WhisperSTT, full_calls: list[int]) -> None:
    result = stt._run(turn("What is the weather like in Paris today?"), None, None)
    assert {"weather", "like", "today"} <= set(result.text.lower().strip("?").split())
    assert result.segments and result.segments[0].start < 1.0
    assert full_calls == []  # the fitted path did it
    assert stt._run(silence(1000, 16_000), None, None).text == ""


@pytest.mark.models
def test_long_turns_and_runaway_decodes_take_the_30_second_path(
    stt: WhisperSTT, full_calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    long = np.concatenate([turn("Hello there.")] + [silence(1000, 16_000)] * 28)
    assert "hello" in stt._run(long, None, None).text.lower()
    assert full_calls == [1]
    monkeypatch.setattr(whisper, "_repeats", lambda text, **_: True)  # as if it looped
    assert "moon" in stt._run(turn("How far away is the moon?"), None, None).text.lower()
    assert full_calls == [1, 1]


def test_a_folder_without_tokenizer_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json"):
        WhisperSTT(tmp_path)
