"""``/api/conversations``: the conversation records (``realtalk.records``), for the standard
key only (an ephemeral key is a browser's and must not read other people's conversations).

``GET /api/conversations`` lists them newest first (``limit`` ≤ 100, ``before``/``after``: Unix
seconds or an ISO 8601 date, on the start time; page on with ``before`` = the last one's
``started_at``); ``GET /api/conversations/{id}`` is one conversation with every entry (also
its JSON export); ``GET …/audio`` its audio (both sides in stereo, or one track); ``DELETE``
removes its rows and files.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from realtalk.app.engine_keys import require_standard_key
from realtalk.app.errors import HTTPError
from realtalk.app.state import ServerState
from realtalk.records.audio import RATE as MIX_RATE
from realtalk.records.store import PAGE_MAX, RecordStore

router = APIRouter(prefix="/api/conversations")
log = logging.getLogger("realtalk.records")

Standard = Annotated[ServerState, Depends(require_standard_key)]


def _store(state: ServerState) -> RecordStore:
    if state.records is None:
        raise HTTPError(
            404,
            "Conversation records are off on this server (REALTALK_RECORD=off).",
            code="records_off",
            type="not_found_error",
        )
    return state.records


def _not_found(conversation_id: str) -> HTTPError:
    return HTTPError(
        404,
        f"There is no conversation with id {conversation_id!r}.",
        code="conversation_not_found",
        type="not_found_error",
        param="id",
    )


def _when(value: str | None, param: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPError(
            400,
            f"Invalid '{param}': use Unix seconds or an ISO 8601 date like 2026-01-31.",
            code="invalid_value",
            param=param,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@router.get("")
async def list_conversations(request: Request, state: Standard) -> dict[str, Any]:
    store = _store(state)
    query = request.query_params
    raw_limit = query.get("limit", "20")
    try:
        limit = int(raw_limit)
    except ValueError:
        limit = 0
    if not 1 <= limit <= PAGE_MAX:
        raise HTTPError(
            400,
            f"Invalid 'limit': an integer from 1 to {PAGE_MAX}.",
            code="invalid_value",
            param="limit",
        )
    before, after = _when(query.get("before"), "before"), _when(query.get("after"), "after")
    rows = await asyncio.to_thread(store.page, before=before, after=after, limit=limit + 1)
    return {"object": "list", "data": rows[:limit], "has_more": len(rows) > limit}


@router.get("/{conversation_id}")
async def get_conversation(conversation_id: str, state: Standard) -> dict[str, Any]:
    store = _store(state)
    found = await asyncio.to_thread(store.get, conversation_id)
    if found is None:
        raise _not_found(conversation_id)
    found["audio"] = [  # the recorded tracks (not the stereo mix made from them)
        f.name
        for f in store.audio_files(conversation_id)
        if f.name.endswith((".user.ogg", ".agent.ogg"))
    ]
    return found


@router.get("/{conversation_id}/audio", response_model=None)
async def get_audio(
    conversation_id: str, request: Request, state: Standard
) -> FileResponse | Response:
    """Ogg/Opus: ``?track=both`` (default; stereo, the user left and the agent right, mixed
    on the first request once the conversation has ended and kept beside the tracks), or one
    mono track, ``user`` or ``agent``."""
    store = _store(state)
    track = request.query_params.get("track", "both")
    if track not in TRACKS:
        raise HTTPError(
            400,
            "Invalid 'track': 'both', 'user' or 'agent'.",
            code="invalid_value",
            param="track",
        )
    found = await asyncio.to_thread(store.get, conversation_id)
    if found is None:
        raise _not_found(conversation_id)
    files = {f.name.split(".")[-2]: f for f in store.audio_files(conversation_id)}
    if not {"user", "agent"} & files.keys() or (track != "both" and track not in files):
        raise HTTPError(
            404,
            f"Conversation {conversation_id!r} has no recorded audio"
            + ("." if track == "both" else f" on the {track} track."),
            code="audio_not_found",
            type="not_found_error",
        )
    if track != "both":
        return FileResponse(files[track], media_type="audio/ogg")
    if "both" in files:
        return FileResponse(files["both"], media_type="audio/ogg")
    user, agent = files.get("user"), files.get("agent")
    target = store.audio_dir / f"{conversation_id}.both.ogg"
    async with _mixing:  # one mix at a time: the live conversations keep the other core
        if found["ended_at"] is None:  # still being written: mixed for this request only
            return Response(await asyncio.to_thread(_mix, user, agent), media_type="audio/ogg")
        if not target.exists():  # (a request that waited here may find it made)
            try:
                await asyncio.to_thread(_mix_to, user, agent, target)
            except OSError as exc:  # a full disk: the mix is still served, just not kept
                log.error("records: stereo mix of %s not kept (%s)", conversation_id, exc)
                return Response(await asyncio.to_thread(_mix, user, agent), media_type="audio/ogg")
    if await asyncio.to_thread(store.get, conversation_id) is None:  # deleted meanwhile
        target.unlink(missing_ok=True)
        raise _not_found(conversation_id)
    return FileResponse(target, media_type="audio/ogg")


TRACKS = ("both", "user", "agent")
_mixing = asyncio.Lock()
"""Mixing a long conversation takes seconds of CPU (decode two tracks, encode one)."""


def _mix(user: Path | None, agent: Path | None) -> bytes:
    from realtalk.rtc.audio_files import write_stereo  # PyAV lives in rtc/

    out = io.BytesIO()
    write_stereo(user, agent, out, MIX_RATE)
    return out.getvalue()


def _mix_to(user: Path | None, agent: Path | None, target: Path) -> None:
    """Write the stereo mix beside the tracks (a partial file never takes the final name)."""
    from realtalk.rtc.audio_files import write_stereo

    part = target.with_name(f"{target.name}.{secrets.token_hex(4)}.part")
    try:
        with part.open("wb") as out:
            write_stereo(user, agent, out, MIX_RATE)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)


@router.delete("/{conversation_id}")
async def delete_conversation(conversation_id: str, state: Standard) -> JSONResponse:
    store = _store(state)
    if not await asyncio.to_thread(store.delete, conversation_id):
        raise _not_found(conversation_id)
    return JSONResponse(
        {"id": conversation_id, "object": "realtime.conversation_record", "deleted": True}
    )
