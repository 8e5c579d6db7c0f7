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
from starlette.websockets import WebSocketDisconnect, WebSocketState

from realtalk.app.capacity import OverCapacity
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
OVERFLOW_REASON = "client is not reading its events"
CLOSE_WAIT_S = 10.0


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
    state.live_sessions.add(session)
    log.info("session opened", extra={"session_id": session_id, "generation": generation})
    session.start()
    writer = asyncio.ensure_future(_write(websocket, session))
    reader = asyncio.ensure_future(_read(websocket, session))
    overflow = asyncio.ensure_future(session.outbox.overflowed.wait())
    close_code, close_reason = 1000, ""
    try:
        async with asyncio.timeout(state.settings.session_max_s):
            await asyncio.wait({reader, overflow}, return_when=asyncio.FIRST_COMPLETED)
        if overflow.done():
            log.info("client not reading: closed", extra={"session_id": session_id})
            close_code, close_reason = 1008, OVERFLOW_REASON
        else:
            reader.result()
    except TimeoutError:
        session.emit(
            session.events.error(
                ProtocolError(
                    f"Your session hit the maximum duration of "
                    f"{state.settings.session_max_s} seconds.",
                    "session_expired",
                )
            )
        )
        await _drain(websocket, session)
        await _close(websocket, 1001, "session expired")
    except WebSocketDisconnect:
        pass
    finally:
        for task in (writer, reader, overflow):
            task.cancel()
            await settle(task)
        state.live_sessions.discard(session)
        await session.aclose()
        log.info("session closed", extra={"session_id": session_id})
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
            await websocket.send_text(await session.outbox.get_text())
    except (WebSocketDisconnect, RuntimeError):
        return  # the reader sees the disconnect and ends the session


async def _drain(websocket: WebSocket, session: RealtimeSession) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, TimeoutError):
        async with asyncio.timeout(CLOSE_WAIT_S):
            while not session.outbox.empty():
                await websocket.send_text(session.outbox.get_text_nowait())


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    """Send a close frame; a client that does not read is given ``CLOSE_WAIT_S`` to take it."""
    if websocket.application_state == WebSocketState.CONNECTED and (
        websocket.client_state == WebSocketState.CONNECTED
    ):
        with contextlib.suppress(RuntimeError, TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT_S):
                await websocket.close(code, reason)
