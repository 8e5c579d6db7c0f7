"""REALTALK_LLM_BASE_URL: the LLM stage talks to an OpenAI-compatible Chat Completions server.

The server here is llama-cpp-python's own OpenAI-compatible server, a real separate process
serving the same GGUF (as vLLM or Ollama would serve theirs).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import AsyncOpenAI

from realtalk.pipeline import weights
from tests.conftest import MODEL_DIR, LiveServer, free_port, start_server, stop_server
from tests.realtime_helpers import validate_event

pytestmark = [pytest.mark.live, pytest.mark.models]

# llama.cpp's server with the same weight-buffer setting realtalk uses (see pipeline/llm/local.py).
LAUNCH = (
    "import runpy, sys; from realtalk.pipeline.llm.local import _weight_repacking\n"
    "with _weight_repacking(False): runpy.run_module('llama_cpp.server', run_name='__main__')"
)


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    gguf = weights.resolve_model(MODEL_DIR, "llm", "qwen2.5-0.5b")
    port = free_port()
    log = (tmp_path_factory.mktemp("llm") / "llm.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            LAUNCH,
            "--model",
            str(gguf),
            "--model_alias",
            "qwen-remote",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--n_threads",
            "2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError("llama.cpp server exited")
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture
def engine(tmp_path: Path, chat_server: str) -> Iterator[LiveServer]:
    server = start_server(
        tmp_path,
        "remote-llm",
        {"REALTALK_LLM_BASE_URL": chat_server, "REALTALK_LLM_MODEL": "qwen-remote"},
        ready=True,
    )
    yield server
    stop_server(server)


async def test_text_turn_through_a_chat_completions_server(engine: LiveServer) -> None:
    client = AsyncOpenAI(api_key=engine.api_key, base_url=f"{engine.url}/v1")
    async with client.realtime.connect(model="realtalk-local") as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["text"],
                "instructions": "Answer with one word.",
            }
        )
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "What is the opposite of hot?"}],
            }
        )
        await conn.response.create()
        async for event in conn:
            validate_event(event.to_dict(), "ga")
            if event.type == "response.done":
                break
    assert event.response.status == "completed"
    output = event.response.output[0]
    answer = output.content[0].text  # type: ignore[union-attr]
    assert "cold" in answer.lower()
    assert event.response.usage is not None and event.response.usage.output_tokens
