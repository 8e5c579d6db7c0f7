"""``REALTALK_RECORD=audio``: a conversation's user and agent audio as two mono Ogg/Opus files
(``<id>.user.ogg``, ``<id>.agent.ogg``) on one timeline that starts with the record, so an
entry's ``at − started_at`` is its place in both. The user track holds what the engine heard;
the agent track what the listener was played (WebRTC: each frame as the outbound track sends
it, so a reply cut by a barge-in stops where the listener stopped hearing it; WebSocket: the
reply as it is sent to the client). Encoding runs in the track's own thread
behind a bounded queue; the session only hands over chunks (a full queue or a failed write is
logged and the audio dropped; the conversation goes on)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

import numpy as np

from realtalk.audio.pcm import Int16Array, resample

log = logging.getLogger("realtalk.records")

RATE = 16_000
"""Both tracks' sample rate."""
QUEUE_MAX = 2_000
"""Chunks waiting to be encoded (a few minutes of audio); beyond this they are dropped."""
SILENCE_STEP = RATE
"""A gap is filled with silence this many samples at a time."""
JITTER = RATE * 60 // 1000
"""A chunk this late or less follows the one before it without a gap: frames that arrive
a few milliseconds off their pace stay continuous speech (no clicks), and a track is never
more than this far from the timeline."""

Track = Literal["user", "agent"]


class Encoder(Protocol):
    def encode(self, samples: Int16Array) -> bytes: ...

    def close(self) -> bytes: ...


EncoderFactory = Callable[[int], Encoder]
"""Makes a streaming Opus encoder at a sample rate (``rtc.audio_files``: only ``rtc`` uses
PyAV)."""

_STOP = object()


class AudioTracks:
    def __init__(
        self,
        folder: Path,
        record_id: str,
        encoder: EncoderFactory,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = folder
        self.record_id = record_id
        self._encoder = encoder
        self._clock = clock
        self._t0 = clock()
        self.dropped = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_MAX)
        self._thread = threading.Thread(
            target=self._run, name="realtalk-records-audio", daemon=True
        )
        self._thread.start()

    def add(self, track: Track, samples: Int16Array, rate: int) -> None:
        """Queue a chunk heard (user) or sent (agent) now; never blocks."""
        try:
            self._queue.put_nowait((track, self._clock() - self._t0, samples, rate))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("records: audio queue full; audio dropped from %s", self.record_id)

    def close(self) -> None:
        """Finish both files (the thread ends once the queue is drained)."""
        try:
            self._queue.put(_STOP, timeout=1)
        except queue.Full:
            log.warning("records: audio queue full at the end of %s", self.record_id)

    def join(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        files: dict[str, tuple[Encoder, BinaryIO]] = {}
        written: dict[str, int] = {}
        failed = False
        while True:
            job = self._queue.get()
            if job is _STOP:
                break
            if failed:
                continue
            assert isinstance(job, tuple)
            track, offset, samples, rate = job
            try:
                if track not in files:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    path = self.folder / f"{self.record_id}.{track}.ogg"
                    files[track] = (self._encoder(RATE), path.open("wb"))
                    written[track] = 0
                encoder, out = files[track]
                pcm = samples if rate == RATE else resample(samples, rate, RATE)
                gap = int(offset * RATE) - written[track]
                if gap <= JITTER:
                    gap = 0
                while gap > 0:
                    step = min(gap, SILENCE_STEP)
                    out.write(encoder.encode(np.zeros(step, dtype=np.int16)))
                    written[track] += step
                    gap -= step
                out.write(encoder.encode(pcm))
                written[track] += len(pcm)
            except Exception as exc:  # a full disk, an encoder error: the talk goes on
                failed = True
                log.error("records: audio of %s not written (%s)", self.record_id, exc)
        for encoder, out in files.values():
            try:
                out.write(encoder.close())
            except Exception as exc:
                log.error("records: audio of %s not finished (%s)", self.record_id, exc)
            finally:
                out.close()
