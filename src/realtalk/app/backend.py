"""The app backend a page calls: ``POST /api/realtime/session`` mints a key for the browser.

The engine's standard key and the OpenAI key stay on the server; the page gets only a
short-lived ephemeral key, the engine's URL and the session settings it should know.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Request
from limits import parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from realtalk.app.errors import HTTPError
from realtalk.app.state import ServerState, server_state
from realtalk.app.upstream import MintedKey, mint_embedded, mint_openai

router = APIRouter(prefix="/api")


class MintRateLimit:
    """Per-client-address moving-window limit on minting (default 20/minute), counted in
    this process, or across every instance that shares ``redis_url``."""

    def __init__(self, rate: str, redis_url: str | None = None) -> None:
        self.rate = parse(rate)
        storage: Storage = MemoryStorage()
        if redis_url:
            storage = RedisStorage(
                _limits_uri(redis_url), implementation="redispy", key_prefix="realtalk:limits"
            )
        self.limiter = MovingWindowRateLimiter(storage)

    async def check(self, client: str) -> None:
        if await self.limiter.hit(self.rate, "mint", client):
            return
        stats = await self.limiter.get_window_stats(self.rate, "mint", client)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise HTTPError(
            429,
            f"Too many session requests from this address; try again in {retry_after} s.",
            code="rate_limit_exceeded",
            type="rate_limit_error",
            headers={"Retry-After": str(retry_after)},
        )


def _limits_uri(redis_url: str) -> str:
    """``limits`` names its asyncio Redis storage by scheme: ``async+redis://`` and so on."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url


def _engine_base_url(request: Request, state: ServerState) -> str:
    settings = state.settings
    if settings.engine == "openai":
        return settings.openai_base_url
    if settings.public_engine_url:
        return settings.public_engine_url
    return str(request.base_url).rstrip("/") + "/v1"


@router.post("/realtime/session")
async def create_page_session(
    request: Request, state: Annotated[ServerState, Depends(server_state)]
) -> dict[str, Any]:
    """Mint an ephemeral key for the browser from the configured engine."""
    limiter: MintRateLimit = request.app.state.mint_rate_limit
    await limiter.check(request.client.host if request.client else "unknown")
    minted: MintedKey
    if state.settings.engine == "openai":
        http: httpx.AsyncClient = request.app.state.http
        minted = await mint_openai(state, http)
    else:
        minted = await mint_embedded(state)
    config = state.default_session(with_tools=True)
    return {
        "client_secret": minted.value,
        "session_id": minted.session_id,
        "expires_at": minted.expires_at,
        "engine": {
            "kind": state.settings.engine,
            "base_url": _engine_base_url(request, state),
            "model": state.engine_model(),
        },
        "session": {
            "instructions": config.instructions,
            "voice": config.voice,
            "output_modalities": ["audio"] if config.audio_output else ["text"],
            "turn_detection": minted.session.get("audio", {})
            .get("input", {})
            .get("turn_detection"),
            "tools": minted.session.get("tools", []),
        },
        # Tools the engine runs itself: the page must not run these again. (OpenAI cannot
        # call this server's functions, so with engine=openai every tool runs in the page.)
        "server_tools": sorted(state.tools.server_side())
        if state.settings.engine == "embedded"
        else [],
    }
