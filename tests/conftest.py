"""Shared fixtures: settings in a temporary data folder, in-process apps, live uvicorn servers."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from realtalk.config import Settings, _default_model_dir

# The model cache is shared by the whole run (prepared once by `make test`).
MODEL_DIR = Path(os.environ.get("REALTALK_MODEL_DIR") or _default_model_dir())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own REALTALK_* variables or .env file."""
    for name in list(os.environ):
        if name.startswith("REALTALK_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        model_dir=MODEL_DIR,
        api_key="rt_test_standard_key_0123456789abcdef",
    )


@dataclass
class LiveServer:
    url: str
    api_key: str
    log_path: Path
    process: subprocess.Popen[bytes]
    ca_file: Path | None = None
    """With TLS: the CA that signed the server's certificate (``url`` is then https://)."""

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def verify(self) -> ssl.SSLContext | bool:
        """httpx's ``verify`` for this server: its CA with TLS, else the default."""
        if self.ca_file is None:
            return True
        return ssl.create_default_context(cafile=str(self.ca_file))


def start_server(
    tmp_path: Path,
    name: str,
    env: dict[str, str] | None = None,
    ready: bool = False,
    *,
    args: Sequence[str] = (),
    ca_file: Path | None = None,
) -> LiveServer:
    """Start ``realtalk serve`` in its own process on a free loopback port. ``args``: more
    command-line options; ``ca_file``: the server speaks TLS (``args`` or ``env`` give its
    certificate) with a certificate signed by this CA."""
    port = free_port()
    api_key = f"rt_live_{name}_key_0123456789abcdef"
    full_env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith("REALTALK_") and k != "OPENAI_API_KEY"
        },
        "REALTALK_API_KEY": api_key,
        "REALTALK_DATA_DIR": str(tmp_path / f"data-{name}"),
        "REALTALK_MODEL_DIR": str(MODEL_DIR),
        "REALTALK_DRAIN_S": "2",  # stop_server's SIGTERM: a session a test left open ends soon
        **(env or {}),
    }
    log_path = tmp_path / f"server-{name}.log"
    serve = [sys.executable, "-m", "realtalk", "serve"]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*serve, "--host", "127.0.0.1", "--port", str(port), *args],
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    scheme = "http" if ca_file is None else "https"
    server = LiveServer(
        f"{scheme}://127.0.0.1:{port}", full_env["REALTALK_API_KEY"], log_path, process, ca_file
    )
    verify = server.verify()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log_text()}")
        try:
            response = httpx.get(f"{server.url}/healthz", timeout=1, verify=verify)
            if not ready or response.status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"server did not start:\n{server.log_text()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@dataclass
class RedisServer:
    url: str
    process: subprocess.Popen[bytes]


def start_redis() -> RedisServer:
    """A throwaway ``redis-server`` on a free loopback port: no persistence, no config file."""
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        ["redis-server", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("redis-server exited early")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return RedisServer(f"redis://127.0.0.1:{port}/0", process)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start")


def stop_redis(server: RedisServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path, "engine")
    yield server
    stop_server(server)


def with_settings(settings: Settings, **changes: object) -> Settings:
    """A validated copy of ``settings`` (model_copy would skip validation)."""
    return Settings(**{**dict(settings), **changes})
