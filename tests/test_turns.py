"""TurnDetector on scripted probability timelines."""

from __future__ import annotations

from realtalk.core.config import TurnDetection
from realtalk.session.turns import (
    EAGERNESS,
    Pause,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    TurnDetector,
)


def run(detector: TurnDetector, timeline: list[tuple[int, float]]) -> list[object]:
    """timeline: (duration_ms, probability) segments, fed as 32 ms frames."""
    events, now = [], 0
    for duration, probability in timeline:
        for _ in range(duration // 32):
            now += 32
            event = detector.feed(probability, now)
            if event is not None and not isinstance(event, Pause):
                events.append((now, event))
    return events


def test_speech_then_silence_starts_and_stops_a_turn() -> None:
    detector = TurnDetector(TurnDetection(prefix_padding_ms=300, silence_duration_ms=500))
    events = run(detector, [(992, 0.0), (1984, 0.95), (1024, 0.0)])
    assert [type(e) for _, e in events] == [SpeechStarted, SpeechStopped]
    (started_at, started), (stopped_at, stopped) = events
    assert started_at == 992 + 64  # after MIN_SPEECH_MS of speech
    assert isinstance(started, SpeechStarted) and started.audio_start_ms == 992 - 300
    assert isinstance(stopped, SpeechStopped)
    assert stopped.speech_end_ms == 992 + 1984
    assert stopped.audio_end_ms == stopped_at == 992 + 1984 + 512  # includes the silence window
    assert detector.state == "quiet"


def test_short_pauses_and_word_gaps_do_not_end_the_turn() -> None:
    detector = TurnDetector(TurnDetection(silence_duration_ms=500))
    events = run(detector, [(640, 0.9), (320, 0.0), (640, 0.9), (160, 0.4), (640, 0.9), (640, 0.0)])
    # The pause ends with the speech resuming (the dip to 0.4 is within the hysteresis).
    kinds = [type(e) for _, e in events]
    assert kinds == [SpeechStarted, SpeechResumed, SpeechStopped]


def test_a_click_does_not_start_a_turn() -> None:
    detector = TurnDetector(TurnDetection())
    assert run(detector, [(320, 0.0), (32, 1.0), (320, 0.0), (32, 1.0), (320, 0.0)]) == []


def test_threshold_and_silence_follow_configuration() -> None:
    detector = TurnDetector(TurnDetection(threshold=0.8))
    assert run(detector, [(640, 0.7)]) == []
    detector.configure(TurnDetection(threshold=0.6, silence_duration_ms=200))
    events = run(detector, [(640, 0.7), (256, 0.0)])
    assert [type(e) for _, e in events] == [SpeechStarted, SpeechStopped]


def test_semantic_vad_eagerness_bounds_the_wait() -> None:
    eager = TurnDetector(TurnDetection(type="semantic_vad", eagerness="high"))
    patient = TurnDetector(TurnDetection(type="semantic_vad", eagerness="low"))
    timeline = [(640, 0.9), (640, 0.0)]
    assert len(run(eager, timeline)) == 2
    assert len(run(patient, timeline)) == 1  # still waiting after 640 ms of silence
    assert EAGERNESS["auto"].longest_silence_ms <= 1000
    assert EAGERNESS["high"].complete_above < EAGERNESS["low"].complete_above


def test_the_end_of_turn_model_can_end_a_pause_early() -> None:
    detector = TurnDetector(TurnDetection(type="semantic_vad", eagerness="auto"))
    assert detector.end(100) is None  # not in a turn
    for now in range(32, 640 + 1, 32):
        detector.feed(0.9, now)
    assert detector.paused_at() is None and detector.end(640) is None  # still speaking
    for now in range(672, 864 + 1, 32):
        detector.feed(0.0, now)
    assert detector.paused_at() == 640  # where the last speech frame ended
    stopped = detector.end(864)
    assert isinstance(stopped, SpeechStopped)
    assert (stopped.audio_end_ms, stopped.speech_end_ms) == (864, 640)
    assert detector.state == "quiet" and detector.end(900) is None


def test_pause_hints_come_before_the_stop() -> None:
    detector = TurnDetector(TurnDetection(silence_duration_ms=320))
    kinds = []
    now = 0
    for probability in [0.9] * 10 + [0.0] * 10:
        now += 32
        event = detector.feed(probability, now)
        if event is not None:
            kinds.append(event.kind)
    assert kinds[0] == "speech_started"
    assert kinds[1:-1] and all(k == "pause" for k in kinds[1:-1])
    assert kinds[-1] == "speech_stopped"
