"""Spoken turns over the WebSocket transport, timed stage by stage.

Speech is generated at run time (espeak-ng) and streamed in real time (20 ms chunks), as a
microphone would. From the events the client sees, each turn is split into stages:

    VAD end → commit     last speech sample sent → input_audio_buffer.committed
                         (includes the configured silence window)
    STT                  committed → input_audio_transcription.completed
    LLM first token      transcription.completed → response.output_item.added
    TTS first audio      output_item.added → first output_audio_transcript.delta
    first audio delta    last speech sample sent → first response.output_audio.delta
                         (voice to voice, as a WebSocket client hears it)

Usage: python bench/ws_turn.py [--url http://127.0.0.1:8000] [--key KEY] [--turns 5]
Without --url it starts a server itself (same models as `make run`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import soxr
import websockets

QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Can you recommend a good book?",
    "What's the weather usually like in spring?",
    "Tell me something interesting about the moon.",
    "What time do shops usually open?",
]
STAGES = ["VAD end → commit", "STT", "LLM first token", "TTS first audio", "first audio delta"]


def speak(text: str) -> np.ndarray:
    espeak = shutil.which("espeak-ng") or sys.exit(
        "espeak-ng is needed (apt-get install espeak-ng)"
    )
    wav = subprocess.run(
        [espeak, "-v", "en-us", "-s", "160", "--stdout", text], capture_output=True, check=True
    ).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        rate = reader.getframerate()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype=np.int16)
    return np.asarray(soxr.resample(samples, rate, 24_000), dtype=np.int16)


async def one_turn(url: str, key: str, question: str) -> dict[str, float]:
    audio = np.concatenate([np.zeros(24_000 // 2, np.int16), speak(question)])
    tail = np.zeros(24_000 * 3, np.int16)  # silence keeps streaming, as from a live microphone
    marks: dict[str, float] = {}
    ws_url = url.replace("http", "ws", 1) + "/v1/realtime?model=realtalk-local"
    async with websockets.connect(
        ws_url, additional_headers={"Authorization": f"Bearer {key}"}, max_size=None
    ) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "instructions": "Answer in one short sentence.",
                    },
                }
            )
        )

        async def stream() -> None:
            chunk = 480  # 20 ms at 24 kHz
            start = time.perf_counter()
            for index, offset in enumerate(range(0, len(audio) + len(tail), chunk)):
                if offset == len(audio) - len(audio) % chunk:
                    marks["speech_end"] = time.perf_counter()
                piece = np.concatenate([audio, tail])[offset : offset + chunk]
                await ws.send(
                    json.dumps(
                        {
                            "type": "input_audio_buffer.append",
                            "audio": base64.b64encode(piece.tobytes()).decode(),
                        }
                    )
                )
                await asyncio.sleep(max(0.0, start + (index + 1) * 0.02 - time.perf_counter()))
            marks.setdefault("speech_end", time.perf_counter())

        sender = asyncio.create_task(stream())
        names = {
            "input_audio_buffer.committed": "committed",
            "conversation.item.input_audio_transcription.completed": "transcribed",
            "response.output_item.added": "llm_first",
            "response.output_audio_transcript.delta": "tts_first",
            "response.output_audio.delta": "audio_first",
        }
        async with asyncio.timeout(120):
            while True:
                event = json.loads(await ws.recv())
                name = names.get(event["type"])
                if name and name not in marks:
                    marks[name] = time.perf_counter()
                if event["type"] == "error":
                    raise RuntimeError(event["error"]["message"])
                if event["type"] == "response.done":
                    break
        sender.cancel()
    return {
        "VAD end → commit": marks["committed"] - marks["speech_end"],
        "STT": marks["transcribed"] - marks["committed"],
        "LLM first token": marks["llm_first"] - marks["transcribed"],
        "TTS first audio": marks["tts_first"] - marks["llm_first"],
        "first audio delta": marks["audio_first"] - marks["speech_end"],
    }


def start_server() -> tuple[subprocess.Popen[bytes], str, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    key = "rt_bench_" + os.urandom(12).hex()
    env = {
        **os.environ,
        "REALTALK_API_KEY": key,
        "REALTALK_DATA_DIR": tempfile.mkdtemp(prefix="realtalk-bench-"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "realtalk", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url, key
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    sys.exit("server did not become ready")


@contextlib.contextmanager
def engine(url: str | None, key: str | None) -> Iterator[tuple[str, str]]:
    """The server at ``url`` (with ``key``, or the key `make run` generated, if any), or else a
    server started here for the run and stopped after it."""
    if url:
        stored = Path.home() / ".local/share/realtalk/api_key"
        yield url.rstrip("/"), key or (stored.read_text().strip() if stored.exists() else "")
        return
    process, started_url, started_key = start_server()
    try:
        yield started_url, started_key
    finally:
        process.terminate()
        process.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--url")
    parser.add_argument("--key", default=os.environ.get("REALTALK_API_KEY"))
    parser.add_argument("--turns", type=int, default=5)
    args = parser.parse_args()
    with engine(args.url, args.key) as (url, key):
        await one_turn(url, key, "Hello there.")  # warm-up, not counted
        results = []
        for turn in range(args.turns):
            results.append(await one_turn(url, key, QUESTIONS[turn % len(QUESTIONS)]))
            print(
                f"turn {turn + 1}: "
                + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in results[-1].items())
            )
    print(f"\n{args.turns} spoken turns over WebSocket ({url})")
    print(f"{'stage':<20}{'min':>9}{'median':>9}{'max':>9}")
    for stage in STAGES:
        values = [r[stage] * 1000 for r in results]
        print(
            f"{stage:<20}{min(values):>7.0f}ms{statistics.median(values):>7.0f}ms"
            f"{max(values):>7.0f}ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
