"""Loading the pipeline's models once per process."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from realtalk.pipeline import weights
from realtalk.pipeline.llm import LLM

if TYPE_CHECKING:  # the runtimes load only with the models (engine=openai needs none)
    from realtalk.pipeline.stt.whisper import WhisperSTT
    from realtalk.pipeline.tts.piper import PiperTTS
    from realtalk.pipeline.vad.silero import SileroVAD

log = logging.getLogger("realtalk.models")


@dataclass
class Models:
    vad: SileroVAD
    stt: WhisperSTT
    llm: LLM
    tts: PiperTTS


@dataclass(frozen=True)
class ModelChoice:
    model_dir: Path
    stt: str = "whisper-base"
    llm: str = "qwen2.5-0.5b"
    tts: str = "joe"
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_context_tokens: int = 4096
    llm_repack: bool = False
    threads: int = 2


def load_models(choice: ModelChoice) -> Models:
    """Resolve and load every stage (blocking: call from a worker thread)."""
    from realtalk.pipeline.stt.whisper import WhisperSTT
    from realtalk.pipeline.tts.piper import PiperTTS
    from realtalk.pipeline.vad.silero import SileroVAD

    started = time.perf_counter()
    vad = SileroVAD(weights.resolve_model(choice.model_dir, "vad", "silero-vad"))
    stt = WhisperSTT(
        weights.resolve_model(choice.model_dir, "stt", choice.stt), cpu_threads=choice.threads
    )
    llm: LLM
    if choice.llm_base_url:
        from realtalk.pipeline.llm.openai_compat import ChatCompletionsLLM

        llm = ChatCompletionsLLM(
            choice.llm_base_url, choice.llm, choice.llm_api_key, choice.llm_context_tokens
        )
    else:
        from realtalk.pipeline.llm.local import LlamaLLM

        local = LlamaLLM(
            weights.resolve_model(choice.model_dir, "llm", choice.llm),
            n_ctx=choice.llm_context_tokens,
            threads=choice.threads,
            repack=choice.llm_repack,
        )
        local.warm_up()
        llm = local
    tts = PiperTTS(weights.resolve_model(choice.model_dir, "tts", choice.tts))
    log.info("models loaded in %.1f s", time.perf_counter() - started)
    return Models(vad, stt, llm, tts)
