"""``/api/conversations``: the conversation records (``realtalk.records``), for the standard
key only (an ephemeral key is a browser's and must not read other people's conversations).

``GET /api/conversations`` lists them newest first (``limit`` ≤ 100, ``before``/``after``: Unix
seconds or an ISO 8601 date, on the start time; page on with ``before`` = the last one's
``started_at``); ``GET /api/conversations/{id}`` is one conversation with every entry (also
its JSON export); ``GET …/audio`` its audio file; ``DELETE`` removes its rows and files.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse

from realtalk.app.engine_keys import require_standard_key
from realtalk.app.errors import HTTPError
from realtalk.app.state import ServerState
from realtalk.records.store import PAGE_MAX, RecordStore

router = APIRouter(prefix="/api/conversations")

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
    found["audio"] = [f.name for f in store.audio_files(conversation_id)]
    return found


@router.get("/{conversation_id}/audio")
async def get_audio(conversation_id: str, request: Request, state: Standard) -> FileResponse:
    """One track, Ogg/Opus: ``?track=user`` (default) or ``agent``."""
    store = _store(state)
    track = request.query_params.get("track", "user")
    if track not in ("user", "agent"):
        raise HTTPError(
            400, "Invalid 'track': 'user' or 'agent'.", code="invalid_value", param="track"
        )
    files = [f for f in store.audio_files(conversation_id) if f.name.endswith(f".{track}.ogg")]
    if not files:
        raise HTTPError(
            404,
            f"Conversation {conversation_id!r} has no recorded audio.",
            code="audio_not_found",
            type="not_found_error",
        )
    return FileResponse(files[0], media_type="audio/ogg")


@router.delete("/{conversation_id}")
async def delete_conversation(conversation_id: str, state: Standard) -> JSONResponse:
    store = _store(state)
    if not await asyncio.to_thread(store.delete, conversation_id):
        raise _not_found(conversation_id)
    return JSONResponse(
        {"id": conversation_id, "object": "realtime.conversation_record", "deleted": True}
    )
