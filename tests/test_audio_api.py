"""``/v1/audio/transcriptions`` and ``/v1/audio/speech`` without models: the standard key,
bounded uploads, OpenAI-shaped refusals of bad input; and the remote STT/TTS stages against
servers that hang or are down. (With the models: ``test_audio_live.py``.)"""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from realtalk.app.audio_api import MAX_FILE_BYTES, MAX_INPUT_CHARS
from realtalk.app.server import create_app
from realtalk.app.state import ServerState
from realtalk.audio.pcm import wav_bytes
from realtalk.config import Settings
from realtalk.pipeline.remote import RemoteStage, RemoteStageError
from realtalk.pipeline.stt.remote import RemoteSTT
from realtalk.pipeline.tts.remote import RemoteTTS
from realtalk.rtc.audio_files import AudioEncoder, AudioFileError, decode_audio
from tests.conftest import free_port
from tests.realtime_helpers import tone


async def _no_models(_: ServerState) -> None:
    return None


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, warmup=_no_models)) as test_client:
        yield test_client


@pytest.fixture
def auth(settings: Settings) -> dict[str, str]:
    assert settings.api_key is not None
    return {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}


def a_wav(ms: int = 500) -> bytes:
    return wav_bytes(tone(ms, rate=16_000), 16_000)


def transcribe(
    client: TestClient, headers: dict[str, str], data: bytes, **fields: str
) -> tuple[int, dict[str, object]]:
    response = client.post(
        "/v1/audio/transcriptions",
        headers=headers,
        files={"file": ("audio.wav", data, "audio/wav")},
        data={"model": "whisper-1", **fields},
    )
    return response.status_code, response.json()


def test_audio_endpoints_take_only_the_standard_key(
    client: TestClient, auth: dict[str, str]
) -> None:
    minted = client.post(
        "/v1/realtime/client_secrets", headers=auth, json={"session": {"type": "realtime"}}
    ).json()
    speech = {"model": "tts-1", "voice": "alloy", "input": "Hello."}
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Bearer {minted['value']}"},
    ):
        status, body = transcribe(client, headers, a_wav())
        assert status == 401 and body["error"]["type"] == "invalid_request_error", body
        response = client.post("/v1/audio/speech", headers=headers, json=speech)
        assert response.status_code == 401
        assert response.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")
    # With the standard key the request gets as far as the (absent) models.
    status, body = transcribe(client, auth, a_wav())
    assert status == 503 and "loading" in str(body["error"]["message"])  # type: ignore[index]
    assert client.post("/v1/audio/speech", headers=auth, json=speech).status_code == 503


def test_transcription_refuses_oversized_and_bad_uploads(
    client: TestClient, auth: dict[str, str]
) -> None:
    # A file past OpenAI's 25 MB: 413, whether the length is declared or not.
    big = b"RIFF" + b"\0" * (MAX_FILE_BYTES + 16)
    status, body = transcribe(client, auth, big)
    assert status == 413 and body["error"]["code"] == "file_too_large"  # type: ignore[index]

    def chunks() -> Iterator[bytes]:
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(MAX_FILE_BYTES // (1 << 20) + 2):
            yield b"\0" * (1 << 20)
        yield b"\r\n--xyz--\r\n"

    streamed = client.post(
        "/v1/audio/transcriptions",
        headers={**auth, "Content-Type": "multipart/form-data; boundary=xyz"},
        content=chunks(),
    )
    assert streamed.status_code == 413, streamed.text

    cases: list[tuple[bytes, dict[str, str], str, str]] = [
        (b"definitely not audio at all", {}, "file", "invalid_audio"),
        (b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n", {}, "file", "invalid_audio"),
        (b"RIFF\x10\0\0\0WAVEjunkjunkjunk", {}, "file", "invalid_audio"),
        (b"OggS" + bytes(range(200)), {}, "file", "invalid_audio"),
        (a_wav(), {"response_format": "docx"}, "response_format", "invalid_value"),
        (a_wav(), {"language": "english!"}, "language", "invalid_value"),
        (a_wav(), {"temperature": "hot"}, "temperature", "invalid_value"),
        (
            a_wav(),
            {"timestamp_granularities[]": "word"},
            "timestamp_granularities",
            "invalid_value",
        ),
        (a_wav(), {"model": ""}, "model", "missing_required_parameter"),
    ]
    for data, fields, param, code in cases:
        status, body = transcribe(client, auth, data, **fields)
        error = body["error"]
        assert status == 400, (fields, body)
        assert isinstance(error, dict) and error["param"] == param and error["code"] == code
        assert error["message"] and error["type"] == "invalid_request_error"
    missing = client.post("/v1/audio/transcriptions", headers=auth, data={"model": "whisper-1"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "file"
    not_form = client.post("/v1/audio/transcriptions", headers=auth, json={"model": "whisper-1"})
    assert not_form.status_code == 400 and not_form.json()["error"]["param"] == "file"
    # The server still answers.
    assert client.get("/healthz").status_code == 200


def test_speech_refuses_bad_requests(client: TestClient, auth: dict[str, str]) -> None:
    good = {"model": "tts-1", "voice": "alloy", "input": "Hello there."}
    cases = [
        ({"input": "x" * (MAX_INPUT_CHARS + 1)}, "input"),
        ({"input": "   "}, "input"),
        ({"voice": 7}, "voice"),
        ({"response_format": "aiff"}, "response_format"),
        ({"speed": 5}, "speed"),
        ({"speed": "fast"}, "speed"),
        ({"model": None}, "model"),
        ({"instructions": ["loud"]}, "instructions"),
        ({"stream_format": "sse"}, "stream_format"),
    ]
    for change, param in cases:
        response = client.post("/v1/audio/speech", headers=auth, json={**good, **change})
        assert response.status_code == 400, (change, response.text)
        assert response.json()["error"]["param"] == param
    for raw in (b"{not json", b"[1, 2]"):
        response = client.post("/v1/audio/speech", headers=auth, content=raw)
        assert response.status_code == 400 and response.json()["error"]["message"]
    huge = json.dumps({**good, "instructions": "x" * 100_000})
    assert client.post("/v1/audio/speech", headers=auth, content=huge).status_code == 413
    # A valid request with a voice given as an object passes validation (no models here).
    response = client.post(
        "/v1/audio/speech", headers=auth, json={**good, "voice": {"id": "alloy"}, "speed": 4.0}
    )
    assert response.status_code == 503


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac"])
def test_encoded_speech_decodes_back(fmt: str) -> None:
    """What the speech endpoint sends in each compressed format is what the transcription
    endpoint reads back (same length, same pitch)."""
    samples = tone(1000, rate=24_000, hz=440)
    encoder = AudioEncoder(fmt, 24_000)  # type: ignore[arg-type]
    data = b"".join(encoder.encode(samples[i : i + 2400]) for i in range(0, 24_000, 2400))
    data += encoder.close()
    back = decode_audio(data, 16_000, max_seconds=10)
    assert 0.95 < len(back) / 16_000 < 1.15
    spectrum = np.abs(np.fft.rfft(back[:16_000].astype(np.float64)))
    assert abs(int(np.argmax(spectrum)) - 440) < 5  # 1 Hz bins
    with pytest.raises(AudioFileError, match="longer than"):
        decode_audio(data, 16_000, max_seconds=0.5)


# ---- remote stages against servers that hang or are not there -------------------------------
@pytest.fixture
async def hung_server() -> AsyncIterator[str]:
    """Accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/v1"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


def closed_port_url() -> str:
    port = free_port()
    with socket.socket() as probe:  # nothing listens there
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    return f"http://127.0.0.1:{port}/v1"


async def test_remote_stages_time_out_and_report_a_down_server(hung_server: str) -> None:
    audio = tone(500, rate=16_000)
    for url, reason in (
        (hung_server, "did not answer within 0.3 s"),
        (closed_port_url(), "could not be reached"),
    ):
        stt = RemoteSTT(RemoteStage(url, "whisper-1", "key", timeout_s=0.3))
        tts = RemoteTTS(RemoteStage(url, "tts-1", "key", timeout_s=0.3, voice="alloy"))
        async with asyncio.timeout(10):  # one try, one retry, each bounded
            with pytest.raises(RemoteStageError, match=f"speech-to-text server {reason}"):
                await stt.transcribe(audio)
            assert not stt.busy()
            with pytest.raises(RemoteStageError, match=f"text-to-speech server {reason}"):
                async for _ in tts.stream("Hello."):
                    pass
        # The message is for clients: no address.
        with pytest.raises(RemoteStageError) as caught:
            await stt.transcribe(audio)
        assert "127.0.0.1" not in str(caught.value)
        await stt.aclose()
        await tts.aclose()


def test_wav_bytes_read_back() -> None:
    import wave

    samples = tone(100, rate=16_000)
    with wave.open(io.BytesIO(wav_bytes(samples, 16_000))) as reader:
        assert reader.getframerate() == 16_000 and reader.getnchannels() == 1
        assert np.array_equal(np.frombuffer(reader.readframes(10_000), dtype="<i2"), samples)


def test_remote_stage_settings(settings: Settings) -> None:
    from realtalk.app.server import model_choice
    from realtalk.config import ConfigError, load_settings
    from tests.conftest import with_settings

    with pytest.raises(ConfigError, match="REALTALK_TTS_BASE_URL"):
        load_settings(tts_base_url="speech-node:8000")
    assert model_choice(settings).remote_stt is None and model_choice(settings).remote_tts is None
    remote = with_settings(
        settings,
        stt_base_url="http://speech-node:8000/v1/",
        stt_model="whisper-1",
        stt_api_key="k1",
        tts_base_url="http://speech-node:8000/v1",
        tts_voice="af_heart",
        tts_api_key="k2",
        tts_timeout_s=3,
    )
    choice = model_choice(remote)
    assert choice.remote_stt == RemoteStage("http://speech-node:8000/v1", "whisper-1", "k1", 10.0)
    assert choice.remote_tts == RemoteStage(
        "http://speech-node:8000/v1", "tts-1", "k2", 3.0, voice="af_heart"
    )


async def test_remote_tts_sends_the_sessions_voice_unless_the_operator_set_one() -> None:
    """A remote speech server with several voices hears each session's voice name; an
    operator's ``REALTALK_TTS_VOICE`` overrides it for every session."""
    asked: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        asked.append(json.loads(await reader.readexactly(length))["voice"])
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: audio/pcm\r\nContent-Length: 4\r\n"
            b"Connection: close\r\n\r\n\x00\x01\x00\x02"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    try:
        for configured, session_voice in ((None, "coral"), ("af_heart", "coral")):
            tts = RemoteTTS(RemoteStage(url, "tts-1", "key", timeout_s=5, voice=configured))
            pieces = [pcm async for pcm in tts.stream("Hello.", voice=session_voice)]
            assert sum(len(p) for p in pieces) == 2
            await tts.aclose()
    finally:
        server.close()
        await server.wait_closed()
    assert asked == ["coral", "af_heart"]
