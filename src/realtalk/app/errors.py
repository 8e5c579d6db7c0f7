"""HTTP errors in OpenAI's shape: ``{"error": {type, code, message, param}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from realtalk.protocol import wire_json
from realtalk.protocol.errors import ErrorType, ProtocolError

log = logging.getLogger("realtalk.http")


class HTTPError(Exception):
    """Raised by handlers; rendered as an OpenAI-shaped error with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: ErrorType | str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type
        self.headers = headers


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    type: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"type": type, "code": code, "message": message, "param": param}}
    return JSONResponse(body, status_code=status, headers=headers)


async def read_json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (an empty body counts as ``{}``), or a 400."""
    raw = await request.body()
    if not raw.strip():
        return {}
    data = parse_json_part(raw, None)
    if not isinstance(data, dict):
        raise HTTPError(400, "The body must be a JSON object.", code="invalid_type")
    return data


def parse_json_part(raw: str | bytes, param: str | None) -> Any:
    """A JSON request body (or multipart part) within :mod:`wire_json`'s bounds, or a 400."""
    try:
        return wire_json.parse(raw)
    except ProtocolError as exc:
        where = f"The '{param}' part" if param else "The body"
        message = exc.message.removeprefix("Invalid JSON: ")
        raise HTTPError(
            400, f"{where} is not valid JSON: {message}", code="invalid_json", param=param
        ) from None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPError)
    async def _http_error(_: Request, exc: HTTPError) -> JSONResponse:
        return error_response(
            exc.status,
            exc.message,
            code=exc.code,
            param=exc.param,
            type=exc.type,
            headers=exc.headers,
        )

    @app.exception_handler(ProtocolError)
    async def _protocol_error(_: Request, exc: ProtocolError) -> JSONResponse:
        return JSONResponse({"error": exc.body()}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        return error_response(
            400,
            f"Invalid request: {first.get('msg', 'invalid')}.",
            code="invalid_value",
            param=".".join(loc) or None,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _starlette(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(
            exc.status_code, str(exc.detail), type=kind, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RedisError)
    async def _redis(request: Request, exc: RedisError) -> JSONResponse:
        log.error("Redis failed on %s %s: %s", request.method, request.url.path, exc)
        return error_response(
            503,
            "The shared state (Redis) is unavailable; try again shortly.",
            code="shared_state_unavailable",
            type="server_error",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "Internal server error.", type="server_error")
