"""Piper TTS (``piper-tts``; espeak-ng data bundled), shared by all sessions."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
from piper import PiperVoice, SynthesisConfig

from realtalk.audio.pcm import Int16Array


class PiperTTS:
    def __init__(self, voice_path: Path) -> None:
        config = Path(f"{voice_path}.json")
        if not config.is_file():
            raise FileNotFoundError(f"a Piper voice needs its config next to it: {config}")
        self.voice = PiperVoice.load(str(voice_path), config_path=str(config))
        self.sample_rate = int(self.voice.config.sample_rate)
        self._lock = threading.Lock()

    def speak(self, text: str, speed: float = 1.0) -> Int16Array:
        """Blocking synthesis (the event loop uses :meth:`synthesize`)."""
        # OpenAI's speed 0.25–1.5 (1 = normal) maps to Piper's length_scale (< 1 = faster).
        config = SynthesisConfig(length_scale=1.0 / speed, volume=0.8, normalize_audio=True)
        with self._lock:
            chunks = [
                chunk.audio_int16_array for chunk in self.voice.synthesize(text, syn_config=config)
            ]
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks).astype(np.int16, copy=False)

    async def synthesize(self, text: str, *, speed: float = 1.0) -> Int16Array:
        """Speech for ``text`` (a sentence or clause) at ``sample_rate``, int16 mono."""
        return await asyncio.to_thread(self.speak, text, speed)
