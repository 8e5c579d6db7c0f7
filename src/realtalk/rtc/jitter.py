"""The caller's microphone audio between the network and the decoder: a jitter buffer that puts
RTP packets back in order without adding latency that stays.

aiortc's own audio buffer (``JitterBuffer(capacity=16, prefetch=4)``) holds four frames (80 ms)
before it hands any on, and after a single lost packet it waits until its 16 slots overflow,
then keeps that backlog for the rest of the call, because it hands on at most one frame per
packet received (aiortc issue #543). One lost packet on the caller's Wi-Fi thus delays every
later turn by 280 ms more: the engine hears the end of speech that much later.

:class:`AudioJitterBuffer` keeps aiortc's interface (``add(packet) -> (pli, frame)``) and
hands each packet on as soon as it is the next in sequence (an audio RTP packet is a whole
frame). A packet missing from the sequence is waited for until :data:`WAIT` newer ones have
come (40 ms at Opus' 20 ms: a packet overtaken by the next one still fits), then given up as
lost, and is dropped if it comes later. When frames are ready faster than one per packet
(after a wait), at most :data:`BACKLOG` are kept; older ones are dropped, so the delay after
a loss is at most that many frames. :func:`install` puts it in place of aiortc's in a
receiver.
"""

from __future__ import annotations

import logging
from typing import Any

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add

from realtalk import metrics

log = logging.getLogger("realtalk.rtc")

CAPACITY = 16
"""Slots (packets) ahead of the next one expected; a packet further ahead restarts the
sequence there (a long outage, or the sender restarted its sequence)."""
WAIT = 2
"""Newer packets that may arrive before a missing one is given up as lost."""
BACKLOG = 2
"""Ready frames kept beyond the one handed on; older ones are dropped to catch up."""

_RECEIVER_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"
"""Where an aiortc ``RTCRtpReceiver`` keeps its jitter buffer (checked by a test, so an aiortc
that moves it fails CI instead of silently keeping the old latency)."""


class AudioJitterBuffer(JitterBuffer):
    def __init__(self, wait: int = WAIT, backlog: int = BACKLOG) -> None:
        super().__init__(capacity=CAPACITY)
        self.wait = wait
        self.backlog = backlog
        self.lost = 0
        """Packets given up on (never came, or came after they were given up)."""
        self.dropped = 0
        """Frames dropped to keep the backlog short."""

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        sequence = packet.sequence_number
        if self._origin is None:
            self._origin = sequence
        ahead = uint16_add(sequence, -self._origin)
        if ahead >= 0x8000:  # before the next one expected: late (given up on) or a duplicate
            return False, None
        if ahead >= self._capacity:
            present = self._present()
            self._count(lost=ahead - present, dropped=present)
            self._packets = [None] * self._capacity
            self._origin = sequence
        self._packets[sequence % self._capacity] = packet
        waiting = self._slot(0) is None
        if waiting and self._present() < self.wait:
            return False, None
        if waiting:
            self._skip_missing()
        ready = self._ready()
        if ready > 1 + self.backlog:
            self._count(dropped=ready - 1 - self.backlog)
            self._advance(ready - 1 - self.backlog)
        first = self._slot(0)
        assert first is not None
        self._advance(1)
        return False, JitterFrame(data=first._data, timestamp=first.timestamp)  # type: ignore[attr-defined]

    def _slot(self, offset: int) -> RtpPacket | None:
        assert self._origin is not None
        packet: RtpPacket | None = self._packets[uint16_add(self._origin, offset) % self._capacity]
        return packet

    def _present(self) -> int:
        return sum(packet is not None for packet in self._packets)

    def _ready(self) -> int:
        """Frames in sequence from the next one expected."""
        count = 0
        while count < self._capacity and self._slot(count) is not None:
            count += 1
        return count

    def _skip_missing(self) -> None:
        missing = 0
        while self._slot(0) is None:
            missing += 1
            self._advance(1)
        self._count(lost=missing)

    def _count(self, *, lost: int = 0, dropped: int = 0) -> None:
        self.lost += lost
        self.dropped += dropped
        if lost:
            metrics.RTC_INBOUND_PACKETS.labels("lost").inc(lost)
        if dropped:
            metrics.RTC_INBOUND_PACKETS.labels("dropped").inc(dropped)

    def _advance(self, count: int) -> None:
        assert self._origin is not None
        for _ in range(count):
            self._packets[self._origin % self._capacity] = None
            self._origin = uint16_add(self._origin, 1)


def install(receiver: Any) -> bool:
    """Give an aiortc audio receiver an :class:`AudioJitterBuffer` (before any packet
    arrives). False, with a warning, when this aiortc keeps its buffer elsewhere."""
    if not isinstance(getattr(receiver, _RECEIVER_ATTRIBUTE, None), JitterBuffer):
        log.warning("aiortc's receiver has no jitter buffer where expected; keeping its own")
        return False
    setattr(receiver, _RECEIVER_ATTRIBUTE, AudioJitterBuffer())
    return True
