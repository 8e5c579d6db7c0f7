"""The page in a real headless Chromium: fake microphone → backend → engine over WebRTC."""

from __future__ import annotations

import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page, sync_playwright

from tests.conftest import LiveServer, start_server, stop_server
from tests.realtime_helpers import decode_audio_file, silence, voice, words

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.models]

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(
        tmp_path_factory.mktemp("browser"),
        "browser",
        {
            "REALTALK_INSTRUCTIONS": "You are a friendly assistant. Answer questions in one short "
            "sentence, but when asked for a story, tell a long one of at least six sentences.",
            "REALTALK_RECORD": "audio",
        },
        ready=True,
    )
    yield server
    stop_server(server)


def write_wav(path: Path, parts: list[np.ndarray]) -> str:
    """A 48 kHz mono WAV for Chromium's fake microphone (played once: %noloop)."""
    audio = np.concatenate(parts).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48_000)
        out.writeframes(audio.tobytes())
    return f"{path}%noloop"


def open_page(wav: str, url: str) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[*FLAGS, f"--use-file-for-fake-audio-capture={wav}"],
        )
        page = browser.new_page()
        page.goto(url)
        try:
            yield page
        finally:
            browser.close()


def wait_for(page: Page, predicate: str, limit_s: float = 90) -> Any:
    page.wait_for_function(predicate, timeout=limit_s * 1000)
    return page.evaluate(predicate)


def live_sessions(engine: LiveServer) -> int:
    return int(httpx.get(f"{engine.url}/healthz").json()["sessions"])


def wait_sessions_zero(engine: LiveServer) -> None:
    for _ in range(100):
        if live_sessions(engine) == 0:
            return
        time.sleep(0.1)
    assert live_sessions(engine) == 0


def transcript(page: Page) -> list[dict[str, str]]:
    return list(page.evaluate("window.realtalk.transcript()"))


def test_spoken_turn_in_the_browser(engine: LiveServer, tmp_path: Path) -> None:
    wav = write_wav(
        tmp_path / "question.wav",
        [
            silence(2000, 48_000),
            voice("What is the capital of France?", 48_000),
            silence(30_000, 48_000),
        ],
    )
    for page in open_page(wav, engine.url):
        page.get_by_role("button", name="Start").click()
        wait_for(
            page,
            "window.realtalk.transcript().some(e => e.role === 'assistant' "
            "&& !e.classes.includes('pending') && e.text.length > 0)",
        )
        entries = transcript(page)
        user = next(e for e in entries if e["role"] == "user")
        # Chromium's noise suppression and gain control touch the audio: most words suffice.
        assert len(words(user["text"]) & {"what", "capital", "of", "france"}) >= 3, user
        assert next(e for e in entries if e["role"] == "assistant")["text"]
        energy = 0.0
        for _ in range(100):
            energy = page.evaluate("window.realtalk.audioEnergy()")
            if energy > 0:
                break
            time.sleep(0.2)
        assert energy > 0, page.evaluate("window.realtalk.stats()")
        assert live_sessions(engine) == 1
        assert page.evaluate("window.realtalk.microphoneLive()") is True
        page.get_by_role("button", name="Stop").click()
        assert page.evaluate("window.realtalk.microphoneLive()") is False
        assert "Stopped" in page.get_by_role("status").inner_text()
        wait_sessions_zero(engine)


RECORD_USER_TEXT = """() => {
  // Every change of a user line in the page's transcript, with what the page had handled.
  window.userText = [];
  new MutationObserver(() => {
    for (const li of document.querySelectorAll("#transcript li.user")) {
      const item = li.dataset.item;
      const seen = (type) =>
        window.realtalk.events.some((e) => e.type === type && e.item_id === item);
      window.userText.push({
        item,
        text: li.querySelector(".text").textContent,
        partial: li.classList.contains("partial"),
        stopped: seen("input_audio_buffer.speech_stopped"),
        completed: seen("conversation.item.input_audio_transcription.completed"),
      });
    }
  }).observe(document.getElementById("transcript"),
             {subtree: true, childList: true, characterData: true});
}"""


def test_words_appear_while_the_user_speaks(engine: LiveServer, tmp_path: Path) -> None:
    wav = write_wav(
        tmp_path / "long.wav",
        [
            silence(2000, 48_000),
            voice(
                "I would like to book a table for four people tomorrow evening, "
                "somewhere quiet near the river.",
                48_000,
            ),
            silence(30_000, 48_000),
        ],
    )
    for page in open_page(wav, engine.url):
        page.evaluate(RECORD_USER_TEXT)
        page.get_by_role("button", name="Start").click()
        completed = wait_for(
            page,
            "window.realtalk.events.find("
            "e => e.type === 'conversation.item.input_audio_transcription.completed')",
        )
        changes = [c for c in page.evaluate("window.userText") if c["item"] == completed["item_id"]]
        # The user's words were on the page, as partial text, before the speech had ended.
        partial = [c for c in changes if c["partial"] and c["text"] and not c["stopped"]]
        assert partial, changes
        assert words(partial[0]["text"]) & {"like", "book", "table", "four"}, partial
        assert not partial[-1]["completed"]
        # Then the final transcript replaced them.
        final = next(e for e in transcript(page) if e["role"] == "user")
        assert final["text"] == completed["transcript"].strip()
        assert "partial" not in final["classes"]
        page.get_by_role("button", name="Stop").click()
        wait_sessions_zero(engine)


def test_push_to_talk_turn(engine: LiveServer, tmp_path: Path) -> None:
    wav = write_wav(
        tmp_path / "ptt.wav",
        [silence(4000, 48_000), voice("Good morning to you!", 48_000), silence(30_000, 48_000)],
    )
    for page in open_page(wav, engine.url):
        page.get_by_label("Push to talk").check()
        started = time.monotonic()
        page.get_by_role("button", name="Start").click()
        wait_for(page, "window.realtalk.events.some(e => e.type === 'session.updated')", 30)
        talk = page.get_by_role("button", name="Hold to talk")
        assert talk.is_visible()
        time.sleep(max(0.0, started + 3.0 - time.monotonic()))
        talk.dispatch_event("pointerdown")
        time.sleep(max(0.0, started + 7.5 - time.monotonic()))
        talk.dispatch_event("pointerup")
        wait_for(
            page,
            "window.realtalk.transcript().some(e => e.role === 'assistant' "
            "&& !e.classes.includes('pending'))",
        )
        events = page.evaluate("window.realtalk.events.map(e => e.type)")
        assert "input_audio_buffer.speech_started" not in events  # no VAD in push-to-talk
        assert "input_audio_buffer.cleared" in events and "input_audio_buffer.committed" in events
        user = next(e for e in transcript(page) if e["role"] == "user")
        assert "morning" in words(user["text"])
        page.get_by_role("button", name="Stop").click()
        wait_sessions_zero(engine)


def test_barge_in_in_the_browser(engine: LiveServer, tmp_path: Path) -> None:
    wav = write_wav(
        tmp_path / "barge.wav",
        [
            silence(2000, 48_000),
            voice("Please tell me a long story about a dragon and a knight.", 48_000),
            silence(7000, 48_000),
            voice("Stop, that is enough.", 48_000),
            silence(30_000, 48_000),
        ],
    )
    for page in open_page(wav, engine.url):
        page.get_by_role("button", name="Start").click()
        wait_for(page, "window.realtalk.events.some(e => e.type === 'output_audio_buffer.cleared')")
        interrupted = wait_for(
            page,
            "window.realtalk.transcript().some("
            "e => e.role === 'assistant' && e.classes.includes('interrupted'))",
        )
        assert interrupted
        events = page.evaluate("window.realtalk.events.map(e => e.type)")
        assert "conversation.item.truncated" in events
        page.get_by_role("button", name="Stop").click()
        wait_sessions_zero(engine)
    # The call's record shows the cut: the reply cut short where the listener stopped it.
    from tests.test_records_live import _record

    record = _record(engine)
    assert record["transport"] == "webrtc"
    kinds = [e["kind"] for e in record["entries"]]
    assert "truncated" in kinds, kinds
    replies = [e for e in record["entries"] if e["kind"] == "assistant"]
    assert replies and any("dragon" in r["text"].lower() for r in replies), replies
    # Its agent track holds what the listener heard: the story stops where it was cut, though
    # more of it had been synthesized, and nothing runs past the end of the call. The cut is
    # placed by the `truncated` entry's time: the track is laid out by when frames left, so a
    # reply that outran its synthesis under load has gaps, and its played length in samples
    # (`audio_end_ms`) can end earlier on the timeline than the cut itself.
    (cut,) = [e for e in record["entries"] if e["kind"] == "truncated"]
    level = _track_level(engine, record["id"], "agent")
    assert len(level) * 0.02 <= record["ended_at"] - record["started_at"] + 0.5
    loud = level > 0.1 * np.percentile(level, 95)
    voiced = np.flatnonzero(loud)
    cut_at = cut["at"] - record["started_at"]
    story_from = voiced[0] * 0.02
    # The story played from its first sound to the cut, at least as long as it was heard for.
    assert cut_at >= story_from + cut["audio_end_ms"] / 1000 - 0.2, (cut, story_from, cut_at)
    # Of what was played before the cut, no more was loud than had been heard.
    assert loud[: int((cut_at + 0.2) / 0.02)].sum() * 0.02 <= cut["audio_end_ms"] / 1000 + 0.2
    after = loud[int((cut_at + 0.2) / 0.02) : int((cut_at + 1.2) / 0.02)]
    # (The track may simply end there: nothing was played after the cut before the hangup.)
    assert after.sum() <= 3, (cut, story_from, cut_at, level[int(cut_at / 0.02) :][:60])
    print(
        f"agent track {len(level) * 0.02:.2f} s, story from {story_from:.2f} s, "
        f"cut at {cut_at:.2f} s after {cut['audio_end_ms']} ms of it"
    )


def _track_level(server: LiveServer, record_id: str, track: str) -> np.ndarray:
    """A recorded track's mean level in 20 ms windows."""
    got = httpx.get(
        f"{server.url}/api/conversations/{record_id}/audio?track={track}",
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=10,
    )
    assert got.status_code == 200, got.text
    samples, rate = decode_audio_file(got.content)
    pcm = samples[:, 0]
    step = rate // 50
    level: np.ndarray = np.abs(pcm[: len(pcm) // step * step]).reshape(-1, step).mean(axis=1)
    return level


def test_errors_are_shown_for_a_failed_start(tmp_path: Path) -> None:
    # No server behind the page's backend call: the page says so instead of hanging.
    server = start_server(tmp_path, "limited", {"REALTALK_MINT_RATE_LIMIT": "1/minute"}, ready=True)
    try:
        wav = write_wav(tmp_path / "quiet.wav", [silence(3000, 48_000)])
        for page in open_page(wav, server.url):
            page.get_by_role("button", name="Start").click()
            wait_for(page, "window.realtalk.events.some(e => e.type === 'session.created')", 30)
            page.get_by_role("button", name="Stop").click()
            page.get_by_role("button", name="Start").click()  # over the 1/minute mint limit
            alert = page.get_by_role("alert")
            alert.wait_for(state="visible", timeout=15_000)
            assert "session key" in alert.inner_text()
            assert page.get_by_role("button", name="Start").is_enabled()
    finally:
        stop_server(server)


def test_denied_microphone_is_explained(engine: LiveServer) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[f for f in FLAGS if f != "--use-fake-ui-for-media-stream"],
        )
        try:
            context = browser.new_context(permissions=[])
            page = context.new_page()
            page.goto(engine.url)
            page.evaluate("navigator.permissions.query({name: 'microphone'})")
            page.get_by_role("button", name="Start").click()
            alert = page.get_by_role("alert")
            alert.wait_for(state="visible", timeout=15_000)
            assert "Microphone access was denied" in alert.inner_text()
            assert page.get_by_role("button", name="Start").is_enabled()
            assert live_sessions(engine) == 0
        finally:
            browser.close()


def test_a_rejected_key_is_explained(engine: LiveServer, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "quiet.wav", [silence(3000, 48_000)])
    for page in open_page(wav, engine.url):

        def stale_key(route: Any) -> None:
            # The backend answers, but with a key the engine no longer accepts (as when a
            # minted key expired before the page used it).
            body = route.fetch().json()
            body["client_secret"] = "ek_expired_or_already_used"
            route.fulfill(json=body)

        page.route("**/api/realtime/session", stale_key)
        page.get_by_role("button", name="Start").click()
        alert = page.get_by_role("alert")
        alert.wait_for(state="visible", timeout=15_000)
        assert "rejected or has expired" in alert.inner_text()
        assert page.evaluate("window.realtalk.microphoneLive()") is False
        assert live_sessions(engine) == 0
