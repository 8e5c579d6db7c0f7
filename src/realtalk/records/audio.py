"""``REALTALK_RECORD=audio``: a conversation's user and agent audio as two mono Ogg/Opus files
(``<id>.user.ogg``, ``<id>.agent.ogg``) on one timeline that starts with the record, so an
entry's ``at − started_at`` is its place in both. The user track holds what the engine heard;
the agent track what the listener was played. Over WebRTC it gets each frame as the outbound
track sends it, so a reply cut by a barge-in stops where the listener stopped hearing it. Over
a WebSocket the client plays the reply itself, from when it arrives, one chunk after another:
the track places each chunk there and holds it until that time has passed, so when the client
truncates the item (``conversation.item.truncate``) the part it never played is dropped
(``hold=True``). Encoding runs in the track's own thread behind a bounded queue; the session
only hands over chunks (a full queue or a failed write is logged and the audio dropped; the
conversation goes on)."""

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


class _File:
    """One track's Ogg file: samples are written at their place on the timeline."""

    def __init__(self, path: Path, encoder: Encoder) -> None:
        self.encoder = encoder
        self.out: BinaryIO = path.open("wb")
        self.written = 0

    def write(self, pcm: Int16Array, start: int) -> None:
        gap = start - self.written
        while gap > 0:
            step = min(gap, SILENCE_STEP)
            self.out.write(self.encoder.encode(np.zeros(step, dtype=np.int16)))
            self.written += step
            gap -= step
        self.out.write(self.encoder.encode(pcm))
        self.written += len(pcm)

    def close(self) -> None:
        try:
            self.out.write(self.encoder.close())
        finally:
            self.out.close()


class AudioTracks:
    def __init__(
        self,
        folder: Path,
        record_id: str,
        encoder: EncoderFactory,
        clock: Callable[[], float] = time.monotonic,
        *,
        hold: bool = False,
    ) -> None:
        self.folder = folder
        self.record_id = record_id
        self.hold = hold
        """Agent audio waits until it has played and can be cut (a WebSocket client)."""
        self._encoder = encoder
        self._clock = clock
        self._t0 = clock()
        self.dropped = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_MAX)
        # The encoding thread's own state:
        self._files: dict[str, _File] = {}
        self._ends: dict[str, int] = {}  # where each track's next chunk goes (held included)
        self._held: list[tuple[int, Int16Array]] = []  # agent chunks not played yet
        self._mark: str | None = None  # an item whose audio starts with the next agent chunk
        self._starts: dict[str, int] = {}  # item → where its audio starts on the agent track
        self._thread = threading.Thread(
            target=self._run, name="realtalk-records-audio", daemon=True
        )
        self._thread.start()

    def _put(self, job: tuple[object, ...]) -> None:
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("records: audio queue full; audio dropped from %s", self.record_id)

    def add(self, track: Track, samples: Int16Array, rate: int) -> None:
        """Queue a chunk heard (user) or sent (agent) now; never blocks."""
        if len(samples) == 0:
            return
        self._put(("audio", track, self._clock() - self._t0, samples, rate))

    def mark(self, item_id: str) -> None:
        """The next agent chunk starts ``item_id``'s audio (with ``hold``)."""
        self._put(("mark", item_id))

    def cut(self, item_id: str, audio_end_ms: int) -> None:
        """The client stopped playing ``item_id`` at ``audio_end_ms``: drop the agent audio held
        past that point (with ``hold``)."""
        self._put(("cut", item_id, audio_end_ms))

    def close(self) -> None:
        """Finish both files (the thread ends once the queue is drained; held audio is
        written: a client may play what it was sent after hanging up)."""
        try:
            self._queue.put(_STOP, timeout=1)
        except queue.Full:
            log.warning("records: audio queue full at the end of %s", self.record_id)

    def join(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        failed = False
        while True:
            try:
                job = self._queue.get(timeout=self._due())
            except queue.Empty:
                job = None
            if job is _STOP:
                break
            if failed:
                continue
            try:
                if isinstance(job, tuple):
                    self._job(job)
                self._release(self._now())
            except Exception as exc:  # a full disk, an encoder error: the talk goes on
                failed = True
                log.error("records: audio of %s not written (%s)", self.record_id, exc)
        if not failed:
            try:
                self._release(None)
            except Exception as exc:
                log.error("records: audio of %s not written (%s)", self.record_id, exc)
        for file in self._files.values():
            try:
                file.close()
            except Exception as exc:
                log.error("records: audio of %s not finished (%s)", self.record_id, exc)

    def _now(self) -> int:
        return int((self._clock() - self._t0) * RATE)

    def _due(self) -> float | None:
        """Seconds until the first held chunk has played (None: nothing held)."""
        if not self._held:
            return None
        start, pcm = self._held[0]
        return max(0.005, (start + len(pcm) - self._now()) / RATE)

    def _job(self, job: tuple[object, ...]) -> None:
        if job[0] == "mark":
            self._mark = str(job[1])
        elif job[0] == "cut":
            _, item_id, audio_end_ms = job
            assert isinstance(item_id, str) and isinstance(audio_end_ms, int)
            self._cut(item_id, audio_end_ms)
        else:
            _, track, offset, samples, rate = job
            assert isinstance(track, str) and isinstance(offset, float)
            assert isinstance(samples, np.ndarray) and isinstance(rate, int)
            pcm = samples if rate == RATE else resample(samples, rate, RATE)
            start = int(offset * RATE)
            end = self._ends.get(track, 0)
            if start - end <= JITTER:
                start = end
            self._ends[track] = start + len(pcm)
            if track == "agent" and self._mark is not None:
                self._starts[self._mark], self._mark = start, None
            if track == "agent" and self.hold:
                self._held.append((start, pcm))
            else:
                self._file(track).write(pcm, start)

    def _cut(self, item_id: str, audio_end_ms: int) -> None:
        if item_id not in self._starts:
            return
        at = self._starts[item_id] + audio_end_ms * RATE // 1000
        kept = [(start, pcm[: max(0, at - start)]) for start, pcm in self._held if start < at]
        self._held = [(start, pcm) for start, pcm in kept if len(pcm)]
        written = self._files["agent"].written if "agent" in self._files else 0
        self._ends["agent"] = min(self._ends.get("agent", 0), max(at, written))

    def _release(self, now: int | None) -> None:
        """Write the held chunks that have played by ``now`` (None: all of them)."""
        while self._held and (now is None or self._held[0][0] + len(self._held[0][1]) <= now):
            start, pcm = self._held.pop(0)
            self._file("agent").write(pcm, start)

    def _file(self, track: str) -> _File:
        if track not in self._files:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{self.record_id}.{track}.ogg"
            self._files[track] = _File(path, self._encoder(RATE))
        return self._files[track]
