"""Stages served by another process over OpenAI's HTTP API (vLLM, speaches, Kokoro-FastAPI,
OpenAI, or another realtalk): where they are, and how their failures read."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx
import openai
from openai import AsyncOpenAI

from realtalk import metrics

log = logging.getLogger("realtalk.remote")


@dataclass(frozen=True)
class RemoteStage:
    """An OpenAI-compatible server for one stage."""

    base_url: str
    """Up to and including ``/v1``."""
    model: str
    api_key: str | None = None
    timeout_s: float = 30.0
    """For connecting, and for each wait on the server's next bytes."""
    voice: str | None = None
    """TTS only."""

    def client(self) -> AsyncOpenAI:
        # One retry: a refused connection or a 5xx is tried again once, quickly.
        return AsyncOpenAI(
            base_url=self.base_url,
            api_key=self.api_key or "unused",
            timeout=self.timeout_s,
            max_retries=1,
        )


class RemoteStageError(Exception):
    """A remote stage failed. The message is for clients: what failed and how, never the
    server's address or its answer's body (those are logged)."""


def stage_failure(stage: RemoteStage, what: str, exc: Exception) -> RemoteStageError:
    """``exc`` from the openai client or httpx as a :class:`RemoteStageError`, logged."""
    kind = count_failure(what, exc)
    if kind == "timeout":
        reason = f"did not answer within {stage.timeout_s:g} s"
    elif kind == "unreachable":
        reason = "could not be reached"
    elif isinstance(exc, openai.APIStatusError):
        reason = f"answered HTTP {exc.status_code}"
    else:
        reason = f"failed ({type(exc).__name__})"
    log.warning("remote %s at %s %s: %s", what, stage.base_url, reason, exc)
    return RemoteStageError(f"the {what} server {reason}")


def count_failure(what: str, exc: BaseException) -> str:
    """Count a failed request to the ``what`` server in the metrics; its kind."""
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
        kind = "timeout"
    elif isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        kind = "unreachable"
    elif isinstance(exc, openai.APIStatusError):
        kind = "http_status"
    else:
        kind = "other"
    metrics.REMOTE_FAILURES.labels(what, kind).inc()
    return kind
