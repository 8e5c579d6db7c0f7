"""Session places and log redaction, without a server (the live checks: test_connections)."""

from __future__ import annotations

import logging
import os

import pytest

from realtalk.app.access_log import RedactQueryStrings, redact_url
from realtalk.app.capacity import SESSIONS_PER_CORE, OverCapacity, SessionSlots
from realtalk.app.capacity import machine_max_sessions as machine_cap
from realtalk.config import ConfigError, load_settings


def test_slots_count_the_instance_and_each_key() -> None:
    slots = SessionSlots(total=3, per_key=2)
    first, second = slots.take("ek_one"), slots.take("ek_one")
    with pytest.raises(OverCapacity) as key_full:
        slots.take("ek_one")
    assert (key_full.value.status, key_full.value.code) == (429, "max_sessions_per_key_reached")
    standard = slots.take(None)  # the standard key: only the instance's cap
    with pytest.raises(OverCapacity) as full:
        slots.check("ek_two")
    assert (full.value.status, full.value.type) == (503, "server_error")
    assert full.value.headers["Retry-After"] == "10"
    first.release()
    first.release()  # twice is once
    assert slots.taken == 2
    slots.take("ek_one").release()
    second.release()
    standard.release()
    assert slots.taken == 0 and not slots._by_key


def test_the_default_cap_fits_the_machine() -> None:
    cap = machine_cap()
    assert 1 <= cap <= SESSIONS_PER_CORE * (os.cpu_count() or 1)
    assert load_settings(max_sessions="7").max_sessions == 7
    with pytest.raises(ConfigError, match="REALTALK_MAX_SESSIONS_PER_KEY"):
        load_settings(max_sessions_per_key="0")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/v1/realtime", "/v1/realtime"),
        (
            "/v1/realtime?model=gpt&intent=transcription",
            "/v1/realtime?model=gpt&intent=transcription",
        ),
        ("/v1/realtime?api_key=sk-abc&model=x", "/v1/realtime?api_key=[redacted]&model=x"),
        ("/v1/realtime?model=ek_abc", "/v1/realtime?model=[redacted]"),
        ("/healthz?ek_abc", "/healthz?ek_abc=[redacted]"),
        ("/healthz?token=a%20b&call_id=rtc_1", "/healthz?token=[redacted]&call_id=rtc_1"),
        ("/x?key=rt_standard", "/x?key=[redacted]"),
    ],
)
def test_query_values_are_redacted(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_the_filter_rewrites_uvicorn_lines() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", "/p/rt_secret_standard?client_secret=ek_x", "1.1", 200),
        None,
    )
    assert RedactQueryStrings(("rt_secret_standard",)).filter(record)
    assert record.getMessage() == (
        '127.0.0.1:1 - "GET /p/[redacted]?client_secret=[redacted] HTTP/1.1" 200'
    )
