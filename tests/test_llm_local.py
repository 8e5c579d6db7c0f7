"""The local LLM stage: tool-call parsing of a small model's text, tool_choice, and the real
model's answers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from realtalk.pipeline.llm import Finished, LLMRequest, TextDelta, ToolCall, ToolSpec
from realtalk.pipeline.llm.local import LlamaLLM, _calls_or_text, local_temperature
from realtalk.pipeline.llm.toolcalls import MalformedToolCall, may_be_call, parse_tool_calls
from tests.conftest import MODEL_DIR

NAMES = {"lookup_order", "get_time"}
LOOKUP = ToolSpec(
    "lookup_order",
    "Look up the status of a customer's order by its number.",
    {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
)
TIME = ToolSpec(
    "get_time",
    "Get the current time in a time zone.",
    {"type": "object", "properties": {"timezone": {"type": "string"}}},
)


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "lookup_order", "arguments": {"order_id": "1001"}}',
        '```json\n{\n  "name": "lookup_order",\n  "arguments": {"order_id": "1001"}\n}\n```',
        '<tool_call>\n{"name": "lookup_order", '
        '"arguments": "{\\"order_id\\": \\"1001\\"}"}\n</tool_call>',
        '{"type": "function", "function": '
        '{"name": "lookup_order", "arguments": {"order_id": "1001"}}}',
        '<tools>\n{"type": "function", "function": {"name": "lookup_order", "parameters": {}}}\n'
        '</tools>\n{"name": "lookup_order", "arguments": {"order_id": "1001"}}',
        '<name>lookup_order</name>\n<arguments>{"order_id": "1001"}</arguments>',
        '<response>\n{"name": "lookup_order", "arguments": {"order_id": "1001"}}',
    ],
)
def test_tool_calls_are_read_in_every_shape(text: str) -> None:
    calls = parse_tool_calls(text, NAMES)
    assert [(c.name, c.arguments) for c in calls] == [("lookup_order", {"order_id": "1001"})]


def test_text_and_malformed_calls() -> None:
    assert parse_tool_calls("Hello! How can I help?", NAMES) == []
    assert parse_tool_calls('{"name": "launch", "arguments": {}}', NAMES) == []
    with pytest.raises(MalformedToolCall):
        parse_tool_calls('{"name": "lookup_order", "arguments": {"order_id": 10', NAMES)
    with pytest.raises(MalformedToolCall):
        parse_tool_calls('{"name": "lookup_order", "arguments": "{not json"}', NAMES)
    # Malformed output does not crash the turn: it is kept as text.
    events = _calls_or_text('{"name": "lookup_order", "arguments": {"order_id": 10', NAMES)
    assert len(events) == 1 and isinstance(events[0], TextDelta)
    [call] = _calls_or_text('{"name": "get_time", "arguments": {}}', NAMES)
    assert isinstance(call, ToolCall) and json.loads(call.arguments) == {}
    assert may_be_call("  {") is True and may_be_call("Sure") is False
    assert may_be_call("<resp") is True  # no spoken reply starts with a tag
    assert may_be_call("``") is None and may_be_call("") is None


def test_tool_choice_shapes_the_prompt() -> None:
    base = [{"role": "user", "content": "hi"}]
    _, tools = LlamaLLM._prepare(LLMRequest(base, (LOOKUP, TIME), "none"))
    assert tools is None
    messages, tools = LlamaLLM._prepare(LLMRequest(base, (LOOKUP, TIME), "get_time"))
    assert tools is not None and [t["function"]["name"] for t in tools] == ["get_time"]
    assert messages[-1] == {"role": "system", "content": "Call the tool get_time now."}
    messages, tools = LlamaLLM._prepare(LLMRequest(base, (LOOKUP, TIME), "required"))
    assert (
        tools is not None and len(tools) == 2 and "Call one of the tools" in messages[-1]["content"]
    )
    after_tool = [
        *base,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"time": "10:00"}'},
    ]
    messages, _ = LlamaLLM._prepare(LLMRequest(after_tool, (LOOKUP, TIME), "auto"))
    assert messages[1]["tool_calls"][0]["function"]["arguments"] == {}  # dict for the template
    assert messages[-1]["role"] == "system" and "tool result" in messages[-1]["content"]
    assert local_temperature(0.8) == pytest.approx(0.2) and local_temperature(0.6) == 0.0
    # A call this model wrote comes back as the text it wrote (the tokens in its cache).
    written = '```json\n{"name": "get_time", "arguments": {}}\n```'
    messages, _ = LlamaLLM._prepare(LLMRequest(after_tool, (LOOKUP, TIME)), {"c1": written})
    assert messages[1] == {"role": "assistant", "content": written}
    assert messages[2]["role"] == "tool"
    # Two calls written at once (two items, two messages) come back as that text once.
    second_call = {**after_tool[1], "tool_calls": [{**after_tool[1]["tool_calls"][0], "id": "c2"}]}
    both = [after_tool[0], after_tool[1], second_call, after_tool[2]]
    messages, _ = LlamaLLM._prepare(
        LLMRequest(both, (LOOKUP, TIME)), {"c1": written, "c2": written}
    )
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "system"]
    # Another model's or a client's call (an unknown id) keeps the template's rendering.
    messages, _ = LlamaLLM._prepare(LLMRequest(after_tool, (LOOKUP, TIME)), {"c9": written})
    assert messages[1]["tool_calls"][0]["id"] == "c1"


@pytest.fixture(scope="module")
def llm() -> LlamaLLM:
    from realtalk.pipeline import weights

    return LlamaLLM(Path(weights.resolve_model(MODEL_DIR, "llm", "qwen2.5-0.5b")))


async def run(llm: LlamaLLM, request: LLMRequest) -> list[object]:
    return [event async for event in llm.stream(request)]


SYSTEM = {"role": "system", "content": "You are a shop assistant. Use the tools when useful."}


@pytest.mark.models
async def test_real_model_calls_the_right_tool(llm: LlamaLLM) -> None:
    events = await run(
        llm,
        LLMRequest(
            [SYSTEM, {"role": "user", "content": "What's the status of order 1001?"}],
            (LOOKUP, TIME),
            temperature=0.6,
        ),
    )
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert calls and calls[0].name == "lookup_order"
    assert json.loads(calls[0].arguments) == {"order_id": "1001"}


@pytest.mark.models
async def test_real_model_honours_tool_choice_none_and_named(llm: LlamaLLM) -> None:
    question = [SYSTEM, {"role": "user", "content": "What's the status of order 1001?"}]
    none = await run(llm, LLMRequest(question, (LOOKUP, TIME), "none", temperature=0.6))
    assert not [e for e in none if isinstance(e, ToolCall)]
    assert "".join(e.text for e in none if isinstance(e, TextDelta))
    named = await run(
        llm,
        LLMRequest(
            [SYSTEM, {"role": "user", "content": "Hi there!"}],
            (LOOKUP, TIME),
            "get_time",
            temperature=0.6,
        ),
    )
    assert [e.name for e in named if isinstance(e, ToolCall)] == ["get_time"]


async def _until(condition: Callable[[], bool], limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.models
async def test_a_prefilled_prompt_start_is_read_from_the_cache(llm: LlamaLLM) -> None:
    # A prompt start nothing has read yet (the module's other tests use SYSTEM).
    system = {"role": "system", "content": f"You answer shoppers. Session {time.time_ns()}."}
    question = {"role": "user", "content": "What's the status of order 1001?"}
    cold = [e async for e in llm.stream(LLMRequest([system, question], (LOOKUP, TIME)))]
    cold_finished = cold[-1]
    assert isinstance(cold_finished, Finished)
    # The same start with other instructions, read ahead while "the user speaks".
    other = {"role": "system", "content": f"You answer shoppers. Session {time.time_ns()}."}
    before = llm.prefilled
    llm.prefill(LLMRequest([other], (LOOKUP, TIME)))
    await _until(lambda: llm.prefilled == before + 1 and not llm.llama.turns.busy())
    warm = [e async for e in llm.stream(LLMRequest([other, question], (LOOKUP, TIME)))]
    finished = warm[-1]
    assert isinstance(finished, Finished)
    # All of the prompt but the user's turn came from the cache, against a few tokens cold
    # (the cache then held the other instructions' prompt).
    assert finished.cached_tokens >= finished.prompt_tokens - 25, finished
    assert cold_finished.cached_tokens < cold_finished.prompt_tokens - 100, cold_finished
    assert [e.name for e in warm if isinstance(e, ToolCall)] == ["lookup_order"]


@pytest.mark.models
async def test_the_answer_after_a_tool_call_reads_only_the_result(llm: LlamaLLM) -> None:
    system = {"role": "system", "content": f"You answer shoppers. Session {time.time_ns()}."}
    question = {"role": "user", "content": "What's the status of order 1001?"}
    first = await run(llm, LLMRequest([system, question], (LOOKUP, TIME)))
    (call,) = [e for e in first if isinstance(e, ToolCall)]
    done = first[-1]
    assert isinstance(done, Finished)
    history = [
        system,
        question,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.call_id, "content": '{"status": "shipped"}'},
    ]
    second = await run(llm, LLMRequest(history, (LOOKUP, TIME)))
    finished = second[-1]
    assert isinstance(finished, Finished)
    # The call as the model wrote it is still in the cache (all but its closing token).
    assert finished.cached_tokens >= done.prompt_tokens + done.completion_tokens - 1, (
        done,
        finished,
    )
    assert "shipped" in "".join(e.text for e in second if isinstance(e, TextDelta)).lower()


@pytest.mark.models
async def test_a_reply_stops_a_prefill_and_none_starts_during_a_reply(llm: LlamaLLM) -> None:
    system = {"role": "system", "content": f"You answer shoppers. Session {time.time_ns()}."}
    before = llm.prefilled
    llm.prefill(LLMRequest([system], (LOOKUP, TIME)))
    await _until(lambda: llm.llama.turns.busy())  # the prefill has the model
    events = await run(
        llm, LLMRequest([system, {"role": "user", "content": "Say hi."}], (LOOKUP, TIME))
    )
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert llm.prefilled == before  # stopped before the end
    assert finished.stop_reason == "stop" and finished.completion_tokens > 0, finished
    # A prefill never starts while a reply runs.
    stream = llm.stream(LLMRequest([system, {"role": "user", "content": "Hello."}]))
    first = await anext(stream)
    llm.prefill(LLMRequest([{"role": "system", "content": "Other."}]))
    rest = [first] + [e async for e in stream]
    assert isinstance(rest[-1], Finished)
    await asyncio.sleep(0.5)
    assert llm.prefilled == before
