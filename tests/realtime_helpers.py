"""Helpers for Realtime tests: validating server events against the openai types, speech."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from typing import Any, Literal

import numpy as np
import soxr
from openai.types.beta.realtime import realtime_server_event as beta_server
from openai.types.beta.realtime.transcription_session import TranscriptionSession
from openai.types.realtime import realtime_server_event as ga_server
from pydantic import BaseModel

from realtalk.protocol.client_events import event_models


class TranscriptionSessionCreatedEvent(BaseModel):
    """Beta ``transcription_session.created``: in OpenAI's API reference (the first event of a
    beta transcription session) but not in the Python package's union; its session is the one
    of ``transcription_session.updated``."""

    event_id: str
    session: TranscriptionSession
    type: Literal["transcription_session.created"]


SERVER_MODELS = {
    "beta": {
        **event_models(beta_server.RealtimeServerEvent),
        "transcription_session.created": TranscriptionSessionCreatedEvent,
    },
    "ga": event_models(ga_server.RealtimeServerEvent),
}
GA_ONLY = {
    "conversation.item.added",
    "conversation.item.done",
    "response.output_audio.delta",
    "response.output_audio.done",
    "response.output_audio_transcript.delta",
    "response.output_audio_transcript.done",
    "response.output_text.delta",
    "response.output_text.done",
}
BETA_ONLY = {
    "conversation.item.created",
    "response.audio.delta",
    "response.audio.done",
    "response.audio_transcript.delta",
    "response.audio_transcript.done",
    "response.text.delta",
    "response.text.done",
    "conversation.created",
}


def validate_event(event: dict[str, Any], generation: str) -> BaseModel:
    """The event parsed by the openai package's model for its type (strict about names)."""
    kind = event["type"]
    models = SERVER_MODELS[generation]
    assert kind in models, f"{kind!r} is not a {generation} server event"
    if generation == "beta":
        assert kind not in GA_ONLY, f"GA name {kind!r} on a beta connection"
    else:
        assert kind not in BETA_ONLY or kind == "conversation.created", (
            f"beta name {kind!r} on a GA connection"
        )
    assert isinstance(event.get("event_id"), str) and event["event_id"]
    return models[kind].model_validate(event)


def speech(text: str, rate: int = 24_000, words_per_minute: int = 150) -> np.ndarray:
    """``text`` spoken by espeak-ng, as int16 mono at ``rate``."""
    espeak = shutil.which("espeak-ng")
    assert espeak, "espeak-ng is required (make test installs it)"
    wav = subprocess.run(
        [espeak, "-v", "en-us", "-s", str(words_per_minute), "--stdout", text],
        capture_output=True,
        check=True,
    ).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        native = reader.getframerate()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype=np.int16)
    return np.asarray(soxr.resample(samples, native, rate), dtype=np.int16)


def silence(ms: int, rate: int = 24_000) -> np.ndarray:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


def tone(ms: int, rate: int = 24_000, hz: float = 220.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * hz * t) * level * 32767).astype(np.int16)


def words(text: str) -> set[str]:
    return {w.strip(".,!?;:'\"").lower() for w in text.split() if w.strip(".,!?;:'\"")}


_PIPER: Any = None


def voice(text: str, rate: int = 24_000, *, steady: bool = False) -> np.ndarray:
    """``text`` spoken by the project's own Piper voice (more natural than espeak-ng, so it
    survives a browser's audio processing and Opus), as int16 mono at ``rate``. ``steady``:
    with Piper's sampling noise off, so every run hears the same audio: use it where a test
    checks what was heard closely (order numbers: with the noise on, Whisper base wrote 1001
    as "101" in 1 take of 10, and 1003 as "1,000-3" in 3 of 10, even with the hint)."""
    global _PIPER
    from piper import SynthesisConfig

    from realtalk.pipeline import weights
    from realtalk.pipeline.tts.piper import PiperTTS
    from tests.conftest import MODEL_DIR

    if _PIPER is None:
        _PIPER = PiperTTS(weights.resolve_model(MODEL_DIR, "tts", "joe"))
    if steady:
        config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, normalize_audio=True)
        chunks = [c.audio_int16_array for c in _PIPER.voice.synthesize(text, config)]
        samples = np.concatenate(chunks)
    else:
        samples = _PIPER.speak(text)
    return np.asarray(soxr.resample(samples, _PIPER.sample_rate, rate), dtype=np.int16)


def assert_reply_closed(events: list[dict[str, Any]], generation: str) -> dict[str, Any]:
    """Every item and part the (cancelled) reply started is closed before ``response.done``,
    as OpenAI closes them: audio/transcript or text done, part done, item done (incomplete)."""
    names = [e["type"] for e in events]
    done_at = len(names) - 1 - names[::-1].index("response.done")
    response = events[done_at]["response"]
    assert response["status"] == "cancelled"
    audio_done = "response.audio.done" if generation == "beta" else "response.output_audio.done"
    transcript_done = (
        "response.audio_transcript.done"
        if generation == "beta"
        else "response.output_audio_transcript.done"
    )
    text_done = "response.text.done" if generation == "beta" else "response.output_text.done"
    started = [
        e["item"]["id"]
        for e in events
        if e["type"] == "response.output_item.added" and e["response_id"] == response["id"]
    ]
    assert started, "the reply had started an item"
    for item_id in started:
        mine = [
            i
            for i, e in enumerate(events)
            if e.get("item_id") == item_id and e.get("response_id") == response["id"]
        ]
        kinds = {events[i]["type"] for i in mine}
        assert "response.content_part.done" in kinds
        assert {audio_done, transcript_done} <= kinds or text_done in kinds
        item_done = [
            i
            for i, e in enumerate(events)
            if e["type"] == "response.output_item.done" and e["item"]["id"] == item_id
        ]
        assert len(item_done) == 1 and item_done[0] < done_at
        assert events[item_done[0]]["item"]["status"] == "incomplete"
        assert max(mine) < item_done[0]
        if generation == "ga":
            conv_done = [
                e
                for e in events
                if e["type"] == "conversation.item.done" and e["item"]["id"] == item_id
            ]
            assert len(conv_done) == 1 and conv_done[0]["item"]["status"] == "incomplete"
    assert all(o["status"] == "incomplete" for o in response["output"])
    return response


def decode_audio_file(data: bytes) -> tuple[np.ndarray, int]:
    """An audio file (a record's Ogg/Opus track, say) decoded by PyAV: its samples as an
    array of [frames, channels] (Opus decodes to floats in ±1.0) and its sample rate."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        channels, rate = int(stream.channels), int(stream.rate)
        pieces = []
        for frame in container.decode(stream):
            array = frame.to_ndarray()
            pieces.append(array.T if frame.format.is_planar else array.reshape(-1, channels))
    return np.concatenate(pieces), rate
