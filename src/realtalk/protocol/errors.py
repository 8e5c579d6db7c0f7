"""OpenAI-shaped errors, shared by HTTP responses and ``error`` server events."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
ErrorType = Literal[
    "invalid_request_error", "authentication_error", "server_error", "rate_limit_error"
]


@dataclass(slots=True)
class ProtocolError(Exception):
    """A client mistake the engine reports without ending the session."""

    message: str
    code: str = "invalid_value"
    param: str | None = None
    type: ErrorType = "invalid_request_error"
    event_id: str | None = None
    """The client event that caused it, echoed back in the ``error`` event."""

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict[str, Any]:
        """The ``error`` object as OpenAI's HTTP API and ``error`` events carry it."""
        return {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "event_id": self.event_id,
        }


def _loc_to_param(loc: tuple[int | str, ...], prefix: str) -> str:
    parts = [prefix] if prefix else []
    for piece in loc:
        if isinstance(piece, int):
            parts[-1:] = [f"{parts[-1]}[{piece}]"] if parts else [f"[{piece}]"]
        else:
            parts.append(str(piece))
    return ".".join(parts)


def from_validation_error(exc: ValidationError, prefix: str = "") -> ProtocolError:
    """Turn the first pydantic error into a ProtocolError naming the offending field."""
    first = exc.errors(include_url=False)[0]
    # Unions put the member's name (a class or a tag such as "literal['x']") in the location;
    # keep only field names and indices.
    loc = tuple(p for p in first.get("loc", ()) if isinstance(p, int) or _FIELD.match(p))
    param = _loc_to_param(loc, prefix) or None
    kind = first.get("type", "")
    code = "missing_required_parameter" if kind == "missing" else "invalid_value"
    where = f"'{param}'" if param else "the body"
    return ProtocolError(f"Invalid value for {where}: {first.get('msg', 'invalid')}.", code, param)
