"""The live page's tools in a real headless Chromium: sound levels, per-turn latency, the events
panel, typed messages, settings (remembered, and applied with session.update)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LiveServer
from tests.realtime_helpers import silence, voice
from tests.test_browser import engine, open_page, wait_for, wait_sessions_zero, write_wav

__all__ = ["engine"]  # the module-scoped live engine, shared with test_browser's tests

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.models]

REPLIED = (
    "window.realtalk.transcript().some(e => e.role === 'assistant' "
    "&& !e.classes.includes('pending') && e.text.length > 0)"
)


def test_levels_latency_and_events_panel(engine: LiveServer, tmp_path: Path) -> None:
    wav = write_wav(
        tmp_path / "question.wav",
        [
            silence(2000, 48_000),
            voice("What is the capital of France?", 48_000),
            silence(30_000, 48_000),
        ],
    )
    for page in open_page(wav, engine.url):
        events_panel = page.locator("#events-panel")
        assert events_panel.get_attribute("open") is None  # collapsed by default
        page.get_by_role("button", name="Start").click()
        # The microphone meter moves while the fake microphone plays speech.
        wait_for(page, "window.realtalk.levels().mic > 0.05", 30)
        wait_for(page, REPLIED)
        # The reply's line carries the time from the end of speech to its first sound.
        label = wait_for(
            page,
            "document.querySelector('#transcript li.assistant .latency')?.textContent",
            30,
        )
        assert label.startswith("answered in ") and label.endswith(" s"), label
        seconds = float(label.removeprefix("answered in ").removesuffix(" s"))
        assert 0 < seconds < 60, label
        # Measured from the microphone's last sound, which came well before the engine's
        # speech_stopped (its end-of-turn wait), to the reply's first sound at the speaker.
        (measured,) = page.evaluate("window.realtalk.latencies")
        print("latency as measured in the page (ms):", measured)
        assert measured["noticed"] - measured["speechEnded"] >= 150, measured
        assert measured["heard"] is not None and measured["heard"] >= measured["started"] - 100
        assert abs(measured["seconds"] - seconds) < 0.01
        expected = (measured["heard"] - measured["speechEnded"]) / 1000
        assert abs(seconds - expected) < 0.01, (seconds, measured)
        # The agent's output level moved too once its audio played.
        wait_for(page, "window.realtalk.levels().agent > 0.01", 30)
        # The events panel lists what crossed the data channel, each with its JSON.
        page.locator("#events-panel > summary").click()
        logged = page.locator("#event-log > li summary").all_inner_texts()
        assert any("session.created" in t for t in logged), logged
        assert any("↑ session.update" in t for t in logged), logged
        assert any("output_audio_buffer.started" in t for t in logged), logged
        first = page.locator("#event-log > li").first
        first.locator("summary").click()
        assert '"type": "session.created"' in first.locator("pre").inner_text()
        assert page.locator("#event-count").inner_text() == str(len(logged))
        page.get_by_role("button", name="Stop").click()
        wait_sessions_zero(engine)


def test_typed_message_and_settings(engine: LiveServer, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "quiet.wav", [silence(60_000, 48_000)])
    instructions = "You are a terse assistant. Answer in one short sentence."
    for page in open_page(wav, engine.url):
        page.get_by_label("Instructions").fill(instructions)
        page.get_by_label("Silence window (ms)").fill("800")
        page.get_by_label("Voice").select_option("alloy")
        page.get_by_label("Voice").focus()  # the textarea's change fires on blur
        # Remembered in the browser: a reload shows the same settings.
        page.reload()
        assert page.get_by_label("Instructions").input_value() == instructions
        assert page.get_by_label("Silence window (ms)").input_value() == "800"
        page.get_by_role("button", name="Start").click()
        updated = wait_for(
            page, "window.realtalk.events.find(e => e.type === 'session.updated')", 30
        )
        session = updated["session"]
        assert session["instructions"] == instructions
        turn = session["audio"]["input"]["turn_detection"]
        assert turn["type"] == "server_vad" and turn["silence_duration_ms"] == 800
        assert session["audio"]["output"]["voice"] == "alloy"
        box = page.get_by_label("Type a message")
        box.fill("What is the capital of Italy?")
        box.press("Enter")
        wait_for(page, REPLIED)
        lines = page.evaluate("window.realtalk.transcript()")
        user = next(e for e in lines if e["role"] == "user")
        assert user["text"] == "What is the capital of Italy?"
        answer = next(e for e in lines if e["role"] == "assistant")["text"]
        assert "rome" in answer.lower(), answer
        page.get_by_role("button", name="Stop").click()
        wait_sessions_zero(engine)


def test_push_to_talk_is_a_turn_detection_setting(engine: LiveServer, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "quiet.wav", [silence(20_000, 48_000)])
    for page in open_page(wav, engine.url):
        page.get_by_label("Turn detection").select_option("push_to_talk")
        assert page.get_by_label("Push to talk").is_checked()
        assert page.get_by_role("button", name="Hold to talk").is_visible()
        page.get_by_role("button", name="Start").click()
        updated = wait_for(
            page, "window.realtalk.events.find(e => e.type === 'session.updated')", 30
        )
        assert updated["session"]["audio"]["input"]["turn_detection"] is None
        page.get_by_label("Push to talk").uncheck()
        assert page.get_by_label("Turn detection").input_value() == "server_vad"
        page.get_by_role("button", name="Stop").click()
        wait_sessions_zero(engine)


def test_keyboard_order_and_phone_layout(engine: LiveServer, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "quiet.wav", [silence(3000, 48_000)])
    for page in open_page(wav, engine.url):
        reached = []
        for _ in range(12):
            page.keyboard.press("Tab")
            reached.append(
                page.evaluate(
                    "document.activeElement.id || document.activeElement.textContent.trim()"
                )
            )
        # Settings first, then the controls, then the events panel: every control by Tab alone.
        expected = ["Settings", "voice", "turn-detection", "silence-ms", "device", "instructions"]
        assert reached[: len(expected)] == expected, reached
        assert reached.index("start") < reached.index("ptt-mode"), reached
        assert any(r.startswith("Events") for r in reached), reached
        page.keyboard.press("Shift+Tab")
        page.evaluate("document.getElementById('start').focus()")
        page.keyboard.press("Enter")  # Start by keyboard
        wait_for(page, "window.realtalk.events.some(e => e.type === 'session.updated')", 30)
        page.get_by_role("button", name="Stop").focus()
        page.keyboard.press("Enter")
        wait_sessions_zero(engine)
        # A phone-sized screen: nothing wider than the screen, controls still visible.
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        for name in ("Start", "Stop"):
            box = page.get_by_role("button", name=name).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
