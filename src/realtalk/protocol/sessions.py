"""Session objects on the wire: beta (flat) and GA (nested) shapes ⇄ :class:`SessionConfig`.

Shapes are validated with the ``openai`` package's own models; range rules that the types
cannot express (OpenAI's documented limits) are checked here and reported with the ``param``.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from openai.types.beta.realtime.session import Session as BetaSession
from openai.types.realtime.realtime_session_create_request import RealtimeSessionCreateRequest
from pydantic import BaseModel, ValidationError

from realtalk.core.config import (
    FunctionTool,
    SessionConfig,
    Transcription,
    TurnDetection,
)
from realtalk.core.formats import BY_MEDIA_TYPE, AudioFormat, ga_format_object
from realtalk.protocol.errors import ProtocolError, from_validation_error

Generation = Literal["beta", "ga"]

OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}
)
LOCAL_VOICES = frozenset({"joe"})
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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


def _transcription(
    raw: Mapping[str, Any] | None, current: Transcription | None
) -> Transcription | None:
    if raw is None:
        return None
    base = current or Transcription()
    return Transcription(
        model=raw.get("model") or base.model,
        language=raw.get("language", base.language),
        prompt=raw.get("prompt", base.prompt),
    )


def parse_tools(raw: list[Any], param: str) -> tuple[FunctionTool, ...]:
    tools: list[FunctionTool] = []
    seen: set[str] = set()
    for index, tool in enumerate(raw):
        where = f"{param}[{index}]"
        if tool.get("type", "function") != "function":
            raise ProtocolError(
                f"Unsupported tool type {tool.get('type')!r} at '{where}': only 'function' tools "
                "run on the embedded engine.",
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
        try:
            Draft202012Validator.check_schema(parameters)
        except SchemaError as exc:
            raise ProtocolError(
                f"Invalid '{where}.parameters': not a valid JSON Schema ({exc.message}).",
                param=f"{where}.parameters",
            ) from None
        tools.append(FunctionTool(name, tool.get("description") or "", parameters))
    return tuple(tools)


def parse_tool_choice(choice: Any, tools: tuple[FunctionTool, ...] | None, param: str) -> str:
    """``auto``/``none``/``required`` or a function's name (checked against ``tools`` if given)."""
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


def parse_beta_session(data: Any, base: SessionConfig) -> SessionConfig:
    """Apply a beta (flat) session object to ``base``; keys that are absent keep their value."""
    data = _validate(BetaSession, data, "session")
    changes: dict[str, Any] = {}
    if data.get("model"):
        changes["model"] = data["model"]
    if "instructions" in data and data["instructions"] is not None:
        changes["instructions"] = data["instructions"]
    if "voice" in data and data["voice"] is not None:
        changes["voice"] = check_voice(data["voice"], "session.voice")
    if data.get("modalities") is not None:
        modalities = data["modalities"]
        if not modalities:
            raise ProtocolError(
                "'session.modalities' must not be empty.", param="session.modalities"
            )
        changes["audio_output"] = "audio" in modalities
    for key in ("input_audio_format", "output_audio_format"):
        if data.get(key) is not None:
            changes[key] = data[key]
    if "input_audio_transcription" in data:
        changes["transcription"] = _transcription(
            data["input_audio_transcription"], base.transcription
        )
    if "turn_detection" in data:
        changes["turn_detection"] = _turn_detection(
            data["turn_detection"], base.turn_detection, "session.turn_detection"
        )
    if data.get("tools") is not None:
        changes["tools"] = parse_tools(data["tools"], "session.tools")
    if data.get("tool_choice") is not None:
        changes["tool_choice"] = parse_tool_choice(
            data["tool_choice"], changes.get("tools", base.tools), "session.tool_choice"
        )
    if data.get("temperature") is not None:
        check_range(data["temperature"], 0.6, 1.2, "session.temperature")
        changes["temperature"] = float(data["temperature"])
    if data.get("max_response_output_tokens") is not None:
        changes["max_output_tokens"] = parse_max_tokens(
            data["max_response_output_tokens"], "session.max_response_output_tokens"
        )
    if data.get("speed") is not None:
        check_range(data["speed"], 0.25, 1.5, "session.speed")
        changes["speed"] = float(data["speed"])
    return base.with_changes(**changes)


def _format_name(fmt: Mapping[str, Any]) -> AudioFormat:
    return BY_MEDIA_TYPE[fmt.get("type") or "audio/pcm"].name


def parse_ga_session(data: Any, base: SessionConfig) -> SessionConfig:
    """Apply a GA (nested) session object to ``base``; keys that are absent keep their value."""
    if isinstance(data, Mapping) and data.get("type") == "transcription":
        raise ProtocolError(
            "Transcription-only sessions are not supported by the embedded engine yet; use "
            "type 'realtime' with audio.input.transcription.",
            "unsupported_session_type",
            "session.type",
        )
    data = _validate(RealtimeSessionCreateRequest, data, "session")
    changes: dict[str, Any] = {}
    if data.get("model"):
        changes["model"] = data["model"]
    if data.get("instructions") is not None:
        changes["instructions"] = data["instructions"]
    if data.get("output_modalities") is not None:
        modalities = data["output_modalities"]
        if not modalities:
            raise ProtocolError(
                "'session.output_modalities' must not be empty.", param="session.output_modalities"
            )
        changes["audio_output"] = "audio" in modalities
    audio = data.get("audio") or {}
    audio_in = audio.get("input") or {}
    audio_out = audio.get("output") or {}
    if audio_in.get("format") is not None:
        changes["input_audio_format"] = _format_name(audio_in["format"])
    if "transcription" in audio_in:
        changes["transcription"] = _transcription(audio_in["transcription"], base.transcription)
    if "turn_detection" in audio_in:
        changes["turn_detection"] = _turn_detection(
            audio_in["turn_detection"], base.turn_detection, "session.audio.input.turn_detection"
        )
    if audio_out.get("format") is not None:
        changes["output_audio_format"] = _format_name(audio_out["format"])
    if audio_out.get("voice") is not None:
        changes["voice"] = check_voice(audio_out["voice"], "session.audio.output.voice")
    if audio_out.get("speed") is not None:
        check_range(audio_out["speed"], 0.25, 1.5, "session.audio.output.speed")
        changes["speed"] = float(audio_out["speed"])
    if data.get("tools") is not None:
        changes["tools"] = parse_tools(data["tools"], "session.tools")
    if data.get("tool_choice") is not None:
        changes["tool_choice"] = parse_tool_choice(
            data["tool_choice"], changes.get("tools", base.tools), "session.tool_choice"
        )
    if data.get("max_output_tokens") is not None:
        changes["max_output_tokens"] = parse_max_tokens(
            data["max_output_tokens"], "session.max_output_tokens"
        )
    return base.with_changes(**changes)


def parse_session(
    generation: Generation, data: Mapping[str, Any], base: SessionConfig
) -> SessionConfig:
    if generation == "beta":
        return parse_beta_session(data, base)
    return parse_ga_session(data, base)


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
        "input_audio_noise_reduction": None,
        "turn_detection": _turn_detection_object(config.turn_detection),
        "tools": _tool_objects(config.tools),
        "tool_choice": config.tool_choice,
        "temperature": config.temperature,
        "max_response_output_tokens": config.max_output_tokens,
        "speed": config.speed,
        "tracing": None,
    }


def ga_session_object(config: SessionConfig, session_id: str, expires_at: int) -> dict[str, Any]:
    """The nested session object of GA ``session.created`` and ``client_secrets``."""
    tool_choice: Any = config.tool_choice
    if tool_choice not in ("auto", "none", "required"):
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
                "noise_reduction": None,
                "turn_detection": _turn_detection_object(config.turn_detection),
            },
            "output": {
                "format": ga_format_object(config.output_audio_format),
                "voice": config.voice,
                "speed": config.speed,
            },
        },
        "tools": _tool_objects(config.tools),
        "tool_choice": tool_choice,
        "max_output_tokens": config.max_output_tokens,
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": expires_at,
        "include": None,
    }


def session_object(
    generation: Generation, config: SessionConfig, session_id: str, expires_at: int
) -> dict[str, Any]:
    if generation == "beta":
        return beta_session_object(config, session_id, expires_at)
    return ga_session_object(config, session_id, expires_at)
