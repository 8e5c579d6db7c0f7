"""JSON from clients, parsed within bounds: every client event and every JSON request body
goes through :func:`parse`.

Python's own parser fails on hostile JSON in ways no handler expects: nesting past the
interpreter's recursion limit raises ``RecursionError``, an integer of more than 4,300 digits
raises a bare ``ValueError``, and a document nested a few hundred levels deep parses but then
breaks the validators and serializers that recurse over it. Here each of those is a
:class:`ProtocolError` (``invalid_json``), before anything else sees the value.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, NoReturn

from realtalk.protocol.errors import ProtocolError

MAX_DEPTH = 64
"""Objects and arrays nested at most this deep (a session with tools needs about 20)."""
MAX_CONTAINERS = 100_000
"""Objects and arrays in one document at most (128 tools of 16 KiB each hold far fewer). A
document of millions of tiny containers costs the parser, which holds the interpreter for
the whole call, hundreds of milliseconds."""

_EVENT_ID = re.compile(r'"event_id"\s*:\s*"([^"\\]{1,256})"')


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def parse(raw: str | bytes) -> Any:
    """The JSON value in ``raw``; :class:`ProtocolError` (``invalid_json``) when it is not
    JSON, or is nested or sized past the limits above. The error carries the ``event_id``
    found in the text, if any, so even an unparseable event's error names its sender."""
    opening = ("{", "[") if isinstance(raw, str) else (b"{", b"[")
    containers = raw.count(opening[0]) + raw.count(opening[1])  # type: ignore[arg-type]
    if containers > MAX_CONTAINERS:
        _fail(raw, f"more than {MAX_CONTAINERS:,} objects and arrays in one document")
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        _fail(raw, f"nested more than {MAX_DEPTH} levels deep")
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an over-long integer
        if "integer string conversion" in str(exc):
            _fail(raw, f"an integer has more than {sys.get_int_max_str_digits()} digits")
        _fail(raw, str(exc))
    if containers > MAX_DEPTH:  # fewer containers cannot nest deeper
        try:
            check_depth(data, MAX_DEPTH, None)
        except ProtocolError as exc:
            event_id = data.get("event_id") if isinstance(data, dict) else None
            exc.event_id = event_id if isinstance(event_id, str) else None
            raise
    return data


def check_depth(value: Any, limit: int, param: str | None) -> None:
    """Raise :class:`ProtocolError` when objects and arrays in ``value`` nest deeper than
    ``limit`` (iteratively: the check itself must not recurse)."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:  # one level of nesting at a time
        depth += 1
        if depth > limit:
            where = f"'{param}'" if param else "the document"
            raise ProtocolError(
                f"Invalid JSON: {where} is nested more than {limit} levels deep.",
                "invalid_json",
                param,
            )
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]


def _fail(raw: str | bytes, reason: str) -> NoReturn:
    raise ProtocolError(f"Invalid JSON: {reason}.", "invalid_json", event_id=_event_id(raw))


def _event_id(raw: str | bytes) -> str | None:
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
    found = _EVENT_ID.search(text)
    return found.group(1) if found else None
