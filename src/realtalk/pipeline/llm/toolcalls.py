"""Finding tool calls in a small model's plain-text answer.

llama.cpp applies the GGUF's chat template with tools but does not fill ``tool_calls``: the
model writes JSON — bare, fenced in ```json, or inside <tool_call> tags — with ``arguments``
as an object or as a JSON string. This module recognises all of those.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FENCED = re.compile(r"```(?:json|tool_call)?\s*(.*?)\s*(?:```|$)", re.S)
_ECHOED_TOOLS = re.compile(r"<tools>.*?(?:</tools>|$)", re.S)
_XML_CALL = re.compile(
    r"<name>\s*([\w.-]+)\s*</name>\s*<(?:arguments|parameters)>\s*(.*?)\s*"
    r"(?:</(?:arguments|parameters)>|$)",
    re.S,
)
_CALL_PREFIXES = ("{", "[", "```", "<")
"""A reply starting like this may be a call ("<": a tag of any name; speech never starts so)."""


@dataclass(frozen=True, slots=True)
class ParsedCall:
    name: str
    arguments: dict[str, Any]


class MalformedToolCall(ValueError):
    """The text looks like a tool call but cannot be read as one."""


def may_be_call(prefix: str) -> bool | None:
    """Does a reply starting with ``prefix`` look like a tool call? ``None``: can't tell yet."""
    text = prefix.lstrip()
    if not text:
        return None
    for start in _CALL_PREFIXES:
        if text.startswith(start):
            return True
        if start.startswith(text):
            return None
    return False


def _objects(text: str) -> list[Any]:
    """Every top-level JSON value in ``text``, in order."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    index = 0
    while index < len(text):
        brace = min(
            (i for i in (text.find("{", index), text.find("[", index)) if i >= 0), default=-1
        )
        if brace < 0:
            break
        try:
            value, end = decoder.raw_decode(text, brace)
        except json.JSONDecodeError:
            index = brace + 1
            continue
        found.append(value)
        index = end
    return found


def _as_call(value: Any, known: set[str]) -> ParsedCall | None:
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict):  # {"type": "function", "function": {...}}
        value = value["function"]
        if "arguments" not in value:
            return None  # an echoed tool definition, not a call
    name = value.get("name")
    if not isinstance(name, str) or name not in known:
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise MalformedToolCall(f"arguments of {name} are not JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise MalformedToolCall(f"arguments of {name} are not an object")
    return ParsedCall(name, arguments)


def parse_tool_calls(text: str, tool_names: set[str]) -> list[ParsedCall]:
    """The calls in ``text`` to tools named in ``tool_names`` (empty when there are none).

    Raises :class:`MalformedToolCall` when the text is shaped like a call but unreadable."""
    text = _ECHOED_TOOLS.sub("", text)
    xml_calls = []
    for match in _XML_CALL.finditer(text):
        call = _as_call({"name": match.group(1), "arguments": match.group(2) or "{}"}, tool_names)
        if call is not None:
            xml_calls.append(call)
    if xml_calls:
        return xml_calls
    candidates = [m.group(1) for m in _TAGGED.finditer(text)]
    candidates += [m.group(1) for m in _FENCED.finditer(text)]
    candidates.append(text)
    for candidate in candidates:
        calls: list[ParsedCall] = []
        for value in _objects(candidate):
            for entry in value if isinstance(value, list) else [value]:
                call = _as_call(entry, tool_names)
                if call is not None:
                    calls.append(call)
        if calls:
            return calls
    if may_be_call(text):
        named = [name for name in tool_names if f'"{name}"' in text]
        if named:
            raise MalformedToolCall(f"could not read the call to {named[0]}")
    return []
