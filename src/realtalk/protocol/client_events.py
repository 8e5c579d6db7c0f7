"""Client events: JSON text → validated ``openai`` event model → session :mod:`commands`.

Events are dispatched on ``type`` to the matching model of the ``openai`` package's client
event union (beta or GA), so shapes are checked by the reference types, and every mistake
becomes a :class:`ProtocolError` that names the ``param`` and echoes the ``event_id``.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

from openai.types.beta.realtime import realtime_client_event as beta_events
from openai.types.realtime import realtime_client_event as ga_events
from pydantic import BaseModel, ValidationError

from realtalk.core import commands as cmd
from realtalk.core.config import SessionConfig
from realtalk.core.formats import BY_MEDIA_TYPE
from realtalk.protocol import sessions, wire_json
from realtalk.protocol.errors import ProtocolError, from_validation_error
from realtalk.protocol.items import decode_audio, item_from_wire
from realtalk.protocol.mcp import refuse_in_beta


def event_models(union: Any) -> dict[str, type[BaseModel]]:
    """``type`` tag → model, for one of the ``openai`` package's event unions (their
    discriminator is the SDK's own metadata, so pydantic alone would try every member)."""
    members = typing.get_args(typing.get_args(union)[0])
    table: dict[str, type[BaseModel]] = {}
    for model in members:
        (tag,) = typing.get_args(model.model_fields["type"].annotation)
        table[tag] = model
    return table


_MODELS = {
    "beta": event_models(beta_events.RealtimeClientEvent),
    "ga": event_models(ga_events.RealtimeClientEvent),
}


_TRUNCATE_FIELDS = ("item_id", "content_index", "audio_end_ms")


def decode(
    raw: str | bytes, generation: sessions.Generation, current: SessionConfig
) -> cmd.Command:
    """Parse one client event; raise :class:`ProtocolError` (with ``event_id``) when it is wrong."""
    data = wire_json.parse(raw)
    if not isinstance(data, Mapping):
        raise ProtocolError("A client event must be a JSON object.", "invalid_json")
    event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
    try:
        return _decode(data, generation, current, event_id)
    except ProtocolError as exc:
        exc.event_id = event_id
        raise


def _decode(
    data: Mapping[str, Any],
    generation: sessions.Generation,
    current: SessionConfig,
    event_id: str | None,
) -> cmd.Command:
    kind = data.get("type")
    model = _MODELS[generation].get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ProtocolError(
            f"Invalid value: {kind!r}. Supported values are: "
            f"{', '.join(sorted(_MODELS[generation]))}.",
            "invalid_value",
            "type",
        )
    if kind in ("session.update", "response.create"):
        where = "session" if kind == "session.update" else "response"
        body = data.get(where)
        sessions.check_size(body, where)
        if generation == "beta":
            refuse_in_beta(
                body.get("tools") if isinstance(body, Mapping) else None, f"{where}.tools"
            )
    try:
        event = model.model_validate(dict(data))
    except ValidationError as exc:
        raise from_validation_error(exc) from None

    _check_session_type(str(kind), generation, current, data.get("session") or {})
    match kind:
        case "session.update":
            return cmd.UpdateSession(
                event_id, sessions.parse_session(generation, data["session"], current)
            )
        case "transcription_session.update":
            shape = sessions.beta_transcription_shape(data["session"])
            return cmd.UpdateSession(event_id, sessions.apply_shape(shape, current))
        case "input_audio_buffer.append":
            return cmd.AppendAudio(event_id, decode_audio(data["audio"], "audio"))
        case "input_audio_buffer.commit":
            return cmd.CommitAudio(event_id)
        case "input_audio_buffer.clear":
            return cmd.ClearAudio(event_id)
        case "output_audio_buffer.clear":
            return cmd.ClearOutputAudio(event_id)
        case "conversation.item.create":
            item = item_from_wire(getattr(event, "item"))  # noqa: B009
            return cmd.CreateItem(event_id, item, data.get("previous_item_id"))
        case "conversation.item.retrieve":
            return cmd.RetrieveItem(event_id, data["item_id"])
        case "conversation.item.delete":
            return cmd.DeleteItem(event_id, data["item_id"])
        case "conversation.item.truncate":
            # The validated (coerced) values: the raw ones may be, say, "10".
            item_id, index, end_ms = (getattr(event, k) for k in _TRUNCATE_FIELDS)
            if end_ms < 0:
                raise ProtocolError("'audio_end_ms' must not be negative.", param="audio_end_ms")
            return cmd.TruncateItem(event_id, item_id, index, end_ms)
        case "response.create":
            return cmd.CreateResponse(event_id, _response_options(generation, data.get("response")))
        case "response.cancel":
            return cmd.CancelResponse(event_id, data.get("response_id"))
    raise ProtocolError(f"Unsupported event type {kind!r}.", "invalid_value", "type")


def _check_session_type(
    kind: str, generation: sessions.Generation, current: SessionConfig, session: Mapping[str, Any]
) -> None:
    """A session keeps its type: a transcription session takes only its own update and no
    ``response.*`` event (it never responds); a realtime session is not turned into one."""
    if current.type == "transcription" and kind.startswith("response."):
        raise ProtocolError(
            f"'{kind}' is not accepted in a transcription session: it never creates responses. "
            "Read the user's words from conversation.item.input_audio_transcription.delta and "
            ".completed.",
            "invalid_value",
            "type",
        )
    if kind == "transcription_session.update":
        asked = "transcription"
    elif kind == "session.update" and generation == "ga":
        asked = "transcription" if session.get("type") == "transcription" else "realtime"
    elif kind == "session.update":
        asked = "realtime"  # beta transcription sessions are updated with their own event
    else:
        return
    if asked != current.type:
        raise ProtocolError(
            f"Passing a {asked} session update event to a {current.type} session is not allowed.",
            "invalid_value",
            "session.type" if kind == "session.update" and generation == "ga" else "type",
        )


def _response_options(generation: sessions.Generation, raw: Any) -> cmd.ResponseOptions:
    if raw is None:
        return cmd.ResponseOptions()
    if not isinstance(raw, Mapping):
        raise ProtocolError("'response' must be an object.", param="response")
    fields: dict[str, Any] = {}
    if raw.get("instructions") is not None:
        fields["instructions"] = raw["instructions"]
    modalities = raw.get("modalities" if generation == "beta" else "output_modalities")
    if modalities is not None:
        if not modalities:
            raise ProtocolError("Output modalities must not be empty.", param="response.modalities")
        fields["audio_output"] = "audio" in modalities
    if generation == "beta":
        voice, fmt = raw.get("voice"), raw.get("output_audio_format")
        max_tokens = raw.get("max_response_output_tokens")
    else:
        output = (raw.get("audio") or {}).get("output") or {}
        voice, fmt = output.get("voice"), output.get("format")
        if isinstance(fmt, Mapping):
            spec = BY_MEDIA_TYPE.get(str(fmt.get("type") or "audio/pcm"))
            fmt = spec.name if spec is not None else None
        max_tokens = raw.get("max_output_tokens")
    if voice is not None:
        fields["voice"] = sessions.check_voice(voice, "response.voice")
    if fmt is not None:
        fields["output_audio_format"] = fmt
    if raw.get("tools") is not None:
        fields["tools"] = sessions.parse_tools(raw["tools"], "response.tools")
        fields["mcp"] = sessions.parse_mcp_tools(raw["tools"], "response.tools")
    if raw.get("tool_choice") is not None:
        fields["tool_choice"] = sessions.parse_tool_choice(
            raw["tool_choice"], fields.get("tools"), "response.tool_choice"
        )
    if raw.get("temperature") is not None:
        sessions.check_range(raw["temperature"], 0.6, 1.2, "response.temperature")
        fields["temperature"] = float(raw["temperature"])
    if max_tokens is not None:
        fields["max_output_tokens"] = sessions.parse_max_tokens(
            max_tokens, "response.max_output_tokens"
        )
    conversation = raw.get("conversation", "auto")
    if conversation not in ("auto", "none"):
        raise ProtocolError(
            "Invalid 'response.conversation': use 'auto' or 'none'.", param="response.conversation"
        )
    fields["out_of_band"] = conversation == "none"
    if raw.get("input") is not None:
        entries: list[Any] = []
        for index, entry in enumerate(raw["input"]):
            if isinstance(entry, Mapping) and entry.get("type") == "item_reference":
                entries.append(str(entry.get("id")))
            else:
                entries.append(item_from_wire(entry, f"response.input[{index}]"))
        fields["input"] = tuple(entries)
    if raw.get("metadata") is not None:
        fields["metadata"] = dict(raw["metadata"])
    return cmd.ResponseOptions(**fields)
