"""An in-process client for a ``RealtimeSession``, for tests that drive a session directly.

The client sends events as JSON to ``session.receive`` and reads ``session.outbox``; every
event the session emits is validated against the openai package's types for its generation.
``Sessions`` starts sessions for one test and, at its end, closes them and checks that none
left a task behind.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np

from realtalk.core.config import SessionConfig
from realtalk.pipeline.models import Models
from realtalk.session.session import RealtimeSession
from realtalk.tools import ToolRegistry
from tests.realtime_helpers import validate_event


class Client:
    """Drives a session in-process and validates every event it sends."""

    def __init__(self, session: RealtimeSession, limit_s: float = 5.0) -> None:
        self.session = session
        self.limit_s = limit_s
        """How long ``until`` waits when not told."""
        self.seen: list[dict[str, Any]] = []
        self._counter = 0

    async def send(self, event: dict[str, Any]) -> str:
        self._counter += 1
        event_id: str = event.setdefault("event_id", f"evt_{self._counter}")
        await self.session.receive(json.dumps(event))
        return event_id

    async def user_text(self, words: str) -> str:
        """A user text message (``conversation.item.create``); its event id."""
        return await self.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": words}],
                },
            }
        )

    async def say(self, words: str, **response: Any) -> list[dict[str, Any]]:
        """A user text message and ``response.create``; the events up to ``response.done``."""
        await self.user_text(words)
        await self.send({"type": "response.create", "response": response})
        return await self.until("response.done", 120)

    async def audio(self, samples: np.ndarray, chunk_ms: int = 100) -> None:
        """24 kHz samples as ``input_audio_buffer.append`` events of ``chunk_ms`` each."""
        step = 24 * chunk_ms
        for start in range(0, len(samples), step):
            await self.send(
                {
                    "type": "input_audio_buffer.append",
                    "audio": base64.b64encode(samples[start : start + step].tobytes()).decode(),
                }
            )
            await asyncio.sleep(0)

    async def until(self, kind: str, limit_s: float | None = None) -> list[dict[str, Any]]:
        """Events up to and including the next ``kind``."""
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(self.limit_s if limit_s is None else limit_s):
            while True:
                event = await self.session.outbox.get()
                validate_event(event, self.session.generation)
                got.append(event)
                self.seen.append(event)
                if event["type"] == kind:
                    return got

    def drain(self) -> list[dict[str, Any]]:
        """The events already sent, without waiting."""
        got = []
        while not self.session.outbox.empty():
            event = self.session.outbox.get_nowait()
            validate_event(event, self.session.generation)
            got.append(event)
        self.seen.extend(got)
        return got


class Sessions:
    """The sessions one test starts; ``aclose`` closes them and checks none left a task."""

    def __init__(self, limit_s: float = 5.0) -> None:
        self.limit_s = limit_s
        """Each client's ``until`` limit."""
        self._sessions: list[RealtimeSession] = []

    def start(
        self,
        config: SessionConfig,
        models: Models,
        generation: str = "ga",
        session_id: str = "sess_test",
        tools: ToolRegistry | None = None,
    ) -> Client:
        session = RealtimeSession(
            config=config,
            generation=generation,  # type: ignore[arg-type]
            models=models,
            session_id=session_id,
            expires_at=0,
            tools=tools,
        )
        session.start()
        self._sessions.append(session)
        return Client(session, self.limit_s)

    async def aclose(self) -> None:
        for session in self._sessions:
            await session.aclose()
            assert not session._tasks


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]
