"""``GET /v1/realtime`` upgraded to a WebSocket: the Realtime protocol over WebSocket.

Auth: ``Authorization: Bearer <standard or ephemeral key>``, or for browsers the subprotocols
``realtime`` + ``openai-insecure-api-key.<key>`` (+ ``openai-beta.realtime-v1``). Bad keys are
refused before the upgrade with a 401 and a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Literal

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from realtalk import metrics
from realtalk.app.call_directory import CallDirectory
from realtalk.app.capacity import OverCapacity
from realtalk.app.drain import shutting_down
from realtalk.app.engine_keys import with_intent
from realtalk.app.state import ServerState
from realtalk.core.config import SessionConfig
from realtalk.core.items import new_id
from realtalk.protocol.errors import ProtocolError
from realtalk.session.keys import KeyRejected
from realtalk.session.outbox import Outbox
from realtalk.session.responses import settle
from realtalk.session.session import RealtimeSession

log = logging.getLogger("realtalk.ws")
router = APIRouter()

KEY_PROTOCOL = "openai-insecure-api-key."
BETA_PROTOCOL = "openai-beta.realtime-v1"
FLUSH_S = 5.0
"""A session ending on the server's side sends what is queued for this long at most."""
OVERFLOW_REASON = "client is not reading its events"
CLOSE_WAIT_S = 10.0
"""A client that does not read is given this long to take the close frame."""


def _offered_protocols(websocket: WebSocket) -> list[str]:
    header = websocket.headers.get("sec-websocket-protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


def _credential(websocket: WebSocket, protocols: list[str]) -> str | None:
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for protocol in protocols:
        if protocol.startswith(KEY_PROTOCOL):
            return protocol[len(KEY_PROTOCOL) :]
    return None


async def _deny(
    websocket: WebSocket,
    status: int,
    code: str,
    message: str,
    *,
    type: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> None:
    body = {"error": {"type": type, "code": code, "message": message, "param": None}}
    log.debug("upgrade refused: %d %s", status, code)  # uvicorn logs the refusal's one line
    await websocket.send_denial_response(JSONResponse(body, status_code=status, headers=headers))


@router.websocket("/v1/realtime")
async def realtime_websocket(websocket: WebSocket) -> None:
    state: ServerState = websocket.app.state.realtalk
    protocols = _offered_protocols(websocket)
    beta_header = "realtime=v1" in websocket.headers.get("openai-beta", "")
    generation: Literal["beta", "ga"] = (
        "beta" if beta_header or BETA_PROTOCOL in protocols else "ga"
    )
    key = _credential(websocket, protocols)
    if key is None:
        await _deny(
            websocket,
            401,
            "missing_api_key",
            "No API key: send 'Authorization: Bearer <key>' or the subprotocol "
            "'openai-insecure-api-key.<key>'.",
        )
        return
    call_id = websocket.query_params.get("call_id")
    if call_id is not None:
        await _attach_to_call(websocket, state, key, call_id, protocols)
        return
    unavailable = state.engine_unavailable()
    if unavailable is not None or state.models is None:
        # Checked before a key is redeemed, so a key is not spent on a refusal.
        await _deny(websocket, 503, "engine_not_ready", unavailable or "The engine is not ready.")
        return
    try:
        slot = state.slots.take(None if state.is_standard_key(key) else key)
    except OverCapacity as refusal:
        metrics.SESSIONS_REFUSED.labels(refusal.code).inc()
        await _deny(
            websocket,
            refusal.status,
            refusal.code,
            refusal.message,
            type=refusal.type,
            headers=refusal.headers,
        )
        return
    try:
        await _open_session(websocket, state, key, protocols, generation)
    finally:
        slot.release()


async def _open_session(
    websocket: WebSocket,
    state: ServerState,
    key: str,
    protocols: list[str],
    generation: Literal["beta", "ga"],
) -> None:
    assert state.models is not None
    config: SessionConfig
    if state.is_standard_key(key):
        config = state.default_session()
        session_id = new_id("sess")
    else:
        try:
            record = await state.minter.redeem(key)
        except KeyRejected as exc:
            await _deny(websocket, 401, "invalid_api_key", exc.reason)
            return
        config, session_id = record.config, record.session_id
    expires_at = int(time.time()) + state.settings.session_max_s
    model = websocket.query_params.get("model")
    if model:
        config = config.with_changes(model=model)
    config = with_intent(config, websocket.query_params.get("intent"))

    await websocket.accept(subprotocol="realtime" if "realtime" in protocols else None)
    session = RealtimeSession(
        config=config,
        generation=generation,
        models=state.models,
        session_id=session_id,
        expires_at=expires_at,
        tools=state.tools,
    )
    session.recorder = state.recorder(session.conversation_id, session_id, "websocket", generation)
    state.live_sessions.add(session)
    log.info("session opened", extra={"session_id": session_id, "generation": generation})
    session.start()
    metrics.session_started("websocket")
    reason = "client_closed"
    writer = asyncio.ensure_future(_write(websocket, session))
    reader = asyncio.ensure_future(_read(websocket, session))
    ending = asyncio.ensure_future(state.ending.wait())
    overflow = asyncio.ensure_future(session.outbox.overflowed.wait())
    close_code, close_reason = 1000, ""
    try:
        max_s = state.settings.session_max_s
        done, _ = await asyncio.wait(
            {reader, ending, overflow}, timeout=max_s, return_when=asyncio.FIRST_COMPLETED
        )
        if reader in done:
            reader.result()
        elif overflow in done:
            log.info("client not reading: closed", extra={"session_id": session_id})
            reason, close_code, close_reason = "client_not_reading", 1008, OVERFLOW_REASON
        else:
            if ending in done:
                reason, error, why = "server_shutting_down", shutting_down(), "server restarting"
            else:
                message = f"Your session hit the maximum duration of {max_s} seconds."
                reason, why = "session_expired", "session expired"
                error = ProtocolError(message, "session_expired")
            session.emit(session.events.error(error))
            await _flush(session, writer)
            await _close(websocket, 1001, why)
    except WebSocketDisconnect:
        pass
    finally:
        for task in (reader, ending, overflow, writer):
            task.cancel()
            with contextlib.suppress(Exception):  # a dropped socket is an ordinary end
                await settle(task)
        state.live_sessions.discard(session)
        await session.aclose()
        metrics.session_ended("websocket", reason)
        session.recorder.close(reason)
        log.info("session closed", extra={"session_id": session_id, "reason": reason})
        await _close(websocket, close_code, close_reason)


async def _attach_to_call(
    websocket: WebSocket, state: ServerState, key: str, call_id: str, protocols: list[str]
) -> None:
    """GA sideband: a backend (standard key) follows a WebRTC call's events and sends its own
    client events into it, e.g. to run tools on the server while the browser talks."""
    if not state.is_standard_key(key):
        await _deny(
            websocket,
            401,
            "invalid_api_key",
            "Attaching to a call needs the engine's standard key.",
        )
        return
    call = state.calls.get(call_id)
    if call is None and state.directory is not None:
        await _relay_to_call(websocket, state.directory, call_id, protocols)
        return
    if call is None:
        await _deny(websocket, 404, "call_not_found", f"No call with id '{call_id}'.")
        return
    session: RealtimeSession = call.session
    await websocket.accept(subprotocol="realtime" if "realtime" in protocols else None)
    events = Outbox()
    session.listeners.append(events)

    async def forward() -> None:
        try:
            while True:
                await websocket.send_text(await events.get_text())
        except (WebSocketDisconnect, RuntimeError):
            return

    writer = asyncio.ensure_future(forward())
    reader = asyncio.ensure_future(_read(websocket, session))
    ended = asyncio.ensure_future(call.finished.wait())
    overflow = asyncio.ensure_future(events.overflowed.wait())
    try:
        await asyncio.wait({reader, ended, overflow}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (writer, reader, ended, overflow):
            task.cancel()
            with contextlib.suppress(Exception):  # a dropped socket is an ordinary end
                await settle(task)
        with contextlib.suppress(ValueError):
            session.listeners.remove(events)
        overflowed = events.overflowed.is_set()
        await _close(websocket, *((1008, OVERFLOW_REASON) if overflowed else (1000, "")))


async def _relay_to_call(
    websocket: WebSocket, directory: CallDirectory, call_id: str, protocols: list[str]
) -> None:
    """The sideband of a call another instance holds, relayed through Redis both ways."""
    relay = directory.relay(call_id)
    try:
        try:
            answer = await relay.open()
        except RedisError as exc:
            log.error("sideband relay for %s: Redis failed: %s", call_id, exc)
            answer = "no_answer"
        if answer == "call_not_found":
            await _deny(websocket, 404, "call_not_found", f"No call with id '{call_id}'.")
            return
        if answer == "no_answer":
            await _deny(
                websocket,
                503,
                "call_unreachable",
                f"The instance holding call '{call_id}' did not answer; try again.",
                type="server_error",
            )
            return
        await websocket.accept(subprotocol="realtime" if "realtime" in protocols else None)

        async def forward() -> None:
            async for text in relay.events():
                await websocket.send_text(text)

        async def back() -> None:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                raw = message.get("text")
                await relay.send(raw if raw is not None else message.get("bytes") or b"")

        jobs = {asyncio.ensure_future(forward()), asyncio.ensure_future(back())}
        try:
            await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for job in jobs:
                job.cancel()
                with contextlib.suppress(Exception):  # a dropped socket or Redis: the end
                    await settle(job)
        await _close(websocket, 1000, "")
    finally:
        await relay.aclose()


async def _read(websocket: WebSocket, session: RealtimeSession) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        await session.receive(raw)


async def _write(websocket: WebSocket, session: RealtimeSession) -> None:
    try:
        while True:
            text = await session.outbox.get_text()
            try:
                await websocket.send_text(text)
            finally:
                session.outbox.task_done()
    except (WebSocketDisconnect, RuntimeError):
        return  # the reader sees the disconnect and ends the session


async def _flush(session: RealtimeSession, writer: asyncio.Future[None]) -> None:
    """Until the writer has sent every event queued so far (or the socket is gone)."""
    sent = asyncio.ensure_future(session.outbox.join())
    await asyncio.wait({sent, writer}, timeout=FLUSH_S, return_when=asyncio.FIRST_COMPLETED)
    sent.cancel()
    await settle(sent)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    """Send a close frame; a client that does not read is given ``CLOSE_WAIT_S`` to take it."""
    if websocket.application_state == WebSocketState.CONNECTED and (
        websocket.client_state == WebSocketState.CONNECTED
    ):
        with contextlib.suppress(RuntimeError, TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT_S):
                await websocket.close(code, reason)
