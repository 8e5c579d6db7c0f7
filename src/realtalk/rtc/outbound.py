"""The agent's voice as an outbound WebRTC track: paced 20 ms frames, accounted playout.

Audio is queued as it is synthesized (faster than real time) and leaves one 20 ms frame per
20 ms, silence when there is nothing to say. The track knows how many milliseconds of each
item were actually sent, so a barge-in truncates the transcript where the listener stopped.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from realtalk.audio.pcm import Int16Array

RATE = 48_000
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000


@dataclass
class _Chunk:
    response_id: str
    item_id: str
    samples: Int16Array


class OutboundAudioTrack(MediaStreamTrack):
    kind = "audio"
    rate = RATE

    def __init__(self, on_event: Callable[[str, str], None]) -> None:
        """``on_event("started" | "stopped", response_id)`` reports playout transitions."""
        super().__init__()
        self._queue: deque[_Chunk] = deque()
        self._on_event = on_event
        self._current: tuple[str, str] | None = None  # (response_id, item_id) being written
        self._playing: str | None = None  # response_id whose audio is leaving now
        self._ended: set[str] = set()  # responses with no more audio to come
        self._played: dict[str, int] = {}  # item_id → samples sent
        self._last_item: tuple[str, str] | None = None
        self._start = 0.0
        self._timestamp: int | None = None
        self.on_sent: Callable[[Int16Array], None] | None = None
        """Called with the reply audio of each frame as it leaves (not the silence between
        replies): what the listener heard, when they heard it (the conversation's record)."""

    # ---- the AudioOutput side (called by the response) --------------------------------
    def begin(self, response_id: str, item_id: str) -> None:
        self._current = (response_id, item_id)
        self._ended.discard(response_id)

    async def write(self, samples: Int16Array) -> None:
        if self._current is None or samples.size == 0:
            return
        response_id, item_id = self._current
        self._queue.append(_Chunk(response_id, item_id, samples))
        await asyncio.sleep(0)

    def end(self) -> None:
        if self._current is not None:
            self._ended.add(self._current[0])
        self._current = None

    # ---- control -------------------------------------------------------------------------
    def is_playing(self) -> bool:
        return self._playing is not None

    def played(self) -> tuple[str, str, int] | None:
        """(response_id, item_id, ms heard) of the item now (or last) playing."""
        if self._last_item is None:
            return None
        response_id, item_id = self._last_item
        return response_id, item_id, self._played.get(item_id, 0) * 1000 // RATE

    def clear(self) -> tuple[str, str, int] | None:
        """Stop playout now: drop what is queued; return what had been heard (or None when
        nothing was playing)."""
        state = self.played() if self._playing is not None else None
        self._queue.clear()
        self._current = None
        self._playing = None
        return state

    # ---- the MediaStreamTrack side (called by aiortc's sender) --------------------------
    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._timestamp is None:
            self._start = time.monotonic()
            self._timestamp = 0
        else:
            self._timestamp += FRAME_SAMPLES
            wait = self._start + self._timestamp / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        samples = self._next_frame()
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, RATE)
        return frame

    def _next_frame(self) -> Int16Array:
        out = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        filled = 0
        while filled < FRAME_SAMPLES and self._queue:
            chunk = self._queue[0]
            if self._playing != chunk.response_id:
                if self._playing is not None:
                    self._on_event("stopped", self._playing)
                self._playing = chunk.response_id
                self._on_event("started", chunk.response_id)
            take = min(FRAME_SAMPLES - filled, len(chunk.samples))
            out[filled : filled + take] = chunk.samples[:take]
            filled += take
            self._played[chunk.item_id] = self._played.get(chunk.item_id, 0) + take
            self._last_item = (chunk.response_id, chunk.item_id)
            if take == len(chunk.samples):
                self._queue.popleft()
            else:
                chunk.samples = chunk.samples[take:]
        if filled and self.on_sent is not None:
            self.on_sent(out[:filled].copy())
        if not self._queue and self._playing is not None and self._playing in self._ended:
            finished, self._playing = self._playing, None
            self._ended.discard(finished)
            self._on_event("stopped", finished)
        return out
