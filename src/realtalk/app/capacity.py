"""How many Realtime sessions one instance holds: in all, and per ephemeral key.

A WebSocket session or a WebRTC call takes a slot before its key is redeemed (so a refusal
spends no key) and gives it back when it ends. The standard key counts only against the
instance's cap: it is the operator's own credential, and a backend opens a call with it for
every browser it serves. An ephemeral key (a GA key opens sessions until it expires) also counts
against ``REALTALK_MAX_SESSIONS_PER_KEY``, so one leaked key cannot take the whole instance.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

RETRY_AFTER_S = 10
"""What a refusal tells the client to wait (sessions last minutes; there is no queue)."""
SESSIONS_PER_CORE = 50
"""A listening session costs ~0.5 % of a core (VAD, Opus, pacing); leaves room for replies."""
MB_PER_SESSION = 25
"""Idle: ~0.2 MB; talking: audio buffers and the turn's working arrays. Generous on purpose."""
MODELS_RESERVE_MB = 2048
"""The shared models (LLM, Whisper, Piper, VAD, Smart Turn) and the runtimes around them."""


class OverCapacity(Exception):
    """Refused: the instance, or the key, holds as many sessions as it may."""

    def __init__(self, status: int, code: str, message: str, type: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.type = status, code, message, type
        self.headers = {"Retry-After": str(RETRY_AFTER_S)}

    def body(self) -> dict[str, object]:
        return {
            "error": {"type": self.type, "code": self.code, "message": self.message, "param": None}
        }


class Slot:
    """One session's place; ``release`` may be called more than once."""

    def __init__(self, slots: SessionSlots, key_digest: str | None) -> None:
        self._slots: SessionSlots | None = slots
        self._key_digest = key_digest

    def release(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots._release(self._key_digest)


class SessionSlots:
    """The instance's session places; :meth:`left` is what ``/readyz`` reports."""

    def __init__(self, total: int, per_key: int) -> None:
        self.total = total
        self.per_key = per_key
        self.taken = 0
        self.draining = False
        """Set on SIGTERM (``app.drain``): every new session is refused."""
        self._by_key: dict[str, int] = {}
        """Open sessions by the SHA-256 of their key (the keys themselves are not kept)."""

    def take(self, key: str | None) -> Slot:
        """A slot for a session opened with ``key`` (None: the standard key), or
        :class:`OverCapacity`."""
        self.check(key)
        digest = _digest(key)
        self.taken += 1
        if digest is not None:
            self._by_key[digest] = self._by_key.get(digest, 0) + 1
        return Slot(self, digest)

    def check(self, key: str | None) -> None:
        """Raise :class:`OverCapacity` where ``take`` would, taking nothing."""
        if self.draining:
            raise OverCapacity(
                503,
                "server_shutting_down",
                "This server is restarting and takes no new sessions; connect again "
                f"in {RETRY_AFTER_S} seconds.",
                "server_error",
            )
        if self.taken >= self.total:
            raise OverCapacity(
                503,
                "max_sessions_reached",
                f"This server holds its limit of {self.total} concurrent sessions; "
                f"try again in {RETRY_AFTER_S} seconds.",
                "server_error",
            )
        digest = _digest(key)
        if digest is not None and self._by_key.get(digest, 0) >= self.per_key:
            raise OverCapacity(
                429,
                "max_sessions_per_key_reached",
                f"This key already has {self.per_key} open sessions, the limit per key; "
                "close one first.",
                "rate_limit_error",
            )

    def left(self) -> int:
        """Places free now (0 while draining)."""
        return 0 if self.draining else max(0, self.total - self.taken)

    def _release(self, digest: str | None) -> None:
        self.taken -= 1
        if digest is not None:
            left = self._by_key.pop(digest) - 1
            if left:
                self._by_key[digest] = left


def _digest(key: str | None) -> str | None:
    return None if key is None else hashlib.sha256(key.encode()).hexdigest()


def machine_max_sessions() -> int:
    """The default cap: ``min(50 × cores, (available memory − 2 GiB) / 25 MB)``, at least 1.

    Cores are those this process may run on; memory is MemAvailable, or the cgroup's limit
    when that is lower (a container)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    by_cpu = SESSIONS_PER_CORE * cores
    memory_mb = _available_memory_mb()
    if memory_mb is None:
        return by_cpu
    return max(1, min(by_cpu, (memory_mb - MODELS_RESERVE_MB) // MB_PER_SESSION))


def _available_memory_mb() -> int | None:
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) // 1024)
    except (OSError, ValueError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="ascii").strip()
        if limit.isdigit():
            found.append(int(limit) // (1024 * 1024))
    except OSError:
        pass
    return min(found) if found else None
