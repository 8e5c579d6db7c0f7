"""The latency features with the real local models: a kept speculative reply says exactly
what a reply started at the commit says; live partial transcripts arrive while the user is
still speaking; semantic_vad ends a finished question before its longest silence window."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest

from realtalk.core.config import SessionConfig, TurnDetection
from realtalk.pipeline.models import ModelChoice, Models, load_models
from realtalk.session.session import RealtimeSession
from realtalk.session.turns import EAGERNESS
from tests.conftest import MODEL_DIR
from tests.realtime_helpers import silence, validate_event, voice

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def models() -> Iterator[Models]:
    loaded = load_models(ModelChoice(model_dir=MODEL_DIR))
    yield loaded
    llama = getattr(loaded.llm, "llama", None)
    if llama is not None:
        llama.close()  # now, not in a finalizer at interpreter exit


class Mic:
    """Feeds a session 16 kHz audio in 32 ms frames at real-time pace and records events with
    the audio time at which each arrived."""

    def __init__(self, session: RealtimeSession) -> None:
        self.session = session
        self.events: list[dict[str, Any]] = []
        self.fed_ms = 0

    async def feed(self, samples: np.ndarray, *, until: str | None = None) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time() - self.fed_ms / 1000
        for start in range(0, len(samples), 512):
            self.session.push_audio(samples[start : start + 512])
            self.fed_ms += 32
            await asyncio.sleep(max(0.0, started + self.fed_ms / 1000 - loop.time()))
            self.collect()
            if until and any(e["type"] == until for e in self.events):
                return

    def collect(self) -> None:
        while not self.session.outbox.empty():
            event = self.session.outbox.get_nowait()
            validate_event(event, self.session.generation)
            event["_fed_ms"] = self.fed_ms
            self.events.append(event)

    async def until(self, kind: str, limit_s: float = 60) -> dict[str, Any]:
        async with asyncio.timeout(limit_s):
            while True:
                self.collect()
                found = [e for e in self.events if e["type"] == kind]
                if found:
                    return found[-1]
                await asyncio.sleep(0.02)


@pytest.fixture
async def make_session(models: Models) -> AsyncIterator[Any]:
    sessions: list[RealtimeSession] = []

    def make(**config: Any) -> tuple[RealtimeSession, Mic]:
        session = RealtimeSession(
            config=SessionConfig(**config),
            generation="ga",
            models=models,
            session_id="sess_test",
            expires_at=0,
        )
        session.start()
        sessions.append(session)
        return session, Mic(session)

    yield make
    for session in sessions:
        await session.aclose()


def speech16(text: str) -> np.ndarray:
    return voice(text, 16_000)


async def test_speculative_reply_says_what_a_reply_at_commit_says(make_session: Any) -> None:
    question = np.concatenate([silence(300, 16_000), speech16("What is the capital of France?")])
    texts, kinds, kept = [], [], []
    for speculate in (True, False):
        session, mic = make_session(
            instructions="Answer in one short sentence.",
            temperature=0.6,  # the local model's greedy decoding
            audio_output=False,
            turn_detection=TurnDetection(silence_duration_ms=1200),
        )
        session.speculate_replies = speculate
        await mic.feed(question)
        await mic.feed(silence(1500, 16_000), until="input_audio_buffer.speech_stopped")
        done = await mic.until("response.done")
        await mic.until("rate_limits.updated")
        texts.append(done["response"]["output"][0]["content"][0]["text"])
        kinds.append(
            [
                e["type"]
                for e in mic.events
                if e["type"].startswith(("response.", "conversation.item.added"))
            ]
        )
        kept.append(session.last_run is not None and session.last_run.speculative)
    assert kept == [True, False]
    assert texts[0] == texts[1] and "Paris" in texts[0]
    assert kinds[0] == kinds[1]


async def test_partial_transcripts_arrive_while_the_user_speaks(make_session: Any) -> None:
    _, mic = make_session(turn_detection=TurnDetection(silence_duration_ms=700))
    long = speech16(
        "I would like to book a table for four people tomorrow evening at eight, "
        "somewhere quiet near the river, and please tell me if they have vegetarian food."
    )
    await mic.feed(np.concatenate([silence(300, 16_000), long, silence(1200, 16_000)]))
    completed = await mic.until("conversation.item.input_audio_transcription.completed")
    order = [e["type"] for e in mic.events]
    stopped = order.index("input_audio_buffer.speech_stopped")
    deltas = [
        e for e in mic.events if e["type"] == "conversation.item.input_audio_transcription.delta"
    ]
    early = [e for e in deltas if mic.events.index(e) < stopped]
    assert early, order
    assert all(e["item_id"] == completed["item_id"] for e in deltas)
    assert "table" in "".join(e["delta"] for e in early).lower()
    words = completed["transcript"].lower()
    assert "vegetarian" in words and "river" in words


async def test_semantic_vad_ends_a_finished_question_early(make_session: Any) -> None:
    session, mic = make_session(
        audio_output=False,
        turn_detection=TurnDetection(type="semantic_vad", eagerness="auto", create_response=False),
    )
    assert session.models.end_of_turn is not None
    question = speech16("What is the weather like in Paris today?")
    await mic.feed(np.concatenate([silence(300, 16_000), question]))
    loud = np.nonzero(np.abs(question.astype(np.int32)) > 1000)[0]
    speech_end_ms = mic.fed_ms - (len(question) - int(loud[-1])) * 1000 // 16_000
    await mic.feed(silence(2000, 16_000), until="input_audio_buffer.speech_stopped")
    stopped = await mic.until("input_audio_buffer.speech_stopped")
    longest = EAGERNESS["auto"].longest_silence_ms
    waited = stopped["audio_end_ms"] - speech_end_ms
    assert waited < longest - 200, json.dumps(stopped)
