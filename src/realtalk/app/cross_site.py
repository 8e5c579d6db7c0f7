"""Requests from other websites cannot act on the app backend (``/api``).

A page on any site can make the user's browser send a "simple" request — a form or
``text/plain`` POST, or a body-less ``fetch`` in ``no-cors`` mode — to this server without a
CORS preflight; CORS only hides the answer, the handler still runs. So every state-changing
call under ``/api`` (``POST``, ``PUT``, ``PATCH``, ``DELETE``) must:

- come from this server's own origin or one in ``REALTALK_CORS_ORIGINS``. Browsers send
  ``Origin`` on every such request and, since 2023 in all engines, ``Sec-Fetch-Site``; a
  request with neither is not a browser acting for another site (curl, a backend) and may act;
- carry JSON: whenever there is a body or a ``Content-Type``, it must be ``application/json``,
  which a page can only send after a preflight that CORS answers. The three types a page may
  send without one (``text/plain``, forms, multipart) never reach a handler.

The engine's ``/v1/realtime*`` is not checked: each of its calls needs a key in the
``Authorization`` header (or, for a browser's WebSocket, in a subprotocol), which another
site's page cannot attach without knowing the key, and no cookie or other credential that a
browser adds by itself is accepted there.
"""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from realtalk.app.errors import error_response

log = logging.getLogger("realtalk.http")

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BROWSER_SAYS_OWN_SITE = frozenset({"same-origin", "none"})  # none: the user typed the URL


class CrossSiteGuard:
    """ASGI middleware: refuses another site's state-changing ``/api`` calls (403) and
    non-JSON bodies on them (415), each with an OpenAI-shaped reason."""

    def __init__(self, app: ASGIApp, allowed_origins: list[str]) -> None:
        self.app = app
        self.any_origin = "*" in allowed_origins
        self.allowed_origins = frozenset(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in STATE_CHANGING
            or not (scope["path"] + "/").startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not self._from_allowed_site(scope, headers):
            origin = headers.get("origin", "unknown")[:100]
            log.info("refused a cross-site request", extra={"origin": origin})
            refusal = error_response(
                403,
                f"Requests from another site (Origin: {origin}) may not call {scope['path']}. "
                "Serve the page from this server, or add its origin to REALTALK_CORS_ORIGINS.",
                code="cross_site_request",
            )
            await refusal(scope, receive, send)
            return
        if not _json_or_empty(headers):
            kind = headers.get("content-type", "none")[:100]
            refusal = error_response(
                415,
                f"The body must be JSON sent with 'Content-Type: application/json' (got {kind}).",
                code="unsupported_media_type",
            )
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _from_allowed_site(self, scope: Scope, headers: Headers) -> bool:
        origin = headers.get("origin")
        if self.any_origin or (origin is not None and origin in self.allowed_origins):
            return True
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None:
            # The browser's own verdict; it still holds behind a proxy that rewrote Host.
            return fetch_site in BROWSER_SAYS_OWN_SITE
        if origin is None:
            return True
        own = f"{scope['scheme']}://{headers.get('host', '')}"
        return origin.lower() == own.lower()


def _json_or_empty(headers: Headers) -> bool:
    content_type = headers.get("content-type")
    if content_type is None:
        has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        return not has_body
    return content_type.partition(";")[0].strip().lower() == "application/json"
