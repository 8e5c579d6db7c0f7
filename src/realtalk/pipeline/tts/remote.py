"""Any OpenAI-compatible ``/v1/audio/speech`` server that streams PCM (OpenAI,
Kokoro-FastAPI, speaches, another realtalk) as the TTS stage."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import numpy as np
import openai

from realtalk.audio.pcm import Int16Array
from realtalk.pipeline.remote import RemoteStage, stage_failure

PCM_RATE = 24_000
"""OpenAI's ``pcm``: 24 kHz, 16-bit little-endian, mono."""


class RemoteTTS:
    """Streams ``response_format=pcm`` piece by piece as the server sends it; failures raise
    ``RemoteStageError``."""

    sample_rate = PCM_RATE

    def __init__(self, stage: RemoteStage) -> None:
        self.stage = stage
        self.client = stage.client()

    async def aclose(self) -> None:
        await self.client.close()

    async def stream(
        self, text: str, *, speed: float = 1.0, voice: str | None = None
    ) -> AsyncIterator[Int16Array]:
        """The operator's ``REALTALK_TTS_VOICE`` when set, else the session's voice name."""
        odd = b""  # a sample split between two network reads
        try:
            async with self.client.audio.speech.with_streaming_response.create(
                model=self.stage.model,
                voice=self.stage.voice or voice or "alloy",
                input=text,
                response_format="pcm",
                speed=speed,
            ) as response:
                async for data in response.iter_bytes():
                    data = odd + data
                    even = len(data) - len(data) % 2
                    odd = data[even:]
                    if even:
                        yield np.frombuffer(data[:even], dtype="<i2").astype(np.int16)
        except (openai.APIError, httpx.HTTPError) as exc:
            raise stage_failure(self.stage, "text-to-speech", exc) from exc
