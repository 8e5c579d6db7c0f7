"""Screenshots of the live page during a spoken turn, at desktop and phone size, for README.

Run: ``PYTHONPATH=src python -m tests.page_screenshots`` (needs the models and Chromium).
Writes docs/screenshots/live-desktop.png (1280x800) and live-phone.png (390x844)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.conftest import start_server, stop_server
from tests.realtime_helpers import silence, voice
from tests.test_browser import open_page, wait_for, write_wav

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
ANSWERED = "document.querySelector('#transcript li.assistant .latency') !== null"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), "screens", ready=True)
        try:
            wav = write_wav(
                Path(tmp) / "question.wav",
                [
                    silence(1500, 48_000),
                    voice("What's the status of order 1001?", 48_000, steady=True),
                    silence(40_000, 48_000),
                ],
            )
            for page in open_page(wav, server.url):
                page.set_viewport_size({"width": 1280, "height": 800})
                page.get_by_label("Instructions").fill("Answer in one short sentence.")
                page.get_by_role("button", name="Start").click()
                wait_for(
                    page,
                    "window.realtalk.events.filter(e => e.type === 'response.done').length >= 2",
                    120,
                )
                wait_for(page, ANSWERED, 60)
                page.locator("#settings > summary").click()  # fold settings once talking
                page.screenshot(path=str(OUT / "live-desktop.png"))
                page.set_viewport_size({"width": 390, "height": 844})
                page.screenshot(path=str(OUT / "live-phone.png"))
                page.get_by_role("button", name="Stop").click()
        finally:
            stop_server(server)


if __name__ == "__main__":
    main()
