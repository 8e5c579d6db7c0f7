"""Session objects on the wire: beta (flat) and GA (nested) shapes ⇄ :class:`SessionConfig`.

Shapes are validated with the ``openai`` package's own models; range rules that the types
cannot express (OpenAI's documented limits) are checked here and reported with the ``param``.
"""

from __future__ import annotations

import functools
import json
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from openai.types.beta.realtime.session import Session as BetaSession
from openai.types.beta.realtime.transcription_session_update import (
    Session as BetaTranscriptionSession,
)
from openai.types.realtime.realtime_session_create_request import RealtimeSessionCreateRequest
from openai.types.realtime.realtime_transcription_session_create_request import (
    RealtimeTranscriptionSessionCreateRequest,
)
from pydantic import BaseModel, ValidationError

from realtalk.core.config import (
    ECHOED,
    FunctionTool,
    SessionConfig,
    Transcription,
    Truncation,
    TurnDetection,
)
from realtalk.core.formats import BY_MEDIA_TYPE, ga_format_object
from realtalk.core.mcp import McpChoice, McpServer
from realtalk.protocol.errors import ProtocolError, from_validation_error
from realtalk.protocol.mcp import (
    mcp_choice_object,
    mcp_tool_object,
    parse_mcp_choice,
    refuse_in_beta,
)
from realtalk.protocol.mcp import parse_mcp_tools as parse_mcp_tools
from realtalk.protocol.wire_json import check_depth

Generation = Literal["beta", "ga"]

OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}
)
LOCAL_VOICES = frozenset({"joe"})
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


MAX_TOOLS = 128
"""Tools in a session or a response at most (OpenAI's documented limit on function tools)."""
MAX_TOOL_CHARS = 16 * 1024
"""One tool's definition (name, description and parameter schema), as JSON, at most."""
MAX_SCHEMA_DEPTH = 32
"""A tool's parameter schema nests objects and arrays at most this deep."""
MAX_INSTRUCTIONS_CHARS = 256_000
"""Instructions at most this long (OpenAI documents the same bound for an assistant's)."""


def check_size(data: Any, prefix: str) -> None:
    """OpenAI's length limits on a session or response object, checked on the raw JSON
    before any validation whose cost grows with it."""
    if not isinstance(data, Mapping):
        return
    instructions = data.get("instructions")
    if isinstance(instructions, str) and len(instructions) > MAX_INSTRUCTIONS_CHARS:
        raise ProtocolError(
            f"Invalid '{prefix}.instructions': string too long. Expected a string with maximum "
            f"length {MAX_INSTRUCTIONS_CHARS}, but got a string with length {len(instructions)} "
            "instead.",
            "string_above_max_length",
            f"{prefix}.instructions",
        )
    tools = data.get("tools")
    if isinstance(tools, list) and len(tools) > MAX_TOOLS:
        raise ProtocolError(
            f"Invalid '{prefix}.tools': array too long. Expected an array with maximum length "
            f"{MAX_TOOLS}, but got an array with length {len(tools)} instead.",
            "array_above_max_length",
            f"{prefix}.tools",
        )


def _validate(model: type[BaseModel], data: Any, prefix: str) -> dict[str, Any]:
    """Validate with the ``openai`` model; return the coerced fields the client actually sent."""
    if not isinstance(data, Mapping):
        raise ProtocolError(f"'{prefix}' must be an object.", param=prefix)
    try:
        validated = model.model_validate(dict(data))
    except ValidationError as exc:
        raise from_validation_error(exc, prefix) from None
    return validated.model_dump(exclude_unset=True)


def check_range(value: float, low: float, high: float, param: str) -> None:
    if not low <= value <= high:
        raise ProtocolError(
            f"Invalid '{param}': expected a value between {low} and {high}, got {value}.",
            "decimal_above_max_value" if value > high else "decimal_below_min_value",
            param,
        )


def check_voice(voice: Any, param: str) -> str:
    if isinstance(voice, Mapping):
        voice = voice.get("id")
    if not isinstance(voice, str) or voice not in OPENAI_VOICES | LOCAL_VOICES:
        names = ", ".join(sorted(OPENAI_VOICES | LOCAL_VOICES))
        raise ProtocolError(
            f"Invalid '{param}': {voice!r}. Supported voices: {names}.", param=param
        )
    return voice


def parse_max_tokens(value: Any, param: str) -> int | Literal["inf"]:
    if value == "inf":
        return "inf"
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 4096:
        raise ProtocolError(
            f"Invalid '{param}': expected an integer between 1 and 4096 or 'inf', got {value!r}.",
            param=param,
        )
    return value


def _turn_detection(
    raw: Mapping[str, Any] | None, current: TurnDetection | None, param: str
) -> TurnDetection | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ProtocolError(f"'{param}' must be an object or null.", param=param)
    kind = raw.get("type", "server_vad")
    base = current if current is not None and current.type == kind else TurnDetection(type=kind)
    fields: dict[str, Any] = {}
    for name in (
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
        "create_response",
        "interrupt_response",
        "idle_timeout_ms",
        "eagerness",
    ):
        if name in raw and (raw[name] is not None or name == "idle_timeout_ms"):
            fields[name] = raw[name]
    result = replace(base, **fields, type=kind)
    check_range(result.threshold, 0.0, 1.0, f"{param}.threshold")
    check_range(result.prefix_padding_ms, 0, 10_000, f"{param}.prefix_padding_ms")
    check_range(result.silence_duration_ms, 0, 10_000, f"{param}.silence_duration_ms")
    if result.idle_timeout_ms is not None:
        check_range(result.idle_timeout_ms, 5_000, 30_000, f"{param}.idle_timeout_ms")
    return result


def _transcription(raw: Mapping[str, Any] | None) -> Transcription | None:
    """A client's transcription object replaces the session's whole (no server default, such
    as the server's own prompt, survives inside it)."""
    if raw is None:
        return None
    transcription = Transcription(language=raw.get("language"), prompt=raw.get("prompt"))
    return replace(transcription, model=raw["model"]) if raw.get("model") else transcription


def parse_tools(raw: list[Any], param: str) -> tuple[FunctionTool, ...]:
    tools: list[FunctionTool] = []
    seen: set[str] = set()
    for index, tool in enumerate(raw):
        where = f"{param}[{index}]"
        if tool.get("type") == "mcp":
            continue  # parse_mcp_tools
        if tool.get("type", "function") != "function":
            raise ProtocolError(
                f"Unsupported tool type {tool.get('type')!r} at '{where}': only 'function' and "
                "'mcp' tools run on the embedded engine.",
                param=f"{where}.type",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise ProtocolError(
                f"Invalid '{where}.name': a function name of 1-64 letters, digits, '_' or '-'.",
                param=f"{where}.name",
            )
        if name in seen:
            raise ProtocolError(f"Duplicate tool name {name!r}.", param=f"{where}.name")
        seen.add(name)
        parameters = tool.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise ProtocolError(
                f"'{where}.parameters' must be a JSON Schema object.", param=f"{where}.parameters"
            )
        if len(json.dumps(tool)) > MAX_TOOL_CHARS:
            raise ProtocolError(
                f"Invalid '{where}': a tool's definition is at most {MAX_TOOL_CHARS} characters "
                "of JSON.",
                "string_above_max_length",
                where,
            )
        check_depth(parameters, MAX_SCHEMA_DEPTH, f"{where}.parameters")
        problem = _schema_problem(json.dumps(parameters, sort_keys=True))
        if problem is not None:
            raise ProtocolError(
                f"Invalid '{where}.parameters': not a valid JSON Schema ({problem}).",
                param=f"{where}.parameters",
            )
        tools.append(FunctionTool(name, tool.get("description") or "", parameters))
    return tuple(tools)


@functools.lru_cache(maxsize=512)
def _schema_problem(schema: str) -> str | None:
    """Why a tool's parameter schema (canonical JSON) is not a valid JSON Schema, or None.
    Milliseconds each, so remembered: clients send the same tools on every update."""
    try:
        Draft202012Validator.check_schema(json.loads(schema))
    except SchemaError as exc:
        return exc.message
    return None


def parse_tool_choice(
    choice: Any,
    tools: tuple[FunctionTool, ...] | None,
    param: str,
    servers: tuple[McpServer, ...] | None = None,
) -> str | McpChoice:
    """``auto``/``none``/``required``, a function's name (checked against ``tools`` if given)
    or an MCP server's tool (checked against ``servers`` if given)."""
    if isinstance(choice, Mapping) and choice.get("type") == "mcp":
        return parse_mcp_choice(choice, servers, param)
    if isinstance(choice, Mapping):
        choice = choice.get("name")
    if choice in ("auto", "none", "required"):
        return str(choice)
    if isinstance(choice, str) and (tools is None or any(tool.name == choice for tool in tools)):
        return choice
    raise ProtocolError(
        f"Invalid '{param}': {choice!r} is not 'auto', 'none', 'required' or a configured "
        "function's name.",
        param=param,
    )


@dataclass(frozen=True, slots=True)
class Field:
    """One setting as the client sent it, and where (for errors)."""

    value: Any
    param: str


Shape = dict[str, Field]
"""A session object in one normalised shape, whatever its generation: the engine's names
(``SessionConfig``'s, plus the accepted-but-ignored ones) → value and wire path."""

_BETA_NAMES = {
    "type": "type",
    "model": "model",
    "instructions": "instructions",
    "voice": "voice",
    "modalities": "output_modalities",
    "input_audio_format": "input_audio_format",
    "output_audio_format": "output_audio_format",
    "input_audio_transcription": "transcription",
    "turn_detection": "turn_detection",
    "tools": "tools",
    "tool_choice": "tool_choice",
    "temperature": "temperature",
    "max_response_output_tokens": "max_output_tokens",
    "speed": "speed",
    "input_audio_noise_reduction": "noise_reduction",
    "tracing": "tracing",
    "include": "include",
}
_GA_NAMES = {
    "type": "type",
    "model": "model",
    "instructions": "instructions",
    "output_modalities": "output_modalities",
    "audio.input.format": "input_audio_format",
    "audio.input.transcription": "transcription",
    "audio.input.turn_detection": "turn_detection",
    "audio.input.noise_reduction": "noise_reduction",
    "audio.output.format": "output_audio_format",
    "audio.output.voice": "voice",
    "audio.output.speed": "speed",
    "tools": "tools",
    "tool_choice": "tool_choice",
    "max_output_tokens": "max_output_tokens",
    "truncation": "truncation",
    "tracing": "tracing",
    "prompt": "prompt",
    "include": "include",
    "parallel_tool_calls": "parallel_tool_calls",
    "reasoning": "reasoning",
}
_BETA_TRANSCRIPTION_NAMES = {
    name: _BETA_NAMES[name]
    for name in (
        "input_audio_format",
        "input_audio_transcription",
        "turn_detection",
        "input_audio_noise_reduction",
        "include",
    )
}
_GA_TRANSCRIPTION_NAMES = {
    name: _GA_NAMES[name]
    for name in (
        "type",
        "audio.input.format",
        "audio.input.transcription",
        "audio.input.turn_detection",
        "audio.input.noise_reduction",
        "include",
    )
}
NULLABLE = frozenset({"transcription", "turn_detection"} | set(ECHOED))
"""Settings where ``null`` means "off"; for the others ``null`` keeps the current value."""


def _shape(data: Mapping[str, Any], names: Mapping[str, str]) -> Shape:
    shape: Shape = {}
    for path, name in names.items():
        node: Any = data
        for key in path.split("."):
            if not isinstance(node, Mapping) or key not in node:
                break
            node = node[key]
        else:
            shape[name] = Field(node, "session." + path)
    return shape


def beta_shape(data: Any) -> Shape:
    """A beta (flat) session object, validated by the ``openai`` package's type, normalised."""
    check_size(data, "session")
    refuse_in_beta(data.get("tools") if isinstance(data, Mapping) else None, "session.tools")
    return _shape(_validate(BetaSession, data, "session"), _BETA_NAMES)


def beta_transcription_shape(data: Any) -> Shape:
    """A beta transcription session object (``POST /v1/realtime/transcription_sessions``,
    ``transcription_session.update``), validated by the ``openai`` package's type, normalised."""
    shape = _shape(_validate(BetaTranscriptionSession, data, "session"), _BETA_TRANSCRIPTION_NAMES)
    shape["type"] = Field("transcription", "session.type")
    return shape


def ga_shape(data: Any) -> Shape:
    """A GA (nested) session object, ``realtime`` or ``transcription``, validated by the
    ``openai`` package's type, normalised."""
    check_size(data, "session")
    if isinstance(data, Mapping) and data.get("type") == "transcription":
        valid = _validate(RealtimeTranscriptionSessionCreateRequest, data, "session")
        shape = _shape(valid, _GA_TRANSCRIPTION_NAMES)
    else:
        shape = _shape(_validate(RealtimeSessionCreateRequest, data, "session"), _GA_NAMES)
    for name in ("input_audio_format", "output_audio_format"):
        if name in shape and shape[name].value is not None:
            fmt = shape[name]
            shape[name] = Field(BY_MEDIA_TYPE[fmt.value.get("type") or "audio/pcm"].name, fmt.param)
    return shape


def apply_shape(shape: Shape, base: SessionConfig) -> SessionConfig:
    """The one session parser: a normalised session object applied to ``base``. Absent
    settings keep their value; ``null`` turns off the ones that can be off."""
    changes: dict[str, Any] = {}
    echoed = dict(base.echoed)
    for name, field in shape.items():
        value, param = field.value, field.param
        if value is None and name not in NULLABLE:
            continue
        match name:
            case "type":
                if value not in ("realtime", "transcription"):
                    raise ProtocolError(
                        f"Invalid '{param}': {value!r}. Use 'realtime' or 'transcription'.",
                        "invalid_value",
                        param,
                    )
                changes["type"] = value
            case "model":
                if value:
                    changes["model"] = value
            case "instructions":
                changes["instructions"] = value
            case "voice":
                changes["voice"] = check_voice(value, param)
            case "output_modalities":
                if not value:
                    raise ProtocolError(f"'{param}' must not be empty.", param=param)
                changes["audio_output"] = "audio" in value
            case "input_audio_format" | "output_audio_format":
                changes[name] = value
            case "transcription":
                changes["transcription"] = _transcription(value)
            case "turn_detection":
                changes["turn_detection"] = _turn_detection(value, base.turn_detection, param)
            case "tools":
                changes["tools"] = parse_tools(value, param)
                changes["mcp"] = parse_mcp_tools(value, param)
            case "tool_choice":
                changes["tool_choice"] = parse_tool_choice(
                    value, changes.get("tools", base.tools), param, changes.get("mcp", base.mcp)
                )
            case "temperature":
                check_range(value, 0.6, 1.2, param)
                changes["temperature"] = float(value)
            case "max_output_tokens":
                changes["max_output_tokens"] = parse_max_tokens(value, param)
            case "speed":
                check_range(value, 0.25, 1.5, param)
                changes["speed"] = float(value)
            case "truncation":
                changes["truncation"] = _truncation(value, param)
            case _ if name in ECHOED:
                echoed[name] = value
            case _:
                raise AssertionError(f"unhandled session setting {name}")
    changes["echoed"] = echoed
    config = base.with_changes(**changes)
    return config.as_transcription() if config.type == "transcription" else config


def parse_session(generation: Generation, data: Any, base: SessionConfig) -> SessionConfig:
    """A client's session object (either generation) applied to ``base``."""
    shape = beta_shape(data) if generation == "beta" else ga_shape(data)
    return apply_shape(shape, base)


def _truncation(value: Any, param: str) -> Truncation:
    if value in ("auto", "disabled"):
        return Truncation(type=value)
    ratio = value.get("retention_ratio")
    check_range(ratio, 0.0, 1.0, f"{param}.retention_ratio")
    limit = (value.get("token_limits") or {}).get("post_instructions")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ProtocolError(
            f"Invalid '{param}.token_limits.post_instructions': a positive integer.",
            param=f"{param}.token_limits.post_instructions",
        )
    return Truncation(type="retention_ratio", retention_ratio=float(ratio), post_instructions=limit)


def _turn_detection_object(turn: TurnDetection | None) -> dict[str, Any] | None:
    if turn is None:
        return None
    if turn.type == "semantic_vad":
        return {
            "type": "semantic_vad",
            "eagerness": turn.eagerness,
            "create_response": turn.create_response,
            "interrupt_response": turn.interrupt_response,
        }
    return {
        "type": "server_vad",
        "threshold": turn.threshold,
        "prefix_padding_ms": turn.prefix_padding_ms,
        "silence_duration_ms": turn.silence_duration_ms,
        "create_response": turn.create_response,
        "interrupt_response": turn.interrupt_response,
        "idle_timeout_ms": turn.idle_timeout_ms,
    }


def _tool_objects(tools: tuple[FunctionTool, ...]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "name": t.name,
            "description": t.description,
            "parameters": t.parameters,
        }
        for t in tools
    ]


def _transcription_object(transcription: Transcription | None) -> dict[str, Any] | None:
    if transcription is None:
        return None
    return {
        "model": transcription.model,
        "language": transcription.language,
        "prompt": transcription.prompt,
    }


def _beta_model_names() -> frozenset[str]:
    annotation = BetaSession.model_fields["model"].annotation
    names: set[str] = set()
    for arg in typing.get_args(annotation):
        names.update(a for a in typing.get_args(arg) if isinstance(a, str))
    return frozenset(names)


BETA_MODEL_NAMES = _beta_model_names()
"""The beta session type only admits OpenAI's model names; others are reported as null."""


def beta_session_object(config: SessionConfig, session_id: str, expires_at: int) -> dict[str, Any]:
    """The flat session object of ``session.created`` and ``POST /v1/realtime/sessions``."""
    return {
        "id": session_id,
        "object": "realtime.session",
        "expires_at": expires_at,
        "model": config.model if config.model in BETA_MODEL_NAMES else None,
        "modalities": ["text", "audio"] if config.audio_output else ["text"],
        "instructions": config.instructions,
        "voice": config.voice,
        "input_audio_format": config.input_audio_format,
        "output_audio_format": config.output_audio_format,
        "input_audio_transcription": _transcription_object(config.transcription),
        "input_audio_noise_reduction": config.echoed.get("noise_reduction"),
        "turn_detection": _turn_detection_object(config.turn_detection),
        "tools": _tool_objects(config.tools),
        "tool_choice": config.tool_choice,
        "temperature": config.temperature,
        "max_response_output_tokens": config.max_output_tokens,
        "speed": config.speed,
        "tracing": config.echoed.get("tracing"),
        **({"include": config.echoed["include"]} if "include" in config.echoed else {}),
    }


def ga_session_object(config: SessionConfig, session_id: str, expires_at: int) -> dict[str, Any]:
    """The nested session object of GA ``session.created`` and ``client_secrets``."""
    tool_choice: Any = config.tool_choice
    if isinstance(tool_choice, McpChoice):
        tool_choice = mcp_choice_object(tool_choice)
    elif tool_choice not in ("auto", "none", "required"):
        tool_choice = {"type": "function", "name": tool_choice}
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": config.model,
        "output_modalities": ["audio"] if config.audio_output else ["text"],
        "instructions": config.instructions,
        "audio": {
            "input": {
                "format": ga_format_object(config.input_audio_format),
                "transcription": _transcription_object(config.transcription),
                "noise_reduction": config.echoed.get("noise_reduction"),
                "turn_detection": _turn_detection_object(config.turn_detection),
            },
            "output": {
                "format": ga_format_object(config.output_audio_format),
                "voice": config.voice,
                "speed": config.speed,
            },
        },
        "tools": _tool_objects(config.tools) + [mcp_tool_object(s) for s in config.mcp],
        "tool_choice": tool_choice,
        "max_output_tokens": config.max_output_tokens,
        "tracing": config.echoed.get("tracing"),
        "truncation": _truncation_object(config.truncation),
        "prompt": config.echoed.get("prompt"),
        "expires_at": expires_at,
        "include": config.echoed.get("include"),
        **{
            name: config.echoed[name]
            for name in ("parallel_tool_calls", "reasoning")
            if name in config.echoed
        },
    }


def _truncation_object(truncation: Truncation) -> Any:
    if truncation.type != "retention_ratio":
        return truncation.type
    limits = (
        {"token_limits": {"post_instructions": truncation.post_instructions}}
        if truncation.post_instructions is not None
        else {}
    )
    return {"type": "retention_ratio", "retention_ratio": truncation.retention_ratio, **limits}


def session_object(
    generation: Generation, config: SessionConfig, session_id: str, expires_at: int
) -> dict[str, Any]:
    if generation == "beta":
        return beta_session_object(config, session_id, expires_at)
    return ga_session_object(config, session_id, expires_at)
