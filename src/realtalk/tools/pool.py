"""The threads that run sync tools, apart from the model stages' threads.

A tool that never returns cannot be stopped (Python has no way to kill a thread); its call
times out for the model, but its thread stays taken until the function returns. So tools get
a bounded pool of their own: a hung tool costs only its own slot, never the threads that
transcription, the LLM and speech run on, and once every slot is taken a new call fails at once
with :class:`ToolPoolBusy` instead of waiting behind the hung ones.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

DEFAULT_WORKERS = 8


class ToolPoolBusy(Exception):
    """Every tool thread is taken (by calls still running, or hung past their timeout)."""

    def __init__(self, workers: int) -> None:
        super().__init__(
            f"The tool pool is busy: all {workers} tool threads are taken by calls that are "
            "still running. Try again later."
        )
        self.workers = workers


class ToolPool:
    def __init__(self, workers: int = DEFAULT_WORKERS) -> None:
        self.workers = workers
        self._executor: ThreadPoolExecutor | None = None
        self._taken = 0
        self._lock = threading.Lock()

    @property
    def taken(self) -> int:
        """Threads running a tool now (a timed-out call's thread until its function returns)."""
        return self._taken

    async def run(self, function: Callable[..., Any], /, **kwargs: Any) -> Any:
        """Run ``function(**kwargs)`` on a tool thread; raises :class:`ToolPoolBusy` when none
        is free. Cancelling the caller does not free the slot: the function's return does."""
        with self._lock:
            if self._taken >= self.workers:
                raise ToolPoolBusy(self.workers)
            self._taken += 1
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, "realtalk-tool")
            executor = self._executor
        try:
            future = executor.submit(lambda: function(**kwargs))
        except BaseException:
            self._free(None)
            raise
        future.add_done_callback(self._free)  # on return, or on cancel before it ran
        return await asyncio.wrap_future(future)

    def _free(self, _: Future[Any] | None) -> None:
        with self._lock:
            self._taken -= 1

    def close(self) -> None:
        """Take no more calls; running ones finish on their threads."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
