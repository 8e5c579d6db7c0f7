"""Any OpenAI-compatible ``/v1/audio/transcriptions`` server (vLLM's Whisper, speaches,
OpenAI, another realtalk) as the STT stage."""

from __future__ import annotations

import httpx
import openai

from realtalk.audio.pcm import INTERNAL_RATE, Int16Array, wav_bytes
from realtalk.pipeline.remote import RemoteStage, stage_failure
from realtalk.pipeline.stt import Transcript


class RemoteSTT:
    """Posts each utterance as a 16 kHz WAV file; failures raise ``RemoteStageError``."""

    def __init__(self, stage: RemoteStage) -> None:
        self.stage = stage
        self.client = stage.client()
        self._pending = 0

    def busy(self) -> bool:
        return self._pending > 0

    async def aclose(self) -> None:
        await self.client.close()

    async def transcribe(
        self, samples: Int16Array, *, prompt: str | None = None, language: str | None = None
    ) -> Transcript:
        self._pending += 1
        try:
            result = await self.client.audio.transcriptions.create(
                model=self.stage.model,
                file=("audio.wav", wav_bytes(samples, INTERNAL_RATE), "audio/wav"),
                response_format="json",
                prompt=prompt or openai.omit,
                language=language or openai.omit,
            )
        except (openai.APIError, httpx.HTTPError) as exc:
            raise stage_failure(self.stage, "speech-to-text", exc) from exc
        finally:
            self._pending -= 1
        return Transcript(result.text.strip(), len(samples) / INTERNAL_RATE)
