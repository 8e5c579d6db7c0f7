"""Whisper through faster-whisper (CTranslate2, int8 on the CPU), shared by all sessions."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from faster_whisper import WhisperModel

from realtalk.audio.pcm import INTERNAL_RATE, Int16Array, to_float
from realtalk.pipeline.stt import Transcript


class WhisperSTT:
    """Loads once per process; ``transcribe`` runs in a worker thread, one at a time."""

    def __init__(
        self, model_dir: Path, *, cpu_threads: int = 2, language: str | None = "en"
    ) -> None:
        if not (model_dir / "tokenizer.json").is_file():
            # Without it faster-whisper would try to download a tokenizer from a model hub.
            raise FileNotFoundError(
                f"{model_dir} has no tokenizer.json (a CTranslate2 Whisper "
                "folder needs model.bin, config.json, tokenizer.json)"
            )
        self.model = WhisperModel(
            str(model_dir),
            device="cpu",
            compute_type="int8",
            cpu_threads=cpu_threads,
            num_workers=1,
        )
        self.language = language
        self._lock = threading.Lock()

    def _run(self, samples: Int16Array, prompt: str | None, language: str | None) -> Transcript:
        audio = to_float(samples)
        with self._lock:
            segments, _ = self.model.transcribe(
                audio,
                language=language or self.language,
                beam_size=1,
                vad_filter=False,
                condition_on_previous_text=False,
                without_timestamps=True,
                initial_prompt=prompt,
            )
            text = "".join(segment.text for segment in segments).strip()  # decoding happens here
        return Transcript(text, len(samples) / INTERNAL_RATE)

    async def transcribe(
        self, samples: Int16Array, *, prompt: str | None = None, language: str | None = None
    ) -> Transcript:
        """Transcribe 16 kHz int16 mono audio."""
        return await asyncio.to_thread(self._run, samples, prompt, language)
