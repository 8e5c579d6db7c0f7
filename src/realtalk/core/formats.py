"""The one audio-format table: each wire format's beta name, GA media type, rate and width."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AudioFormat = Literal["pcm16", "g711_ulaw", "g711_alaw"]
"""A format by its beta name, the engine's own."""


@dataclass(frozen=True, slots=True)
class FormatSpec:
    name: AudioFormat
    media_type: str
    """The GA name (``audio.input.format.type``)."""
    rate: int
    sample_bytes: int


FORMATS: dict[AudioFormat, FormatSpec] = {
    "pcm16": FormatSpec("pcm16", "audio/pcm", 24_000, 2),
    "g711_ulaw": FormatSpec("g711_ulaw", "audio/pcmu", 8_000, 1),
    "g711_alaw": FormatSpec("g711_alaw", "audio/pcma", 8_000, 1),
}
BY_MEDIA_TYPE: dict[str, FormatSpec] = {spec.media_type: spec for spec in FORMATS.values()}


def ga_format_object(fmt: AudioFormat) -> dict[str, object]:
    """``{"type": "audio/pcm", "rate": 24000}`` or ``{"type": "audio/pcmu"}``."""
    spec = FORMATS[fmt]
    if spec.name == "pcm16":
        return {"type": spec.media_type, "rate": spec.rate}
    return {"type": spec.media_type}
