"""Tool-use accuracy of the configured LLM, through the live engine.

Each request is typed into a fresh Realtime session opened the way the page opens one (an
ephemeral key from ``/api/realtime/session``, so the example tools and default instructions
apply). A case passes when the model calls the right tool with the right arguments, or, for
requests that need no tool, calls none. Client-side tools are then run and answered, as the
page does, so each case is a full round trip.

Usage: python bench/tool_eval.py [--url http://127.0.0.1:8000]
Without --url it starts a server with a fresh data folder (a freshly seeded order database).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import websockets

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.ws_turn import engine


def digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value))


@dataclass
class Case:
    text: str
    tool: str | None
    check: Callable[[dict[str, Any]], bool] = lambda _: True


CASES = [
    Case(
        "What's the status of order 1001?",
        "lookup_order",
        lambda a: digits(a.get("order_id")) == "1001",
    ),
    Case(
        "Can you check on my order 1003 please?",
        "lookup_order",
        lambda a: digits(a.get("order_id")) == "1003",
    ),
    Case(
        "Where is order number 1002?", "lookup_order", lambda a: digits(a.get("order_id")) == "1002"
    ),
    Case(
        "Has order 1004 shipped yet?", "lookup_order", lambda a: digits(a.get("order_id")) == "1004"
    ),
    Case(
        "Please cancel order 1004.", "cancel_order", lambda a: digits(a.get("order_id")) == "1004"
    ),
    Case(
        "I changed my mind, cancel order 1002.",
        "cancel_order",
        lambda a: digits(a.get("order_id")) == "1002",
    ),
    Case(
        "Show me the recent orders for ada@example.com.",
        "list_recent_orders",
        lambda a: str(a.get("email", "")).lower() == "ada@example.com",
    ),
    Case(
        "What did grace@example.com order recently?",
        "list_recent_orders",
        lambda a: str(a.get("email", "")).lower() == "grace@example.com",
    ),
    Case(
        "What time is it in Tokyo?",
        "get_time",
        lambda a: "tokyo" in str(a.get("timezone", "")).lower(),
    ),
    Case(
        "What's the current time in Paris?",
        "get_time",
        lambda a: "paris" in str(a.get("timezone", "")).lower(),
    ),
    Case(
        "What time is it in New York right now?",
        "get_time",
        lambda a: "new_york" in str(a.get("timezone", "")).lower().replace(" ", "_"),
    ),
    Case(
        "What's the weather like in Berlin?",
        "get_weather",
        lambda a: "berlin" in str(a.get("city", "")).lower(),
    ),
    Case(
        "Is it raining in London today?",
        "get_weather",
        lambda a: "london" in str(a.get("city", "")).lower(),
    ),
    Case("Tell me a short joke.", None),
    Case("Thanks, that's all for today!", None),
    Case("Hello! Who are you?", None),
    Case("What is two plus two?", None),
    # Held out: decoding and prompt changes were tried on other phrasings, never on these.
    Case("Any news on 1002?", "lookup_order", lambda a: digits(a.get("order_id")) == "1002"),
    Case(
        "I ordered something, the number is 1001. Where is it now?",
        "lookup_order",
        lambda a: digits(a.get("order_id")) == "1001",
    ),
    Case(
        "Could you tell me if order 1003 has been delivered?",
        "lookup_order",
        lambda a: digits(a.get("order_id")) == "1003",
    ),
    Case(
        "My package, order 1004, when will it arrive?",
        "lookup_order",
        lambda a: digits(a.get("order_id")) == "1004",
    ),
    Case(
        "I don't want order 1003 anymore.",
        "cancel_order",
        lambda a: digits(a.get("order_id")) == "1003",
    ),
    Case(
        "Please stop order 1001 from being sent, I'd like to cancel it.",
        "cancel_order",
        lambda a: digits(a.get("order_id")) == "1001",
    ),
    Case(
        "Cancel my order, number 1002, please.",
        "cancel_order",
        lambda a: digits(a.get("order_id")) == "1002",
    ),
    Case(
        "My email is ada@example.com, what have I bought lately?",
        "list_recent_orders",
        lambda a: str(a.get("email", "")).lower() == "ada@example.com",
    ),
    Case(
        "Which orders are on the account grace@example.com?",
        "list_recent_orders",
        lambda a: str(a.get("email", "")).lower() == "grace@example.com",
    ),
    Case(
        "Can you list the last orders of linus@example.com?",
        "list_recent_orders",
        lambda a: str(a.get("email", "")).lower() == "linus@example.com",
    ),
    Case(
        "What time is it in London?",
        "get_time",
        lambda a: "london" in str(a.get("timezone", "")).lower(),
    ),
    Case(
        "Is it morning or evening in Sydney right now?",
        "get_time",
        lambda a: "sydney" in str(a.get("timezone", "")).lower(),
    ),
    Case(
        "Do you know the local time in Los Angeles?",
        "get_time",
        lambda a: "los_angeles" in str(a.get("timezone", "")).lower().replace(" ", "_"),
    ),
    Case(
        "What is the weather in Paris?",
        "get_weather",
        lambda a: "paris" in str(a.get("city", "")).lower(),
    ),
    Case(
        "Should I take an umbrella in Amsterdam today?",
        "get_weather",
        lambda a: "amsterdam" in str(a.get("city", "")).lower(),
    ),
    Case(
        "How cold is it in Oslo right now?",
        "get_weather",
        lambda a: "oslo" in str(a.get("city", "")).lower(),
    ),
    Case(
        "Tell me the forecast for Madrid.",
        "get_weather",
        lambda a: "madrid" in str(a.get("city", "")).lower(),
    ),
    Case("Say hello and tell me your name in one short sentence.", None),
    Case("Good morning!", None),
    Case("What's the capital of Italy?", None),
    Case("Can you help me write a short birthday wish for my mom?", None),
    Case("How many days are there in a week?", None),
    Case("What can you help me with?", None),
    Case("Okay, thank you very much, goodbye.", None),
    Case("Spell the word cat for me.", None),
]


async def run_case(url: str, case: Case) -> tuple[bool, str]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        minted = (await http.post("/api/realtime/session")).json()
        ws_url = url.replace("http", "ws", 1) + "/v1/realtime"
        calls: list[dict[str, Any]] = []
        answer = ""
        async with websockets.connect(
            ws_url,
            additional_headers={"Authorization": f"Bearer {minted['client_secret']}"},
            max_size=None,
        ) as ws:

            async def send(event: dict[str, Any]) -> None:
                await ws.send(json.dumps(event))

            await send(
                {
                    "type": "session.update",
                    "session": {"type": "realtime", "output_modalities": ["text"]},
                }
            )
            await send(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": case.text}],
                    },
                }
            )
            await send({"type": "response.create"})
            responses = 0
            async with asyncio.timeout(120):
                while True:
                    event = json.loads(await ws.recv())
                    if event["type"] == "response.function_call_arguments.done":
                        calls.append(event)
                    elif event["type"] == "response.output_text.done":
                        answer = event["text"]
                    elif event["type"] == "response.done":
                        responses += 1
                        pending = [c for c in calls if "answered" not in c]
                        if not pending or responses > 2:
                            break
                        for call in pending:  # answer client-side tools, as the page does
                            call["answered"] = True
                            output = (
                                await http.post(
                                    f"/api/tools/{call['name']}", content=call["arguments"]
                                )
                            ).json()
                            await send(
                                {
                                    "type": "conversation.item.create",
                                    "item": {
                                        "type": "function_call_output",
                                        "call_id": call["call_id"],
                                        "output": json.dumps(output),
                                    },
                                }
                            )
                        await send({"type": "response.create"})
    first = calls[0] if calls else None
    if case.tool is None:
        ok = first is None
        got = "no call" if ok else f"called {first['name']}"
    elif first is None:
        ok, got = False, "no call"
    else:
        try:
            arguments = json.loads(first["arguments"] or "{}")
        except json.JSONDecodeError:
            arguments = {}
        ok = first["name"] == case.tool and case.check(arguments)
        got = f"{first['name']}({first['arguments']})"
    return ok, f"{got} → {answer[:70]!r}"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--url")
    args = parser.parse_args()
    started = time.perf_counter()
    passed = 0
    with engine(args.url, None) as (url, _):
        for index, case in enumerate(CASES, 1):
            ok, detail = await run_case(url, case)
            passed += ok
            print(
                f"{'PASS' if ok else 'FAIL'} {index:2d}. {case.text:<48} "
                f"expect {case.tool or 'no tool':<18} got {detail}"
            )
    llm = os.environ.get("REALTALK_LLM_MODEL", "qwen2.5-0.5b")
    print(
        f"\ntool-use accuracy ({llm}): {passed}/{len(CASES)} "
        f"({100 * passed / len(CASES):.0f} %) in {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    asyncio.run(main())
