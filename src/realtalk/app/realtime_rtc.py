"""WebRTC signalling, as OpenAI's Realtime API does it.

- beta ``POST /v1/realtime?model=…``: offer SDP in the body, ``Authorization: Bearer ek_…``;
  the answer SDP comes back (beta event names on the data channel).
- GA ``POST /v1/realtime/calls``: raw SDP with an ephemeral key, or ``multipart/form-data``
  with ``sdp`` and ``session`` parts and the standard key (a backend starting a call for a
  browser); ``201 Created``, ``Location: /v1/realtime/calls/rtc_…`` (GA event names).
- ``POST /v1/realtime/calls/{call_id}/hangup`` ends a call (on any instance sharing Redis:
  ``app.call_directory`` relays it to the instance holding the call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from realtalk import metrics
from realtalk.app.capacity import OverCapacity, Slot
from realtalk.app.engine_keys import bearer_token, with_intent
from realtalk.app.errors import HTTPError, parse_json_part
from realtalk.app.state import ServerState
from realtalk.audio.pcm import StreamResampler
from realtalk.core.config import SessionConfig
from realtalk.core.items import new_id
from realtalk.protocol.errors import ProtocolError
from realtalk.protocol.sessions import parse_session
from realtalk.records.audio import RATE as RECORD_RATE
from realtalk.rtc.peer import BadOffer, IceServer, RealtimePeer
from realtalk.session.keys import KeyRejected
from realtalk.session.session import RealtimeSession

log = logging.getLogger("realtalk.calls")
router = APIRouter(prefix="/v1/realtime")
MAX_SDP_BYTES = 64 * 1024


class Call:
    """A WebRTC peer and the Realtime session it carries, ended together."""

    def __init__(
        self,
        state: ServerState,
        config: SessionConfig,
        session_id: str,
        generation: Literal["beta", "ga"],
        slot: Slot,
    ) -> None:
        assert state.models is not None
        self.call_id = "rtc_" + secrets.token_hex(16)
        self.state = state
        self.slot = slot
        self.peer = RealtimePeer(
            ice_servers=[
                IceServer(s["urls"], s.get("username"), s.get("credential"))
                for s in state.settings.ice_servers
            ],
            on_audio=self._on_audio,
            on_message=self._on_message,
            on_playout=self._on_playout,
            on_ended=self._on_ended,
        )
        max_s = state.settings.session_max_s
        self.session = RealtimeSession(
            config=config,
            generation=generation,
            models=state.models,
            session_id=session_id,
            expires_at=int(time.time()) + max_s,
            transport="webrtc",
            audio_output=self.peer.output,
            tools=state.tools,
        )
        self.session.recorder = state.recorder(
            self.session.conversation_id, session_id, "webrtc", generation
        )
        # The record's agent track: the frames as they leave, resampled as one stream (not
        # 20 ms pieces each on their own, whose edges would click).
        to_record = StreamResampler(self.peer.output.rate, RECORD_RATE)
        self.peer.output.on_sent = lambda samples: self.session.recorder.audio(
            "agent", to_record.push(samples), RECORD_RATE
        )
        self._inbox: asyncio.Queue[str | bytes] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []
        self._ended = asyncio.Event()
        self._closed = False
        self._started = False
        self._farewell: ProtocolError | None = None
        """The error event the call ends with (expired, or the server shutting down)."""
        self.end_reason = ""
        """Why the call ended (the metrics' ``reason``)."""
        self.finished = asyncio.Event()
        """Set once the call is fully closed (sideband sockets end with it)."""
        self.answer_sdp = ""

    async def start(self, offer_sdp: str) -> str:
        answer = await self.peer.answer(offer_sdp)
        self.session.start()
        self._started = True
        metrics.session_started("webrtc")
        self._tasks = [
            asyncio.ensure_future(self._read()),
            asyncio.ensure_future(self._write()),
            asyncio.ensure_future(self._lifetime()),
        ]
        return answer

    def _on_audio(self, samples: Any) -> None:
        if not self._closed:
            self.session.push_audio(samples)

    def _on_message(self, message: str | bytes) -> None:
        self._inbox.put_nowait(message)

    def _on_playout(self, what: str, response_id: str) -> None:
        self.session.emit(self.session.events.output_audio_buffer(what, response_id))
        if what == "stopped":
            self.session.playout_stopped()

    def _on_ended(self, reason: str) -> None:
        log.info("call %s: %s", self.call_id, reason, extra=self._ids())
        self.end_reason = self.end_reason or "peer_closed"
        self._ended.set()

    async def _read(self) -> None:
        while True:
            await self.session.receive(await self._inbox.get())

    async def _write(self) -> None:
        while True:
            self.peer.send(await self.session.outbox.get_text())

    async def _lifetime(self) -> None:
        settings = self.state.settings
        max_s, connect_s = settings.session_max_s, settings.call_connect_timeout_s
        deadline = asyncio.get_running_loop().time() + max_s
        if not await self._connects(min(connect_s, max_s)):
            if not self._ended.is_set():
                log.info(
                    "call %s: the peer did not connect within %g s",
                    self.call_id,
                    connect_s,
                    extra=self._ids(),
                )
                self.end_reason = "connect_timeout"
            await self.close()
            return
        try:
            await asyncio.wait_for(
                self._ended.wait(), timeout=deadline - asyncio.get_running_loop().time()
            )
        except TimeoutError:
            message = f"Your session hit the maximum duration of {max_s} seconds."
            self.end_with(ProtocolError(message, "session_expired"), "session_expired")
        if self._farewell is not None:
            self.session.emit(self.session.events.error(self._farewell))
            await asyncio.sleep(0.25)  # let the error leave on the channel
        await self.close()

    async def _connects(self, limit_s: float) -> bool:
        """Whether the peer connects within ``limit_s`` (not when the call ends first)."""
        waits = [asyncio.ensure_future(e.wait()) for e in (self.peer.connected, self._ended)]
        try:
            await asyncio.wait(waits, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return self.peer.connected.is_set() and not self._ended.is_set()

    def _ids(self) -> dict[str, str]:
        """A log record's structured fields for this call."""
        return {"call_id": self.call_id, "session_id": self.session.session_id}

    def hang_up(self) -> None:
        self.end_reason = self.end_reason or "hangup"
        self._ended.set()

    def end_with(self, error: ProtocolError, reason: str) -> None:
        """End the call with ``error`` on its data channel first."""
        if not self._ended.is_set():
            self._farewell, self.end_reason = error, reason
        self._ended.set()

    async def close(self) -> None:
        """End the call: session, tasks, tracks and peer connection."""
        if self._closed:
            return
        self._closed = True
        if self.state.calls.pop(self.call_id, None) is not None and self.state.directory:
            await self.state.directory.forget(self.call_id)
        self.state.live_sessions.discard(self)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        for task in self._tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.session.aclose()
        await self.peer.close()
        self.slot.release()
        if self._started:
            metrics.session_ended("webrtc", self.end_reason or "closed")
        self.session.recorder.close(self.end_reason or "closed")
        self.finished.set()
        log.info("call %s closed", self.call_id, extra=self._ids())


async def _read_sdp(request: Request) -> str:
    body = await request.body()
    if len(body) > MAX_SDP_BYTES:
        raise HTTPError(400, "The offer SDP is too large.", code="invalid_sdp")
    try:
        sdp = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(400, "The offer SDP is not UTF-8 text.", code="invalid_sdp") from None
    if not sdp.lstrip().startswith("v=0"):
        raise HTTPError(
            400, "The body is not an SDP offer (it must start with 'v=0').", code="invalid_sdp"
        )
    return sdp


async def _part_text(part: UploadFile | str, name: str) -> str:
    if not isinstance(part, UploadFile):
        return part
    try:
        return (await part.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(
            400, f"The '{name}' part is not UTF-8 text.", code="invalid_value", param=name
        ) from None


async def _ephemeral(state: ServerState, request: Request) -> tuple[SessionConfig, str, str | None]:
    """The session a key opens: its config, its id, and the key to count it against (None
    for the standard key)."""
    token = bearer_token(request)
    _check_available(state)  # before a key is redeemed, so it is not spent on a refusal
    if state.is_standard_key(token):
        return state.default_session(), new_id("sess"), None
    _check_capacity(state, token)
    try:
        record = await state.minter.redeem(token)
    except KeyRejected as exc:
        raise HTTPError(
            401, exc.reason, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
        ) from None
    return record.config, record.session_id, token


def _check_available(state: ServerState) -> None:
    unavailable = state.engine_unavailable()
    if unavailable is not None:
        raise HTTPError(503, unavailable, code="engine_not_ready", type="server_error")


def _check_capacity(state: ServerState, key: str | None) -> None:
    """Refuse (503, or 429 for the key) when no session fits (``take`` takes the slot)."""
    try:
        state.slots.check(key)
    except OverCapacity as refusal:
        metrics.SESSIONS_REFUSED.labels(refusal.code).inc()
        raise HTTPError(
            refusal.status,
            refusal.message,
            code=refusal.code,
            type=refusal.type,
            headers=refusal.headers,
        ) from None


async def _start_call(
    state: ServerState,
    config: SessionConfig,
    session_id: str,
    generation: Literal["beta", "ga"],
    sdp: str,
    key: str | None,
) -> Call:
    _check_available(state)
    _check_capacity(state, key)  # again: other calls may have started while this one waited
    slot = state.slots.take(key)
    try:
        call = Call(state, config, session_id, generation, slot)
    except BaseException:
        slot.release()
        raise
    try:
        call.answer_sdp = await call.start(sdp)
    except BadOffer as exc:
        await call.close()
        raise HTTPError(400, str(exc), code="invalid_sdp") from None
    except Exception:
        await call.close()
        raise
    state.calls[call.call_id] = call
    state.live_sessions.add(call)
    if state.directory is not None:
        try:
            await state.directory.register(call.call_id)
        except BaseException:
            await call.close()  # a call other instances cannot find would be half-shared
            raise
    return call


def _sdp_response(call: Call, status: int) -> Response:
    return Response(
        call.answer_sdp,
        status_code=status,
        media_type="application/sdp",
        headers={"Location": f"/v1/realtime/calls/{call.call_id}"},
    )


@router.post("")
async def beta_sdp(request: Request) -> Response:
    """Beta: the offer SDP in, the answer SDP out."""
    state: ServerState = request.app.state.realtalk
    config, session_id, key = await _ephemeral(state, request)
    model = request.query_params.get("model")
    if model:
        config = config.with_changes(model=model)
    config = with_intent(config, request.query_params.get("intent"))
    sdp = await _read_sdp(request)
    call = await _start_call(state, config, session_id, "beta", sdp, key)
    return _sdp_response(call, 201)


@router.post("/calls")
async def ga_calls(request: Request) -> Response:
    """GA: raw SDP with an ephemeral key, or multipart (sdp + session) with the standard key."""
    state: ServerState = request.app.state.realtalk
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        token = bearer_token(request)
        if not state.is_standard_key(token):
            raise HTTPError(
                401,
                "A multipart call needs the engine's standard key.",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        _check_capacity(state, None)
        key: str | None = None
        form = await request.form()
        sdp_part, session_part = form.get("sdp"), form.get("session")
        if sdp_part is None:
            raise HTTPError(
                400,
                "The multipart body needs an 'sdp' part.",
                param="sdp",
                code="missing_required_parameter",
            )
        sdp = await _part_text(sdp_part, "sdp")
        config = state.default_session()
        if session_part is not None:
            session_body = parse_json_part(await _part_text(session_part, "session"), "session")
            config = await asyncio.to_thread(parse_session, "ga", session_body, config)
        if not sdp.lstrip().startswith("v=0"):
            raise HTTPError(
                400, "The 'sdp' part is not an SDP offer.", code="invalid_sdp", param="sdp"
            )
        session_id = new_id("sess")
    else:
        config, session_id, key = await _ephemeral(state, request)
        sdp = await _read_sdp(request)
    model = request.query_params.get("model")
    if model:
        config = config.with_changes(model=model)
    config = with_intent(config, request.query_params.get("intent"))
    call = await _start_call(state, config, session_id, "ga", sdp, key)
    return _sdp_response(call, 201)


@router.post("/calls/{call_id}/hangup")
async def hangup(call_id: str, request: Request) -> Response:
    state: ServerState = request.app.state.realtalk
    if not state.is_standard_key(bearer_token(request)):
        raise HTTPError(
            401,
            "Hanging up needs the engine's standard key.",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    call = state.calls.get(call_id)
    if call is not None:
        call.hang_up()
    elif state.directory is None or not await state.directory.hang_up(call_id):
        raise HTTPError(
            404, f"No call with id '{call_id}'.", code="call_not_found", type="not_found_error"
        )
    return Response(status_code=200)
