"""Piper TTS (``piper-tts``; espeak-ng data bundled), shared by all sessions.

Synthesis runs on the stage's own thread, one piece at a time; a stopped stream returns at
once and its thread stops after the sentence it is making.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime
from piper import PiperConfig, PiperVoice, SynthesisConfig

from realtalk.audio.pcm import Int16Array
from realtalk.pipeline.priority import FOREGROUND


class PiperTTS:
    def __init__(self, voice_path: Path) -> None:
        config = Path(f"{voice_path}.json")
        if not config.is_file():
            raise FileNotFoundError(f"a Piper voice needs its config next to it: {config}")
        # Built here rather than by PiperVoice.load, which would load the model into a session
        # of its own first. Without spinning, its threads leave the cores to the LLM's between
        # runs (a piece synthesized while the LLM generated took 200 ms spinning, 128 ms not;
        # 66 ms alone).
        options = onnxruntime.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.voice = PiperVoice(
            session=onnxruntime.InferenceSession(
                str(voice_path), sess_options=options, providers=["CPUExecutionProvider"]
            ),
            config=PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8"))),
        )
        self.sample_rate = int(self.voice.config.sample_rate)
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="realtalk-tts")

    def _chunks(self, text: str, speed: float) -> Iterator[Int16Array]:
        # OpenAI's speed 0.25–1.5 (1 = normal) maps to Piper's length_scale (< 1 = faster).
        config = SynthesisConfig(length_scale=1.0 / speed, volume=0.8, normalize_audio=True)
        chunks = iter(self.voice.synthesize(text, syn_config=config))  # one per sentence
        while True:
            with FOREGROUND.hold():  # the listener is waiting for this
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk.audio_int16_array.astype(np.int16, copy=False)

    def speak(self, text: str, speed: float = 1.0) -> Int16Array:
        """Blocking synthesis of the whole text."""
        with self._lock:
            chunks = list(self._chunks(text, speed))
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks)

    async def stream(
        self, text: str, *, speed: float = 1.0, voice: str | None = None
    ) -> AsyncIterator[Int16Array]:
        """Speech for ``text``, each sentence as soon as Piper has made it."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Int16Array | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Int16Array | BaseException | None) -> None:
            if stop.is_set():
                return  # nobody reads a stopped stream
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            if stop.is_set():
                return
            try:
                with self._lock:
                    for chunk in self._chunks(text, speed):
                        if stop.is_set():
                            return
                        put(chunk)
                put(None)
            except BaseException as exc:  # handed to the consumer
                put(exc)

        self._thread.submit(work)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()  # the thread stops after its sentence; nothing here waits for it
