"""The session object of a transcription session (``type: "transcription"``) in each generation.

A transcription session has only input settings: the audio format, the transcription model,
turn detection and noise reduction. Its objects show those and nothing about responses, and
its turn detection shows only what decides a turn (a transcription session never responds).
Parsing is the one session parser's (:mod:`realtalk.protocol.sessions`).
"""

from __future__ import annotations

import typing
from typing import Any

from openai.types.beta.realtime.transcription_session import InputAudioTranscription

from realtalk.core.config import SessionConfig, TurnDetection
from realtalk.core.formats import ga_format_object
from realtalk.protocol.sessions import Generation

OBJECT = "realtime.transcription_session"
BETA_MODELS = frozenset(
    typing.get_args(typing.get_args(InputAudioTranscription.model_fields["model"].annotation)[0])
)
"""The beta transcription session type admits only these model names; others show as null."""


def _turn_detection(turn: TurnDetection | None) -> dict[str, Any] | None:
    if turn is None:
        return None
    if turn.type == "semantic_vad":
        return {"type": "semantic_vad", "eagerness": turn.eagerness}
    return {
        "type": "server_vad",
        "threshold": turn.threshold,
        "prefix_padding_ms": turn.prefix_padding_ms,
        "silence_duration_ms": turn.silence_duration_ms,
    }


def _transcription(config: SessionConfig, generation: Generation) -> dict[str, Any] | None:
    settings = config.transcription
    if settings is None:
        return None
    model: str | None = settings.model
    if generation == "beta" and model not in BETA_MODELS:
        model = None
    return {"model": model, "language": settings.language, "prompt": settings.prompt}


def beta_transcription_session_object(
    config: SessionConfig,
    session_id: str,
    expires_at: int,
    client_secret: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The flat object of ``POST /v1/realtime/transcription_sessions`` and of
    ``transcription_session.created/updated`` (whose ``client_secret`` has no value: the
    ``openai`` type requires the field)."""
    return {
        "id": session_id,
        "object": OBJECT,
        "expires_at": expires_at,
        "modalities": ["text"],
        "input_audio_format": config.input_audio_format,
        "input_audio_transcription": _transcription(config, "beta"),
        "input_audio_noise_reduction": config.echoed.get("noise_reduction"),
        "turn_detection": _turn_detection(config.turn_detection),
        "include": config.echoed.get("include"),
        "client_secret": client_secret or {"value": "", "expires_at": expires_at},
    }


def ga_transcription_session_object(
    config: SessionConfig, session_id: str, expires_at: int
) -> dict[str, Any]:
    """The nested object of GA ``session.created/updated`` and ``client_secrets``."""
    return {
        "type": "transcription",
        "object": OBJECT,
        "id": session_id,
        "expires_at": expires_at,
        "audio": {
            "input": {
                "format": ga_format_object(config.input_audio_format),
                "transcription": _transcription(config, "ga"),
                "noise_reduction": config.echoed.get("noise_reduction"),
                "turn_detection": _turn_detection(config.turn_detection),
            }
        },
        "include": config.echoed.get("include"),
    }


def transcription_session_object(
    generation: Generation, config: SessionConfig, session_id: str, expires_at: int
) -> dict[str, Any]:
    if generation == "beta":
        return beta_transcription_session_object(config, session_id, expires_at)
    return ga_transcription_session_object(config, session_id, expires_at)
