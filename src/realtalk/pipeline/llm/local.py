"""A GGUF model through llama-cpp-python, shared by all sessions.

Generation runs on the stage's own threads and streams into the event loop. Closing the stream
(or cancelling its consumer) returns at once: the generation stops within a batch or a token
on its thread (``sharing.py``), so a cancelled reply's ``response.done`` never waits for the
model. Sessions take turns on the model in slices (``sharing.py``). The previous call's KV
cache is reused for the longest common prompt prefix, so a conversation's later turns only
evaluate their new tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import llama_cpp.llama_cpp as llama_lib
import numpy as np

from realtalk.pipeline.llm import Finished, LLMEvent, LLMRequest, TextDelta, ToolCall
from realtalk.pipeline.llm.sharing import GenerationStopped, Request, SharedLlama
from realtalk.pipeline.llm.toolcalls import MalformedToolCall, may_be_call, parse_tool_calls
from realtalk.pipeline.priority import FOREGROUND

log = logging.getLogger("realtalk.llm")

TOOL_RESULT_NUDGE = (
    "Using the tool result above, answer the user in one or two short spoken "
    "sentences. Do not call a tool again."
)
SAID_KEPT = 1024
"""Tool calls whose generated text is kept to give back in later prompts (a few KB)."""
WORKER_THREADS = 4
"""Generations that can be started at once: one runs, the others wait for their turn on a
thread (where they can be handed the model, see ``sharing.py``); more queue before that."""


@contextlib.contextmanager
def _weight_repacking(enabled: bool) -> Iterator[None]:
    """llama.cpp repacks weights into "extra buffer types" (AMX / CPU repack) by default. Some
    VMs advertise AMX but fault on its instructions; with ``enabled=False`` plain CPU buffers
    are used, which works everywhere."""
    if enabled:
        yield
        return
    original = llama_lib.llama_model_default_params

    def params() -> Any:
        value = original()
        value.use_extra_bufts = False
        return value

    llama_lib.llama_model_default_params = params
    try:
        yield
    finally:
        llama_lib.llama_model_default_params = original


def repacking_is_safe(cpuinfo: str | None = None) -> bool:
    """Repacked weights speed up prompt evaluation on AVX2 CPUs; AMX is where a VM that
    advertises it may fault, so repack only with AVX2 and without AMX."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    words = set(flags.split())
    return "avx2" in words and not any(w.startswith("amx") for w in words)


def local_temperature(realtime_temperature: float) -> float:
    """OpenAI's Realtime range 0.6–1.2 → 0.0–0.6: a 0.5B model at 0.8 rambles and garbles
    tool calls, so the scale is shifted down (0.8 → 0.2)."""
    return max(0.0, min(1.0, realtime_temperature - 0.6))


class LlamaLLM:
    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 4096,
        threads: int = 2,
        repack: bool | None = None,
    ) -> None:
        """``repack=None`` decides from the CPU (:func:`repacking_is_safe`)."""
        self.repack = repacking_is_safe() if repack is None else repack
        with _weight_repacking(self.repack):
            self.llama = SharedLlama(
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        self.context_tokens = n_ctx
        self._threads = ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="realtalk-llm")
        # Small models sometimes start by echoing the template's "<tools>" list instead of
        # answering or calling; with tools offered, that piece ("tools" glued to "<") is banned.
        pieces = self.llama.tokenize(b"<tools>", add_bos=False, special=True)
        self._tool_echo_bias = {pieces[1]: -100.0} if len(pieces) == 3 else {}
        self._streams = 0
        """Generations started and not finished (read by prefills on their threads)."""
        self._prefills: set[Request] = set()
        self.prefilled = 0
        """Prompts read ahead to the end (for tests and diagnostics)."""
        self._said: OrderedDict[str, str] = OrderedDict()
        """Call id → the text this model generated for it (the latest ``SAID_KEPT``)."""

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def warm_up(self) -> None:
        """One tiny generation so the first user does not pay for lazy initialisation."""
        with self.llama.turn(Request()):
            self.llama.create_chat_completion(
                messages=[{"role": "user", "content": "Hi"}], max_tokens=1
            )

    def prefill(self, request: LLMRequest) -> None:
        """Read ``request``'s prompt into the KV cache now, while nobody waits for the model,
        so the reply that follows starts from the cache: a new session's instructions and
        tools are ~560 tokens, ~4 s on two cores, paid before its first answer otherwise.
        Returns at once. Any generation stops it between two batches (what it read stays in
        the cache), and so does the next prefill; it never starts while one runs."""
        self._stop_prefills()
        if self._streams:
            return
        claim = Request(background=True)
        self._prefills.add(claim)

        def work() -> None:
            try:
                if self._streams or claim.stop.is_set():
                    return
                messages, tools = self._prepare(request, self._said)
                with self.llama.turn(claim):
                    self.llama.create_chat_completion(
                        messages=cast(Any, messages),
                        tools=cast(Any, tools),
                        temperature=0.0,
                        max_tokens=1,
                    )
                self.prefilled += 1
            except GenerationStopped:
                pass
            except Exception:  # a prefill is an optimisation: the reply will read the prompt
                log.exception("LLM prefill failed")
            finally:
                self._prefills.discard(claim)

        self._threads.submit(work)

    def _remember(self, call_id: str, text: str) -> None:
        self._said[call_id] = text
        while len(self._said) > SAID_KEPT:
            self._said.popitem(last=False)

    def _stop_prefills(self) -> None:
        for claim in list(self._prefills):
            claim.stop.set()

    @staticmethod
    def _prepare(
        request: LLMRequest, said: Mapping[str, str] | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """The messages and tool schemas for the chat template. ``said``: call id → the text
        this model generated for the call; such a turn is given back as that text, so the
        prompt repeats the tokens already in the KV cache (the template's own rendering of a
        call differs from what a small model writes: ~25 tokens read again after each call)."""
        messages: list[dict[str, Any]] = []
        for message in request.messages:
            message = dict(message)
            ids = {call.get("id") for call in message.get("tool_calls") or ()}
            texts = {said.get(i) for i in ids if isinstance(i, str)} if said and ids else set()
            if len(texts) == 1 and None not in texts and len(ids) == len(message["tool_calls"]):
                (text,) = texts
                written = {"role": "assistant", "content": text}
                if not messages or messages[-1] != written:  # several calls, written at once
                    messages.append(written)
                continue
            if message.get("tool_calls"):
                calls = []
                for call in message["tool_calls"]:
                    function = dict(call["function"])
                    if isinstance(function.get("arguments"), str):  # the template applies tojson
                        try:
                            function["arguments"] = json.loads(function["arguments"] or "{}")
                        except json.JSONDecodeError:
                            function["arguments"] = {}
                    calls.append({**call, "function": function})
                message["tool_calls"] = calls
            messages.append(message)
        tools = list(request.tools)
        if request.tool_choice == "none":
            tools = []
        elif request.tool_choice not in ("auto", "required"):
            tools = [t for t in tools if t.name == request.tool_choice]
        if messages and messages[-1].get("role") == "tool":
            messages.append({"role": "system", "content": TOOL_RESULT_NUDGE})
        elif tools and request.tool_choice == "required":
            messages.append({"role": "system", "content": "Call one of the tools now."})
        elif tools and request.tool_choice not in ("auto", "required"):
            messages.append({"role": "system", "content": f"Call the tool {tools[0].name} now."})
        schemas = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in tools
        ]
        return messages, schemas or None

    def _generate(self, request: LLMRequest, emit: Any, claim: Request) -> None:
        messages, tools = self._prepare(request, self._said)
        with self.llama.turn(claim):
            previous = np.array(self.llama.input_ids[: self.llama.n_tokens], copy=True)
            completion = 0
            reason = "stop"
            chunks: Any = self.llama.create_chat_completion(
                messages=cast(Any, messages),
                tools=cast(Any, tools),
                temperature=local_temperature(request.temperature),
                top_p=0.95,
                max_tokens=request.max_tokens,
                stream=True,
                logit_bias=self._tool_echo_bias if tools else None,
            )
            try:
                for chunk in chunks:
                    if claim.stop.is_set():
                        break
                    FOREGROUND.yield_to()  # speech about to play goes first
                    choice = chunk["choices"][0]
                    piece = choice["delta"].get("content") or ""
                    if piece:
                        completion += 1
                        emit(piece)
                    if choice.get("finish_reason") == "length":
                        reason = "length"
            finally:
                close = getattr(chunks, "close", None)
                if close:
                    close()
            total = int(self.llama.n_tokens)
            prompt = max(0, total - completion)
            current = self.llama.input_ids[:prompt]
            length = min(len(previous), len(current))
            mismatch = np.nonzero(previous[:length] != current[:length])[0]
            cached = int(mismatch[0]) if mismatch.size else length
        emit(Finished(prompt, completion, cached, reason))  # type: ignore[arg-type]

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        self._streams += 1
        self._stop_prefills()
        try:
            async with contextlib.aclosing(self._stream(request)) as events:
                async for event in events:
                    yield event
        finally:
            self._streams -= 1

    async def _stream(self, request: LLMRequest) -> AsyncGenerator[LLMEvent]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | Finished | BaseException] = asyncio.Queue()
        claim = Request()

        def emit(item: str | Finished | BaseException) -> None:
            if claim.stop.is_set():
                return  # nobody reads a stopped stream
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                self._generate(request, emit, claim)
            except GenerationStopped:
                pass
            except BaseException as exc:  # handed to the consumer
                emit(exc)

        self._threads.submit(work)
        names = {t.name for t in request.tools} if request.tool_choice != "none" else set()
        held = ""
        decided: bool | None = None if names else False
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, Finished):
                    if decided is not False and held:
                        for event in _calls_or_text(held, names):
                            if isinstance(event, ToolCall):
                                self._remember(event.call_id, held)
                            yield event
                    yield item
                    return
                if decided is False:
                    yield TextDelta(item)
                    continue
                held += item
                decided = may_be_call(held)
                if decided is False:
                    yield TextDelta(held)
                    held = ""
        finally:
            claim.stop.set()  # the thread stops on its own; nothing here waits for it


def _calls_or_text(text: str, names: set[str]) -> list[LLMEvent]:
    try:
        calls = parse_tool_calls(text, names)
    except MalformedToolCall:
        calls = []
    if not calls:
        return [TextDelta(text)]
    return [
        ToolCall("call_" + secrets.token_hex(8), c.name, json.dumps(c.arguments)) for c in calls
    ]
