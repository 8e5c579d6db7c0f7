"""Loading the pipeline's models once per process."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from realtalk.pipeline import weights
from realtalk.pipeline.llm import LLM
from realtalk.pipeline.remote import RemoteStage
from realtalk.pipeline.stt import SpeechToText
from realtalk.pipeline.tts import TextToSpeech
from realtalk.pipeline.turn import EndOfTurn
from realtalk.pipeline.vad import VoiceActivityDetector

log = logging.getLogger("realtalk.models")


@dataclass
class Models:
    """One implementation per stage, shared by every session (runtimes load only here, so
    ``engine=openai`` needs none of them)."""

    vad: VoiceActivityDetector
    stt: SpeechToText
    llm: LLM
    tts: TextToSpeech
    end_of_turn: EndOfTurn | None = None
    """semantic_vad's model; without it semantic_vad ends turns on its longest silence."""


@dataclass(frozen=True)
class ModelChoice:
    model_dir: Path
    stt: str = "whisper-base"
    stt_window: Literal["fit", "full"] = "fit"
    end_of_turn: str | None = "smart-turn-v3.2"
    llm: str = "qwen2.5-0.5b"
    tts: str = "joe"
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_context_tokens: int = 4096
    llm_repack: bool | None = None
    """None: decide from the CPU's flags (see ``LlamaLLM``)."""
    remote_stt: RemoteStage | None = None
    """An OpenAI-compatible transcription server instead of the local Whisper."""
    remote_tts: RemoteStage | None = None
    """An OpenAI-compatible speech server instead of Piper."""
    threads: int = 2


def load_models(choice: ModelChoice) -> Models:
    """Resolve and load every stage (blocking: call from a worker thread)."""
    from realtalk.pipeline.turn.smart_turn import SmartTurn
    from realtalk.pipeline.vad.silero import SileroVAD

    started = time.perf_counter()
    vad = SileroVAD(weights.resolve_model(choice.model_dir, "vad", "silero-vad"))
    stt: SpeechToText
    if choice.remote_stt is not None:
        from realtalk.pipeline.stt.remote import RemoteSTT

        stt = RemoteSTT(choice.remote_stt)
    else:
        from realtalk.pipeline.stt.whisper import WhisperSTT

        stt = WhisperSTT(
            weights.resolve_model(choice.model_dir, "stt", choice.stt),
            cpu_threads=choice.threads,
            window=choice.stt_window,
        )
    end_of_turn = None
    if choice.end_of_turn is not None:
        end_of_turn = SmartTurn(weights.resolve_model(choice.model_dir, "turn", choice.end_of_turn))
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
    tts: TextToSpeech
    if choice.remote_tts is not None:
        from realtalk.pipeline.tts.remote import RemoteTTS

        tts = RemoteTTS(choice.remote_tts)
    else:
        from realtalk.pipeline.tts.piper import PiperTTS

        tts = PiperTTS(weights.resolve_model(choice.model_dir, "tts", choice.tts))
    log.info("models loaded in %.1f s", time.perf_counter() - started)
    return Models(vad, stt, llm, tts, end_of_turn)
