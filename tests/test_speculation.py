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
from tests.session_client import Client, types
from tests.test_session_timeline import make_session

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


def test_the_prompt_window_cuts_in_steps_at_a_user_message() -> None:
    """Over budget, the oldest items leave the prompt down to the retention share, at a user
    message; the cut then stays put for the next turns (a stable cached prefix)."""
    from realtalk.core.config import Truncation
    from realtalk.core.items import ContentPart, Item
    from realtalk.session.prompt import PromptWindow

    def message(role: str, i: int) -> Item:
        part = ContentPart("input_text" if role == "user" else "output_text", text="word " * 20)
        return Item("message", id=f"{role[0]}{i}", role=role, content=[part])  # type: ignore[arg-type]

    def conversation(turns: int) -> list[Item]:
        return [m for i in range(turns) for m in (message("user", i), message("assistant", i))]

    def count(text: str) -> int:
        return len(text.split())

    window = PromptWindow()
    auto = Truncation()
    per_item = 20 + 8 + 4  # words, template overhead, the JSON keys counted as words
    budget = per_item * 20  # ten turns fit
    assert window.fit(conversation(10), budget=budget, truncation=auto, count=count)[0].id == "u0"
    cut = window.fit(conversation(11), budget=budget, truncation=auto, count=count)
    assert cut[0].role == "user" and cut[0].id != "u0"
    assert len(cut) * per_item <= budget * 0.75 + per_item
    firsts = {
        window.fit(conversation(t), budget=budget, truncation=auto, count=count)[0].id
        for t in (11, 12, 13)
    }
    assert firsts == {cut[0].id}  # the same start for the next turns
    ratio = Truncation(type="retention_ratio", retention_ratio=0.5, post_instructions=per_item * 8)
    kept = PromptWindow().fit(conversation(10), budget=budget, truncation=ratio, count=count)
    assert len(kept) <= 4 and kept[0].role == "user"
    everything = PromptWindow().fit(
        conversation(30), budget=budget, truncation=Truncation(type="disabled"), count=count
    )
    assert len(everything) == 60
    calls = conversation(11)
    calls[2] = Item("function_call_output", id="out", call_id="c")  # where the cut would land
    assert PromptWindow().fit(calls, budget=budget, truncation=auto, count=count)[0].role == "user"


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
