"""What ``/metrics`` reports (Prometheus text format): the metric objects and the few helpers
the instrumentation points call.

Labels take values from small fixed sets (transports, end reasons, stage names, error codes,
configured tool names), never from client data, so a client cannot grow the series. Nothing
here holds content: no transcripts, prompts or tool arguments.
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
"""realtalk's own registry (the process collector's pid/cpu series are left out: an exporter on
the host does those)."""

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Seconds: conversational latencies live between 50 ms and a few seconds."""

SESSIONS_LIVE = Gauge(
    "realtalk_sessions_live", "Realtime sessions open now.", ["transport"], registry=REGISTRY
)
SESSIONS_STARTED = Counter(
    "realtalk_sessions_started", "Realtime sessions opened.", ["transport"], registry=REGISTRY
)
SESSIONS_ENDED = Counter(
    "realtalk_sessions_ended",
    "Realtime sessions ended, by reason.",
    ["transport", "reason"],
    registry=REGISTRY,
)
SESSIONS_REFUSED = Counter(
    "realtalk_sessions_refused",
    "Sessions refused at admission (instance full, key full, shutting down).",
    ["code"],
    registry=REGISTRY,
)
TURNS = Counter("realtalk_turns", "User turns committed.", ["detection"], registry=REGISTRY)
RESPONSES = Counter(
    "realtalk_responses", "Responses finished, by status.", ["status"], registry=REGISTRY
)
STAGE_SECONDS = Histogram(
    "realtalk_stage_seconds",
    "Latency of each stage of a turn: end_of_speech_to_commit (audio timeline), stt, "
    "llm_first_token, tts_first_audio, commit_to_first_audio.",
    ["stage"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
ERRORS = Counter(
    "realtalk_errors",
    "Realtime 'error' events sent to clients, by code.",
    ["code"],
    registry=REGISTRY,
)
TOOL_CALLS = Counter(
    "realtalk_tool_calls",
    "Tool calls the server ran (server-side tools and /api/tools), by outcome.",
    ["tool", "outcome"],
    registry=REGISTRY,
)
REMOTE_FAILURES = Counter(
    "realtalk_remote_stage_failures",
    "Failed requests to a remote inference stage.",
    ["stage", "reason"],
    registry=REGISTRY,
)
RTC_INBOUND_PACKETS = Counter(
    "realtalk_rtc_inbound_packets",
    "Callers' RTP audio packets not played in order: lost (never came, or came too late) or "
    "dropped (to keep the jitter buffer's backlog short).",
    ["outcome"],
    registry=REGISTRY,
)

Stage = Literal[
    "end_of_speech_to_commit", "stt", "llm_first_token", "tts_first_audio", "commit_to_first_audio"
]


def observe(stage: Stage, seconds: float) -> None:
    STAGE_SECONDS.labels(stage).observe(max(0.0, seconds))


def session_started(transport: str) -> None:
    SESSIONS_STARTED.labels(transport).inc()
    SESSIONS_LIVE.labels(transport).inc()


def session_ended(transport: str, reason: str) -> None:
    SESSIONS_ENDED.labels(transport, reason).inc()
    SESSIONS_LIVE.labels(transport).dec()
