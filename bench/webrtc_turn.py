"""Voice-to-voice latency over WebRTC, as a caller hears it.

An aiortc client (no browser) opens a call through the GA ``/v1/realtime/calls`` endpoint,
speaks generated questions into its microphone track in real time, and measures, per turn,
the time from the end of its speech (last speech sample sent) to the first non-silent sample
of the reply that arrives on the remote track. Default server VAD (500 ms silence window), so
the figure includes that window, as OpenAI's targets do.

Usage: python bench/webrtc_turn.py [--url http://127.0.0.1:8000] [--key KEY] [--turns 8]
Without --url it starts a server itself.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.realtime_helpers import silence, voice  # noqa: E402
from tests.rtc_client import RtcClient  # noqa: E402

from bench.ws_turn import QUESTIONS, engine  # noqa: E402


async def run(url: str, key: str, turns: int) -> list[float]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        secret = (
            await http.post(
                "/v1/realtime/client_secrets",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "session": {"type": "realtime", "instructions": "Answer in one short sentence."}
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
        await client.until("session.created")
        latencies: list[float] = []
        try:
            for turn in range(turns + 1):  # the first turn warms up and is not counted
                question = QUESTIONS[turn % len(QUESTIONS)] if turn else "Hello there."
                client.first_loud_at = None
                client.mic.finished_at = None
                client.mic.say(np.concatenate([silence(300, 48_000), voice(question, 48_000)]))
                events = await client.until("output_audio_buffer.stopped", limit_s=120)
                assert client.mic.finished_at and client.first_loud_at
                end = client.mic.finished_at
                latency = client.first_loud_at - end
                if turn:
                    latencies.append(latency)
                    seen = {e["type"]: client.arrivals[e["event_id"]] for e in reversed(events)}
                    stages = "  ".join(
                        f"{label} {(seen[kind] - end) * 1000:.0f}"
                        for label, kind in (
                            ("stopped", "input_audio_buffer.speech_stopped"),
                            (
                                "transcribed",
                                "conversation.item.input_audio_transcription.completed",
                            ),
                            ("playing", "output_audio_buffer.started"),
                        )
                        if kind in seen
                    )
                    print(
                        f"turn {turn}: {latency * 1000:.0f} ms  [ms after speech end: {stages}]"
                        f"  ({question})"
                    )
                await asyncio.sleep(0.5)
        finally:
            await http.post(
                f"{answer.headers['Location']}/hangup", headers={"Authorization": f"Bearer {key}"}
            )
            await client.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--url")
    parser.add_argument("--key")
    parser.add_argument("--turns", type=int, default=8)
    args = parser.parse_args()
    with engine(args.url, args.key) as (url, key):
        started = time.perf_counter()
        values = sorted(v * 1000 for v in asyncio.run(run(url, key, args.turns)))
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    print(f"\n{len(values)} turns over WebRTC ({url}), {time.perf_counter() - started:.0f} s")
    print("voice-to-voice (end of speech sent → first reply audio received)")
    print(
        f"min {values[0]:.0f} ms   median {statistics.median(values):.0f} ms   "
        f"p95 {p95:.0f} ms   max {values[-1]:.0f} ms"
    )


if __name__ == "__main__":
    main()
