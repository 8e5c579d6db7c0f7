"""Smart Turn v3.2 (ONNX int8, BSD-2) through onnxruntime: ~80 ms per decision on one thread.

The model is a Whisper-tiny encoder with a classifier head that hears the *last 8 s* of the
turn and returns the probability that the speaker has finished (> 0.5: finished). Its input has
to be made exactly as in training, or the probabilities drift:

1. int16 → float, then cut to the last 8 s, or zero-padded at the *front* to 8 s (the end of
   the turn always sits at the end of the window);
2. the whole 8 s window (padding included) normalised to zero mean and unit variance, as
   transformers' ``WhisperFeatureExtractor(do_normalize=True)`` does;
3. Whisper's log-mel spectrogram of it: 80 mels, 25 ms window, 10 ms hop, 800 frames.

The spectrogram is faster-whisper's numpy implementation of Whisper's, so no ML framework is
needed beside onnxruntime.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from faster_whisper.feature_extractor import FeatureExtractor

from realtalk.audio.pcm import INTERNAL_RATE, Float32Array, Int16Array

WINDOW_SECONDS = 8
WINDOW_SAMPLES = WINDOW_SECONDS * INTERNAL_RATE
MEL_BINS = 80
HOP_SAMPLES = 160
FFT_SAMPLES = 400
WORKER_THREADS = 2
"""Decisions at once (each ~80 ms on one thread); more wait their turn."""
_NORMALISE_EPSILON = 1e-7
"""Added to the variance before the square root (transformers' ``zero_mean_unit_var_norm``)."""


class SmartTurn:
    """The end-of-turn stage: one model, shared by all sessions.

    Thread-safe without a lock: an onnxruntime session may run concurrently, and the
    spectrogram is computed from local arrays only. Decisions run on the stage's own threads.
    """

    def __init__(self, model_path: Path, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.model_path = model_path
        self._session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._threads = ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="realtalk-turn")
        self._mel = FeatureExtractor(
            feature_size=MEL_BINS,
            sampling_rate=INTERNAL_RATE,
            hop_length=HOP_SAMPLES,
            chunk_length=WINDOW_SECONDS,
            n_fft=FFT_SAMPLES,
        )

    def features(self, samples: Int16Array) -> Float32Array:
        """The model's input for ``samples``: a [1, 80, 800] float32 log-mel spectrogram."""
        window = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
        tail = samples[-WINDOW_SAMPLES:]
        if len(tail):
            window[-len(tail) :] = tail.astype(np.float32) / 32768.0
        window = (window - window.mean()) / np.sqrt(window.var() + _NORMALISE_EPSILON)
        # padding=0: the window is already the model's length (801 STFT frames, the last dropped).
        mel = np.asarray(self._mel(window, padding=0), dtype=np.float32)
        return mel[np.newaxis]

    def predict(self, samples: Int16Array) -> float:
        """The probability that the turn in ``samples`` (16 kHz int16 mono) is complete;
        blocks for the model's run (~80 ms)."""
        (output,) = self._session.run(None, {self._input: self.features(samples)})
        return float(np.asarray(output).reshape(-1)[0])

    async def probability(self, samples: Int16Array) -> float:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self.predict, samples)
