"""Voice-to-voice latency and CPU per turn over WebRTC, as a caller hears it.

An aiortc client (no browser) opens a call through the GA ``/v1/realtime/calls`` endpoint,
speaks generated questions into its microphone track in real time, and measures, per turn, the
time from the end of its speech (the last loud sample sent) to the first loud sample of the
reply on the remote track. Each turn also reports the server process's CPU time (all threads)
from just before the question starts to the end of the reply's playout.

The questions are a held-out set of 24 (none is used to tune anything), spoken by the
project's Piper voice at run time. Two modes by default, each on its own call:
``server_vad`` with a 500 ms silence window (the figure includes that window, as OpenAI's
targets do) and ``semantic_vad`` (eagerness auto, the end-of-turn model).

The machine's CPU model and a reference figure (Whisper base's ordinary 30-second-window
transcription of a 3.5 s clip, in this process) are printed first, so runs on different
machines can be compared.

``--uplink-loss 0.01`` drops that share of the caller's RTP packets (seeded, so runs compare)
on their way to the server, as a lossy Wi-Fi link would.

Usage: python bench/webrtc_turn.py [--url http://127.0.0.1:8000 --key KEY [--pid PID]]
                                   [--turns 24] [--modes server_vad,semantic_vad]
                                   [--uplink-loss 0.01]
Without --url it starts a server itself (and knows its PID for the CPU figures).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import MODEL_DIR  # noqa: E402
from tests.realtime_helpers import silence, voice  # noqa: E402
from tests.rtc_client import RtcClient  # noqa: E402

from bench.ws_turn import start_server  # noqa: E402

HELD_OUT = [
    "How far away is the moon?",
    "What should I cook for dinner tonight?",
    "Why is the sky blue?",
    "Can you suggest a name for my cat?",
    "What is a good way to learn to swim?",
    "How many days are there in a leap year?",
    "What do bees make?",
    "Is it better to walk or to cycle to work?",
    "Which planet is the largest?",
    "How do I keep my plants alive?",
    "What is the tallest animal in the world?",
    "Can you tell me a fun fact about octopuses?",
    "What language do people speak in Brazil?",
    "How long should I boil an egg?",
    "Where do penguins live?",
    "What is the opposite of generous?",
    "Why do leaves change colour in autumn?",
    "How many minutes are there in a day?",
    "What is the best time to visit Japan?",
    "Can you recommend a board game for four people?",
    "What does a baker do in the morning?",
    "How do I say thank you in Spanish?",
    "What colour do you get from mixing blue and yellow?",
    "Why do cats purr?",
]
MODES: dict[str, dict[str, Any]] = {
    "server_vad": {"type": "server_vad", "silence_duration_ms": 500},
    "semantic_vad": {"type": "semantic_vad", "eagerness": "auto"},
}
LOUD = 1000


@dataclass
class Turn:
    question: str
    latency_s: float
    cpu_s: float
    stages: dict[str, float] = field(default_factory=dict)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process, all threads (0 when unknown)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{model}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"


def reference_figure() -> str:
    """Whisper base, faster-whisper's ordinary 30 s window, on a 3.5 s clip (median of 3)."""
    from realtalk.pipeline import weights
    from realtalk.pipeline.stt.whisper import WhisperSTT

    stt = WhisperSTT(weights.resolve_model(MODEL_DIR, "stt", "whisper-base"), window="full")
    clip = voice("Could you please tell me where the nearest train station is?", 16_000)
    clip = np.concatenate([clip, silence(3500, 16_000)])[: 16_000 * 7 // 2]
    times = []
    for _ in range(3):
        started = time.perf_counter()
        stt._run(clip, None, None)
        times.append(time.perf_counter() - started)
    return f"whisper-base, 30 s window, 3.5 s clip: {statistics.median(times) * 1000:.0f} ms"


def quiet_tail_s(samples: np.ndarray, rate: int) -> float:
    loud = np.nonzero(np.abs(samples.astype(np.int32)) > LOUD)[0]
    return (len(samples) - (int(loud[-1]) + 1 if loud.size else 0)) / rate


def lose_packets(client: RtcClient, share: float) -> None:
    """Drop ``share`` of the RTP packets the caller's microphone sends (not RTCP)."""
    transport = client.pc.getSenders()[0].transport
    send = transport._send_rtp
    chance = random.Random(543)

    async def lossy(data: bytes) -> None:
        if len(data) > 1 and not 192 <= data[1] <= 223 and chance.random() < share:
            return
        await send(data)

    transport._send_rtp = lossy


async def run_mode(
    url: str, key: str, pid: int | None, mode: str, questions: list[str], loss: float = 0.0
) -> list[Turn]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        secret = (
            await http.post(
                "/v1/realtime/client_secrets",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "session": {
                        "type": "realtime",
                        "instructions": "Answer in one short sentence.",
                        "audio": {"input": {"turn_detection": MODES[mode]}},
                    }
                },
            )
        ).json()
        client = RtcClient()
        answer = await http.post(
            "/v1/realtime/calls",
            content=await client.offer(),
            headers={
                "Authorization": f"Bearer {secret['value']}",
                "Content-Type": "application/sdp",
            },
        )
        answer.raise_for_status()
        await client.accept(answer.text)
        if loss:
            lose_packets(client, loss)
        await client.until("session.created")
        turns: list[Turn] = []
        try:
            for index in range(len(questions) + 1):  # the first turn warms up, not counted
                question = questions[index - 1] if index else "Hello there."
                clip = voice(question, 48_000)
                client.first_loud_at = None
                client.mic.finished_at = None
                cpu_before = cpu_seconds(pid)
                client.mic.say(np.concatenate([silence(300, 48_000), clip]))
                events = await client.until("output_audio_buffer.stopped", limit_s=120)
                cpu = cpu_seconds(pid) - cpu_before
                assert client.mic.finished_at and client.first_loud_at
                end = client.mic.finished_at - quiet_tail_s(clip, 48_000)
                if not index:
                    await asyncio.sleep(0.5)
                    continue
                seen = {e["type"]: client.arrivals[e["event_id"]] for e in reversed(events)}
                stages = {
                    label: seen[kind] - end
                    for label, kind in (
                        ("stopped", "input_audio_buffer.speech_stopped"),
                        ("transcribed", "conversation.item.input_audio_transcription.completed"),
                        ("playing", "output_audio_buffer.started"),
                    )
                    if kind in seen
                }
                turn = Turn(question, client.first_loud_at - end, cpu, stages)
                turns.append(turn)
                marks = "  ".join(f"{k} {v * 1000:.0f}" for k, v in stages.items())
                print(
                    f"  {mode} turn {index:2d}: {turn.latency_s * 1000:5.0f} ms  cpu {cpu:.2f} s"
                    f"  [ms after speech end: {marks}]  ({question})",
                    flush=True,
                )
                await asyncio.sleep(0.5)
        finally:
            await http.post(
                f"{answer.headers['Location']}/hangup", headers={"Authorization": f"Bearer {key}"}
            )
            await client.close()
    return turns


def summary(mode: str, turns: list[Turn], with_cpu: bool) -> str:
    values = sorted(t.latency_s * 1000 for t in turns)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    line = (
        f"{mode:<13} {len(values):>3} turns   min {values[0]:5.0f}   median "
        f"{statistics.median(values):5.0f}   p95 {p95:5.0f}   max {values[-1]:5.0f} ms"
    )
    if with_cpu:
        cpu = statistics.median(t.cpu_s for t in turns)
        line += f"   CPU {cpu:.2f} s/turn (median)"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--url")
    parser.add_argument("--key", default=os.environ.get("REALTALK_API_KEY"))
    parser.add_argument("--pid", type=int, help="the server's PID, for CPU figures with --url")
    parser.add_argument("--turns", type=int, default=len(HELD_OUT))
    parser.add_argument("--modes", default="server_vad,semantic_vad")
    parser.add_argument(
        "--uplink-loss", type=float, default=0.0, help="share of the caller's RTP packets lost"
    )
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        sys.exit(f"unknown mode(s): {', '.join(sorted(unknown))}; choose from {', '.join(MODES)}")
    questions = [HELD_OUT[i % len(HELD_OUT)] for i in range(args.turns)]
    print(f"machine: {machine()}")
    print(f"reference: {reference_figure()}", flush=True)
    process = None
    if args.url:
        url, key, pid = args.url.rstrip("/"), args.key or "", args.pid
    else:
        process, url, key = start_server()
        pid = process.pid
    results: dict[str, list[Turn]] = {}
    try:
        for mode in modes:
            results[mode] = asyncio.run(run_mode(url, key, pid, mode, questions, args.uplink_loss))
    finally:
        if process is not None:
            process.terminate()
            process.wait()
    lossy = f", {args.uplink_loss:.1%} of uplink RTP lost" if args.uplink_loss else ""
    print(
        f"\nvoice-to-voice over WebRTC ({url}{lossy}): end of speech sent → first reply audio heard"
    )
    for mode, turns in results.items():
        print(summary(mode, turns, pid is not None))
    if pid is not None:
        print("CPU: the server process, from just before the question to the end of the reply")


if __name__ == "__main__":
    main()
