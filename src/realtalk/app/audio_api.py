"""The engine's speech models over OpenAI's audio endpoints, so any realtalk instance can be
another's STT/TTS server, and the ``openai`` SDK can use them directly.

- ``POST /v1/audio/transcriptions``: multipart (``file``, ``model``, ``language``, ``prompt``,
  ``response_format`` json/text/verbose_json/srt/vtt, ``temperature``) → the transcript;
- ``POST /v1/audio/speech``: JSON (``model``, ``input``, ``voice``, ``response_format``
  pcm/wav/mp3/opus/aac/flac, ``speed``, ``instructions``) → audio, streamed sentence by
  sentence as it is synthesized.

Both require the standard key. The stages are the sessions' own (``state.models``), shared
with them: their work runs in worker threads, one job at a time per stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from realtalk.app.engine_keys import require_standard_key
from realtalk.app.errors import HTTPError
from realtalk.app.state import ServerState
from realtalk.audio.pcm import INTERNAL_RATE, Int16Array, StreamResampler, wav_header
from realtalk.pipeline.models import Models
from realtalk.pipeline.remote import RemoteStageError
from realtalk.pipeline.stt import Segment, Transcript
from realtalk.pipeline.tts import TextToSpeech
from realtalk.pipeline.tts.chunker import ClauseChunker
from realtalk.rtc.audio_files import ENCODERS, AudioEncoder, AudioFileError, decode_audio, encodable

router = APIRouter(prefix="/v1/audio")

MAX_FILE_BYTES = 25 * 1024 * 1024
"""OpenAI's limit on an uploaded audio file (25 MB)."""
FORM_OVERHEAD_BYTES = 64 * 1024
"""Room for the other form fields and the multipart framing."""
MAX_AUDIO_S = 1500.0
"""Longest audio transcribed at once (OpenAI's limit for gpt-4o-transcribe: 1500 s). The
local Whisper is shared with the live sessions, which wait while it runs."""
MAX_PROMPT_CHARS = 4096
MAX_SPEECH_BODY_BYTES = 64 * 1024
MAX_INPUT_CHARS = 4096
"""OpenAI's limit on ``input`` for ``/v1/audio/speech``."""
SPEECH_RATE = 24_000
"""Every speech format is made at 24 kHz, as OpenAI's are (``pcm``: s16le mono)."""
TRANSCRIPT_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
SPEECH_FORMATS = ("pcm", "wav", *ENCODERS)
CONTENT_TYPES = {"pcm": "audio/pcm", "wav": "audio/wav"} | {
    name: spec[2] for name, spec in ENCODERS.items()
}

StandardKey = Annotated[ServerState, Depends(require_standard_key)]


def _invalid(message: str, param: str | None = None, code: str = "invalid_value") -> HTTPError:
    return HTTPError(400, message, code=code, param=param)


def _models(state: ServerState) -> Models:
    problem = state.engine_unavailable()
    if problem is not None or state.models is None:
        raise HTTPError(503, problem or "The engine is not ready.", type="server_error")
    return state.models


async def _bounded(
    stream: AsyncIterator[bytes], limit: int, what: str
) -> AsyncGenerator[bytes, None]:
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            raise HTTPError(413, f"{what} is larger than {limit} bytes.", code="file_too_large")
        yield chunk


def _check_length(request: Request, limit: int, what: str) -> None:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise HTTPError(413, f"{what} is larger than {limit} bytes.", code="file_too_large")


# ---- transcriptions --------------------------------------------------------------------------
@router.post("/transcriptions", response_model=None)
async def transcriptions(request: Request, state: StandardKey) -> Response:
    limit = MAX_FILE_BYTES + FORM_OVERHEAD_BYTES
    _check_length(request, limit, "The upload")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise _invalid("Send the audio as multipart/form-data with a 'file' part.", "file")
    parser = MultiPartParser(
        request.headers,
        _bounded(request.stream(), limit, "The upload"),
        max_files=1,
        max_fields=16,
        max_part_size=MAX_PROMPT_CHARS * 4,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise _invalid(f"Invalid multipart body: {exc.message}", "file") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise _invalid("Missing the audio 'file' part.", "file", "missing_required_parameter")
        data = await upload.read(MAX_FILE_BYTES + 1)
    finally:
        await form.close()
    if len(data) > MAX_FILE_BYTES:
        raise HTTPError(
            413, f"The file is larger than {MAX_FILE_BYTES} bytes.", code="file_too_large"
        )
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    options = _transcription_options(fields, form.getlist("timestamp_granularities[]"))
    try:
        samples = await asyncio.to_thread(decode_audio, data, INTERNAL_RATE, MAX_AUDIO_S)
    except AudioFileError as exc:
        raise _invalid(str(exc), "file", "invalid_audio") from None
    models = _models(state)
    language, prompt, response_format = options
    try:
        transcript = await models.stt.transcribe(samples, prompt=prompt, language=language)
    except RemoteStageError as exc:
        raise HTTPError(502, f"Transcription failed: {exc}.", type="server_error") from None
    except ValueError as exc:
        if language is None:
            raise
        raise _invalid(f"Invalid 'language': {exc}", "language") from None
    return _transcript_response(transcript, response_format, language)


def _transcription_options(
    fields: dict[str, str], granularities: list[Any]
) -> tuple[str | None, str | None, str]:
    """(language, prompt, response_format) of a valid request, or a 400."""
    if not fields.get("model", "").strip():
        raise _invalid("Missing 'model'.", "model", "missing_required_parameter")
    response_format = fields.get("response_format", "json")
    if response_format not in TRANSCRIPT_FORMATS:
        raise _invalid(
            f"Invalid 'response_format' {response_format!r}: use one of "
            f"{', '.join(TRANSCRIPT_FORMATS)}.",
            "response_format",
        )
    language = fields.get("language") or None
    if language is not None and not (
        language.isascii() and language.isalpha() and len(language) <= 3
    ):
        raise _invalid("Invalid 'language': use an ISO-639-1 code such as 'en'.", "language")
    prompt = fields.get("prompt") or None
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise _invalid(f"'prompt' is longer than {MAX_PROMPT_CHARS} characters.", "prompt")
    try:
        temperature = float(fields.get("temperature", "0"))
    except ValueError:
        temperature = math.nan
    if not 0.0 <= temperature <= 1.0:
        raise _invalid("Invalid 'temperature': a number from 0 to 1.", "temperature")
    if "word" in granularities:
        raise _invalid(
            "Word timestamps are not available; 'segment' is.", "timestamp_granularities"
        )
    if fields.get("stream", "false").lower() == "true":
        raise _invalid("Streamed transcription is not available on this server.", "stream")
    return language.lower() if language else None, prompt, response_format


def _transcript_response(
    transcript: Transcript, response_format: str, language: str | None
) -> Response:
    text = transcript.text.strip()
    usage = {"type": "duration", "seconds": math.ceil(transcript.audio_seconds)}
    if response_format == "text":
        return PlainTextResponse(text + "\n")
    if response_format == "json":
        return JSONResponse({"text": text, "usage": usage})
    segments = transcript.segments
    if response_format in ("srt", "vtt"):
        if not segments and text:
            segments = (Segment(0.0, transcript.audio_seconds, text),)
        return PlainTextResponse(_subtitles(segments, response_format))
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": language or "english",
        "duration": transcript.audio_seconds,
        "text": text,
        "usage": usage,
    }
    if segments:
        # Whisper's per-segment scores are not kept by the STT stage: neutral values.
        body["segments"] = [
            {
                "id": index,
                "seek": 0,
                "start": round(s.start, 2),
                "end": round(s.end, 2),
                "text": s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": 0.0,
                "compression_ratio": 1.0,
                "no_speech_prob": 0.0,
            }
            for index, s in enumerate(segments)
        ]
    return JSONResponse(body)


def _subtitles(segments: tuple[Segment, ...], kind: str) -> str:
    def stamp(seconds: float) -> str:
        ms = round(seconds * 1000)
        h, ms = divmod(ms, 3_600_000)
        m, ms = divmod(ms, 60_000)
        s, ms = divmod(ms, 1000)
        return f"{h:02}:{m:02}:{s:02}{',' if kind == 'srt' else '.'}{ms:03}"

    blocks = [
        (f"{i}\n" if kind == "srt" else "")
        + f"{stamp(seg.start)} --> {stamp(seg.end)}\n{seg.text.strip()}\n"
        for i, seg in enumerate(segments, 1)
    ]
    return ("WEBVTT\n\n" if kind == "vtt" else "") + "\n".join(blocks)


# ---- speech ----------------------------------------------------------------------------------
@router.post("/speech", response_model=None)
async def speech(request: Request, state: StandardKey) -> Response:
    _check_length(request, MAX_SPEECH_BODY_BYTES, "The body")
    raw = b"".join([c async for c in _bounded(request.stream(), MAX_SPEECH_BODY_BYTES, "The body")])
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(f"The body is not valid JSON: {exc}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise _invalid("The body must be a JSON object.", code="invalid_type")
    text, speed, response_format = _speech_options(body)
    models = _models(state)
    audio = _speech_pcm(models.tts, text, speed)
    try:
        first = await anext(audio, None)  # a stage that fails at once gets an HTTP error
    except RemoteStageError as exc:
        await audio.aclose()
        raise HTTPError(502, f"Speech failed: {exc}.", type="server_error") from None
    return StreamingResponse(
        _encoded(first, audio, response_format), media_type=CONTENT_TYPES[response_format]
    )


def _speech_options(body: dict[str, Any]) -> tuple[str, float, str]:
    """(input, speed, response_format) of a valid request, or a 400."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _invalid("Missing 'model'.", "model", "missing_required_parameter")
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise _invalid("'input' must be a non-empty string.", "input")
    if len(text) > MAX_INPUT_CHARS:
        raise _invalid(
            f"'input' is longer than {MAX_INPUT_CHARS} characters.",
            "input",
            "string_above_max_length",
        )
    voice = body.get("voice")
    if not (
        isinstance(voice, str) or (isinstance(voice, dict) and isinstance(voice.get("id"), str))
    ):
        raise _invalid("'voice' must be a voice name (or {'id': ...}).", "voice")
    response_format = body.get("response_format", "mp3")
    if response_format not in SPEECH_FORMATS:
        raise _invalid(
            f"Invalid 'response_format' {response_format!r}: use one of "
            f"{', '.join(SPEECH_FORMATS)}.",
            "response_format",
        )
    if response_format in ENCODERS and encodable(response_format) is None:
        have = [f for f in SPEECH_FORMATS if f not in ENCODERS or encodable(f)]
        raise _invalid(
            f"'{response_format}' needs an encoder this server lacks; it makes {', '.join(have)}.",
            "response_format",
        )
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        raise _invalid("Invalid 'speed': a number from 0.25 to 4.0.", "speed")
    if not isinstance(body.get("instructions", ""), str):
        raise _invalid("'instructions' must be a string.", "instructions")
    if body.get("stream_format", "audio") != "audio":
        raise _invalid("Only stream_format 'audio' is available.", "stream_format")
    return text, float(speed), response_format


async def _speech_pcm(
    tts: TextToSpeech, text: str, speed: float
) -> AsyncGenerator[Int16Array, None]:
    """24 kHz int16 speech, sentence by sentence: each piece is a separate job for the stage,
    so live sessions get their turn between them."""
    chunker = ClauseChunker()
    for piece in [*chunker.push(text), *chunker.flush()]:
        resampler = StreamResampler(tts.sample_rate, SPEECH_RATE)
        async for pcm in tts.stream(piece, speed=speed):
            if len(out := resampler.push(pcm)):
                yield out
        if len(tail := resampler.flush()):
            yield tail


async def _encoded(
    first: Int16Array | None, audio: AsyncGenerator[Int16Array, None], response_format: str
) -> AsyncIterator[bytes]:
    encoder = AudioEncoder(fmt, SPEECH_RATE) if (fmt := encodable(response_format)) else None
    if response_format == "wav":
        yield wav_header(SPEECH_RATE)

    async def encode(samples: Int16Array) -> bytes:
        if encoder is None:
            return samples.astype("<i2", copy=False).tobytes()
        return await asyncio.to_thread(encoder.encode, samples)

    try:
        if first is not None:
            yield await encode(first)
            async for samples in audio:
                if data := await encode(samples):
                    yield data
        if encoder is not None and (tail := await asyncio.to_thread(encoder.close)):
            yield tail
    finally:
        with contextlib.suppress(Exception):
            await audio.aclose()
