"""Request body size limits per route, enforced before a body is read.

A declared ``Content-Length`` over the route's limit is answered ``413`` at once; a body
without one (chunked) is counted as it arrives and refused as soon as it passes the limit,
so no route ever holds more than its limit of one request in memory (uvicorn reads and
drops the rest, so the client gets to read the answer).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from realtalk.app.errors import HTTPError, error_response

KiB = 1024
MiB = 1024 * KiB
SESSION_BODY_BYTES = 4 * MiB
"""A session configuration: 128 tools of at most 16 KiB each and 256,000 characters of
instructions fit with room to spare."""
DEFAULT_BODY_BYTES = 64 * KiB
"""Everything else: raw SDP offers (their routes' own limit is the same), tool arguments
from the page, hang-ups, the page's own requests."""

LIMITS: tuple[tuple[str, int | None], ...] = (
    ("/v1/realtime/sessions", SESSION_BODY_BYTES),
    ("/v1/realtime/transcription_sessions", SESSION_BODY_BYTES),
    ("/v1/realtime/client_secrets", SESSION_BODY_BYTES),
    ("/v1/realtime/calls", SESSION_BODY_BYTES),  # multipart: the offer SDP and a session
    # Limits of their own, declared and streamed (25 MB uploads, 64 KiB speech requests),
    # answered with their own code, ``file_too_large``.
    ("/v1/audio/", None),
)
"""Path prefix → the largest body accepted there (None: the route enforces its own); other
paths get ``DEFAULT_BODY_BYTES``."""


def limit_for(path: str) -> int | None:
    for prefix, limit in LIMITS:
        if path.startswith(prefix):
            return limit
    return DEFAULT_BODY_BYTES


def _too_large(limit: int) -> HTTPError:
    return HTTPError(
        413,
        f"The request body is too large: this route accepts at most {limit:,} bytes.",
        code="request_too_large",
    )


class BodySizeLimit:
    """ASGI middleware applying :func:`limit_for` to every HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"])
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            refusal = _too_large(limit)
            response = error_response(refusal.status, refusal.message, code=refusal.code)
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _too_large(limit)  # rendered by the app's error handlers
            return message

        await self.app(scope, counted, send)
