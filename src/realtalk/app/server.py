"""Builds the FastAPI application: engine endpoints, app backend, health, static page."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr
from redis.asyncio import Redis
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from realtalk import __version__, metrics
from realtalk.app import (
    audio_api,
    backend,
    engine_keys,
    realtime_rtc,
    realtime_ws,
    records_api,
    tools_api,
)
from realtalk.app.body_limits import BodySizeLimit
from realtalk.app.call_directory import CallDirectory
from realtalk.app.capacity import SessionSlots, machine_max_sessions
from realtalk.app.cross_site import CrossSiteGuard
from realtalk.app.engine_keys import require_standard_key
from realtalk.app.errors import install_error_handlers
from realtalk.app.state import ServerState, server_state
from realtalk.config import Settings, ensure_api_key
from realtalk.pipeline.models import ModelChoice, load_models
from realtalk.pipeline.remote import RemoteStage
from realtalk.records import RecordStore
from realtalk.session.keys import Clock, EphemeralKeyStore, InMemoryKeyStore, KeyMinter
from realtalk.session.redis_keys import RedisKeyStore
from realtalk.session.session import read_ahead
from realtalk.tools import ToolRegistry
from realtalk.tools.loading import load_tools
from realtalk.tools.pool import ToolPool

log = logging.getLogger("realtalk.server")

Warmup = Callable[[ServerState], Awaitable[None]]
ENGINE_PATH_PREFIX = "/v1/realtime"
RETENTION_EVERY_S = 3600.0
"""How often old conversation records are deleted (and once at start)."""


async def keep_records(store: RecordStore, days: int, every_s: float = RETENTION_EVERY_S) -> None:
    """Apply the records' retention rule now and every ``every_s``; a failure is logged."""
    while True:
        try:
            purged = await asyncio.to_thread(store.purge, days)
        except Exception as exc:  # a broken store must not stop the server
            log.error("records: retention failed: %s", exc)
        else:
            if purged:
                log.info("records: %d conversations older than %d days deleted", purged, days)
        await asyncio.sleep(every_s)


class SplitCORS:
    """CORS by path: the engine's ``/v1/realtime*`` allows any origin and any request header
    (the key is the credential, as on OpenAI's API; SDKs add their own headers, such as
    ``X-OpenAI-Agents-SDK``); everything else is same-origin unless configured."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.engine = CORSMiddleware(
            app,
            allow_origins=["*"],
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["Location"],
            max_age=600,
        )
        self.backend = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Content-Type"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        target = self.engine if path.startswith(ENGINE_PATH_PREFIX) else self.backend
        await target(scope, receive, send)


def model_choice(settings: Settings) -> ModelChoice:
    return ModelChoice(
        model_dir=settings.model_dir,
        stt=settings.stt_model,
        stt_window=settings.stt_window,
        end_of_turn=None if settings.end_of_turn_model == "none" else settings.end_of_turn_model,
        llm=settings.llm_model,
        tts=settings.tts_voice,
        llm_base_url=settings.llm_base_url,
        llm_api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        llm_context_tokens=settings.llm_context_tokens,
        llm_repack=settings.llm_repack,
        remote_stt=_remote(
            settings.stt_base_url, settings.stt_model, settings.stt_api_key, settings.stt_timeout_s
        ),
        remote_tts=_remote(
            settings.tts_base_url,
            settings.tts_model,
            settings.tts_api_key,
            settings.tts_timeout_s,
            # Set: every session speaks with it; unset, each session's own voice name is sent.
            settings.tts_voice if "tts_voice" in settings.model_fields_set else None,
        ),
        threads=settings.threads,
    )


def _remote(
    url: str | None, model: str, key: SecretStr | None, timeout_s: float, voice: str | None = None
) -> RemoteStage | None:
    secret = key.get_secret_value() if key else None
    return RemoteStage(url, model, secret, timeout_s, voice) if url else None


async def load_engine_models(state: ServerState) -> None:
    """Load the embedded engine's models once for the process (the openai engine needs none)."""
    if state.settings.engine != "embedded":
        return
    state.models = await asyncio.to_thread(load_models, model_choice(state.settings))
    # The page's sessions start from this prompt: the first visitor finds it read.
    read_ahead(state.models.llm, state.default_session(with_tools=True))


def _readiness(state: ServerState) -> str:
    if state.slots.draining:
        return "draining"
    if state.readiness != "ready":
        return state.readiness
    return "ready" if state.slots.left() else "full"


def web_root() -> Path:
    return Path(str(resources.files("realtalk").joinpath("web")))


def create_app(
    settings: Settings,
    *,
    clock: Clock = time.time,
    key_store: EphemeralKeyStore | None = None,
    warmup: Warmup = load_engine_models,
    tools: ToolRegistry | None = None,
) -> FastAPI:
    """The whole server as one ASGI app. ``clock``, ``key_store`` and ``warmup`` are seams
    for tests. With ``settings.redis_url``, keys, the call registry and the mint rate limit
    are shared with every instance using the same Redis."""
    api_key, _ = ensure_api_key(settings)
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    if key_store is None:
        key_store = RedisKeyStore(redis, clock) if redis else InMemoryKeyStore(clock)
    state = ServerState(
        settings=settings,
        api_key=api_key,
        minter=KeyMinter(key_store, clock),
        slots=SessionSlots(
            settings.max_sessions or machine_max_sessions(), settings.max_sessions_per_key
        ),
        tools=tools if tools is not None else load_tools(settings),
    )
    state.tools.pool = ToolPool(settings.tool_workers)
    if settings.record != "off":
        state.records = RecordStore(settings.data_dir / "records.sqlite3", clock=clock)
    if redis is not None:
        state.directory = CallDirectory(redis, state.calls)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def warm() -> None:
            try:
                await warmup(state)
            except Exception as exc:  # reported by /healthz; the server keeps serving keys
                state.readiness, state.readiness_detail = "failed", str(exc)
                log.error("models failed to load: %s", exc)
            else:
                state.readiness = "ready"
                # What is loaded by now lives as long as the process: keep the collector's
                # full passes, which a client's large event can trigger, from walking it all.
                gc.freeze()
                slots = state.slots
                log.info("ready: at most %d sessions, %d per key", slots.total, slots.per_key)

        async with httpx.AsyncClient() as http, asyncio.TaskGroup() as tasks:
            app.state.http = http
            warm_task = tasks.create_task(warm())
            directory = state.directory
            directory_task = tasks.create_task(directory.run()) if directory else None
            records, records_task = state.records, None
            if records is not None:
                records.start()
                days = settings.record_retention_days
                records_task = tasks.create_task(keep_records(records, days))
            try:
                yield
            finally:
                if records_task is not None:
                    records_task.cancel()
                warm_task.cancel()
                for call in list(state.calls.values()):
                    await call.close()
                if directory_task is not None:
                    directory_task.cancel()
                state.tools.pool.close()
                if records is not None:
                    await asyncio.to_thread(records.stop)
        if redis is not None:
            await redis.aclose()

    app = FastAPI(
        title="realtalk", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.realtalk = state
    app.state.mint_rate_limit = backend.MintRateLimit(settings.mint_rate_limit, settings.redis_url)
    install_error_handlers(app)
    app.include_router(engine_keys.router)
    app.include_router(backend.router)
    app.include_router(realtime_ws.router)
    app.include_router(realtime_rtc.router)
    app.include_router(tools_api.router)
    app.include_router(audio_api.router)
    app.include_router(records_api.router)

    @app.get("/healthz")
    async def healthz(state: Annotated[ServerState, Depends(server_state)]) -> JSONResponse:
        body: dict[str, Any] = {
            "status": "ok" if state.readiness == "ready" else state.readiness,
            "sessions": len(state.live_sessions),
        }
        if state.readiness_detail:
            body["detail"] = state.readiness_detail
        return JSONResponse(body, status_code=200 if state.readiness == "ready" else 503)

    @app.get("/readyz")
    async def readyz(state: Annotated[ServerState, Depends(server_state)]) -> JSONResponse:
        """Readiness for a load balancer: 200 while this instance takes new sessions."""
        slots = state.slots
        status = _readiness(state)
        body = {
            "status": status,
            "sessions": slots.taken,
            "max_sessions": slots.total,
            "capacity_left": slots.left(),
            "draining": slots.draining,
        }
        return JSONResponse(body, status_code=200 if status == "ready" else 503)

    @app.get("/metrics")
    async def metrics_text(
        request: Request, state: Annotated[ServerState, Depends(server_state)]
    ) -> Response:
        if not state.settings.metrics_public:
            require_standard_key(request, state)
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/history", include_in_schema=False)
    async def history_page() -> FileResponse:
        """The conversation records' page (``web/history.html``)."""
        return FileResponse(web_root() / "history.html", media_type="text/html")

    app.mount("/", StaticFiles(directory=web_root(), html=True), name="web")
    app.add_middleware(BodySizeLimit)  # inside CORS, so a browser can read a 413
    app.add_middleware(CrossSiteGuard, allowed_origins=settings.cors_origins)
    app.add_middleware(SplitCORS, origins=settings.cors_origins)
    if settings.trusted_proxies:
        # Outermost, so every layer sees the real client and scheme. uvicorn's own
        # proxy_headers is off (cli.py): this is the one place that believes the headers.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    return app
