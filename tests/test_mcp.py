"""MCP tools against a real MCP server on loopback (tests/mcp_server.py).

The listing, failure and protocol tests need no model (the session's LLM is a scripted
stand-in that is never asked, or asked only to place a call whose events are under test);
the replies that choose a tool and speak its answer use the real local models.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from realtalk.core.config import SessionConfig
from realtalk.pipeline.models import ModelChoice, Models, load_models
from tests.conftest import MODEL_DIR, free_port
from tests.mcp_server import ShopMcpServer
from tests.scripted import ScriptedLLM, call, scripted_models, text
from tests.session_client import Client, Sessions, types


def in_order(order: list[str], expected: list[str]) -> bool:
    """``expected`` is a subsequence of ``order``."""
    remaining = iter(order)
    return all(kind in remaining for kind in expected)


def mcp_tool(url: str, **fields: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "shop", "server_url": url, **fields}


@pytest.fixture
def shop() -> Iterator[ShopMcpServer]:
    with ShopMcpServer() as server:
        yield server


@pytest.fixture
async def make_session() -> AsyncIterator[Any]:
    sessions = Sessions(limit_s=20.0)

    def make(models: Models | None = None, generation: str = "ga", **config: Any) -> Client:
        return sessions.start(
            SessionConfig(**config), models or scripted_models(), generation, "sess_mcp"
        )

    yield make
    await sessions.aclose()
    await asyncio.sleep(0)
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not leftover, leftover


# ---- listing (no model) ---------------------------------------------------------------------
async def test_session_update_lists_the_servers_tools(
    make_session: Any, shop: ShopMcpServer
) -> None:
    client = make_session()
    await client.until("session.created")
    tool = mcp_tool(
        shop.url,
        allowed_tools=["lookup_order", "cancel_order"],
        require_approval="never",
        headers={"X-Shop-Key": "secret-123"},
    )
    event_id = await client.send(
        {"type": "session.update", "session": {"type": "realtime", "tools": [tool]}}
    )
    events = await client.until("mcp_list_tools.completed")
    assert types(events) == [
        "session.updated",
        "mcp_list_tools.in_progress",
        "conversation.item.added",
        "conversation.item.done",
        "mcp_list_tools.completed",
    ]
    echoed = events[0]["session"]["tools"]
    assert echoed == [{k: v for k, v in tool.items() if k != "headers"}]  # no secrets back
    item_id = events[1]["item_id"]
    assert events[4]["item_id"] == item_id
    item = events[3]["item"]
    assert item["id"] == item_id and item["type"] == "mcp_list_tools"
    assert item["server_label"] == "shop"
    assert [t["name"] for t in item["tools"]] == ["lookup_order", "cancel_order"]
    lookup = item["tools"][0]
    assert lookup["input_schema"]["properties"]["order_id"]["type"] == "string"
    assert lookup["annotations"]["readOnlyHint"] is True
    assert any(h.get("x-shop-key") == "secret-123" for h in shop.headers)
    assert not any(e["type"] == "error" for e in client.seen), event_id
    # The item is in the conversation; the same tool again lists nothing new.
    assert client.session.conversation.get(item_id).type == "mcp_list_tools"
    await client.send({"type": "session.update", "session": {"type": "realtime", "tools": [tool]}})
    assert types(await client.until("session.updated")) == ["session.updated"]
    await asyncio.sleep(0.2)
    assert client.session.outbox.empty()


async def test_read_only_filter_and_removal(make_session: Any, shop: ShopMcpServer) -> None:
    client = make_session()
    tool = mcp_tool(shop.url, allowed_tools={"read_only": True})
    await client.send({"type": "session.update", "session": {"type": "realtime", "tools": [tool]}})
    events = await client.until("mcp_list_tools.completed")
    listed = next(e["item"] for e in events if e["type"] == "conversation.item.done")
    assert {t["name"] for t in listed["tools"]} == {"lookup_order", "get_weather"}
    await client.send({"type": "session.update", "session": {"type": "realtime", "tools": []}})
    updated = await client.until("session.updated")
    assert updated[-1]["session"]["tools"] == []
    assert client.session.mcp.turn(client.session.config.mcp) is None


async def test_unreachable_server_fails_and_the_rest_applies(make_session: Any) -> None:
    client = make_session()
    await client.until("session.created")
    dead = f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens there
    event_id = await client.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "instructions": "Answer like a pirate.",
                "tools": [mcp_tool(dead, require_approval="never")],
            },
        }
    )
    events = await client.until("error")
    order = types(events)
    assert order[:2] == ["session.updated", "mcp_list_tools.in_progress"]
    assert order[-2:] == ["mcp_list_tools.failed", "error"]
    assert events[-2]["item_id"] == events[1]["item_id"]
    updated = events[0]["session"]
    assert updated["instructions"] == "Answer like a pirate."
    assert [t["server_label"] for t in updated["tools"]] == ["shop"]  # stays as configured
    error = events[-1]["error"]
    assert error["code"] == "mcp_list_tools_failed" and error["event_id"] == event_id
    assert "Could not list the tools of MCP server 'shop'" in error["message"]
    assert "Could not reach" in error["message"]
    assert client.session.config.instructions == "Answer like a pirate."


async def test_bad_urls_and_beta_are_refused(make_session: Any) -> None:
    client = make_session()
    await client.send(
        {"type": "session.update", "session": {"type": "realtime", "tools": [mcp_tool("ftp://x")]}}
    )
    error = (await client.until("error"))[-1]["error"]
    assert error["param"] == "session.tools[0].server_url"
    connector = {"type": "mcp", "server_label": "cal", "connector_id": "connector_gmail"}
    await client.send(
        {"type": "session.update", "session": {"type": "realtime", "tools": [connector]}}
    )
    assert "connector_id" in (await client.until("error"))[-1]["error"]["message"]
    beta = make_session(generation="beta")
    await beta.send({"type": "session.update", "session": {"tools": [mcp_tool("http://a/mcp")]}})
    error = (await beta.until("error"))[-1]["error"]
    assert "GA Realtime API only" in error["message"] and error["param"] == "session.tools[0].type"


async def test_a_slow_server_does_not_block_the_session(make_session: Any) -> None:
    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        client = make_session(audio_output=False)
        client.session.mcp.list_timeout_s = 1.5
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/mcp"
        tools = [mcp_tool(url, require_approval="never")]
        await client.send(
            {"type": "session.update", "session": {"type": "realtime", "tools": tools}}
        )
        events = await client.until("mcp_list_tools.in_progress")
        # Other client events are answered while the listing waits.
        await client.user_text("hi")
        await client.send({"type": "response.create"})
        events = await client.until("response.done", 10)
        order = types(events)
        assert order.index("conversation.item.added") < order.index("mcp_list_tools.failed")
        # The response waited for the listing to end before answering.
        assert order.index("mcp_list_tools.failed") < order.index("response.output_item.added")
        assert events[-1]["response"]["status"] == "completed"
    finally:
        silent.close()


# ---- calls with a scripted model: the events of each path -----------------------------------
async def test_call_events_and_the_reply_goes_on(make_session: Any, shop: ShopMcpServer) -> None:
    llm = ScriptedLLM(
        [[call("lookup_order", '{"order_id": "1001"}')], [text("It shipped on Monday.")]]
    )
    client = make_session(models=scripted_models(llm), audio_output=False)
    tools = [mcp_tool(shop.url, require_approval="never")]
    await client.send({"type": "session.update", "session": {"type": "realtime", "tools": tools}})
    await client.until("mcp_list_tools.completed")
    events = await client.say("Where is order 1001?")
    order = types(events)
    expected = [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.output_item.done",
        "conversation.item.done",
        "response.output_item.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.done",
    ]
    assert in_order(order, expected), order
    done = events[-1]["response"]
    assert [i["type"] for i in done["output"]] == ["mcp_call", "message"]
    mcp_call = done["output"][0]
    assert mcp_call["name"] == "lookup_order" and mcp_call["server_label"] == "shop"
    assert json.loads(mcp_call["arguments"]) == {"order_id": "1001"}
    assert mcp_call["output"] == "Order 1001 was shipped on Monday; it arrives Friday."
    assert mcp_call["error"] is None
    assert shop.calls == [("lookup_order", {"order_id": "1001"})]
    # The model's second turn saw the call and its output.
    follow_up = llm.requests[1].messages
    assert follow_up[-1] == {
        "role": "tool",
        "tool_call_id": mcp_call["id"],
        "content": mcp_call["output"],
    }
    assert {t.name for t in llm.requests[0].tools} == {
        "lookup_order",
        "get_weather",
        "cancel_order",
    }


async def test_a_failing_tool_is_reported(make_session: Any, shop: ShopMcpServer) -> None:
    llm = ScriptedLLM([[call("cancel_order", '{"order_id": "1002"}')], [text("Sorry.")]])
    client = make_session(models=scripted_models(llm), audio_output=False)
    tools = [mcp_tool(shop.url, require_approval="never")]
    await client.send({"type": "session.update", "session": {"type": "realtime", "tools": tools}})
    await client.until("mcp_list_tools.completed")
    events = await client.say("Cancel order 1002.")
    assert "response.mcp_call.failed" in types(events)
    mcp_call = events[-1]["response"]["output"][0]
    assert mcp_call["output"] is None
    assert mcp_call["error"] == {
        "type": "tool_execution_error",
        "message": "Error executing tool cancel_order: The order database is offline; "
        "nothing was cancelled.",  # the server's own words
    }
    assert "The order database is offline" in llm.requests[1].messages[-1]["content"]


async def test_approval_events(make_session: Any, shop: ShopMcpServer) -> None:
    llm = ScriptedLLM(
        [
            [call("lookup_order", '{"order_id": "1001"}')],
            [text("It shipped.")],
            [call("get_weather", '{"city": "Oslo"}')],
            [text("I may not.")],
        ]
    )
    client = make_session(models=scripted_models(llm), audio_output=False)
    tools = [mcp_tool(shop.url, require_approval={"never": {"tool_names": ["nothing"]}})]
    await client.send({"type": "session.update", "session": {"type": "realtime", "tools": tools}})
    await client.until("mcp_list_tools.completed")
    events = await client.say("Where is order 1001?")
    output = events[-1]["response"]["output"]
    assert [i["type"] for i in output] == ["mcp_call", "mcp_approval_request"]
    request = output[1]
    assert output[0]["approval_request_id"] == request["id"] and output[0]["output"] is None
    assert request["name"] == "lookup_order" and request["server_label"] == "shop"
    assert "response.mcp_call.in_progress" not in types(events) and shop.calls == []
    # An answer to an unknown request is refused.
    await client.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "mcp_approval_response",
                "id": "mcpa_1",
                "approval_request_id": "x",
                "approve": True,
            },
        }
    )
    assert (await client.until("error"))[-1]["error"]["param"] == "item.approval_request_id"
    await client.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "mcp_approval_response",
                "id": "mcpa_2",
                "approval_request_id": request["id"],
                "approve": True,
            },
        }
    )
    events = await client.until("response.mcp_call.completed")
    assert types(events) == [
        "conversation.item.added",
        "conversation.item.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
    ]
    assert events[-1]["item_id"] == output[0]["id"] and events[-1]["output_index"] == 0
    assert shop.calls == [("lookup_order", {"order_id": "1001"})]
    await client.send({"type": "response.create"})
    await client.until("response.done")
    assert llm.requests[1].messages[-1]["content"].startswith("Order 1001 was shipped")
    # Denied: no call; the model is told.
    events = await client.say("And the weather in Oslo?")
    request = events[-1]["response"]["output"][1]
    await client.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "mcp_approval_response",
                "id": "mcpa_3",
                "approval_request_id": request["id"],
                "approve": False,
                "reason": "not now",
            },
        }
    )
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    assert "response.mcp_call.in_progress" not in types(events)
    assert [name for name, _ in shop.calls] == ["lookup_order"]
    told = [m for m in llm.requests[3].messages if m["role"] == "tool"][-1]["content"]
    assert told == "The user denied this call (not now); it did not run."


async def test_tool_choice_names_an_mcp_tool(make_session: Any, shop: ShopMcpServer) -> None:
    llm = ScriptedLLM([[call("get_weather", '{"city": "Oslo"}')], [text("Sunny.")]])
    client = make_session(models=scripted_models(llm), audio_output=False)
    tools = [mcp_tool(shop.url, require_approval="never")]
    await client.send({"type": "session.update", "session": {"type": "realtime", "tools": tools}})
    await client.until("mcp_list_tools.completed")
    choice = {"type": "mcp", "server_label": "shop", "name": "get_weather"}
    await client.say("Weather?", tool_choice=choice)
    assert llm.requests[0].tool_choice == "get_weather"
    assert llm.requests[1].tool_choice == "none"  # forced once, then the model answers
    await client.send(
        {"type": "response.create", "response": {"tool_choice": {**choice, "server_label": "nope"}}}
    )
    assert "not configured" in (await client.until("error"))[-1]["error"]["message"]


# ---- the real local models ------------------------------------------------------------------
@pytest.fixture(scope="module")
def models() -> Iterator[Models]:
    loaded = load_models(ModelChoice(model_dir=MODEL_DIR, end_of_turn=None))
    yield loaded
    llama = getattr(loaded.llm, "llama", None)
    if llama is not None:
        llama.close()


SHOP_INSTRUCTIONS = (
    "You are a shop assistant. Use the lookup_order tool for questions about orders, "
    "then tell the customer the status in one short sentence."
)


@pytest.mark.models
async def test_the_model_calls_the_tool_and_speaks_the_answer(
    make_session: Any, shop: ShopMcpServer, models: Models
) -> None:
    client = make_session(models=models, instructions=SHOP_INSTRUCTIONS)
    tools = [mcp_tool(shop.url, allowed_tools=["lookup_order"], require_approval="never")]
    await client.send({"type": "session.update", "session": {"type": "realtime", "tools": tools}})
    await client.until("mcp_list_tools.completed")
    events = await client.say("What's the status of order 1001?")
    order = types(events)
    for kind in (
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.output_audio.delta",
    ):
        assert kind in order, order
    assert order.index("response.mcp_call.completed") < order.index("response.output_audio.delta")
    assert shop.calls == [("lookup_order", {"order_id": "1001"})]
    done = events[-1]["response"]
    assert done["status"] == "completed"
    assert [i["type"] for i in done["output"]] == ["mcp_call", "message"]
    transcript = done["output"][1]["content"][0]["transcript"].lower()
    assert "shipped" in transcript or "friday" in transcript, transcript


@pytest.mark.models
async def test_approval_with_the_model(
    make_session: Any, shop: ShopMcpServer, models: Models
) -> None:
    client = make_session(models=models, instructions=SHOP_INSTRUCTIONS, audio_output=False)
    tools = [mcp_tool(shop.url, allowed_tools=["lookup_order"], require_approval="always")]
    await client.send({"type": "session.update", "session": {"type": "realtime", "tools": tools}})
    await client.until("mcp_list_tools.completed")
    events = await client.say("What's the status of order 1001?")
    output = events[-1]["response"]["output"]
    assert [i["type"] for i in output] == ["mcp_call", "mcp_approval_request"], output
    assert shop.calls == []
    await client.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "mcp_approval_response",
                "id": "mcpa_4",
                "approval_request_id": output[1]["id"],
                "approve": True,
            },
        }
    )
    await client.send({"type": "response.create"})
    events = await client.until("response.done", 120)
    assert shop.calls == [("lookup_order", {"order_id": "1001"})]
    assert "response.mcp_call.completed" in types(events)
    answer = events[-1]["response"]["output"][-1]["content"][0]["text"].lower()
    assert "shipped" in answer or "friday" in answer, answer

    # Denied: the call never runs and the model says so.
    events = await client.say("What's the status of order 1002?")
    request = events[-1]["response"]["output"][-1]
    assert request["type"] == "mcp_approval_request"
    await client.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "mcp_approval_response",
                "id": "mcpa_5",
                "approval_request_id": request["id"],
                "approve": False,
            },
        }
    )
    await client.send({"type": "response.create", "response": {"tool_choice": "none"}})
    events = await client.until("response.done", 120)
    assert "response.mcp_call.in_progress" not in types(events)
    assert [args["order_id"] for _, args in shop.calls] == ["1001"]
    assert events[-1]["response"]["status"] == "completed"


@pytest.mark.models
async def test_a_failing_tool_with_the_model(
    make_session: Any, shop: ShopMcpServer, models: Models
) -> None:
    client = make_session(
        models=models,
        instructions="You are a shop assistant. Use cancel_order to cancel orders.",
        audio_output=False,
    )
    tools = [mcp_tool(shop.url, allowed_tools=["cancel_order"], require_approval="never")]
    await client.send({"type": "session.update", "session": {"type": "realtime", "tools": tools}})
    await client.until("mcp_list_tools.completed")
    events = await client.say("Please cancel order 1002.")
    order = types(events)
    assert "response.mcp_call.failed" in order, order
    mcp_call = events[-1]["response"]["output"][0]
    assert mcp_call["error"]["type"] == "tool_execution_error"
    assert "offline" in mcp_call["error"]["message"]
    assert events[-1]["response"]["status"] == "completed"
    # The session goes on: the next reply works.
    events = await client.say("Thanks, bye.", tool_choice="none")
    assert events[-1]["response"]["status"] == "completed"
