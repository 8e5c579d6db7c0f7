"""A WebRTC client built on aiortc, as a browser page would use the engine."""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler

RATE = 48_000
FRAME = 960


class ScriptedMicrophone(MediaStreamTrack):
    """Plays queued 48 kHz int16 audio in real time (20 ms frames), silence in between."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: list[np.ndarray] = []
        self._start: float | None = None
        self._timestamp = 0
        self.finished_at: float | None = None
        """perf_counter when the last queued sample left."""

    def say(self, samples: np.ndarray) -> None:
        self._queue.append(samples.astype(np.int16))

    def idle(self) -> bool:
        return not self._queue

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._timestamp += FRAME
            await asyncio.sleep(max(0.0, self._start + self._timestamp / RATE - time.monotonic()))
        out = np.zeros(FRAME, dtype=np.int16)
        filled = 0
        while filled < FRAME and self._queue:
            head = self._queue[0]
            take = min(FRAME - filled, len(head))
            out[filled : filled + take] = head[:take]
            filled += take
            if take == len(head):
                self._queue.pop(0)
                if not self._queue:
                    self.finished_at = time.perf_counter()
            else:
                self._queue[0] = head[take:]
        frame = AudioFrame.from_ndarray(out.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


class RtcClient:
    def __init__(self) -> None:
        self.pc = RTCPeerConnection()
        self.mic = ScriptedMicrophone()
        self.pc.addTrack(self.mic)
        self.channel = self.pc.createDataChannel("oai-events")
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.all_events: list[dict[str, Any]] = []
        self.arrivals: dict[str, float] = {}
        """event_id → perf_counter when it arrived."""
        self.received = bytearray()
        """Remote audio, 16 kHz int16 mono."""
        self.first_loud_at: float | None = None
        self.opened = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

        @self.channel.on("open")
        def _open() -> None:
            self.opened.set()

        @self.channel.on("message")
        def _message(message: str) -> None:
            assert isinstance(message, str), "events are JSON text"
            event = json.loads(message)
            self.arrivals[event["event_id"]] = time.perf_counter()
            self.all_events.append(event)
            self.events.put_nowait(event)

        @self.pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.ensure_future(self._record(track)))

    async def _record(self, track: MediaStreamTrack) -> None:
        resampler = AudioResampler(format="s16", layout="mono", rate=16_000)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            for out in resampler.resample(frame):
                samples = out.to_ndarray().reshape(-1)
                if self.first_loud_at is None and np.abs(samples).max(initial=0) > 1000:
                    self.first_loud_at = time.perf_counter()
                self.received += samples.astype(np.int16).tobytes()

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
        await asyncio.wait_for(self.opened.wait(), 20)

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    async def until(self, kind: str, limit_s: float = 90) -> list[dict[str, Any]]:
        got = []
        async with asyncio.timeout(limit_s):
            while True:
                event = await self.events.get()
                got.append(event)
                if event["type"] == kind:
                    return got

    def audio(self) -> np.ndarray:
        return np.frombuffer(bytes(self.received), dtype=np.int16)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
