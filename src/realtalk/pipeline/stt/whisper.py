"""Whisper through faster-whisper (CTranslate2, int8 on the CPU), shared by all sessions.

Whisper's encoder is trained on 30-second windows, and faster-whisper's ``transcribe()`` pads
every input to one; for a 2–3 s voice turn almost all of that work is padding. With
``window="fit"`` the CTranslate2 model is given the log-mel of the utterance plus at least
``FIT_PAD_S`` of silence (``FIT_MIN_S`` in all) instead: several times less work at a similar
word error (see docs/latency.md, *Transcription accuracy*). Timestamps stay on, segments that start
after the audio has ended are dropped, and a decode that loops on its own words (Whisper's
failure on short windows) is redone on the ordinary 30-second path, as are turns longer than
``FIT_MAX_S``.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from realtalk.audio.pcm import INTERNAL_RATE, Int16Array, to_float
from realtalk.pipeline.stt import Segment, Transcript

Window = Literal["fit", "full"]
FIT_PAD_S = 2.0
"""Zeros after the utterance: the decoder needs room to see that the speech has ended."""
FIT_MIN_S = 10.0
"""Shortest window given to the encoder. With 5 s, one short turn in six made the decoder
loop on its own words, with 8 s one in twenty (measured on Piper speech with the session's
300 ms prefix and 160 ms tail); with 10 s none of 64 did. Still a third of 30 s."""
FIT_MAX_S = 27.0
"""Longer turns take faster-whisper's 30-second path."""
NO_SPEECH_PROB = 0.6
"""With an average log-probability below ``LOW_LOGPROB``: silence or noise, not words."""
LOW_LOGPROB = -1.0
SURE_NO_SPEECH_PROB = 0.85
"""On a fitted window Whisper is this sure only of silence (speech scores < 0.05); it would
still say "you" there."""
MAX_PROMPT_TOKENS = 223
TIME_PRECISION = 0.02
"""Seconds per Whisper timestamp token."""
TOKENS_PER_S = 6
"""More text tokens than this a second (speech has ~3–4): the decoder ran away, and the
turn goes the 30-second way instead."""


class WhisperSTT:
    """Loads once per process; ``transcribe`` runs on the stage's own thread, one at a time
    (a job cancelled before its turn never runs)."""

    def __init__(
        self,
        model_dir: Path,
        *,
        cpu_threads: int = 2,
        language: str | None = "en",
        window: Window = "fit",
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
        self.window: Window = window
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="realtalk-stt")
        self._pending = 0
        self._tokenizers: dict[str | None, tuple[Tokenizer, list[int] | None]] = {}
        """Per language: the tokenizer and the tokens a decode must not produce."""

    def busy(self) -> bool:
        return self._pending > 0

    def _tokenizer(self, language: str | None) -> tuple[Tokenizer, list[int] | None]:
        if language not in self._tokenizers:
            multilingual = self.model.model.is_multilingual
            tokenizer = Tokenizer(
                self.model.hf_tokenizer,
                multilingual,
                task="transcribe",
                language=(language or "en") if multilingual else None,
            )
            suppressed = get_suppressed_tokens(tokenizer, (-1,))
            self._tokenizers[language] = (tokenizer, suppressed)
        return self._tokenizers[language]

    def _run(self, samples: Int16Array, prompt: str | None, language: str | None) -> Transcript:
        audio = to_float(samples)
        seconds = len(samples) / INTERNAL_RATE
        language = language or self.language
        with self._lock:
            segments = None
            if self.window == "fit" and seconds <= FIT_MAX_S:
                segments = self._fitted(audio, seconds, prompt, language)
            if segments is None:
                segments = self._full(audio, prompt, language)
        text = "".join(s.text for s in segments).strip()
        return Transcript(text, seconds, tuple(segments))

    def _full(self, audio: np.ndarray, prompt: str | None, language: str | None) -> list[Segment]:
        found, _ = self.model.transcribe(
            audio,
            language=language,
            beam_size=1,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
            initial_prompt=prompt,
        )
        # Decoding happens while iterating.
        return [Segment(s.start, s.end, s.text) for s in found]

    def _fitted(
        self, audio: np.ndarray, seconds: float, prompt: str | None, language: str | None
    ) -> list[Segment] | None:
        """The fitted window's segments, or None when the decoder ran away (hit its length
        bound or repeats itself), for the caller to take the 30-second path."""
        pad = max(FIT_PAD_S, FIT_MIN_S - seconds)
        padded = np.concatenate([audio, np.zeros(int(pad * INTERNAL_RATE), dtype=np.float32)])
        features = self.model.feature_extractor(padded, padding=0)
        frames = features.shape[-1] - features.shape[-1] % 2  # the encoder halves the frames
        features = np.ascontiguousarray(features[np.newaxis, :, :frames], dtype=np.float32)
        tokenizer, suppressed = self._tokenizer(language)
        tokens: list[int] = []
        if prompt and prompt.strip():
            tokens = [tokenizer.sot_prev, *tokenizer.encode(" " + prompt.strip())]
            tokens = [tokens[0], *tokens[1:][-MAX_PROMPT_TOKENS:]]
        tokens.extend(tokenizer.sot_sequence)
        model: Any = self.model.model
        encoded = model.encode(ctranslate2.StorageView.from_array(features))
        budget = 8 + int(seconds * TOKENS_PER_S)
        result = model.generate(
            encoded,
            [tokens],
            beam_size=1,
            max_length=min(self.model.max_length, len(tokens) + 2 * budget),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=suppressed,
            max_initial_timestamp_index=50,
        )[0]
        ids: list[int] = result.sequences_ids[0]
        average_logprob = result.scores[0] * len(ids) / (len(ids) + 1)
        if result.no_speech_prob > SURE_NO_SPEECH_PROB or (
            result.no_speech_prob > NO_SPEECH_PROB and average_logprob < LOW_LOGPROB
        ):
            return []
        segments = _timed_segments(ids, tokenizer, seconds)
        # A decoder in a loop says the turn again (and again, until its length bound).
        text = [t for t in ids if t < tokenizer.eot]
        if len(text) > budget or _repeats("".join(s.text for s in segments), times=2):
            return None
        return segments

    async def transcribe(
        self, samples: Int16Array, *, prompt: str | None = None, language: str | None = None
    ) -> Transcript:
        """Transcribe 16 kHz int16 mono audio."""
        self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._run, samples, prompt, language)
        finally:
            self._pending -= 1


def _repeats(text: str, n: int = 4, times: int = 2) -> bool:
    """Whether some run of ``n`` words occurs ``times`` times: Whisper's loop, not speech."""
    words = text.lower().split()
    seen: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        seen[gram] = seen.get(gram, 0) + 1
        if seen[gram] >= times:
            return True
    return False


def _timed_segments(ids: list[int], tokenizer: Tokenizer, seconds: float) -> list[Segment]:
    """Split decoded tokens at timestamp tokens; drop what starts after the audio ends (in the
    padding the decoder may invent words)."""
    begin = tokenizer.timestamp_begin
    segments: list[Segment] = []
    start: float | None = None
    text: list[int] = []
    for token in [*ids, begin + round(seconds / TIME_PRECISION)]:
        if token < begin:
            if token < tokenizer.eot:
                text.append(token)
            continue
        time = (token - begin) * TIME_PRECISION
        if text:
            begun = start if start is not None else 0.0
            if begun < seconds:
                segments.append(Segment(begun, min(time, seconds), tokenizer.decode(text)))
            text = []
            start = None
        else:
            start = time
    return segments
