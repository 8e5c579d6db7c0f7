"""Which stage gets the CPU first when stages overlap on a small machine.

On two cores the LLM (two threads, streaming the rest of a reply) and Piper (synthesizing the
piece the listener is about to hear) slow each other down: measured here, a short piece took
67 ms alone and 200 ms while the LLM generated. Speech that is about to play is the more
urgent work, so TTS marks itself as foreground and the LLM waits between tokens while it is
(bounded, so a stuck synthesis cannot stall a reply).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

YIELD_AT_MOST_S = 0.5
"""Longest a background stage waits for the foreground before going on anyway."""
STOP_POLL_S = 0.02
"""How often a waiting background stage that can be stopped looks at its stop event."""


class Foreground:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._clear = threading.Event()
        self._clear.set()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Run the enclosed work as foreground."""
        with self._lock:
            self._holders += 1
            self._clear.clear()
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    self._clear.set()

    def yield_to(self, stop: threading.Event | None = None) -> None:
        """Background work calls this between steps: returns at once unless foreground work
        runs, then when it ends (or after ``YIELD_AT_MOST_S``, or as soon as ``stop`` is
        set)."""
        if stop is None:
            self._clear.wait(YIELD_AT_MOST_S)
            return
        deadline = time.monotonic() + YIELD_AT_MOST_S
        while not stop.is_set() and not self._clear.wait(STOP_POLL_S):
            if time.monotonic() >= deadline:
                return


FOREGROUND = Foreground()
"""Shared by the stages of this process."""
