"""Keys a client puts in a URL never reach the log.

uvicorn logs every request's path with its query string (``uvicorn.access``) and every
WebSocket handshake's (``uvicorn.error``). A client may put a key there (``?api_key=``,
``?client_secret=``…): every query value is replaced by ``[redacted]`` except those of the
parameters the engine reads (``model``, ``intent``, ``call_id``), and those too when they look
like a key. The engine's standard key is redacted wherever it appears in a line's arguments.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, quote, urlsplit

from realtalk.app.http_limits import HANDSHAKE_LOG

REDACTED = "[redacted]"
PLAIN_PARAMETERS = frozenset({"model", "intent", "call_id"})
_KEY_LIKE = re.compile(r"^(ek_|sk-|sk_|rt_)")


def redact_url(url: str, secrets: tuple[str, ...] = ()) -> str:
    """``url`` with its query values redacted (see the module docstring)."""
    path, mark, query = url.partition("?")
    if mark:
        pairs = parse_qsl(query, keep_blank_values=True)
        if not pairs and query:
            query = REDACTED
        else:
            query = "&".join(
                f"{quote(name, safe='')}={_value(name, value)}" for name, value in pairs
            )
        url = f"{path}?{query}"
    for secret in secrets:
        url = url.replace(secret, REDACTED)
    return url


def _value(name: str, value: str) -> str:
    if name in PLAIN_PARAMETERS and not _KEY_LIKE.search(value):
        return quote(value, safe="")
    return REDACTED


class RedactQueryStrings(logging.Filter):
    """Rewrites a record's path-like arguments; keeps every record."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(arg) for arg in record.args)
        elif isinstance(record.msg, str) and not record.args:
            record.msg = self._clean(record.msg)
        return True

    def _clean(self, arg: object) -> object:
        if not isinstance(arg, str):
            return arg
        if arg.startswith("/") or urlsplit(arg).scheme in ("http", "https", "ws", "wss"):
            return redact_url(arg, self.secrets)
        for secret in self.secrets:
            arg = arg.replace(secret, REDACTED)
        return arg


def configure_server_logging(api_key: str) -> None:
    """Install the redaction on uvicorn's loggers; quiet the websockets library's handshake
    lines (uvicorn logs each handshake once)."""
    redact = RedactQueryStrings((api_key,))
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.filters = [f for f in logger.filters if not isinstance(f, RedactQueryStrings)]
        logger.addFilter(redact)
    handshake = logging.getLogger(HANDSHAKE_LOG)
    if handshake.level == logging.NOTSET:
        handshake.setLevel(logging.WARNING)
