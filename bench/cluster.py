"""Two instances sharing one Redis, under N WebSocket conversations, then one of them drained.

Starts a throwaway ``redis-server`` and two realtalk instances (A and B) with the same standard
key and ``REALTALK_REDIS_URL``. Opens ``--sessions`` WebSocket sessions spread over both, each
with an ephemeral key minted on the *other* instance, and has each speak ``--turns`` real turns
(generated speech, streamed in real time). Prints sessions held, turns completed and
first-audio latency (end of speech → first ``response.output_audio.delta``) p50/p95.

Then, with every session still open, sends SIGTERM to B and reports what happens: how B's
sessions end (close code and reason, any ``error`` event first, how long it took), whether B
refuses new sessions, whether A keeps serving (a new session with a key minted on A), and how
and when B's process exits.

Usage: python bench/cluster.py [--sessions 4] [--turns 1] [--drain-wait 40]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import LiveServer, start_redis, start_server, stop_redis, stop_server

from bench.ws_turn import QUESTIONS, speak

KEY = "rt_bench_cluster_key_0123456789abcdef"
CHUNK = 480  # 20 ms at 24 kHz


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Conversation:
    """One WebSocket session held open, speaking turns on demand, recording how it ends."""

    def __init__(self, index: int, server: LiveServer, name: str) -> None:
        self.index, self.server, self.name = index, server, name
        self.ws: Any = None
        self.first_audio: list[float] = []
        self.errors: list[str] = []
        self.closed_at: float | None = None
        self.close: tuple[int | None, str] = (None, "")
        self._turn_done = asyncio.Event()
        self._speech_end = 0.0
        self._heard = False
        self._reader: asyncio.Task[None] | None = None

    async def open(self, key: str) -> None:
        url = self.server.url.replace("http", "ws", 1) + "/v1/realtime"
        self.ws = await websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {key}"}, max_size=None
        )
        await self.ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {"type": "realtime", "instructions": "Answer in one sentence."},
                }
            )
        )
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                event = json.loads(raw)
                kind = event["type"]
                if kind == "response.output_audio.delta" and not self._heard:
                    self._heard = True
                    self.first_audio.append(time.perf_counter() - self._speech_end)
                elif kind == "response.done":
                    self._turn_done.set()
                elif kind == "error":
                    self.errors.append(str(event["error"].get("code")))
        except websockets.ConnectionClosed:
            pass
        self.closed_at = time.perf_counter()
        self.close = (self.ws.close_code, self.ws.close_reason or "")
        self._turn_done.set()

    async def turn(self, question: str) -> bool:
        audio = np.concatenate([np.zeros(12_000, np.int16), speak(question)])
        audio = np.concatenate([audio, np.zeros(24_000 * 2, np.int16)])
        self._turn_done.clear()
        self._heard = False
        start = time.perf_counter()
        speech_end_at, marked = len(audio) - 24_000 * 2, False
        for index, offset in enumerate(range(0, len(audio), CHUNK)):
            if offset >= speech_end_at and not marked:
                self._speech_end, marked = time.perf_counter(), True
            piece = audio[offset : offset + CHUNK].tobytes()
            event = {"type": "input_audio_buffer.append", "audio": base64.b64encode(piece).decode()}
            try:
                await self.ws.send(json.dumps(event))
            except websockets.ConnectionClosed:
                return False
            await asyncio.sleep(max(0.0, start + (index + 1) * 0.02 - time.perf_counter()))
        try:
            await asyncio.wait_for(self._turn_done.wait(), 90)
        except TimeoutError:
            return False
        return self._heard and self.closed_at is None

    async def aclose(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader


async def mint(http: httpx.AsyncClient, server: LiveServer) -> str:
    response = await http.post(
        f"{server.url}/v1/realtime/client_secrets",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"session": {"type": "realtime"}},
    )
    response.raise_for_status()
    return str(response.json()["value"])


async def try_session(http: httpx.AsyncClient, server: LiveServer, key_from: LiveServer) -> str:
    """Open and close one session: 'opened', or why not."""
    try:
        key = await mint(http, key_from)
        url = server.url.replace("http", "ws", 1) + "/v1/realtime"
        async with websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=5
        ) as ws:
            event = json.loads(await asyncio.wait_for(ws.recv(), 5))
            return "opened" if event["type"] == "session.created" else event["type"]
    except websockets.InvalidStatus as refusal:
        return f"refused with HTTP {refusal.response.status_code}"
    except (OSError, httpx.HTTPError, TimeoutError) as exc:
        return f"refused: {type(exc).__name__}"


async def run(a: LiveServer, b: LiveServer, args: argparse.Namespace) -> None:
    servers = {"A": a, "B": b}
    async with httpx.AsyncClient(timeout=30) as http:
        conversations = []
        for index in range(args.sessions):
            name = "AB"[index % 2]
            conversation = Conversation(index, servers[name], name)
            other = servers["BA"[index % 2]]
            try:
                await conversation.open(await mint(http, other))  # minted on the other one
                conversations.append(conversation)
            except Exception as exc:
                print(f"session {index} on {name}: not opened ({exc})")
        print(f"sessions held: {len(conversations)}/{args.sessions} (A and B, keys minted on the")
        print("  other instance)")

        async def talk(conversation: Conversation) -> int:
            done = 0
            for turn in range(args.turns):
                question = QUESTIONS[(conversation.index + turn) % len(QUESTIONS)]
                done += await conversation.turn(question)
            return done

        turns = sum(await asyncio.gather(*(talk(c) for c in conversations)))
        latencies = [s * 1000 for c in conversations for s in c.first_audio]
        print(f"turns completed: {turns}/{len(conversations) * args.turns}")
        if latencies:
            print(
                f"first audio (end of speech → first audio delta): p50 "
                f"{statistics.median(latencies):.0f} ms, p95 {percentile(latencies, 0.95):.0f} ms"
                f" (n={len(latencies)})"
            )

        print(f"\ndrain: SIGTERM to B with every session still open ({time.strftime('%X')})")
        on_b = [c for c in conversations if c.name == "B"]
        on_a = [c for c in conversations if c.name == "A"]
        sent = time.perf_counter()
        b.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        print(f"  new session on B 0.5 s later: {await try_session(http, b, a)}")
        print(f"  new session on A (key minted on A): {await try_session(http, a, a)}")
        deadline = sent + args.drain_wait
        while time.perf_counter() < deadline:
            if b.process.poll() is not None and all(c.closed_at for c in on_b):
                break
            await asyncio.sleep(0.1)
        for conversation in on_b:
            if conversation.closed_at is None:
                print(f"  B session {conversation.index}: still open after {args.drain_wait} s")
                continue
            code, reason = conversation.close
            errors = ", ".join(conversation.errors) or "none"
            print(
                f"  B session {conversation.index}: closed after "
                f"{conversation.closed_at - sent:.1f} s, code {code} {reason!r}, "
                f"error events: {errors}"
            )
        exit_code = b.process.poll()
        print(
            f"  B's process: exit code {exit_code}"
            if exit_code is not None
            else f"  B's process: still running after {args.drain_wait} s"
        )
        alive = sum(c.closed_at is None for c in on_a)
        print(f"  A's sessions still open: {alive}/{len(on_a)}")
        if on_a and args.turns:
            survivor = next((c for c in on_a if c.closed_at is None), None)
            if survivor is not None:
                ok = await survivor.turn(QUESTIONS[0])
                print(f"  a further turn on A after B's drain: {'completed' if ok else 'failed'}")
        for conversation in conversations:
            await conversation.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--turns", type=int, default=1)
    parser.add_argument("--drain-wait", type=float, default=40.0)
    args = parser.parse_args()
    redis = start_redis()
    tmp = Path(tempfile.mkdtemp(prefix="realtalk-cluster-"))
    env = {
        "REALTALK_API_KEY": KEY,
        "REALTALK_REDIS_URL": redis.url,
        "REALTALK_MAX_SESSIONS": str(args.sessions + 8),
        "REALTALK_MAX_SESSIONS_PER_KEY": str(args.sessions + 8),
    }
    a = start_server(tmp, "a", env)
    b = start_server(tmp, "b", env, ready=True)
    try:
        while httpx.get(f"{a.url}/healthz").status_code != 200:
            time.sleep(0.2)
        print(f"cluster: redis {redis.url}, A {a.url}, B {b.url}")
        asyncio.run(run(a, b, args))
    finally:
        stop_server(a)
        if b.process.poll() is None:
            stop_server(b)
        stop_redis(redis)
        print(f"(server logs in {tmp})")


if __name__ == "__main__":
    main()
