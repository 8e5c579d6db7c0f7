"""The official ``openai`` npm package's realtime WebSocket clients against realtalk over TLS:
the GA ``OpenAIRealtimeWS`` (``openai/realtime/ws``) and the beta one
(``openai/beta/realtime/ws``). Both always dial ``wss://``, so the server runs with a
``realtalk dev-cert`` certificate and Node trusts its CA through ``NODE_EXTRA_CA_CERTS``; the
script (tests/js/openai_ws.mjs) is code written for OpenAI, pointed here by ``OPENAI_BASE_URL``.
Each generation, on one connection: a function call answered with ``function_call_output``, a
text reply, and a spoken pcm16 turn ended by server VAD. Every server event is checked against
the ``openai`` Python package's types for its generation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from realtalk.devcert import DevCertificate, make_dev_certificate
from tests.conftest import LiveServer, start_server, stop_server
from tests.realtime_helpers import silence, validate_event, voice, words
from tests.test_agents_js import JS_DIR, run_node

pytestmark = [pytest.mark.live, pytest.mark.models]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> DevCertificate:
    return make_dev_certificate(tmp_path_factory.mktemp("dev-cert"))


@pytest.fixture(scope="module")
def engine(
    tmp_path_factory: pytest.TempPathFactory, certificate: DevCertificate
) -> Iterator[LiveServer]:
    assert (JS_DIR / "node_modules" / "openai" / "realtime" / "ws.mjs").is_file(), (
        "the npm packages are missing: run `make js-deps` (make test does)"
    )
    server = start_server(
        tmp_path_factory.mktemp("openai-npm"),
        "openainpm",
        {
            # The settings' way to TLS (tests/test_tls.py starts one with the flags).
            "REALTALK_SSL_CERTFILE": str(certificate.cert),
            "REALTALK_SSL_KEYFILE": str(certificate.key),
        },
        ready=True,
        ca_file=certificate.ca_cert,
    )
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def question(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("speech") / "question.pcm"
    pcm = np.concatenate(
        [silence(500), voice("What is the capital of Italy?", steady=True), silence(2000)]
    ).astype("<i2")
    path.write_bytes(pcm.tobytes())
    return path


def node_env(engine: LiveServer, generation: str, question: Path, events: Path) -> dict[str, str]:
    """What the script sees: an OpenAI application's environment, aimed at realtalk."""
    env = {
        "GENERATION": generation,
        "OPENAI_BASE_URL": f"{engine.url}/v1",
        "OPENAI_API_KEY": engine.api_key,
        "QUESTION_PCM": str(question),
        "EVENTS_OUT": str(events),
    }
    if engine.ca_file is not None:
        env["NODE_EXTRA_CA_CERTS"] = str(engine.ca_file)
    return env


def wait_sessions_zero(engine: LiveServer) -> None:
    """The client's close ended its session on the server (polled over TLS)."""
    for _ in range(100):
        health = httpx.get(f"{engine.url}/healthz", verify=engine.verify()).json()
        if health["sessions"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"sessions still open: {health}")


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def _no_node_trust_of_our_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Node trusts only what each test gives it (run_node passes this environment on)."""
    for name in ("NODE_EXTRA_CA_CERTS", "OPENAI_BASE_URL", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("generation", ["ga", "beta"])
def test_openai_npm_realtime_ws_over_tls(
    engine: LiveServer, question: Path, tmp_path: Path, generation: str
) -> None:
    events_path = tmp_path / "events.jsonl"
    summary = run_node("openai_ws.mjs", node_env(engine, generation, question, events_path))
    assert summary["ok"], summary.get("failure")
    assert summary["errors"] == [] and summary["server_error_events"] == []
    # The package dialled wss:// and verified the certificate against the development CA.
    assert summary["url"] == engine.url.replace("https://", "wss://") + "/v1/realtime"
    assert summary["tls"]["authorized"] is True, summary["tls"]
    assert summary["minted"] is True  # its HTTPS client minted the ephemeral key
    events = read_events(events_path)
    assert len(events) == summary["event_count"] > 0
    for event in events:
        validate_event(event, generation)
    names = {e["type"] for e in events}
    item_added = "conversation.item.added" if generation == "ga" else "conversation.item.created"
    text_done = "response.output_text.done" if generation == "ga" else "response.text.done"
    assert item_added in names and text_done in names

    # 1. A function call with the right argument, then a text reply built on its output.
    tool = summary["tool_turn"]
    assert tool["status"] == "completed"
    assert tool["call"]["name"] == "get_order_status"
    assert "1001" in json.loads(tool["call"]["arguments"])["order_id"]
    assert tool["arguments_done"] == {
        "call_id": tool["call"]["call_id"],
        "arguments": tool["call"]["arguments"],
    }
    assert tool["argument_deltas"] == tool["call"]["arguments"]
    reply = tool["reply"]
    assert reply["status"] == "completed" and reply["output_types"] == ["message"]
    assert reply["text_deltas"] == reply["text_done"] == reply["output_text"]
    assert "shipped" in words(reply["text_done"]), reply["text_done"]

    # 2. A plain question: text only, as response.create asked.
    text = summary["text_turn"]
    assert text["status"] == "completed" and text["audio_deltas"] == 0
    assert text["text_deltas"] == text["text_done"] == text["output_text"]
    assert "paris" in words(text["text_done"]), text["text_done"]

    # 3. Spoken pcm16: server VAD ended the turn, the speech was transcribed, and the reply
    # came as audio deltas with their transcript.
    spoken = summary["spoken_turn"]
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "response.created",
        "response.done",
    ]
    seen = [t for t in spoken["events"] if t in order]
    assert seen == order, spoken["events"]
    assert {"capital", "italy"} <= words(spoken["user_transcript"]), spoken["user_transcript"]
    assert spoken["status"] == "completed"
    assert spoken["audio_bytes"] > 24_000  # over 0.5 s of 24 kHz pcm16
    assert spoken["transcript_deltas"] == spoken["transcript_done"] == spoken["output_transcript"]
    assert "rome" in words(spoken["transcript_done"]), spoken["transcript_done"]

    assert summary["close_code"] == 1000
    wait_sessions_zero(engine)
    assert "Traceback" not in engine.log_text(), engine.log_text()[-4000:]


def test_openai_npm_refuses_the_certificate_without_the_ca(
    engine: LiveServer, question: Path, tmp_path: Path
) -> None:
    """Without NODE_EXTRA_CA_CERTS, Node verifies against its own CA list and refuses both the
    HTTPS mint and the wss:// connection: the tests above really checked the certificate."""
    env = node_env(engine, "ga", question, tmp_path / "events.jsonl")
    del env["NODE_EXTRA_CA_CERTS"]
    summary = run_node("openai_ws.mjs", env)
    assert not summary["ok"] and not summary.get("connected")
    assert "certificate" in summary["mint_error"], summary["mint_error"]
    assert any("certificate" in e["message"] for e in summary["errors"]), summary["errors"]
