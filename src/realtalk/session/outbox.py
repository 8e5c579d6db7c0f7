"""A session's server events on their way to one transport: serialized once, bounded in bytes.

A client that stops reading must not make the server hold every event it is sent: past
:data:`MAX_PENDING_BYTES` waiting, the outbox takes no more and sets :attr:`Outbox.overflowed`,
and the transport closes the connection (WebSocket code 1008).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

MAX_PENDING_BYTES = 16 * 1024 * 1024
"""Serialized events waiting for a slow or stalled client, at most (about four minutes of
``pcm16`` audio deltas ahead of playback; one larger event is let through when none waits)."""


def serialize(event: dict[str, Any]) -> str:
    """A server event as the wire carries it (compact ASCII JSON, so characters are bytes)."""
    return json.dumps(event, separators=(",", ":"))


class Outbox:
    def __init__(self, limit_bytes: int = MAX_PENDING_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self.pending_bytes = 0
        self.overflowed = asyncio.Event()
        """Set when the client fell ``limit_bytes`` behind; nothing is queued after it."""
        self._queue: asyncio.Queue[str] = asyncio.Queue()

    def put(self, text: str) -> None:
        """Queue one serialized event (see :func:`serialize`)."""
        if self.overflowed.is_set():
            return
        if self.pending_bytes and self.pending_bytes + len(text) > self.limit_bytes:
            self.overflowed.set()
            return
        self.pending_bytes += len(text)
        self._queue.put_nowait(text)

    async def get_text(self) -> str:
        """The next event's wire text (what transports send)."""
        return self._taken(await self._queue.get())

    def get_text_nowait(self) -> str:
        return self._taken(self._queue.get_nowait())

    async def get(self) -> dict[str, Any]:
        """The next event as an object (for tests and tools that inspect events)."""
        event: dict[str, Any] = json.loads(await self.get_text())
        return event

    def get_nowait(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(self.get_text_nowait())
        return event

    def empty(self) -> bool:
        return self._queue.empty()

    def task_done(self) -> None:
        """The transport has sent the event it last took (see :meth:`join`)."""
        self._queue.task_done()

    async def join(self) -> None:
        """Until every event queued so far has been taken and marked :meth:`task_done`."""
        await self._queue.join()

    def _taken(self, text: str) -> str:
        self.pending_bytes -= len(text)
        return text
