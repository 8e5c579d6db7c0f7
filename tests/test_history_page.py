"""The history page in a real headless Chromium, over a record left by a real conversation:
the key once, the list, one conversation's timeline, its audio with the line being played
highlighted, and delete with confirmation. Also takes the page's screenshots for the README."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page, sync_playwright

from tests.conftest import LiveServer, start_server, stop_server
from tests.realtime_helpers import silence, speech
from tests.test_realtime_live import client_for, collect, say, send_audio

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.models]

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"]
DOCS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
SCREENSHOTS = os.environ.get("REALTALK_SCREENSHOTS") == "1"
"""Read at import: every test runs with the REALTALK_* variables removed."""


async def _converse(server: LiveServer) -> None:
    """One typed turn and one spoken turn, answered with audio."""
    async with client_for(server).realtime.connect(model="realtalk-local") as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "instructions": "Answer in one short sentence.",
                "audio": {"input": {"transcription": {"model": "whisper-1"}}},
            }
        )
        await say(conn, "Say hello.")
        await conn.response.create()
        await collect(conn, "response.done", 120)
        said = np.concatenate(
            [silence(400), speech("What is the capital of France?"), silence(900)]
        )
        await send_audio(conn, said)
        await collect(conn, "response.done", 120)


def _ended_record(server: LiveServer) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    for _ in range(100):
        data = httpx.get(f"{server.url}/api/conversations", headers=headers, timeout=10).json()
        if data["data"] and data["data"][0]["ended_at"] is not None:
            row: dict[str, Any] = data["data"][0]
            return row
        asyncio.run(asyncio.sleep(0.2))
    raise AssertionError("no ended conversation recorded")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    server = start_server(
        tmp_path_factory.mktemp("history"), "history", {"REALTALK_RECORD": "audio"}, ready=True
    )
    try:
        asyncio.run(_converse(server))
        yield server, _ended_record(server)["id"]
    finally:
        stop_server(server)


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 800})
        finally:
            browser.close()


def _open(page: Page, server: LiveServer, conversation_id: str) -> None:
    page.goto(f"{server.url}/history")
    page.fill("#key", server.api_key)
    page.keyboard.press("Enter")
    page.click(f'button.open[data-id="{conversation_id}"]', timeout=15_000)
    page.wait_for_selector("#timeline li.assistant", timeout=15_000)


def test_the_history_page_lists_opens_plays_and_deletes(
    recorded: tuple[LiveServer, str], page: Page, tmp_path: Path
) -> None:
    server, conversation_id = recorded
    page.goto(f"{server.url}/history")
    # A wrong key is refused and asked for again; the right one is kept only in the tab.
    page.fill("#key", "not-the-key")
    page.keyboard.press("Enter")
    page.wait_for_selector("#error:not([hidden])")
    assert "refused" in page.inner_text("#error")
    _open(page, server, conversation_id)
    assert page.evaluate("sessionStorage.getItem('realtalk.history.key')") == server.api_key
    assert page.evaluate("localStorage.length") == 0
    page.reload()  # asked once: a reload in the same tab lists at once
    page.wait_for_selector(f'button.open[data-id="{conversation_id}"]', timeout=15_000)
    page.click(f'button.open[data-id="{conversation_id}"]')
    page.wait_for_selector("#timeline li.assistant", timeout=15_000)

    users = page.locator("#timeline li.user").all_inner_texts()
    assert any("Say hello." in u for u in users)
    assert any("france" in u.lower() for u in users), users
    assert page.locator("#timeline li.assistant").count() == 2
    assert page.locator("#timeline .waterfall .stage").count() >= 4  # the spoken turn's stages

    # Audio: both sides in stereo by default, then the agent's track alone, fetched with the
    # key into a blob URL; it plays and highlights the line being played.
    assert page.eval_on_selector("#track", "s => s.value") == "both"
    page.wait_for_function(
        "document.getElementById('audio').src.startsWith('blob:')"
        " && document.getElementById('audio').readyState >= 1",
        timeout=15_000,
    )
    both = page.evaluate("document.getElementById('audio').src")
    page.select_option("#track", "agent")
    page.wait_for_function(
        f"document.getElementById('audio').src !== {both!r}"
        " && document.getElementById('audio').src.startsWith('blob:')",
        timeout=15_000,
    )
    page.wait_for_function(
        "document.getElementById('audio').src.startsWith('blob:')"
        " && document.getElementById('audio').readyState >= 1",
        timeout=15_000,
    )
    page.evaluate("document.getElementById('audio').play()")
    page.wait_for_function(
        "document.getElementById('audio').currentTime > 0.3"
        " && document.querySelector('#timeline li.playing')",
        timeout=15_000,
    )
    first = page.evaluate("document.querySelector('#timeline li.playing').innerText")
    page.evaluate(
        "(() => { const a = document.getElementById('audio');"
        " a.currentTime = a.duration - 0.05; })()"
    )
    page.wait_for_function(
        f"document.querySelector('#timeline li.playing')?.innerText !== {first!r}",
        timeout=15_000,
    )
    last = page.evaluate("document.querySelector('#timeline li.playing').className")
    assert "assistant" in last
    page.evaluate("document.getElementById('audio').pause()")

    # The README's screenshots: REALTALK_SCREENSHOTS=1 writes them into docs/screenshots.
    shots = DOCS if SCREENSHOTS else tmp_path
    page.select_option("#track", "both")  # as a visitor first sees it
    page.screenshot(path=str(shots / "history-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    # On a phone the open conversation takes the screen, without sideways scrolling.
    assert not page.is_visible(".list-pane")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(shots / "history-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})

    # Delete, dismissing the confirmation first (nothing happens), then accepting it.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#delete")
    assert page.locator(f'button.open[data-id="{conversation_id}"]').count() == 1
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete")
    page.wait_for_selector("#detail", state="hidden")
    assert page.locator(f'button.open[data-id="{conversation_id}"]').count() == 0
    headers = {"Authorization": f"Bearer {server.api_key}"}
    gone = httpx.get(f"{server.url}/api/conversations/{conversation_id}", headers=headers)
    assert gone.status_code == 404


def test_history_route_serves_the_page(recorded: tuple[LiveServer, str]) -> None:
    server, _ = recorded
    got = httpx.get(f"{server.url}/history", timeout=10)
    assert got.status_code == 200 and "Conversation history" in got.text
