"""The local LLM stage: tool-call parsing of a small model's text, tool_choice, and the real
model's answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from realtalk.pipeline.llm import LLMRequest, TextDelta, ToolCall, ToolSpec
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
