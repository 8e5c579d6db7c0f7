"""Tools for the tool-thread tests, loaded by a live server (``REALTALK_TOOLS``).

``hang`` blocks on a ``threading.Event`` until the file named by ``HANG_RELEASE_FILE`` exists
(the test creates it at its end), like a tool stuck on a dead connection.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from realtalk.tools import Tool, tool

RELEASED = threading.Event()


@tool
def hang(label: str = "") -> str:
    """Wait until the test releases every hung call."""
    RELEASED.wait()
    return f"released {label}"


def _watch(path: Path) -> None:
    while not path.exists():
        time.sleep(0.05)
    RELEASED.set()


def tools(settings: Any) -> list[Tool]:
    threading.Thread(
        target=_watch, args=(Path(os.environ["HANG_RELEASE_FILE"]),), daemon=True
    ).start()
    return [hang]
