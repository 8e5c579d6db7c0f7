"""The session's state machine on scripted timelines: event order, barge-in, cancel, errors.

Model stages are scripted (tests/scripted.py) so these run in milliseconds; every event is
still validated against the openai package's types for its generation.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from realtalk.core.config import FunctionTool, SessionConfig, TurnDetection
from realtalk.tools import ToolRegistry, tool
from tests.realtime_helpers import assert_reply_closed, silence, tone
from tests.scripted import ScriptedLLM, ScriptedSTT, call, scripted_models, text
from tests.session_client import Client, Sessions, types


@pytest.fixture
async def make_session() -> AsyncIterator[Any]:
    sessions = Sessions()

    def make(
        generation: str = "ga",
        llm: ScriptedLLM | None = None,
        stt: ScriptedSTT | None = None,
        registry: ToolRegistry | None = None,
        **config: Any,
    ) -> Client:
        return sessions.start(
            SessionConfig(instructions="Be brief.", **config),
            scripted_models(llm, stt),
            generation,
            tools=registry,
        )

    yield make
    await sessions.aclose()


async def test_opening_events_per_generation(make_session: Any) -> None:
    beta = make_session("beta")
    assert types(beta.drain()) == ["session.created", "conversation.created"]
    ga = make_session("ga")
    assert types(ga.drain()) == ["session.created"]


async def test_voice_turn_event_order_ga(make_session: Any) -> None:
    llm = ScriptedLLM([[text("Hello"), text(" there."), text(" How are you?")]])
    client = make_session("ga", llm=llm, stt=ScriptedSTT(["hi robot"]))
    client.drain()
    await client.audio(np.concatenate([silence(500), tone(1500), silence(800)]))
    events = await client.until("response.done")
    events += await client.until("rate_limits.updated")
    order = types(events)
    expected = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
        "rate_limits.updated",
    ]
    positions = [order.index(kind) for kind in expected]
    assert positions == sorted(positions), order
    assert "conversation.item.input_audio_transcription.completed" in order
    started = events[order.index("input_audio_buffer.speech_started")]
    stopped = events[order.index("input_audio_buffer.speech_stopped")]
    committed = events[order.index("input_audio_buffer.committed")]
    assert started["item_id"] == stopped["item_id"] == committed["item_id"]
    assert 0 <= started["audio_start_ms"] <= 500
    assert 2000 <= stopped["audio_end_ms"] <= 2600
    completed = events[order.index("conversation.item.input_audio_transcription.completed")]
    assert completed["transcript"] == "hi robot"
    done = events[-2]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0]["transcript"] == "Hello there. How are you?"
    assert done["usage"]["output_tokens"] == 3
    # The user's words reached the model as text.
    assert llm.requests[0].messages[-1] == {"role": "user", "content": "hi robot"}
    assert llm.requests[0].messages[0] == {"role": "system", "content": "Be brief."}


async def test_text_turn_beta_names(make_session: Any) -> None:
    client = make_session("beta", llm=ScriptedLLM([[text("Four.")]]), audio_output=False)
    client.drain()
    await client.user_text("2+2?")
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    order = types(events)
    assert "conversation.item.created" in order and "response.text.delta" in order
    assert events[-1]["response"]["output"][0]["content"][0] == {"type": "text", "text": "Four."}


async def test_barge_in_cancels_with_turn_detected(make_session: Any) -> None:
    llm = ScriptedLLM([[text("This is a long answer. " * 3)], [text("Sure.")]], token_delay_s=0.05)
    client = make_session("ga", llm=llm)
    client.drain()
    await client.audio(np.concatenate([tone(800), silence(700)]))
    await client.until("response.output_audio.delta")
    await client.audio(tone(600))  # the user talks over the agent
    events = await client.until("response.done")
    done = events[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"]["reason"] == "turn_detected"
    assert types(events).index("input_audio_buffer.speech_started") < len(events) - 1
    # The interrupted answer stays in the conversation, marked incomplete.
    assert done["output"][0]["status"] == "incomplete"
    # The user's new turn is answered afterwards.
    await client.audio(silence(800))
    assert (await client.until("response.done"))[-1]["response"]["status"] == "completed"


async def test_interrupt_response_false_keeps_the_reply(make_session: Any) -> None:
    turn = TurnDetection(interrupt_response=False, create_response=True)
    llm = ScriptedLLM([[text("One two three four five.")]], token_delay_s=0.02)
    client = make_session("ga", llm=llm, turn_detection=turn)
    client.drain()
    await client.audio(np.concatenate([tone(500), silence(600)]))
    await client.until("response.created")
    await client.audio(tone(300))
    events = await client.until("response.done")
    assert "input_audio_buffer.speech_started" in types(events)
    assert events[-1]["response"]["status"] == "completed"


async def test_response_cancel_and_second_create(make_session: Any) -> None:
    client = make_session(
        "ga", llm=ScriptedLLM([[text("word ")] * 50], token_delay_s=0.05), turn_detection=None
    )
    client.drain()
    await client.user_text("Talk")
    await client.send({"type": "response.create"})
    await client.until("response.created")
    second = await client.send({"type": "response.create", "event_id": "evt_again"})
    error = (await client.until("error"))[-1]["error"]
    assert error["code"] == "conversation_already_has_active_response"
    assert error["event_id"] == second == "evt_again"
    await client.send({"type": "response.cancel"})
    done = (await client.until("response.done"))[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"]["reason"] == "client_cancelled"
    await client.send({"type": "response.cancel", "event_id": "evt_nothing"})
    error = (await client.until("error"))[-1]["error"]
    assert error["code"] == "response_cancel_not_active" and error["event_id"] == "evt_nothing"


async def test_manual_commit_without_vad(make_session: Any) -> None:
    client = make_session(
        "ga", llm=ScriptedLLM([[text("Yes.")]]), stt=ScriptedSTT(["ping"]), turn_detection=None
    )
    client.drain()
    await client.audio(np.concatenate([tone(700), silence(700)]))
    assert client.drain() == []  # no VAD events, no automatic response
    await client.send({"type": "input_audio_buffer.commit"})
    committed = await client.until("conversation.item.added")
    assert types(committed) == ["input_audio_buffer.committed", "conversation.item.added"]
    await client.send({"type": "response.create"})
    assert (await client.until("response.done"))[-1]["response"]["status"] == "completed"
    await client.send({"type": "input_audio_buffer.commit", "event_id": "evt_empty"})
    error = (await client.until("error"))[-1]["error"]
    assert error["code"] == "input_audio_buffer_commit_empty"


async def test_function_call_round_trip(make_session: Any) -> None:
    tools = (
        {
            "type": "function",
            "name": "lookup_order",
            "description": "Find an order",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    )
    llm = ScriptedLLM(
        [[call("lookup_order", '{"order_id": "1001"}')], [text("Order 1001 has shipped.")]]
    )
    client = make_session("ga", llm=llm, turn_detection=None, audio_output=False)
    client.drain()
    await client.send(
        {"type": "session.update", "session": {"type": "realtime", "tools": list(tools)}}
    )
    await client.until("session.updated")
    await client.user_text("Order 1001?")
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    done_args = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done_args["name"] == "lookup_order"
    assert json.loads(done_args["arguments"]) == {"order_id": "1001"}
    deltas = "".join(
        e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
    )
    assert deltas == done_args["arguments"]
    output = events[-1]["response"]["output"]
    assert output[0]["type"] == "function_call" and output[0]["call_id"] == done_args["call_id"]
    await client.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "function_call_output",
                "call_id": done_args["call_id"],
                "output": json.dumps({"status": "shipped"}),
            },
        }
    )
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Order 1001 has shipped."
    messages = llm.requests[1].messages
    assert messages[-2]["tool_calls"][0]["function"]["name"] == "lookup_order"
    assert messages[-1] == {
        "role": "tool",
        "tool_call_id": done_args["call_id"],
        "content": '{"status": "shipped"}',
    }


async def test_conversation_items_retrieve_delete_truncate(make_session: Any) -> None:
    client = make_session(
        "ga", llm=ScriptedLLM([[text("A fairly long spoken answer.")]]), turn_detection=None
    )
    client.drain()
    await client.send(
        {
            "type": "conversation.item.create",
            "item": {
                "id": "item_user1",
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}],
            },
        }
    )
    await client.send(
        {
            "type": "conversation.item.create",
            "previous_item_id": "root",
            "item": {
                "id": "item_sys",
                "type": "message",
                "role": "system",
                "content": [{"type": "input_text", "text": "Rules."}],
            },
        }
    )
    added = [e for e in client.drain() if e["type"] == "conversation.item.added"]
    assert added[1]["previous_item_id"] is None
    await client.send({"type": "response.create"})
    done = (await client.until("response.done"))[-1]["response"]
    assistant = done["output"][0]["id"]
    await client.send({"type": "conversation.item.retrieve", "item_id": "item_user1"})
    retrieved = (await client.until("conversation.item.retrieved"))[-1]
    assert retrieved["item"]["content"][0]["text"] == "hi"
    await client.send(
        {
            "type": "conversation.item.truncate",
            "item_id": assistant,
            "content_index": 0,
            "audio_end_ms": 600,
        }
    )
    truncated = (await client.until("conversation.item.truncated"))[-1]
    assert truncated["audio_end_ms"] == 600
    item = client.session.conversation.get(assistant)
    assert len(item.content[0].transcript or "") < len("A fairly long spoken answer.")
    await client.send(
        {
            "type": "conversation.item.truncate",
            "item_id": assistant,
            "content_index": 0,
            "audio_end_ms": 60_000,
            "event_id": "evt_long",
        }
    )
    error = (await client.until("error"))[-1]["error"]
    assert error["param"] == "audio_end_ms" and error["event_id"] == "evt_long"
    await client.send(
        {
            "type": "conversation.item.truncate",
            "item_id": "item_user1",
            "content_index": 0,
            "audio_end_ms": 0,
        }
    )
    assert (await client.until("error"))[-1]["error"]["code"] == "invalid_value"
    await client.send({"type": "conversation.item.delete", "item_id": "item_user1"})
    assert (await client.until("conversation.item.deleted"))[-1]["item_id"] == "item_user1"
    await client.send({"type": "conversation.item.retrieve", "item_id": "item_user1"})
    assert (await client.until("error"))[-1]["error"]["code"] == "item_not_found"


async def test_out_of_band_response_leaves_the_conversation_alone(make_session: Any) -> None:
    llm = ScriptedLLM([[text("Positive.")]])
    client = make_session("ga", llm=llm, turn_detection=None)
    client.drain()
    await client.send(
        {
            "type": "response.create",
            "response": {
                "conversation": "none",
                "output_modalities": ["text"],
                "instructions": "Classify.",
                "metadata": {"topic": "sentiment"},
                "input": [
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "I love it"}],
                    }
                ],
            },
        }
    )
    events = await client.until("response.done")
    assert "conversation.item.added" not in types(events)
    done = events[-1]["response"]
    assert done["conversation_id"] is None and done["metadata"] == {"topic": "sentiment"}
    assert len(client.session.conversation) == 0
    assert llm.requests[0].messages == [
        {"role": "system", "content": "Classify."},
        {"role": "user", "content": "I love it"},
    ]


async def test_output_audio_buffer_clear_is_webrtc_only(make_session: Any) -> None:
    client = make_session("ga")
    client.drain()
    await client.send({"type": "output_audio_buffer.clear", "event_id": "evt_clear"})
    error = (await client.until("error"))[-1]["error"]
    assert error["event_id"] == "evt_clear" and "WebRTC" in error["message"]


async def test_idle_timeout_triggers_a_turn(make_session: Any) -> None:
    turn = TurnDetection(idle_timeout_ms=5000)
    client = make_session(
        "ga", llm=ScriptedLLM([[text("Hi.")], [text("Still there?")]]), turn_detection=turn
    )
    client.drain()
    client.session._start_idle_timer()
    await client.audio(silence(300))
    events = await client.until("response.done", limit_s=8)
    assert "input_audio_buffer.timeout_triggered" in types(events)


async def test_idle_timeout_counts_from_the_end_of_playback(make_session: Any) -> None:
    """Over a WebSocket the client plays the reply as it arrives: the timeout starts when it
    has had the time to play it all, not at ``response.done``."""
    turn = TurnDetection(idle_timeout_ms=5000)
    reply = "A reply that takes some seconds to play. " * 2
    client = make_session("ga", llm=ScriptedLLM([[text(reply)]]), turn_detection=turn)
    client.drain()
    loop = asyncio.get_running_loop()
    await client.audio(np.concatenate([tone(600), silence(700)]))
    await client.until("response.output_audio.delta")
    first_audio = loop.time()
    done = (await client.until("response.done"))[-1]["response"]
    played_s = client.session.conversation.get(done["output"][0]["id"]).content[0].audio_ms / 1000
    assert played_s > 3 and loop.time() - first_audio < 1  # sent far faster than it plays
    await client.audio(silence(100))
    await client.until("input_audio_buffer.timeout_triggered", limit_s=15)
    assert loop.time() - first_audio >= played_s + 5


async def test_beta_clients_get_no_timeout_triggered_event(make_session: Any) -> None:
    turn = TurnDetection(idle_timeout_ms=5000)
    client = make_session(
        "beta", llm=ScriptedLLM([[text("Still there?")]]), turn_detection=turn, audio_output=False
    )
    client.drain()
    client.session._start_idle_timer()
    events = await client.until("response.done", limit_s=8)
    assert "input_audio_buffer.timeout_triggered" not in types(events)
    assert "input_audio_buffer.committed" in types(events)


@pytest.mark.parametrize(
    ("raw", "code", "param"),
    [
        ("{not json", "invalid_json", None),
        ('["a"]', "invalid_json", None),
        ('{"type": "nope.event", "event_id": "evt_x"}', "invalid_value", "type"),
        (
            '{"type": "input_audio_buffer.append", "audio": 5, "event_id": "evt_x"}',
            "invalid_value",
            "audio",
        ),
        (
            '{"type": "input_audio_buffer.append", "audio": "***", "event_id": "evt_x"}',
            "invalid_value",
            "audio",
        ),
        (
            '{"type": "conversation.item.truncate", "item_id": "x", "content_index": 0, '
            '"audio_end_ms": "soon", "event_id": "evt_x"}',
            "invalid_value",
            "audio_end_ms",
        ),
        (
            '{"type": "session.update", "session": {"type": "realtime", "audio": {"output": '
            '{"speed": 9}}}, "event_id": "evt_x"}',
            "decimal_above_max_value",
            "session.audio.output.speed",
        ),
        (
            '{"type": "conversation.item.create", "item": {"type": "message", "role": "user", '
            '"content": []}, "event_id": "evt_x"}',
            "invalid_value",
            "item.content",
        ),
    ],
)
async def test_bad_input_is_an_error_event_and_the_session_goes_on(
    make_session: Any, raw: str, code: str, param: str | None
) -> None:
    client = make_session(
        "ga", llm=ScriptedLLM([[text("Fine.")]]), turn_detection=None, audio_output=False
    )
    client.drain()
    await client.session.receive(raw)
    error = (await client.until("error"))[-1]["error"]
    assert error["code"] == code
    assert error["param"] == param
    assert error["type"] == "invalid_request_error" and error["message"]
    if "evt_x" in raw:
        assert error["event_id"] == "evt_x"
    await client.user_text("ok")
    await client.send({"type": "response.create"})
    assert (await client.until("response.done"))[-1]["response"]["status"] == "completed"


async def test_oversized_append_is_refused(make_session: Any) -> None:
    client = make_session("ga")
    client.drain()
    big = base64.b64encode(bytes(15 * 1024 * 1024 + 2)).decode()
    await client.send({"type": "input_audio_buffer.append", "audio": big, "event_id": "evt_big"})
    error = (await client.until("error"))[-1]["error"]
    assert error["code"] == "audio_too_large" and error["event_id"] == "evt_big"


async def test_events_after_close_are_refused(make_session: Any) -> None:
    client = make_session("ga")
    client.drain()
    await client.session.aclose()
    await client.send({"type": "response.create"})
    assert client.drain()[-1]["error"]["code"] == "session_closed"


async def test_g711_input_is_decoded(make_session: Any) -> None:
    from realtalk.audio.pcm import encode_wire, resample

    client = make_session("beta", input_audio_format="g711_ulaw", llm=ScriptedLLM([[text("Ok.")]]))
    client.drain()
    ulaw = encode_wire(
        resample(np.concatenate([silence(300), tone(900), silence(800)]), 24_000, 8_000),
        "g711_ulaw",
    )
    for start in range(0, len(ulaw), 800):
        await client.send(
            {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(ulaw[start : start + 800]).decode(),
            }
        )
    events = await client.until("input_audio_buffer.committed")
    assert types(events)[:2] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
    ]


async def test_transcription_starts_during_the_silence_window(make_session: Any) -> None:
    stt = ScriptedSTT(["what time is it"])
    client = make_session("ga", llm=ScriptedLLM([[text("Noon.")]]), stt=stt)
    client.session.transcriber.live_partials = False  # count only the speculative jobs
    client.drain()
    await client.audio(np.concatenate([tone(1000), silence(300)]))
    assert stt.calls == 1  # speculative job started before the turn is over
    assert "input_audio_buffer.speech_stopped" not in types(client.drain())
    await client.audio(silence(500))
    events = await client.until("conversation.item.input_audio_transcription.completed")
    assert events[-1]["transcript"] == "what time is it"
    assert stt.calls == 1  # adopted, not run again


async def test_speculation_is_discarded_when_speech_resumes(make_session: Any) -> None:
    stt = ScriptedSTT(["what time", "what time is it in Paris"])
    client = make_session("ga", llm=ScriptedLLM([[text("Noon.")]]), stt=stt)
    client.session.transcriber.live_partials = False  # count only the speculative jobs
    client.drain()
    await client.audio(np.concatenate([tone(800), silence(300), tone(800), silence(800)]))
    events = await client.until("conversation.item.input_audio_transcription.completed")
    assert types(events).count("input_audio_buffer.speech_started") == 1
    assert events[-1]["transcript"] == "what time is it in Paris"
    assert stt.calls == 2


async def test_server_side_tool_runs_without_a_client_round_trip(make_session: Any) -> None:
    calls: list[str] = []

    @tool(execution="server")
    async def lookup_order(order_id: str) -> dict[str, str]:
        """Look up an order."""
        calls.append(order_id)
        await asyncio.sleep(0.5)  # slow: audio and events must not wait for it
        return {"order_id": order_id, "status": "shipped"}

    registry = ToolRegistry()
    registry.add(lookup_order)
    llm = ScriptedLLM(
        [
            [text("Let me check that for you. "), call("lookup_order", '{"order_id": "1001"}')],
            [text("Your order has shipped.")],
        ],
        token_delay_s=0.01,
    )
    tool_spec = FunctionTool(
        "lookup_order", "Look up an order.", lookup_order.schema()["parameters"]
    )
    client = make_session("ga", llm=llm, registry=registry, turn_detection=None, tools=(tool_spec,))
    client.drain()
    await client.user_text("Where is order 1001?")
    await client.send({"type": "response.create"})
    first = await client.until("response.done")
    kinds = types(first)
    # The spoken part before the call streams while the tool is still running.
    assert kinds.index("response.output_audio.delta") < kinds.index(
        "response.function_call_arguments.done"
    )
    follow = await client.until("response.done")
    output_item = next(
        e
        for e in follow
        if e["type"] == "conversation.item.added" and e["item"]["type"] == "function_call_output"
    )
    assert json.loads(output_item["item"]["output"])["status"] == "shipped"
    assert types(follow).index("conversation.item.added") < types(follow).index("response.created")
    assert follow[-1]["response"]["output"][0]["content"][0]["transcript"] == (
        "Your order has shipped."
    )
    assert calls == ["1001"]
    assert llm.requests[1].messages[-1]["role"] == "tool"


@pytest.mark.parametrize("generation", ["beta", "ga"])
async def test_barge_in_closes_the_interrupted_items(make_session: Any, generation: str) -> None:
    llm = ScriptedLLM([[text("This is a long answer. " * 3)], [text("Sure.")]], token_delay_s=0.05)
    client = make_session(generation, llm=llm)
    client.drain()
    await client.audio(np.concatenate([tone(800), silence(700)]))
    delta = "response.audio.delta" if generation == "beta" else "response.output_audio.delta"
    events = await client.until(delta)
    await client.audio(tone(600))
    events += await client.until("response.done")
    response = assert_reply_closed(events, generation)
    assert response["status_details"]["reason"] == "turn_detected"


@pytest.mark.parametrize("generation", ["beta", "ga"])
@pytest.mark.parametrize("modality", ["audio", "text"])
async def test_response_cancel_closes_the_started_items(
    make_session: Any, generation: str, modality: str
) -> None:
    client = make_session(
        generation,
        llm=ScriptedLLM([[text("word, ")] * 60], token_delay_s=0.03),
        turn_detection=None,
        audio_output=modality == "audio",
    )
    client.drain()
    await client.user_text("Talk")
    await client.send({"type": "response.create"})
    events = await client.until("response.content_part.added")
    await asyncio.sleep(0.3)
    await client.send({"type": "response.cancel"})
    events += await client.until("response.done")
    response = assert_reply_closed(events, generation)
    assert response["status_details"]["reason"] == "client_cancelled"


async def test_truncate_at_the_received_length_is_exact(make_session: Any) -> None:
    """A client truncating at floor(bytes / 48), the JS Agents SDK's rule, is accepted at once,
    whatever the reply's clauses' lengths; up to a frame past the end is clamped."""
    sentences = [text("One, two. "), text("Three, four, five. "), text("Six seven, eight. ")]
    client = make_session("ga", llm=ScriptedLLM([sentences]), turn_detection=None)
    client.drain()
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    received = sum(
        len(base64.b64decode(e["delta"]))
        for e in events
        if e["type"] == "response.output_audio.delta"
    )
    item_id = events[-1]["response"]["output"][0]["id"]
    part = client.session.conversation.get(item_id).content[0]
    assert len(part.segments) >= 3
    assert part.audio_ms == received // 48
    for end_ms, expected in ((received // 48 + 15, received // 48), (received // 48, None)):
        await client.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": end_ms,
            }
        )
        truncated = (await client.until("conversation.item.truncated"))[-1]
        assert truncated["audio_end_ms"] == (expected or end_ms)
    await client.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": received // 48 + 100,
        }
    )
    assert (await client.until("error"))[-1]["error"]["param"] == "audio_end_ms"
