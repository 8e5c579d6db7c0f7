"""Soak: many idle sessions, real conversations, a 2 MB prompt cancelled in a loop, and
connect/close churn against one live server; prints memory, latency and event-loop figures.

Phases, against a server this script starts (the same `realtalk serve`, with the configured
models, plus a probe; see below):

    baseline   one warm-up turn, then --baseline-turns spoken turns alone (first audio)
    idle       open --idle WebSocket sessions and hold them (RSS per idle session)
    load       for --seconds, with the idle sessions still open: --active conversations of
               real spoken turns (first audio p50/p95), and one session whose prompt is 2 MB
               (--prompt-mb) that creates a response and cancels it, over and over
    cycles     close the idle sessions, then --cycles WebSocket connect/close cycles (every
               fourth drops the TCP connection without a close frame); RSS drift, and the
               live-session count /healthz reports after them

Event-loop stalls are measured inside the server process (`soak_server.py` runs `realtalk
serve` with a probe): a task sleeps 10 ms in a loop on uvicorn's event loop and records how
late each wake-up is — the time any other session or request would have waited for the loop.
The script reads the longest delay per phase from the probe's `GET /_soak/loop`, which exists
only in this bench server. A second figure is what a client sees: `/healthz` round trips
sampled every 20 ms from a thread of this script (an upper bound: it includes this process's
own scheduling).

The 2 MB prompt goes first as `session.update` instructions, then as 64 KiB user text items;
where the server limits instructions or item size, the refusals are counted by error code and
printed (the items it accepts still make every response evaluate a full context window).

Usage: .venv/bin/python bench/soak.py [--idle 200] [--active 2] [--cycles 1000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import websockets

from bench.soak_server import PROBE_PATH
from bench.ws_turn import QUESTIONS, one_turn

FIRST_AUDIO = "first audio delta"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{model}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    cpu_s: float = 0.0
    stall_ms: float = 0.0
    stalls_over_100ms: int = 0
    healthz_max_ms: float = 0.0
    healthz_p99_ms: float = 0.0


@dataclass
class Server:
    url: str
    key: str
    process: subprocess.Popen[bytes]
    log: Path

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_s(self) -> float:
        return cpu_seconds(self.process.pid)


def start_server(sessions_needed: int) -> Server:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = Path(tempfile.mkdtemp(prefix="realtalk-soak-"))
    key = "rt_soak_" + os.urandom(12).hex()
    env = {
        **os.environ,
        "REALTALK_API_KEY": key,
        "REALTALK_DATA_DIR": str(folder / "data"),
        # Room for every session this run opens (an instance cap sized for a small machine
        # would refuse the idle ones; the cap itself is not what this measures).
        "REALTALK_MAX_SESSIONS": str(sessions_needed),
    }
    log = folder / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("soak_server.py")), str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", key, process, log)
    for _ in range(900):
        if process.poll() is not None:
            sys.exit(f"the server exited; see {log}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    sys.exit(f"the server did not become ready; see {log}")


class HealthzSampler:
    """/healthz round trips every 20 ms from a thread, as any other client would see them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.times: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                start = time.perf_counter()
                try:
                    client.get(f"{self.url}/healthz")
                except httpx.HTTPError:
                    pass  # counted as the time it took to fail
                elapsed = time.perf_counter() - start
                self.times.append(elapsed)
                self.stop.wait(max(0.0, 0.02 - elapsed))

    def take(self) -> list[float]:
        taken, self.times = self.times, []
        return taken


def ws_url(server: Server) -> str:
    return server.url.replace("http", "ws", 1) + "/v1/realtime?model=realtalk-local"


async def open_session(server: Server) -> websockets.ClientConnection:
    ws = await websockets.connect(
        ws_url(server),
        additional_headers={"Authorization": f"Bearer {server.key}"},
        max_size=None,
        open_timeout=60,
    )
    event = json.loads(await asyncio.wait_for(ws.recv(), 60))
    if event["type"] != "session.created":
        await ws.close()
        raise RuntimeError(event.get("error", {}).get("code") or event["type"])
    return ws


async def drain(ws: websockets.ClientConnection) -> None:
    """Read (and drop) whatever an idle session is sent, so it never backs up."""
    try:
        async for _ in ws:
            pass
    except websockets.ConnectionClosed:
        pass


@dataclass
class CancelLoop:
    cycles: int = 0
    cancel_to_done_s: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)


async def prompt_and_cancel(server: Server, megabytes: float, until: float) -> CancelLoop:
    """One session with a ``megabytes`` prompt: response.create, then response.cancel while
    it is being worked on, in a loop until ``until``."""
    result = CancelLoop()
    text = ("The customer wrote a very long letter about their order. " * 40_000)[
        : int(megabytes * 1024 * 1024)
    ]
    ws = await open_session(server)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def read() -> None:
        try:
            async for raw in ws:
                event = json.loads(raw)
                if event["type"] == "error":
                    result.errors[event["error"].get("code") or "error"] += 1
                inbox.put_nowait(event)
        except websockets.ConnectionClosed as closed:
            result.errors[f"connection closed ({closed.rcvd.code if closed.rcvd else '-'})"] += 1

    async def answer(kind: str, event_id: str, within_s: float) -> str:
        """Wait for ``kind`` or an error about ``event_id``; which one came (or 'timeout')."""
        try:
            async with asyncio.timeout(within_s):
                while True:
                    event = await inbox.get()
                    if event["type"] == kind:
                        return kind
                    if event["type"] == "error" and event["error"].get("event_id") == event_id:
                        return "error"
        except TimeoutError:
            result.errors[f"no {kind} in {within_s:g} s"] += 1
            return "timeout"

    reader = asyncio.create_task(read())
    try:
        session = {
            "type": "realtime",
            "instructions": text,
            "output_modalities": ["text"],
            "audio": {"input": {"turn_detection": None}},
        }
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        chunk = 64 * 1024
        for offset in range(0, len(text), chunk):
            item = {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": text[offset : offset + chunk]}],
            }
            await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        index = 0
        while time.monotonic() < until and not reader.done():
            index += 1
            await ws.send(json.dumps({"type": "response.create", "event_id": f"create_{index}"}))
            if await answer("response.created", f"create_{index}", 30) != "response.created":
                await asyncio.sleep(0.2)
                continue
            await asyncio.sleep(random.uniform(0.05, 0.5))  # mid prompt evaluation
            sent = time.perf_counter()
            await ws.send(json.dumps({"type": "response.cancel", "event_id": f"cancel_{index}"}))
            if await answer("response.done", f"cancel_{index}", 60) == "response.done":
                result.cancel_to_done_s.append(time.perf_counter() - sent)
                result.cycles += 1
    except websockets.ConnectionClosed:
        pass  # counted by the reader
    finally:
        await ws.close()
        await reader
    return result


async def conversations(server: Server, until: float, failures: list[str]) -> list[float]:
    """Spoken turns one after another until ``until``; the first-audio delay of each."""
    delays = []
    turn = 0
    while time.monotonic() < until:
        try:
            timings = await one_turn(server.url, server.key, QUESTIONS[turn % len(QUESTIONS)])
            delays.append(timings[FIRST_AUDIO])
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        turn += 1
    return delays


async def cycle(server: Server, index: int) -> str | None:
    """Open a session and leave; why it failed, or None."""
    try:
        ws = await open_session(server)
    except Exception as exc:
        return str(exc) or type(exc).__name__
    if index % 4 == 3:
        ws.transport.abort()  # gone without a close frame, as a dropped client
    else:
        await ws.close()
    return None


async def live_sessions_after(server: Server, wait_s: float = 15) -> tuple[int, float]:
    start = time.monotonic()
    async with httpx.AsyncClient() as http:
        while True:
            count = int((await http.get(f"{server.url}/healthz")).json()["sessions"])
            if count == 0 or time.monotonic() - start > wait_s:
                return count, time.monotonic() - start
            await asyncio.sleep(0.1)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"p50 {statistics.median(values) * 1000:.0f} ms, p95 {percentile(values, 0.95) * 1000:.0f}"
        f" ms (n={len(values)})"
    )


async def soak(args: argparse.Namespace, server: Server) -> None:
    sampler = HealthzSampler(server.url)
    phases: list[Phase] = []
    figures: list[tuple[str, str]] = []
    http = httpx.AsyncClient(timeout=30)

    async def run_phase(name: str, work: Callable[[], Awaitable[Any]]) -> Any:
        await http.get(f"{server.url}{PROBE_PATH}")  # reset the probe
        sampler.take()
        cpu, start = server.cpu_s(), time.perf_counter()
        result = await work()
        phase = Phase(name, time.perf_counter() - start, server.cpu_s() - cpu)
        probe = (await http.get(f"{server.url}{PROBE_PATH}")).json()
        phase.stall_ms, phase.stalls_over_100ms = probe["worst_ms"], probe["over_100ms"]
        rtts = sampler.take()
        if rtts:
            phase.healthz_max_ms = max(rtts) * 1000
            phase.healthz_p99_ms = percentile(rtts, 0.99) * 1000
        phases.append(phase)
        print(f"  {name}: done in {phase.seconds:.1f} s", flush=True)
        return result

    sampler.thread.start()
    failures: list[str] = []

    async def baseline() -> list[float]:
        await one_turn(server.url, server.key, "Hello there.")  # warm-up, not counted
        return [
            (await one_turn(server.url, server.key, QUESTIONS[i % len(QUESTIONS)]))[FIRST_AUDIO]
            for i in range(args.baseline_turns)
        ]

    alone = await run_phase("baseline (alone)", baseline)

    rss_before_idle = server.rss_mb()
    idle: list[websockets.ClientConnection] = []
    refused: collections.Counter[str] = collections.Counter()

    async def open_idle() -> None:
        gate = asyncio.Semaphore(16)

        async def one() -> None:
            async with gate:
                try:
                    idle.append(await open_session(server))
                except Exception as exc:
                    refused[str(exc) or type(exc).__name__] += 1

        async with asyncio.TaskGroup() as tasks:
            for _ in range(args.idle):
                tasks.create_task(one())
        await asyncio.sleep(2)  # let the server settle before reading its RSS

    await run_phase(f"open {args.idle} idle", open_idle)
    rss_idle = server.rss_mb()
    readers = [asyncio.create_task(drain(ws)) for ws in idle]

    async def load() -> tuple[list[list[float]], CancelLoop]:
        until = time.monotonic() + args.seconds
        async with asyncio.TaskGroup() as tasks:
            talkers = [
                tasks.create_task(conversations(server, until, failures))
                for _ in range(args.active)
            ]
            canceller = tasks.create_task(prompt_and_cancel(server, args.prompt_mb, until))
        return [t.result() for t in talkers], canceller.result()

    talked, cancels = await run_phase(f"load ({args.seconds:g} s)", load)
    under_load = [d for delays in talked for d in delays]

    async def close_idle() -> None:
        await asyncio.gather(*(ws.close() for ws in idle))
        for reader in readers:
            reader.cancel()
        await live_sessions_after(server)
        await asyncio.sleep(2)

    await run_phase("close idle", close_idle)
    rss_before_cycles = server.rss_mb()

    cycle_failures: collections.Counter[str] = collections.Counter()

    async def cycles() -> int:
        gate = asyncio.Semaphore(4)

        async def one(index: int) -> None:
            async with gate:
                failure = await cycle(server, index)
            if failure is not None:
                cycle_failures[failure] += 1

        async with asyncio.TaskGroup() as tasks:
            for index in range(args.cycles):
                tasks.create_task(one(index))
        return int(args.cycles) - cycle_failures.total()

    completed = await run_phase(f"{args.cycles} cycles", cycles)
    live, waited = await live_sessions_after(server)
    await asyncio.sleep(2)
    rss_after_cycles = server.rss_mb()
    sampler.stop.set()
    await http.aclose()

    per_idle = (rss_idle - rss_before_idle) / max(1, len(idle))
    figures += [
        ("RSS before the idle sessions", f"{rss_before_idle:.0f} MB"),
        (
            "RSS per idle session",
            f"{per_idle:.2f} MB ({len(idle)} open"
            + (f"; refused: {dict(refused)}" if refused else "")
            + ")",
        ),
        ("RSS after closing them", f"{rss_before_cycles:.0f} MB"),
        (
            f"RSS drift after {args.cycles} cycles",
            f"{rss_after_cycles - rss_before_cycles:+.1f} MB ({completed} completed; "
            f"{rss_before_cycles:.0f} → {rss_after_cycles:.0f} MB"
            + (f"; failed: {dict(cycle_failures)}" if cycle_failures else "")
            + ")",
        ),
        ("live sessions after (/healthz)", f"{live} (after {waited:.1f} s)"),
        ("first audio alone", ms(alone)),
        (f"first audio under load ({args.active} active)", ms(under_load)),
    ]
    if alone and under_load:
        figures.append(
            (
                "  delay vs alone (p50 / p95)",
                f"{(statistics.median(under_load) - statistics.median(alone)) * 1000:+.0f} ms / "
                f"{(percentile(under_load, 0.95) - percentile(alone, 0.95)) * 1000:+.0f} ms",
            )
        )
    if failures:
        figures.append(("failed turns", f"{len(failures)}: {failures[0][:80]}"))
    figures += [
        (
            f"{args.prompt_mb:g} MB-prompt cancels",
            f"{cancels.cycles}; cancel → response.done {ms(cancels.cancel_to_done_s)}",
        ),
        (
            "  errors it was sent",
            ", ".join(f"{code} ×{n}" for code, n in cancels.errors.most_common()) or "none",
        ),
        ("longest event-loop stall (probe)", f"{max(p.stall_ms for p in phases):.1f} ms"),
        ("server CPU-seconds, all phases", f"{sum(p.cpu_s for p in phases):.1f} s"),
    ]

    print(f"\nsoak of {server.url} — machine: {machine()}")
    print(
        f"{'phase':<22}{'seconds':>9}{'CPU-s':>9}{'loop stall':>12}{'> 100 ms':>10}"
        f"{'/healthz p99':>14}{'/healthz max':>14}"
    )
    for p in phases:
        print(
            f"{p.name:<22}{p.seconds:>9.1f}{p.cpu_s:>9.1f}{p.stall_ms:>10.1f}ms"
            f"{p.stalls_over_100ms:>10}{p.healthz_p99_ms:>12.1f}ms{p.healthz_max_ms:>12.1f}ms"
        )
    print()
    width = max(len(name) for name, _ in figures) + 2
    for name, value in figures:
        print(f"{name:<{width}}{value}")
    print(
        "\nloop stall: the longest a 10 ms timer on the server's event loop woke late (in-process"
        " probe);\n> 100 ms: how many wake-ups were that late; /healthz: round trips sampled"
        " every 20 ms by this script"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--idle", type=int, default=200, help="idle WebSocket sessions")
    parser.add_argument("--active", type=int, default=2, help="conversations talking")
    parser.add_argument("--cycles", type=int, default=1000, help="connect/close cycles")
    parser.add_argument("--seconds", type=float, default=60, help="length of the load phase")
    parser.add_argument("--prompt-mb", type=float, default=2, help="the cancelled prompt's size")
    parser.add_argument("--baseline-turns", type=int, default=3)
    args = parser.parse_args()
    print(
        f"soak: {args.idle} idle, {args.active} active, a {args.prompt_mb:g} MB prompt "
        f"cancelling for {args.seconds:g} s, then {args.cycles} connect/close cycles",
        flush=True,
    )
    server = start_server(args.idle + args.active + 16)
    print(f"  server ready (log: {server.log})", flush=True)
    try:
        asyncio.run(soak(args, server))
    finally:
        server.process.terminate()
        server.process.wait()


if __name__ == "__main__":
    main()
