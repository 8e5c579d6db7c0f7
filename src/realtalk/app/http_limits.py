"""uvicorn's connection protocols, bounded against slow and oversized request heads.

uvicorn (httptools) reads a request's line and headers with no limit on their size or on the
time they take, and holds a connection that never finishes them forever. Here:

- the head must arrive within ``header_timeout_s`` of the connection (or of the request's
  first byte on a kept-alive one), else ``408`` and closed;
- a header line over 8 KB, more than 100 headers, or a head over 16 KB is answered ``431``
  and closed (Apache's 8,190-byte field and 100 fields; Node's and h11's 16 KB head);
- a malformed request is answered ``400`` with one INFO line (uvicorn: a WARNING).

The WebSocket protocol completes the handshake when the app sends a denial response (uvicorn
otherwise logs an ERROR for every refused upgrade) and leaves the handshake's one log line to
uvicorn's ``"WebSocket <path>" <status>``, not also to the websockets library.
"""

from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

MAX_HEADER_LINE_BYTES = 8 * 1024
MAX_HEADERS = 100
MAX_HEAD_BYTES = 16 * 1024
"""Request line and headers together."""

log = logging.getLogger("uvicorn.error")
"""uvicorn's own logger for connection lines, so the access-log redaction applies."""
HANDSHAKE_LOG = "realtalk.ws.protocol"
"""The websockets library's logger here: WARNING and up (it repeats uvicorn's lines)."""


class _HeadTooLarge(Exception):
    pass


def _address(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "-"


class BoundedHttpProtocol(HttpToolsProtocol):
    header_timeout_s = 5.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self._awaiting_head:
            self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, str(exc.__context__))
            else:
                self._refuse(HTTPStatus.BAD_REQUEST, "Invalid HTTP request.")
            return
        except httptools.HttpParserError:
            self._refuse(HTTPStatus.BAD_REQUEST, "Invalid HTTP request.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._awaiting_head and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"The request line and headers exceed {MAX_HEAD_BYTES} bytes.",
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0
        self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if len(name) + len(value) + 2 > MAX_HEADER_LINE_BYTES:
            raise _HeadTooLarge(f"A header line exceeds {MAX_HEADER_LINE_BYTES} bytes.")
        if self._header_count > MAX_HEADERS:
            raise _HeadTooLarge(f"The request has more than {MAX_HEADERS} headers.")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_head, self._head_bytes = True, 0

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._awaiting_head:
            return
        if self._head_bytes == 0:  # an idle connection, like uvicorn's keep-alive timeout
            self.transport.close()
            return
        self._refuse(
            HTTPStatus.REQUEST_TIMEOUT,
            f"The request's headers did not arrive within {self.header_timeout_s:g} seconds.",
        )

    def _refuse(self, status: HTTPStatus, message: str) -> None:
        """Answer ``status`` with an OpenAI-shaped error, close, and log one INFO line."""
        self._disarm_head_timer()
        log.info("%s - %d %s", _address(self.client), status, message)
        code = status.phrase.lower().replace(" ", "_")
        error = {"type": "invalid_request_error", "code": code, "message": message, "param": None}
        body = json.dumps({"error": error}).encode()
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode("ascii") + body)
        self.transport.close()


def bounded_http_protocol(header_timeout_s: float) -> type[BoundedHttpProtocol]:
    """The HTTP protocol class for ``uvicorn.run(http=...)`` with this head timeout."""
    return type(
        "BoundedHttpProtocol", (BoundedHttpProtocol,), {"header_timeout_s": header_timeout_s}
    )


class RealtimeWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn.logger = logging.getLogger(HANDSHAKE_LOG)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        if self.response.status_code != 101:  # refused by websockets itself (bad upgrade)
            status = self.response.status_code
            log.info('%s - "WebSocket %s" %d', _address(self.client), event.path, status)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            self.handshake_complete = True  # a denial response completes the handshake
