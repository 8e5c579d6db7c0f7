"""Any OpenAI-compatible Chat Completions endpoint (vLLM, Ollama, llama.cpp server, OpenAI)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
from openai import AsyncOpenAI

from realtalk.pipeline.llm import Finished, LLMEvent, LLMRequest, TextDelta, ToolCall
from realtalk.pipeline.remote import count_failure


class ChatCompletionsLLM:
    """Streams from ``{base_url}/chat/completions`` with native ``tool_calls``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        context_tokens: int = 32_768,
        timeout_s: float = 30.0,
    ) -> None:
        self.client = AsyncOpenAI(
            base_url=base_url, api_key=api_key or "unused", timeout=timeout_s, max_retries=1
        )
        self.model = model
        self.context_tokens = context_tokens

    def count_tokens(self, text: str) -> int:
        """No tokenizer here: two UTF-8 bytes a token overestimates every common tokenizer
        on prose (about four), and holds for digits and code closely enough."""
        return len(text.encode("utf-8")) // 2 + 1

    async def aclose(self) -> None:
        await self.client.close()

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        try:
            async for event in self._stream(request):
                yield event
        except (openai.APIError, httpx.HTTPError) as exc:
            count_failure("chat-completions", exc)
            raise

    async def _stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        kwargs: dict[str, Any] = {}
        if request.tools and request.tool_choice != "none":
            kwargs["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in request.tools
            ]
            kwargs["tool_choice"] = (
                request.tool_choice
                if request.tool_choice in ("auto", "required")
                else {"type": "function", "function": {"name": request.tool_choice}}
            )
        create: Any = self.client.chat.completions.create
        stream = await create(
            model=self.model,
            messages=request.messages,
            temperature=request.temperature,
            max_tokens=request.max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            **kwargs,
        )
        calls: dict[int, dict[str, str]] = {}
        usage: Finished | None = None
        chunks = 0  # servers that send no usage stream about one token per chunk
        reason = "stop"
        async with stream:
            async for chunk in stream:
                if chunk.usage is not None:
                    details = chunk.usage.prompt_tokens_details
                    usage = Finished(
                        chunk.usage.prompt_tokens,
                        chunk.usage.completion_tokens,
                        (details.cached_tokens or 0) if details else 0,
                    )
                for choice in chunk.choices:
                    if choice.delta.content:
                        chunks += 1
                        yield TextDelta(choice.delta.content)
                    for call in choice.delta.tool_calls or []:
                        entry = calls.setdefault(
                            call.index, {"id": "", "name": "", "arguments": ""}
                        )
                        if call.id:
                            entry["id"] = call.id
                        if call.function and call.function.name:
                            entry["name"] += call.function.name
                        if call.function and call.function.arguments:
                            entry["arguments"] += call.function.arguments
                    if choice.finish_reason == "length":
                        reason = "length"
        for index in sorted(calls):
            entry = calls[index]
            try:
                arguments = json.dumps(json.loads(entry["arguments"] or "{}"))
            except json.JSONDecodeError:
                arguments = entry["arguments"]
            yield ToolCall(entry["id"] or f"call_{index}", entry["name"], arguments)
        if usage is None:
            usage = Finished(0, chunks + len(calls))
        yield Finished(
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens,
            "length" if reason == "length" else "stop",
        )
