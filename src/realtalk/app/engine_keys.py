"""The embedded engine's OpenAI-compatible key endpoints.

- beta ``POST /v1/realtime/sessions``: flat session body → session object + ``client_secret``
- beta ``POST /v1/realtime/transcription_sessions``: flat transcription session body →
  transcription session object + ``client_secret``
- GA ``POST /v1/realtime/client_secrets``: ``{expires_after?, session}`` (``type`` ``realtime``
  or ``transcription``) → ``{value, expires_at, session}``

Both require the engine's standard key as a Bearer token. Session bodies are parsed in a
worker thread: checking a session's tool schemas takes milliseconds each.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from realtalk.app.errors import HTTPError, read_json_object
from realtalk.app.state import ServerState, server_state
from realtalk.core.config import SessionConfig
from realtalk.protocol.errors import ProtocolError
from realtalk.protocol.sessions import (
    apply_shape,
    beta_session_object,
    beta_transcription_shape,
    ga_session_object,
    parse_session,
)
from realtalk.protocol.transcription_sessions import (
    beta_transcription_session_object,
    ga_transcription_session_object,
)
from realtalk.session.keys import MAX_TTL_S, MIN_TTL_S

router = APIRouter(prefix="/v1/realtime")


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPError(
            401,
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
            code="missing_api_key",
            type="invalid_request_error",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


def require_standard_key(
    request: Request, state: Annotated[ServerState, Depends(server_state)]
) -> ServerState:
    if not state.is_standard_key(bearer_token(request)):
        raise HTTPError(
            401,
            "Incorrect API key provided. Use the engine's standard key (REALTALK_API_KEY).",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return state


def _ttl(expires_after: Any, param: str) -> int | None:
    if expires_after is None:
        return None
    if not isinstance(expires_after, dict):
        raise ProtocolError(f"'{param}' must be an object.", param=param)
    anchor = expires_after.get("anchor", "created_at")
    if anchor != "created_at":
        raise ProtocolError(
            f"Invalid '{param}.anchor': only 'created_at' is supported.", param=f"{param}.anchor"
        )
    seconds = expires_after.get("seconds")
    if seconds is None:
        return None
    if (
        not isinstance(seconds, int)
        or isinstance(seconds, bool)
        or not (MIN_TTL_S <= seconds <= MAX_TTL_S)
    ):
        raise ProtocolError(
            f"Invalid '{param}.seconds': expected an integer between {MIN_TTL_S} and {MAX_TTL_S}, "
            f"got {seconds!r}.",
            param=f"{param}.seconds",
        )
    return seconds


def _beta_ttl(body: dict[str, Any], field: str) -> int | None:
    """A beta body's ``client_secret.<field>`` lifetime (the object is taken out of ``body``:
    it is not a session setting)."""
    client_secret = body.pop("client_secret", None)
    if client_secret is None:
        return None
    if not isinstance(client_secret, dict):
        raise ProtocolError("'client_secret' must be an object.", param="client_secret")
    return _ttl(client_secret.get(field), f"client_secret.{field}")


@router.post("/sessions")
async def create_beta_session(
    request: Request, state: Annotated[ServerState, Depends(require_standard_key)]
) -> dict[str, Any]:
    """Beta: mint an ephemeral key for a flat session config."""
    body = await read_json_object(request)
    ttl = _beta_ttl(body, "expires_after")
    config = await asyncio.to_thread(parse_session, "beta", body, state.default_session())
    value, record = await state.minter.mint(config, "beta", ttl)
    session = beta_session_object(config, record.session_id, record.expires_at)
    session["client_secret"] = {"value": value, "expires_at": record.expires_at}
    return session


@router.post("/transcription_sessions")
async def create_beta_transcription_session(
    request: Request, state: Annotated[ServerState, Depends(require_standard_key)]
) -> dict[str, Any]:
    """Beta: mint an ephemeral key for a transcription session."""
    body = await read_json_object(request)
    ttl = _beta_ttl(body, "expires_at")
    config = apply_shape(beta_transcription_shape(body), state.default_session())
    value, record = await state.minter.mint(config, "beta", ttl)
    secret = {"value": value, "expires_at": record.expires_at}
    return beta_transcription_session_object(
        config, record.session_id, record.expires_at, client_secret=secret
    )


def with_intent(config: SessionConfig, intent: str | None) -> SessionConfig:
    """``?intent=transcription`` on a connection's URL starts a transcription session."""
    return config.as_transcription() if intent == "transcription" else config


@router.post("/client_secrets")
async def create_client_secret(
    request: Request, state: Annotated[ServerState, Depends(require_standard_key)]
) -> dict[str, Any]:
    """GA: mint an ephemeral key for a nested session config."""
    body = await read_json_object(request)
    ttl = _ttl(body.get("expires_after"), "expires_after")
    session_body = body.get("session")
    if session_body is None:
        session_body = {"type": "realtime"}
    config = await asyncio.to_thread(parse_session, "ga", session_body, state.default_session())
    value, record = await state.minter.mint(config, "ga", ttl)
    session_object = (
        ga_transcription_session_object if config.type == "transcription" else ga_session_object
    )
    return {
        "value": value,
        "expires_at": record.expires_at,
        "session": session_object(config, record.session_id, record.expires_at),
    }
