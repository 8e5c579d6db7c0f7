"""Which instance holds which WebRTC call, and relays to it, through Redis.

A WebRTC call lives in the one process whose peer connection carries it; with several
instances behind a load balancer, a hangup or a sideband WebSocket for it may reach any of
them. So:

- **Registry.** The owner writes ``realtalk:call:{call_id}`` → its instance id when the call
  starts (expiring after ``REGISTRATION_TTL_S``, renewed every ``REFRESH_S`` while the call
  lives, deleted when it ends), so a crashed instance's calls vanish on their own.
- **Commands.** Every instance listens on its own channel ``realtalk:instance:{id}``. Another
  instance sends ``hangup`` or ``attach`` there for a call it does not hold.
- **Sideband relay.** ``attach`` makes the owner relay the call both ways: every server event
  of the call is published on ``realtalk:call:{id}:events`` (verbatim JSON text) and every
  message on ``realtalk:call:{id}:client`` is handed to the session as a client event. The
  relaying instance subscribes to the events before it asks, waits for the owner's
  ``attached`` before it accepts the WebSocket, and ends the socket on ``call_ended``. The
  owner stops relaying when the call ends or when a publish reaches no subscriber (every
  sideband left).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from realtalk.session.outbox import Outbox
from realtalk.session.session import RealtimeSession

log = logging.getLogger("realtalk.calls.directory")

REGISTRATION_TTL_S = 30
REFRESH_S = 10
ANSWER_TIMEOUT_S = 5.0
"""How long a relaying instance waits for the owner to start relaying."""
RETRY_S = 1.0
"""Pause before listening again after losing Redis."""


def _control(word: str) -> bytes:
    return json.dumps({"realtalk.relay": word}, separators=(",", ":")).encode()


ATTACHED = _control("attached")
NOT_FOUND = _control("call_not_found")
ENDED = _control("call_ended")
Answer = Literal["attached", "call_not_found", "no_answer"]


class HeldCall(Protocol):
    """What the directory needs of a call this instance holds (``realtime_rtc.Call``)."""

    @property
    def session(self) -> RealtimeSession: ...

    @property
    def finished(self) -> asyncio.Event: ...

    def hang_up(self) -> None: ...


def registry_key(call_id: str) -> str:
    return f"realtalk:call:{call_id}"


def instance_channel(instance_id: str) -> str:
    return f"realtalk:instance:{instance_id}"


def events_channel(call_id: str) -> str:
    return f"realtalk:call:{call_id}:events"


def client_channel(call_id: str) -> str:
    return f"realtalk:call:{call_id}:client"


class CallDirectory:
    """This instance's side of the shared call registry: registers the calls it holds,
    answers other instances' commands for them, and relays to calls held elsewhere."""

    def __init__(self, redis: Redis, calls: Mapping[str, HeldCall]) -> None:
        self.redis = redis
        self.calls = calls
        self.instance_id = "inst_" + secrets.token_hex(8)
        self._relays: set[str] = set()
        self._listening = asyncio.Event()

    # ---- calls this instance holds -------------------------------------------------------
    async def register(self, call_id: str) -> None:
        await self.redis.set(registry_key(call_id), self.instance_id, ex=REGISTRATION_TTL_S)

    async def forget(self, call_id: str) -> None:
        with contextlib.suppress(RedisError):  # the entry expires on its own anyway
            await self.redis.delete(registry_key(call_id))

    async def run(self) -> None:
        """Listen for commands and keep registrations fresh until cancelled (survives Redis
        restarts: it listens again after ``RETRY_S``)."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._refresh())
            while True:
                try:
                    await self._listen(tasks)
                except RedisError as exc:
                    self._listening.clear()
                    log.warning("lost Redis (%s); listening again in %g s", exc, RETRY_S)
                    await asyncio.sleep(RETRY_S)

    async def listening(self) -> None:
        """Wait until this instance receives commands (for start-up ordering)."""
        await self._listening.wait()

    async def _listen(self, tasks: asyncio.TaskGroup) -> None:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(instance_channel(self.instance_id))
            self._listening.set()
            async for message in pubsub.listen():
                if message["type"] != "message":
                    continue
                try:
                    command = json.loads(message["data"])
                    op, call_id = command["op"], str(command["call_id"])
                except (ValueError, KeyError, TypeError):
                    log.warning("ignored a malformed command on %s", instance_channel(""))
                    continue
                call = self.calls.get(call_id)
                if op == "hangup" and call is not None:
                    call.hang_up()
                elif op == "attach":
                    tasks.create_task(self._relay(call_id))
        finally:
            with contextlib.suppress(RedisError):
                await pubsub.aclose()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for call_id in list(self.calls):
                        pipe.set(registry_key(call_id), self.instance_id, ex=REGISTRATION_TTL_S)
                    await pipe.execute()
            except RedisError as exc:
                log.warning("could not renew call registrations: %s", exc)

    async def _relay(self, call_id: str) -> None:
        """Owner side of a sideband held on another instance (one relay per call)."""
        events = events_channel(call_id)
        call = self.calls.get(call_id)
        if call is None:
            await self.redis.publish(events, NOT_FOUND)
            return
        if call_id in self._relays:
            await self.redis.publish(events, ATTACHED)
            return
        self._relays.add(call_id)
        session = call.session
        queue = Outbox()
        session.listeners.append(queue)
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(client_channel(call_id))
            await self.redis.publish(events, ATTACHED)
            jobs = [
                asyncio.ensure_future(self._publish_events(events, queue)),
                asyncio.ensure_future(_pass_client_events(pubsub, session)),
                asyncio.ensure_future(call.finished.wait()),
                asyncio.ensure_future(queue.overflowed.wait()),  # Redis cannot keep up
            ]
            try:
                await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for job in jobs:
                    job.cancel()
                await asyncio.gather(*jobs, return_exceptions=True)
            if call.finished.is_set():
                await self.redis.publish(events, ENDED)
        except Exception as exc:  # one relay failing must not stop the directory
            log.warning("relay for call %s ended: %s", call_id, exc)
        finally:
            with contextlib.suppress(ValueError):
                session.listeners.remove(queue)
            with contextlib.suppress(RedisError):
                await pubsub.aclose()
            self._relays.discard(call_id)

    async def _publish_events(self, channel: str, queue: Outbox) -> None:
        while True:
            text = await queue.get_text()
            if await self.redis.publish(channel, text) == 0:
                return  # every sideband has gone

    # ---- calls held elsewhere ------------------------------------------------------------
    async def owner(self, call_id: str) -> str | None:
        raw = await self.redis.get(registry_key(call_id))
        return raw.decode() if isinstance(raw, bytes) else raw

    async def hang_up(self, call_id: str) -> bool:
        """Ask the instance holding ``call_id`` to end it; False when no instance holds it."""
        owner = await self.owner(call_id)
        if owner is None:
            return False
        command = json.dumps({"op": "hangup", "call_id": call_id})
        return int(await self.redis.publish(instance_channel(owner), command)) > 0

    def relay(self, call_id: str) -> SidebandRelay:
        return SidebandRelay(self, call_id)


async def _pass_client_events(pubsub: PubSub, session: RealtimeSession) -> None:
    async for message in pubsub.listen():
        if message["type"] == "message":
            await session.receive(message["data"])


class SidebandRelay:
    """The relaying side of a sideband WebSocket for a call another instance holds."""

    def __init__(self, directory: CallDirectory, call_id: str) -> None:
        self.directory = directory
        self.call_id = call_id
        self._redis = directory.redis
        self._pubsub = self._redis.pubsub()

    async def open(self) -> Answer:
        """Ask the owner to relay; ``attached`` once it does."""
        owner = await self.directory.owner(self.call_id)
        if owner is None:
            return "call_not_found"
        await self._pubsub.subscribe(events_channel(self.call_id))
        command = json.dumps({"op": "attach", "call_id": self.call_id})
        if await self._redis.publish(instance_channel(owner), command) == 0:
            return "call_not_found"  # its instance is gone; the entry is stale
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                while True:
                    message = await self._pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=ANSWER_TIMEOUT_S
                    )
                    if message is None:
                        continue
                    if message["data"] == ATTACHED:
                        return "attached"
                    if message["data"] == NOT_FOUND:
                        return "call_not_found"
        except TimeoutError:
            return "no_answer"

    async def events(self) -> AsyncIterator[str]:
        """The call's server events as JSON text, until the call ends or its owner vanishes."""
        while True:
            message = await self._pubsub.get_message(
                ignore_subscribe_messages=True, timeout=REFRESH_S
            )
            if message is None:
                if await self.directory.owner(self.call_id) is None:
                    return  # the owner is gone without a word (it crashed)
                continue
            data: Any = message["data"]
            if data == ENDED:
                return
            if data in (ATTACHED, NOT_FOUND):
                continue
            yield data.decode() if isinstance(data, bytes) else str(data)

    async def send(self, raw: str | bytes) -> None:
        await self._redis.publish(client_channel(self.call_id), raw)

    async def aclose(self) -> None:
        with contextlib.suppress(RedisError):
            await self._pubsub.aclose()
