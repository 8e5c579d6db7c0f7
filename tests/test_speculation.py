"""Speculative replies on scripted timelines: a reply started during the silence window is
kept only when the turn ends on the same speech, and then looks exactly like one started at
the commit; when speech resumes, nothing of it is ever sent."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from realtalk.session.session import RealtimeSession
from tests.realtime_helpers import silence, tone
from tests.scripted import ScriptedLLM, ScriptedSTT, text
from tests.test_session_timeline import Client, make_session, types

__all__ = ["make_session"]  # the fixture, shared with the timeline tests

REPLY = [text("It is"), text(" noon in Paris,"), text(" and sunny.")]


async def speak(client: Client) -> None:
    await client.audio(np.concatenate([silence(300), tone(700)]))


async def pause(client: Client, frames: int) -> None:
    """Silence in ``frames`` steps of 32 ms, each waiting a little as audio from a microphone
    would, so work started in the silence window can run."""
    for _ in range(frames):
        await client.audio(silence(32), chunk_ms=32)
        await asyncio.sleep(0.005)


def speculated(client: Client) -> bool:
    run = client.session.last_run
    return run is not None and run.speculative


async def one_turn(make: Any, speculate: bool) -> tuple[list[dict[str, Any]], Client]:
    llm = ScriptedLLM([list(REPLY)])
    client = make("ga", llm=llm, stt=ScriptedSTT(["what time is it in Paris"]))
    session: RealtimeSession = client.session
    session.speculate_replies = speculate
    client.drain()
    await speak(client)
    await pause(client, 600 // 32 + 1)
    events = await client.until("response.done")
    events += await client.until("rate_limits.updated")
    return events, client


async def test_kept_speculative_reply_is_indistinguishable(make_session: Any) -> None:
    held, spec_client = await one_turn(make_session, speculate=True)
    live, live_client = await one_turn(make_session, speculate=False)
    assert speculated(spec_client) and not speculated(live_client)
    assert types(held) == types(live)
    for events in (held, live):
        done = events[-2]["response"]
        assert done["status"] == "completed"
        assert done["output"][0]["content"][0]["transcript"] == "It is noon in Paris, and sunny."
    # The same prompt reached the model.
    prompts = [c.session.last_run.request for c in (spec_client, live_client)]  # type: ignore[union-attr]
    assert prompts[0] == prompts[1]
    # Ids in the held events refer to the committed item, in the conversation's order.
    committed = next(e for e in held if e["type"] == "input_audio_buffer.committed")
    added = [e for e in held if e["type"] == "conversation.item.added"]
    assert added[1]["previous_item_id"] == committed["item_id"]
    items = list(spec_client.session.conversation)
    assert [i.role for i in items] == ["user", "assistant"]


async def test_resumed_speech_drops_the_held_reply_silently(make_session: Any) -> None:
    llm = ScriptedLLM([[text("Half a thought.")], list(REPLY)])
    stt = ScriptedSTT(["what time", "what time is it in Paris"])
    client = make_session("ga", llm=llm, stt=stt)
    client.drain()
    await speak(client)
    await pause(client, 12)  # ~380 ms of pause: the speculative reply starts
    assert len(llm.requests) == 1  # the speculative reply is running …
    assert not [e for e in client.drain() if not e["type"].startswith("input_audio_buffer")]
    await client.audio(tone(600))  # … and the user goes on
    await pause(client, 20)
    events = await client.until("response.done")
    order = types(client.seen)
    assert order.count("response.created") == 1
    assert order.count("input_audio_buffer.speech_started") == 1
    assert "Half a thought." not in str(client.seen)
    assert events[-1]["response"]["output"][0]["content"][0]["transcript"] == (
        "It is noon in Paris, and sunny."
    )
    user = next(
        e
        for e in client.seen
        if e["type"] == "conversation.item.input_audio_transcription.completed"
    )
    assert user["transcript"] == "what time is it in Paris"


async def test_a_change_before_the_commit_means_a_fresh_reply(make_session: Any) -> None:
    llm = ScriptedLLM([[text("Stale.")], list(REPLY)])
    client = make_session("ga", llm=llm, stt=ScriptedSTT(["what time is it in Paris"]))
    client.drain()
    await speak(client)
    await pause(client, 12)
    assert len(llm.requests) == 1
    await client.send(
        {"type": "session.update", "session": {"type": "realtime", "instructions": "Be terse."}}
    )
    await pause(client, 12)
    events = await client.until("response.done")
    assert not speculated(client)
    assert "Stale." not in str(client.seen)
    assert len(llm.requests) == 2
    assert llm.requests[1].messages[0]["content"] == "Be terse."
    assert events[-1]["response"]["status"] == "completed"


def test_the_prompt_history_is_cut_in_steps_at_a_user_message() -> None:
    from realtalk.core.items import Item
    from realtalk.session.responses import HISTORY_ITEMS, history

    def conversation(turns: int) -> list[Item]:
        items = []
        for i in range(turns):
            items.append(Item("message", id=f"u{i}", role="user"))
            items.append(Item("message", id=f"a{i}", role="assistant"))
        return items

    assert history(conversation(20)) == conversation(20)  # 40 items: all of them
    firsts = [history([*conversation(t), Item("message", role="user")])[0].id for t in (20, 25, 29)]
    assert firsts == ["u10", "u10", "u10"]  # the same cut for many turns: a stable prefix
    later = history([*conversation(30), Item("message", role="user")])
    assert later[0].id == "u20" and len(later) <= HISTORY_ITEMS
    calls = conversation(20)
    calls[20] = Item("function_call_output", id="out", call_id="c")  # the cut lands on it
    assert history([*calls, Item("message", role="user")])[0].role == "user"


async def test_closing_during_a_held_reply_leaves_nothing_behind(make_session: Any) -> None:
    llm = ScriptedLLM([[text("Held"), text(" until the commit,"), text(" which never comes.")]])
    client = make_session("ga", llm=llm, stt=ScriptedSTT(["what time is it"]))
    client.drain()
    await speak(client)
    await pause(client, 12)
    session: RealtimeSession = client.session
    held = session.speculator.current
    assert held is not None and held.task is not None and not held.task.done()
    await session.aclose()
    assert held.task.done()
    assert not [e for e in client.drain() if e["type"].startswith("response.")]
