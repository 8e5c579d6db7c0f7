"""realtalk as an OpenAI audio server, and as another realtalk's remote STT and TTS.

An ``inference`` server serves its local Whisper and Piper on ``/v1/audio/*``; the official
``openai`` SDK transcribes Piper speech through it and has it speak (checked by transcribing
the audio back). A ``front`` server keeps VAD and the LLM local and sends STT and TTS to the
inference server over HTTP: a spoken turn over WebSocket goes through both; then the
inference server is stopped and the front's next turn fails clearly and the session goes on.
"""

from __future__ import annotations

import asyncio
import base64
import io
import wave
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from openai import AsyncOpenAI, BadRequestError

from realtalk.audio.pcm import wav_bytes
from realtalk.rtc.audio_files import AudioEncoder
from tests.conftest import LiveServer, start_server, stop_server
from tests.realtime_helpers import silence, validate_event, voice, words

pytestmark = [pytest.mark.live, pytest.mark.models]

SENTENCE = "Please book a quiet table by the window for my sister."


@pytest.fixture(scope="module")
def inference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("inference"), "inference", ready=True)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, inference: LiveServer) -> Iterator[LiveServer]:
    remote = {
        "REALTALK_STT_BASE_URL": f"{inference.url}/v1",
        "REALTALK_STT_MODEL": "whisper-1",
        "REALTALK_STT_API_KEY": inference.api_key,
        "REALTALK_TTS_BASE_URL": f"{inference.url}/v1",
        "REALTALK_TTS_MODEL": "tts-1",
        "REALTALK_TTS_VOICE": "alloy",
        "REALTALK_TTS_API_KEY": inference.api_key,
        "REALTALK_STT_TIMEOUT_S": "20",
        "REALTALK_TTS_TIMEOUT_S": "20",
    }
    server = start_server(tmp_path_factory.mktemp("front"), "front", remote, ready=True)
    yield server
    stop_server(server)


def sdk(server: LiveServer) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=server.api_key, base_url=f"{server.url}/v1", max_retries=0)


def wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as reader:
        rate = reader.getframerate()
        return np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2"), rate


async def test_sdk_transcriptions(inference: LiveServer) -> None:
    client = sdk(inference)
    spoken = wav_bytes(voice(SENTENCE, 24_000, steady=True), 24_000)
    expected = {"book", "quiet", "table", "window", "sister"}
    result = await client.audio.transcriptions.create(
        model="whisper-1", file=("turn.wav", spoken, "audio/wav")
    )
    assert expected <= words(result.text), result.text
    text = await client.audio.transcriptions.create(
        model="whisper-1", file=("turn.wav", spoken), response_format="text", language="en"
    )
    assert isinstance(text, str) and expected <= words(text), text
    verbose = await client.audio.transcriptions.create(
        model="whisper-1",
        file=("turn.wav", spoken),
        response_format="verbose_json",
        timestamp_granularities=["segment"],
    )
    assert expected <= words(verbose.text)
    assert 2.0 < verbose.duration < 6.0 and verbose.language
    assert verbose.segments and verbose.segments[-1].end <= verbose.duration + 0.01
    srt = await client.audio.transcriptions.create(
        model="whisper-1", file=("turn.wav", spoken), response_format="srt"
    )
    assert srt.startswith("1\n00:00:0") and " --> " in srt and expected <= words(srt), srt
    vtt = await client.audio.transcriptions.create(
        model="whisper-1", file=("turn.wav", spoken), response_format="vtt"
    )
    assert vtt.startswith("WEBVTT\n\n00:00:0") and expected <= words(vtt), vtt
    # Compressed uploads (as a browser's MediaRecorder or a phone would send).
    samples = voice(SENTENCE, 24_000, steady=True)
    encoder = AudioEncoder("opus", 24_000)
    ogg = encoder.encode(samples) + encoder.close()
    result = await client.audio.transcriptions.create(
        model="whisper-1", file=("turn.ogg", ogg, "audio/ogg")
    )
    assert expected <= words(result.text), result.text
    # Garbage is a 400 in OpenAI's shape.
    with pytest.raises(BadRequestError) as caught:
        await client.audio.transcriptions.create(
            model="whisper-1", file=("turn.wav", b"RIFF\0\0\0\0WAVE" + b"\x07" * 999)
        )
    assert caught.value.body["param"] == "file"  # type: ignore[index]
    await client.close()


async def test_sdk_speech_streams_real_speech(inference: LiveServer) -> None:
    client = sdk(inference)
    text = "The train leaves at noon. Bring a warm coat, because it will be cold."
    chunks: list[bytes] = []
    async with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text, response_format="pcm"
    ) as response:
        assert response.headers["content-type"].startswith("audio/pcm")
        async for chunk in response.iter_bytes():
            chunks.append(chunk)
    pcm = b"".join(chunks)
    assert len(chunks) >= 2  # sentence by sentence, not one body at the end
    assert len(pcm) > 24_000 * 2 * 2  # over two seconds of 24 kHz s16le
    back = await client.audio.transcriptions.create(
        model="whisper-1",
        file=("reply.wav", wav_bytes(np.frombuffer(pcm, dtype="<i2"), 24_000), "audio/wav"),
    )
    assert {"train", "noon", "warm", "coat", "cold"} <= words(back.text), back.text

    wav = await client.audio.speech.create(
        model="tts-1", voice="alloy", input="Good morning, Sarah.", response_format="wav"
    )
    samples, rate = wav_samples(wav.content)
    assert rate == 24_000 and len(samples) > 24_000 // 2
    mp3 = await client.audio.speech.create(
        model="gpt-4o-mini-tts", voice="alloy", input="Good morning, Sarah.", speed=1.2
    )
    assert mp3.response.headers["content-type"] == "audio/mpeg"
    back = await client.audio.transcriptions.create(
        model="whisper-1", file=("reply.mp3", mp3.content, "audio/mpeg")
    )
    assert {"good", "morning", "sarah"} <= words(back.text), back.text
    # A listener who hangs up after the first sentence leaves nothing running that blocks
    # the next request.
    long = " ".join(f"This is sentence number {n} of a long story." for n in range(30))
    async with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=long, response_format="pcm"
    ) as response:
        async for _ in response.iter_bytes():
            break
    async with asyncio.timeout(60):
        again = await client.audio.speech.create(
            model="tts-1", voice="alloy", input="Still here.", response_format="wav"
        )
    assert len(wav_samples(again.content)[0]) > 24_000 // 4
    assert "Traceback" not in inference.log_text()
    await client.close()


async def test_sdk_refusals_over_the_wire(inference: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        big = await http.post(
            f"{inference.url}/v1/audio/transcriptions",
            headers={"Authorization": f"Bearer {inference.api_key}"},
            files={"file": ("big.wav", b"RIFF" + b"\0" * (26 * 1024 * 1024), "audio/wav")},
            data={"model": "whisper-1"},
        )
        assert big.status_code == 413 and big.json()["error"]["code"] == "file_too_large"
        wrong = await http.post(
            f"{inference.url}/v1/audio/speech",
            headers={"Authorization": "Bearer sk-not-this-one"},
            json={"model": "tts-1", "voice": "alloy", "input": "Hi."},
        )
        assert wrong.status_code == 401
        assert (await http.get(f"{inference.url}/healthz")).status_code == 200


async def until_done(conn: Any, limit_s: float = 120) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(limit_s):
        async for event in conn:
            raw = event.to_dict()
            validate_event(raw, "ga")
            events.append(raw)
            if raw["type"] == "response.done":
                return events
    raise AssertionError("the connection closed before response.done")


async def spoken_turn(conn: Any, text: str) -> list[dict[str, Any]]:
    """One spoken turn (server VAD): every event up to its ``response.done``."""
    audio = np.concatenate([silence(500), voice(text, 24_000, steady=True), silence(1200)])
    for start in range(0, len(audio), 4800):
        chunk = audio[start : start + 4800].astype("<i2").tobytes()
        await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
    return await until_done(conn)


async def typed_turn(conn: Any, text: str, modality: str) -> dict[str, Any]:
    """A typed question answered in ``modality``: its ``response.done`` response."""
    await conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )
    await conn.response.create(response={"output_modalities": [modality]})
    response: dict[str, Any] = (await until_done(conn))[-1]["response"]
    return response


INSTRUCTIONS = {"type": "realtime", "instructions": "Answer in one short sentence."}


async def test_remote_stt_and_tts_serve_a_spoken_turn(
    front: LiveServer, inference: LiveServer
) -> None:
    async with sdk(front).realtime.connect(model="realtalk-local") as conn:
        await conn.session.update(session=INSTRUCTIONS)
        events = await spoken_turn(conn, "What is the capital of France?")
    heard = [
        e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"
    ]
    assert heard and {"capital", "france"} <= words(heard[0]["transcript"]), heard
    turn = events[-1]["response"]
    assert turn["status"] == "completed", turn
    assert turn["output"][0]["content"][0]["transcript"]
    pcm = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    assert len(pcm) > 24_000 * 2 // 2  # half a second of the reply's voice
    log = inference.log_text()
    assert "POST /v1/audio/transcriptions HTTP/1.1" in log and "POST /v1/audio/speech" in log


async def test_remote_node_down_fails_clearly_and_the_session_goes_on(
    front: LiveServer, inference: LiveServer
) -> None:
    """Runs last in this module: it stops the inference server."""
    stop_server(inference)
    async with sdk(front).realtime.connect(model="realtalk-local") as conn:
        await conn.session.update(session=INSTRUCTIONS)
        events = await spoken_turn(conn, "What is the capital of France?")
        failed = [
            e for e in events if e["type"] == "conversation.item.input_audio_transcription.failed"
        ]
        assert failed, [e["type"] for e in events]
        message = failed[0]["error"]["message"]
        assert "speech-to-text server could not be reached" in message, message
        # A spoken reply: the LLM answers, the speech server is down, the reply fails.
        spoken = await typed_turn(conn, "What is two plus two?", "audio")
        assert spoken["status"] == "failed", spoken
        error = spoken["status_details"]["error"]
        assert "text-to-speech server could not be reached" in error["message"], error
        assert inference.url.split("//")[1] not in error["message"]
        # The session goes on: a text reply from the local LLM.
        text = await typed_turn(conn, "Say the word yes.", "text")
        assert text["status"] == "completed" and text["output"][0]["content"][0]["text"]
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{front.url}/healthz")).status_code == 200
