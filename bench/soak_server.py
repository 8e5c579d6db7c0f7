"""``realtalk serve`` with an event-loop probe, for ``soak.py`` (run in the server process).

The app is wrapped in :class:`LoopProbe`: a task on uvicorn's loop sleeps 10 ms over and over
and records how late each wake-up is, which is how long any session or request would have
waited for the loop at that moment. ``GET /_soak/loop`` answers the worst delay since the last
read and how many wake-ups were over 100 ms late, and resets both. Everything else is exactly
what ``realtalk serve`` runs (the CLI itself is called), and nothing else is imported here, so
the server's RSS is its own.

Usage: python bench/soak_server.py PORT  (with the usual REALTALK_* environment)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

PROBE_PATH = "/_soak/loop"
PROBE_PERIOD_S = 0.01
LONG_STALL_S = 0.1


class LoopProbe:
    """ASGI wrapper measuring the event loop's wake-up delays; see the module docstring."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app
        self.state = getattr(app, "state", None)
        """The wrapped app's state: the CLI's drain reads ``app.state.realtalk``."""
        self.worst_s = 0.0
        self.long_stalls = 0

    async def _watch(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(PROBE_PERIOD_S)
            late = time.perf_counter() - start - PROBE_PERIOD_S
            self.worst_s = max(self.worst_s, late)
            self.long_stalls += late > LONG_STALL_S

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            watcher = asyncio.create_task(self._watch())  # lives as long as the server
            try:
                await self.app(scope, receive, send)
            finally:
                watcher.cancel()
            return
        if scope["type"] == "http" and scope["path"] == PROBE_PATH:
            body = json.dumps({"worst_ms": self.worst_s * 1000, "over_100ms": self.long_stalls})
            self.worst_s, self.long_stalls = 0.0, 0
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body.encode()})
            return
        await self.app(scope, receive, send)


def main(port: int) -> int:
    import realtalk.app.server as server_module
    from realtalk import cli

    create_app = server_module.create_app

    def create_probed_app(*args: Any, **kwargs: Any) -> Any:
        return LoopProbe(create_app(*args, **kwargs))

    server_module.create_app = create_probed_app  # cli's serve looks it up when it runs
    return cli.main(["serve", "--host", "127.0.0.1", "--port", str(port)])


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
