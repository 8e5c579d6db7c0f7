"""What the LLM is shown of a conversation: chat messages, kept inside its context window.

A session's ``truncation`` (GA) decides what happens when the conversation outgrows the
budget the context leaves after the instructions, the tools and the reply:

- ``auto``: the oldest items leave the prompt, down to ``AUTO_RETENTION`` of the budget;
- ``retention_ratio``: the same, down to the client's ratio (of ``token_limits.post_instructions``
  when given);
- ``disabled``: nothing is cut; a prompt over the context fails the response.

Cuts move forward only and leave room to grow, so the prompt's beginning (the LLM's cached
prefix) stays the same for many turns between cuts, and a cut lands on a user message, never
between a function call and its output.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from realtalk.core.config import SessionConfig, Truncation
from realtalk.core.items import Item
from realtalk.pipeline.llm import ToolSpec
from realtalk.session.mcp import mcp_call_messages

AUTO_RETENTION = 0.75
"""``truncation: "auto"`` keeps this share of the budget after a cut (room for several turns
before the next one, each reusing the cached prefix)."""
MESSAGE_OVERHEAD = 8
"""Tokens the chat template adds around each message."""
RESERVE = 64
"""Tokens kept free for the template's own text and counting slack."""

CountTokens = Callable[[str], int]


def system_messages(instructions: str) -> list[dict[str, Any]]:
    """The instructions as the prompt's first message (none when there are none)."""
    return [{"role": "system", "content": instructions}] if instructions else []


def tool_specs(config: SessionConfig) -> tuple[ToolSpec, ...]:
    """The session's function tools as the LLM stage takes them."""
    return tuple(ToolSpec(t.name, t.description, t.parameters) for t in config.tools)


def item_messages(item: Item) -> list[dict[str, Any]]:
    """One conversation item as Chat Completions messages (none for an empty one)."""
    if item.type == "message":
        text = item.text_for_model()
        return [{"role": item.role, "content": text}] if text else []
    if item.type == "function_call":
        call = {
            "id": item.call_id,
            "type": "function",
            "function": {"name": item.name, "arguments": item.arguments or "{}"},
        }
        return [{"role": "assistant", "content": None, "tool_calls": [call]}]
    if item.type == "function_call_output":
        return [{"role": "tool", "tool_call_id": item.call_id, "content": item.output or ""}]
    if item.type == "mcp_call":
        return mcp_call_messages(item)
    return []


def message_tokens(messages: Sequence[dict[str, Any]], count: CountTokens) -> int:
    return sum(count(json.dumps(m, ensure_ascii=False)) + MESSAGE_OVERHEAD for m in messages)


class PromptWindow:
    """Where a session's prompt starts in its conversation (one per session)."""

    def __init__(self) -> None:
        self.start_id: str | None = None
        self._sizes: dict[str, tuple[int, int]] = {}
        """item id → (length of what was counted, tokens), so each item is counted once."""

    def _size(self, item: Item, count: CountTokens) -> int:
        messages = item_messages(item)
        length = sum(len(str(m.get("content") or "")) for m in messages) + len(messages)
        known = self._sizes.get(item.id)
        if known is not None and known[0] == length:
            return known[1]
        tokens = message_tokens(messages, count)
        self._sizes[item.id] = (length, tokens)
        return tokens

    def fit(
        self,
        items: Sequence[Item],
        *,
        budget: int,
        truncation: Truncation,
        count: CountTokens,
    ) -> list[Item]:
        """The items the prompt shows: from the window's start on, cut when over ``budget``."""
        if truncation.type == "disabled":
            return list(items)
        if truncation.post_instructions is not None:
            budget = min(budget, truncation.post_instructions)
        start = next((i for i, item in enumerate(items) if item.id == self.start_id), 0)
        sizes = [self._size(item, count) for item in items]
        if sum(sizes[start:]) <= budget:
            return list(items[start:])
        ratio = AUTO_RETENTION if truncation.type == "auto" else truncation.retention_ratio
        keep = budget * ratio
        total = sum(sizes[start:])
        last = len(items) - 1
        while start < last and (total > keep or not _is_user_message(items[start])):
            total -= sizes[start]
            start += 1
        self.start_id = items[start].id if items else None
        live = {item.id for item in items}
        self._sizes = {k: v for k, v in self._sizes.items() if k in live}
        return list(items[start:])


def _is_user_message(item: Item) -> bool:
    return item.type == "message" and item.role == "user"
