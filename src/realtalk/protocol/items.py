"""Conversation items on the wire (beta and GA) ⇄ :class:`Item`."""

from __future__ import annotations

import binascii
from typing import Any, Literal

from realtalk.core.items import ContentPart, Item, PartType
from realtalk.protocol.errors import ProtocolError
from realtalk.protocol.mcp import mcp_item_from_wire, mcp_item_object

Generation = Literal["beta", "ga"]

_BETA_PART = {
    "input_text": "input_text",
    "input_audio": "input_audio",
    "output_text": "text",
    "output_audio": "audio",
}
_FROM_WIRE: dict[str, PartType] = {
    "input_text": "input_text",
    "input_audio": "input_audio",
    "text": "output_text",
    "audio": "output_audio",
    "output_text": "output_text",
    "output_audio": "output_audio",
}


def part_object(part: ContentPart, generation: Generation) -> dict[str, Any]:
    kind = _BETA_PART[part.type] if generation == "beta" else part.type
    if part.type in ("input_text", "output_text"):
        return {"type": kind, "text": part.text or ""}
    return {"type": kind, "transcript": part.transcript}


def item_object(item: Item, generation: Generation) -> dict[str, Any]:
    """The wire form of ``item`` (``object: realtime.item``)."""
    if item.type.startswith("mcp_"):
        return mcp_item_object(item)
    base: dict[str, Any] = {
        "id": item.id,
        "object": "realtime.item",
        "type": item.type,
        "status": item.status,
    }
    if item.type == "message":
        base["role"] = item.role
        base["content"] = [part_object(p, generation) for p in item.content]
    elif item.type == "function_call":
        base.update(call_id=item.call_id, name=item.name, arguments=item.arguments or "")
    else:
        base.update(call_id=item.call_id, output=item.output or "")
    return base


MAX_AUDIO_BYTES = 15 * 1024 * 1024
"""OpenAI's limit on one ``input_audio_buffer.append``; the same for audio in an item."""


_BASE64_SLICE = 256 * 1024  # characters: a multiple of 4, about a millisecond to decode


def decode_audio(audio: str, param: str) -> bytes:
    """Base64 audio from a client event, size-checked before and after decoding."""
    too_large = ProtocolError(
        f"Audio too large: at most {MAX_AUDIO_BYTES // (1024 * 1024)} MiB per event.",
        "audio_too_large",
        param,
    )
    if len(audio) > (MAX_AUDIO_BYTES * 4) // 3 + 4:
        raise too_large
    try:  # in slices, so a thread decoding megabytes lets the event loop run between them
        text = memoryview(audio.encode("ascii"))
        decoded = b"".join(
            binascii.a2b_base64(text[start : start + _BASE64_SLICE], strict_mode=True)
            for start in range(0, len(text), _BASE64_SLICE)
        )
    except (binascii.Error, ValueError):  # UnicodeEncodeError is a ValueError
        message = f"Invalid '{param}': not valid base64."
        raise ProtocolError(message, "invalid_value", param) from None
    if len(decoded) > MAX_AUDIO_BYTES:
        raise too_large
    return decoded


def item_from_wire(raw: Any, param: str = "item") -> Item:
    """A client-supplied item (already shape-checked by the openai types) → :class:`Item`."""
    data = raw.model_dump(exclude_unset=True) if hasattr(raw, "model_dump") else dict(raw)
    kind = data.get("type") or ("message" if "role" in data else None)
    fields: dict[str, Any] = {}
    if data.get("id"):
        fields["id"] = data["id"]
    if kind == "message":
        role = data.get("role")
        if role not in ("user", "assistant", "system"):
            raise ProtocolError(f"Invalid '{param}.role': {role!r}.", param=f"{param}.role")
        parts: list[ContentPart] = []
        for index, content in enumerate(data.get("content") or []):
            wire_type = content.get("type") or ("input_text" if role != "assistant" else "text")
            part_type = _FROM_WIRE.get(wire_type)
            if wire_type == "input_image":
                raise ProtocolError(
                    "The embedded engine's model cannot see images: 'input_image' content is "
                    "not supported. Describe the image in 'input_text' instead.",
                    "unsupported_content_type",
                    f"{param}.content[{index}].type",
                )
            if part_type is None:
                raise ProtocolError(
                    f"Unsupported content type {wire_type!r} at '{param}.content[{index}]'.",
                    "unsupported_content_type",
                    f"{param}.content[{index}].type",
                )
            if role == "assistant" and part_type.startswith("input"):
                raise ProtocolError(
                    f"Assistant messages take 'output_text' or 'output_audio' content, not "
                    f"{wire_type!r}.",
                    "invalid_value",
                    f"{param}.content[{index}].type",
                )
            if role != "assistant" and part_type.startswith("output"):
                raise ProtocolError(
                    f"{role.capitalize()} messages take 'input_text' or 'input_audio' content, not "
                    f"{wire_type!r}.",
                    "invalid_value",
                    f"{param}.content[{index}].type",
                )
            audio = None
            if part_type == "input_audio" and content.get("audio"):
                # A transcript the client gives is the text; otherwise the audio is heard.
                if not content.get("transcript"):
                    audio = decode_audio(content["audio"], f"{param}.content[{index}].audio")
            parts.append(
                ContentPart(
                    part_type,
                    text=content.get("text"),
                    transcript=content.get("transcript"),
                    audio=audio,
                )
            )
        if not parts:
            raise ProtocolError(f"'{param}.content' must not be empty.", param=f"{param}.content")
        return Item("message", role=role, content=parts, **fields)
    if kind == "function_call":
        if not data.get("name"):
            raise ProtocolError(
                f"'{param}.name' is required for a function_call item.",
                "missing_required_parameter",
                f"{param}.name",
            )
        return Item(
            "function_call",
            call_id=data.get("call_id") or f"call_{fields.get('id', '')}",
            name=data["name"],
            arguments=data.get("arguments") or "",
            **fields,
        )
    if kind == "function_call_output":
        if not data.get("call_id"):
            raise ProtocolError(
                f"'{param}.call_id' is required for a function_call_output item.",
                "missing_required_parameter",
                f"{param}.call_id",
            )
        return Item(
            "function_call_output",
            call_id=data["call_id"],
            output=data.get("output") or "",
            **fields,
        )
    if isinstance(kind, str) and kind.startswith("mcp_"):
        return mcp_item_from_wire(data, fields, param)
    raise ProtocolError(f"Unsupported item type {kind!r}.", "invalid_value", f"{param}.type")
