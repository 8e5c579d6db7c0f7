"""Minting a key for the page from the configured engine: embedded (in process) or OpenAI.

The OpenAI path speaks ``POST {base_url}/realtime/client_secrets`` with httpx; every upstream
failure becomes a 502 with a clear reason. The upstream key never leaves this module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from realtalk.app.errors import HTTPError
from realtalk.app.state import ServerState
from realtalk.protocol.sessions import ga_session_object

log = logging.getLogger("realtalk.upstream")


@dataclass(frozen=True, slots=True)
class MintedKey:
    value: str
    expires_at: int
    session_id: str | None
    session: dict[str, Any]


async def mint_embedded(state: ServerState) -> MintedKey:
    config = state.default_session(with_tools=True)
    value, record = await state.minter.mint(config, "ga")
    session = ga_session_object(config, record.session_id, record.expires_at)
    return MintedKey(value, record.expires_at, record.session_id, session)


def _upstream_request_body(state: ServerState) -> dict[str, Any]:
    session = ga_session_object(state.default_session(with_tools=True), "unused", 0)
    for server_only in ("id", "object", "expires_at", "include", "prompt", "tracing", "truncation"):
        session.pop(server_only, None)
    return {"session": session}


async def mint_openai(state: ServerState, client: httpx.AsyncClient) -> MintedKey:
    settings = state.settings
    if settings.openai_api_key is None:
        raise HTTPError(
            500,
            "REALTALK_ENGINE=openai needs OPENAI_API_KEY to be set on the server.",
            code="engine_not_configured",
            type="server_error",
        )
    url = f"{settings.openai_base_url}/realtime/client_secrets"
    headers = {"Authorization": f"Bearer {settings.openai_api_key.get_secret_value()}"}
    try:
        response = await client.post(
            url,
            json=_upstream_request_body(state),
            headers=headers,
            timeout=settings.openai_timeout_s,
        )
    except httpx.TimeoutException:
        log.warning("engine did not answer in time", extra={"upstream": url})
        raise _bad_gateway(
            f"The realtime engine did not answer within {settings.openai_timeout_s:g} s.",
            "upstream_timeout",
        ) from None
    except httpx.HTTPError as exc:
        log.warning("engine unreachable: %s", type(exc).__name__, extra={"upstream": url})
        raise _bad_gateway(
            "The realtime engine could not be reached.", "upstream_unreachable"
        ) from None
    if response.status_code in (401, 403):
        raise _bad_gateway(
            f"The realtime engine refused the server's API key ({response.status_code}); check "
            "OPENAI_API_KEY.",
            "upstream_auth_failed",
        )
    if response.status_code >= 400:
        raise _bad_gateway(
            f"The realtime engine answered {response.status_code}: {_upstream_message(response)}",
            "upstream_error",
        )
    try:
        data = response.json()
        value = data["value"]
        expires_at = int(data["expires_at"])
        session = data.get("session") or {}
        if not isinstance(value, str) or not isinstance(session, dict):
            raise TypeError("unexpected field types")
    except (ValueError, KeyError, TypeError):
        raise _bad_gateway(
            "The realtime engine's answer was not a client secret (malformed JSON).",
            "upstream_malformed",
        ) from None
    return MintedKey(value, expires_at, session.get("id"), session)


def _upstream_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        message = error.get("message") if isinstance(error, dict) else None
    except (ValueError, AttributeError):
        message = None
    return str(message)[:200] if message else (response.reason_phrase or "error")


def _bad_gateway(message: str, code: str) -> HTTPError:
    return HTTPError(502, message, code=code, type="upstream_error")
