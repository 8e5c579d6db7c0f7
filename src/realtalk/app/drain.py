"""Graceful drain: what SIGTERM does to a running instance.

1. New sessions are refused (503 ``server_shutting_down`` with ``Retry-After``; ``/readyz``
   answers 503), while the listener stays open: a load balancer sees the instance leave its
   pool, and hangups, sidebands and health checks for the calls still here keep working.
2. Live sessions go on for up to ``REALTALK_DRAIN_S``; the process leaves as soon as the last
   one ends by itself.
3. Those still open then get an ``error`` event (``server_shutting_down``) after every event
   already queued for them, and a clean close: WebSocket close 1001, or the call's data
   channel, then its peer connection.
4. uvicorn then shuts down as usual (lifespan shutdown included) and the process exits 0.

uvicorn on its own would close every WebSocket at once with 1012 and re-raise SIGTERM after
shutdown (exit status 143), so :class:`DrainingServer` takes the first SIGTERM itself. A second
SIGTERM cuts the wait short; SIGINT (Ctrl-C) stops at once, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from types import FrameType

import uvicorn

from realtalk.app.state import ServerState
from realtalk.protocol.errors import ProtocolError
from realtalk.session.responses import settle

log = logging.getLogger("realtalk.drain")

POLL_S = 0.1
CLOSE_S = 10.0
"""How long the ended sessions get to send their last events and close."""


def shutting_down() -> ProtocolError:
    """The error event a session still open at the end of the drain receives."""
    return ProtocolError(
        "The server is restarting and has ended this session; connect again to continue.",
        "server_shutting_down",
        type="server_error",
    )


async def drain(state: ServerState, drain_s: float, hurry: asyncio.Event) -> None:
    """Refuse new sessions, wait for live ones (up to ``drain_s``, or until ``hurry``), then
    end the rest."""
    state.slots.draining = True
    log.info("draining: %d live sessions, up to %g s", len(state.live_sessions), drain_s)
    await _until_no_session(state, drain_s, hurry)
    if not state.live_sessions:
        log.info("drained: no session left")
        return
    log.info("drain time over: ending %d sessions", len(state.live_sessions))
    state.ending.set()  # WebSocket sessions (app.realtime_ws)
    for call in list(state.calls.values()):
        call.end_with(shutting_down(), "server_shutting_down")
    await _until_no_session(state, CLOSE_S, asyncio.Event())


async def _until_no_session(state: ServerState, limit_s: float, hurry: asyncio.Event) -> None:
    """Until no session is live (checked every ``POLL_S``), ``limit_s`` is over or ``hurry``
    is set."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while state.live_sessions and not hurry.is_set() and (left := deadline - loop.time()) > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hurry.wait(), min(POLL_S, left))


class DrainingServer(uvicorn.Server):
    """uvicorn's server with the drain above on SIGTERM."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self._state = state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()

    async def serve(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        try:
            await super().serve(sockets)  # type: ignore[arg-type]
        finally:
            if self._drain is not None:
                self._drain.cancel()
                await settle(self._drain)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self.should_exit or self._loop is None:
            super().handle_exit(sig, frame)
            return
        # A signal handler runs between two bytecodes of the loop: hand over, touch nothing.
        self._loop.call_soon_threadsafe(self._on_sigterm)

    def _on_sigterm(self) -> None:
        if self._drain is not None:
            log.info("second SIGTERM: ending the sessions now")
            self._hurry.set()
            return
        self._drain = asyncio.ensure_future(self._run_drain())

    async def _run_drain(self) -> None:
        try:
            await drain(self._state, self._state.settings.drain_s, self._hurry)
        finally:
            self.should_exit = True  # uvicorn's main loop sees it within 0.1 s
