"""Scripted stand-ins for the model stages, for fast state-machine tests on a timeline.

They are not models and no test uses them to claim what a model answers: the live tests do
that with the real pipeline. Here they let a test say "the user speaks from 0.5 s to 2.5 s;
the model answers X" and check the session's events and state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from realtalk.pipeline.llm import Finished, LLMEvent, LLMRequest, TextDelta, ToolCall
from realtalk.pipeline.models import Models
from realtalk.pipeline.stt import Transcript


class EnergyVADStream:
    """Speech = a 32 ms frame louder than -40 dBFS (tones are speech, zeros are silence)."""

    frame_ms = 32

    def __init__(self) -> None:
        self._pending = np.zeros(0, dtype=np.int16)

    def push(self, samples: np.ndarray) -> list[float]:
        audio = np.concatenate([self._pending, samples])
        whole = len(audio) - len(audio) % 512
        out = []
        for start in range(0, whole, 512):
            frame = audio[start : start + 512].astype(np.float64)
            out.append(1.0 if np.sqrt(np.mean(frame**2)) > 327 else 0.0)
        self._pending = audio[whole:]
        return out

    def reset(self) -> None:
        self._pending = np.zeros(0, dtype=np.int16)

    def close(self) -> None:
        pass


class EnergyVAD:
    def stream(self) -> EnergyVADStream:
        return EnergyVADStream()


@dataclass
class ScriptedSTT:
    texts: list[str] = field(default_factory=lambda: ["hello there"])
    calls: int = 0

    def busy(self) -> bool:
        return False

    async def transcribe(
        self, samples: np.ndarray, *, prompt: str | None = None, language: str | None = None
    ) -> Transcript:
        self.calls += 1
        await asyncio.sleep(0)
        text = self.texts[min(self.calls - 1, len(self.texts) - 1)]
        return Transcript(text, len(samples) / 16_000)


@dataclass
class ScriptedLLM:
    """Answers each request with the next script: a list of events, with a pause per token."""

    scripts: list[list[LLMEvent]] = field(default_factory=list)
    token_delay_s: float = 0.0
    requests: list[LLMRequest] = field(default_factory=list)
    context_tokens: int = 4096

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        self.requests.append(request)
        script = self.scripts.pop(0) if self.scripts else [TextDelta("Okay.")]
        for event in script:
            await asyncio.sleep(self.token_delay_s)
            yield event
        yield Finished(prompt_tokens=10, completion_tokens=len(script))


class ToneTTS:
    """50 ms of tone per character: long enough to interrupt, short to compute."""

    sample_rate = 22_050

    async def stream(
        self, text: str, *, speed: float = 1.0, voice: str | None = None
    ) -> AsyncIterator[np.ndarray]:
        await asyncio.sleep(0)
        n = int(self.sample_rate * 0.05 * len(text))
        t = np.arange(n) / self.sample_rate
        yield (np.sin(2 * np.pi * 200 * t) * 8000).astype(np.int16)


def scripted_models(llm: ScriptedLLM | None = None, stt: ScriptedSTT | None = None) -> Models:
    return Models(
        vad=EnergyVAD(), stt=stt or ScriptedSTT(), llm=llm or ScriptedLLM(), tts=ToneTTS()
    )


def text(t: str) -> TextDelta:
    return TextDelta(t)


def call(name: str, arguments: str, call_id: str = "call_1") -> ToolCall:
    return ToolCall(call_id, name, arguments)
