"""Seeded fuzzing of client events, both generations: thousands of malformed events, each
built to be wrong (a broken shape, a bad value, a missing field, hostile JSON), and every one
must get exactly one ``invalid_request_error`` naming its ``event_id``, with the session
answering a valid ``session.update`` all along.

Set ``REALTALK_FUZZ_SEED`` to replay or vary a run; a failure prints the seed and the event.
"""

from __future__ import annotations

import copy
import json
import os
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from realtalk.core.config import SessionConfig
from realtalk.session.session import RealtimeSession
from tests.scripted import scripted_models

SEED = int(os.environ.get("REALTALK_FUZZ_SEED", "1126"))
EVENTS_PER_GENERATION = 1_500
CHECK_EVERY = 50
"""A valid session.update is sent (and must be answered) after this many bad events."""

Event = dict[str, Any]
Mutation = Callable[[random.Random, Event], "str | bytes | Event"]


def templates(generation: str) -> list[Event]:
    """One well-formed event of each kind a client sends (``event_id`` first)."""
    session: Event = (
        {"instructions": "Be brief.", "voice": "alloy"}
        if generation == "beta"
        else {"type": "realtime", "instructions": "Be brief."}
    )
    message = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "hello"}],
    }
    tool = {
        "type": "function",
        "name": "lookup",
        "description": "Look something up.",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
    return [
        {"type": "session.update", "session": session},
        {"type": "session.update", "session": {**session, "tools": [tool]}},
        {"type": "input_audio_buffer.append", "audio": "AAAAAA=="},
        {"type": "input_audio_buffer.commit"},
        {"type": "input_audio_buffer.clear"},
        {"type": "conversation.item.create", "item": message},
        {"type": "conversation.item.retrieve", "item_id": "item_missing"},
        {"type": "conversation.item.delete", "item_id": "item_missing"},
        {
            "type": "conversation.item.truncate",
            "item_id": "item_missing",
            "content_index": 0,
            "audio_end_ms": 10,
        },
        {"type": "response.create", "response": {"instructions": "Hi."}},
        {"type": "response.cancel"},
        {"type": "output_audio_buffer.clear"},
    ]


def junk(rng: random.Random, *, for_object: bool = False) -> Any:
    """A value of the wrong kind for a string field (or, ``for_object``, an object field):
    no coercion makes it right."""
    choices: list[Any] = [rng.randint(-(10**6), 10**6), [rng.random()], True, None]
    if not for_object:
        choices.append({"x": rng.randint(0, 9)})
    return rng.choice(choices)


def _dicts(value: Any) -> list[dict[str, Any]]:
    found = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


# ---- mutations: each turns a well-formed event into one that must be refused ----------------


def unknown_type(rng: random.Random, event: Event) -> Event:
    event["type"] = rng.choice(["", "session.updatee", "response", "x" * 40, 7, None, ["a"]])
    return event


def break_field(rng: random.Random, event: Event) -> Event:
    """A required field missing, or a field the event's kind checks given a bad value."""
    kind = event["type"]
    body = event.get("session") or event.get("response") or {}
    match kind:
        case "session.update":
            target = rng.choice(["session", "instructions", "tools", "tool_choice", "parameters"])
            if target == "session":
                event["session"] = rng.choice([junk(rng, for_object=True), "realtime", 3])
            elif target == "instructions":
                body["instructions"] = rng.choice([7, ["x"], {"a": 1}, True])
            elif target == "tools":
                body["tools"] = rng.choice([{"a": 1}, "tools", 3, [{"type": "function"}]])
            elif target == "tool_choice":
                body["tool_choice"] = rng.choice([3, ["auto"], "no_such_tool"])
            else:
                tool = {"type": "function", "name": "t", "parameters": {"type": rng.randint(1, 9)}}
                body["tools"] = [tool]
        case "input_audio_buffer.append":
            if rng.random() < 0.3:
                del event["audio"]
            else:
                event["audio"] = rng.choice([junk(rng), "!!!!", "AAA", "AA=A", "é" * 4])
        case "input_audio_buffer.commit":
            pass  # nothing appended: committing an empty buffer is refused
        case "input_audio_buffer.clear":
            event["type"] = "input_audio_buffer.clearr"
        case "conversation.item.create":
            target = rng.choice(["missing", "item", "item.type", "role", "content"])
            if target == "missing":
                del event["item"]
            elif target == "item":
                event["item"] = junk(rng, for_object=True)
            elif target == "item.type":
                event["item"]["type"] = rng.choice(["messages", "", 5])
            elif target == "role":
                event["item"]["role"] = rng.choice(["robot", 5, None])
            else:
                event["item"]["content"] = rng.choice([5, "hi", [{"type": "nope"}]])
        case "conversation.item.retrieve" | "conversation.item.delete":
            if rng.random() < 0.3:
                del event["item_id"]
            else:
                event["item_id"] = rng.choice([junk(rng), f"item_{rng.randint(0, 10**9)}"])
        case "conversation.item.truncate":
            target = rng.choice(["item_id", "content_index", "audio_end_ms"])
            event[target] = junk(rng) if target != "audio_end_ms" else rng.choice([-5, "10", None])
        case "response.create":
            target = rng.choice(["response", "instructions", "conversation", "tool_choice"])
            if target == "response":
                event["response"] = rng.choice([5, "go", [1]])
            elif target == "instructions":
                body["instructions"] = rng.choice([5, ["x"], {"y": 2}])
            elif target == "conversation":
                body["conversation"] = rng.choice(["everything", "nobody"])
            else:
                body["tool_choice"] = rng.choice(["no_such_tool", 5])
        case "response.cancel":
            if rng.random() < 0.5:
                event["response_id"] = f"resp_{rng.randint(0, 10**9)}"
        case "output_audio_buffer.clear":
            pass  # over a WebSocket the client owns playback: always refused
    return event


def nested_too_deep(rng: random.Random, event: Event) -> str:
    levels = rng.choice([rng.randint(65, 400), rng.randint(900, 5_000)])
    where = rng.choice(_dicts(event))
    where["deep"] = "__DEEP__"
    text = json.dumps(event)
    return text.replace('"__DEEP__"', "[" * levels + "]" * levels)


def huge_integer(rng: random.Random, event: Event) -> str:
    where = rng.choice(_dicts(event))
    where["n"] = "__INT__"
    return json.dumps(event).replace(
        '"__INT__"', str(rng.randint(1, 9)) * rng.randint(4_301, 9_000)
    )


def not_a_number(rng: random.Random, event: Event) -> str:
    where = rng.choice(_dicts(event))
    where["n"] = "__NAN__"
    return json.dumps(event).replace('"__NAN__"', rng.choice(["NaN", "Infinity", "-Infinity"]))


def truncated(rng: random.Random, event: Event) -> str:
    text = json.dumps(event)
    after_id = text.index(",") + 1  # the event_id comes first
    return text[: rng.randint(after_id, len(text) - 1)]


def not_utf8(rng: random.Random, event: Event) -> bytes:
    where = rng.choice(_dicts(event))
    where["s"] = "__BYTES__"
    raw = json.dumps(event).encode()
    return raw.replace(b"__BYTES__", bytes([rng.randint(0x80, 0xFF)]) * rng.randint(1, 3))


MUTATIONS: list[Mutation] = [
    unknown_type,
    break_field,
    break_field,
    break_field,
    nested_too_deep,
    huge_integer,
    not_a_number,
    truncated,
    not_utf8,
]


def anonymous(rng: random.Random) -> str | bytes:
    """Events with no usable event_id: not an object, or an event_id that is not a string."""
    return rng.choice(
        [
            json.dumps(rng.choice([[], [1, 2], "session.update", 5, None, True])),
            json.dumps({"event_id": rng.randint(0, 99), "type": "input_audio_buffer.clear"}),
            "",
            "{",
            b"\xff\xfe\x00",
        ]
    )


# ---- the run -------------------------------------------------------------------------------


@pytest.fixture
async def sessions() -> AsyncIterator[list[RealtimeSession]]:
    made: list[RealtimeSession] = []
    yield made
    for session in made:
        await session.aclose()


def drain(session: RealtimeSession) -> list[Event]:
    events = []
    while not session.outbox.empty():
        events.append(session.outbox.get_nowait())
    return events


@pytest.mark.parametrize("generation", ["beta", "ga"])
async def test_malformed_events_are_refused_one_by_one(
    sessions: list[RealtimeSession], generation: str
) -> None:
    rng = random.Random(f"{SEED}-{generation}")
    session = RealtimeSession(
        config=SessionConfig(),
        generation=generation,  # type: ignore[arg-type]
        models=scripted_models(),
        session_id="sess_fuzz",
        expires_at=0,
    )
    sessions.append(session)
    session.start()
    drain(session)
    kinds = templates(generation)
    valid_update = {"type": "session.update", "session": kinds[0]["session"]}
    codes: set[str] = set()

    for index in range(EVENTS_PER_GENERATION):
        event_id: str | None = f"evt_fuzz_{index}"
        if rng.random() < 0.05:
            raw, event_id, how = anonymous(rng), None, "anonymous"
        else:
            event = {"event_id": event_id, **copy.deepcopy(rng.choice(kinds))}
            mutation = rng.choice(MUTATIONS)
            how = mutation.__name__
            mutated = mutation(rng, event)
            raw = mutated if isinstance(mutated, str | bytes) else json.dumps(mutated)
        where = f"seed {SEED}, {generation} event #{index} ({how}): {raw[:300]!r}"

        await session.receive(raw)
        events = drain(session)
        assert [e["type"] for e in events] == ["error"], f"{where}\n→ {events}"
        error = events[0]["error"]
        assert error["type"] == "invalid_request_error", f"{where}\n→ {error}"
        assert error["event_id"] == event_id, f"{where}\n→ {error}"
        assert error["message"], where
        codes.add(error["code"])

        if index % CHECK_EVERY == CHECK_EVERY - 1 or index == EVENTS_PER_GENERATION - 1:
            check_id = f"evt_check_{index}"
            await session.receive(json.dumps({"event_id": check_id, **valid_update}))
            events = drain(session)
            assert [e["type"] for e in events] == ["session.updated"], f"after {where}: {events}"

    # The run reached every kind of refusal, not just one.
    assert {"invalid_json", "invalid_value", "missing_required_parameter"} <= codes, codes
