"""One llama.cpp context shared by every session: a stop takes effect within a batch, and no
request holds the model for longer than a slice while another waits.

llama-cpp-python evaluates a prompt inside ``Llama.eval`` in ``n_batch`` pieces and looks at
nothing in between, so a stopped reply would hold the model until its whole prompt was read
(a full 4,096-token context is ~12 s on two cores) and every other session would queue behind
it. :class:`SharedLlama` evaluates batch by batch, and before each batch (generation evaluates
one token at a time, so also before each token):

- a request whose stop event is set raises :class:`GenerationStopped`: the model is free
  within one batch (``BATCH_TOKENS``);
- a request that has held the model for ``SLICE_S`` while another waits hands it over: its
  sequence's KV cache, tokens and sampler are copied out, the waiting request takes its turn
  (first come, first served: :class:`Turns`), and the copy is put back when this request's
  turn comes again. A switch costs two copies of the KV cache (~12 KB a token for the default
  0.5B model: ~50 MB at a full context, tens of ms), paid only while requests overlap.

So a short reply waits at most a slice and a batch for a long one, and long ones share the
model in turns instead of one after the other.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import llama_cpp.llama_cpp as llama_lib
import numpy as np
from llama_cpp import Llama

from realtalk.pipeline.priority import FOREGROUND

BATCH_TOKENS = 64
"""Prompt tokens evaluated between two checks. Measured here on a 2048-token prompt (2 cores,
shared): 125 tok/s at 64, 130 at 128, 114–132 at 512, i.e. no measurable cost, and a stop or a
hand-over waits ~0.2–0.5 s instead of 1.5–4 s."""
SLICE_S = 0.5
"""How long a request keeps the model while another waits for it."""
STOP_POLL_S = 0.05
"""How often a request waiting for its turn looks at its stop event."""


class GenerationStopped(Exception):
    """The request's stop event was set; raised out of the evaluation (and out of a wait)."""


@dataclass(eq=False)
class Request:
    """One generation's claim on the model."""

    stop: threading.Event = field(default_factory=threading.Event)
    background: bool = False
    """Work nobody waits for yet (a prompt read ahead): it lets speech about to play go first
    before each batch, as a reply's generation does before each token."""


class Turns:
    """A first-come-first-served lock whose waiters give up when their request stops."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._queue: deque[Request] = deque()
        self._holder: Request | None = None

    def acquire(self, request: Request) -> None:
        with self._changed:
            self._queue.append(request)
            try:
                while True:
                    if request.stop.is_set():
                        raise GenerationStopped
                    if self._holder is None and self._queue[0] is request:
                        break
                    self._changed.wait(STOP_POLL_S)
            finally:
                self._queue.remove(request)
                self._changed.notify_all()  # the next in line may be at the head now
            self._holder = request

    def release(self, request: Request) -> None:
        with self._changed:
            if self._holder is request:
                self._holder = None
                self._changed.notify_all()

    def busy(self) -> bool:
        """Whether a request holds the model."""
        return self._holder is not None

    def waiting(self) -> bool:
        """Whether a request is waiting for its turn."""
        return bool(self._queue)


@dataclass
class _Parked:
    """A request's part of the context while another has its turn."""

    kv: ctypes.Array[ctypes.c_uint8]
    tokens: np.ndarray
    sampler: Any


class SharedLlama(Llama):
    """A ``Llama`` that evaluates in batches and takes turns (see the module docstring).

    Call generation methods only inside :meth:`turn`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("n_batch", BATCH_TOKENS)
        kwargs.setdefault("n_ubatch", kwargs["n_batch"])
        super().__init__(*args, **kwargs)
        self.turns = Turns()
        self._request: Request | None = None
        self._turn_began = 0.0
        self.hand_overs = 0
        """Times a request gave the model to another (for tests and diagnostics)."""

    @contextmanager
    def turn(self, request: Request) -> Iterator[None]:
        """Hold the model for ``request`` (raises :class:`GenerationStopped` if it stops while
        waiting)."""
        self.turns.acquire(request)
        self._request, self._turn_began = request, time.monotonic()
        try:
            yield
        finally:
            if self._request is request:
                self._request = None
            self.turns.release(request)

    def eval(self, tokens: Sequence[int]) -> None:
        for start in range(0, len(tokens), self.n_batch):
            self._between_batches()
            super().eval(tokens[start : start + self.n_batch])

    def _between_batches(self) -> None:
        request = self._request
        if request is None:
            return  # outside turn(): warm-up and tests
        if request.background:
            FOREGROUND.yield_to(request.stop)
        if request.stop.is_set():
            raise GenerationStopped
        if self.turns.waiting() and time.monotonic() - self._turn_began >= SLICE_S:
            self._hand_over(request)

    def _hand_over(self, request: Request) -> None:
        parked = self._park()
        self._request = None
        self.turns.release(request)
        self.hand_overs += 1
        self.turns.acquire(request)  # raises GenerationStopped if stopped meanwhile
        self._unpark(parked)
        self._request, self._turn_began = request, time.monotonic()

    def _park(self) -> _Parked:
        ctx = self._ctx.ctx
        size = llama_lib.llama_state_seq_get_size(ctx, 0)
        kv = (ctypes.c_uint8 * size)()
        if llama_lib.llama_state_seq_get_data(ctx, kv, size, 0) == 0 and self.n_tokens:
            raise RuntimeError("could not copy the KV cache out")
        return _Parked(kv, self.input_ids[: self.n_tokens].copy(), self._sampler)

    def _unpark(self, parked: _Parked) -> None:
        self._ctx.kv_cache_seq_rm(0, 0, -1)
        n_tokens = len(parked.tokens)
        if n_tokens and llama_lib.llama_state_seq_set_data(
            self._ctx.ctx, parked.kv, len(parked.kv), 0
        ) != len(parked.kv):
            raise RuntimeError("could not put the KV cache back")
        self.input_ids[:n_tokens] = parked.tokens
        self.n_tokens = n_tokens
        self._requires_eval = True
        self._sampler = parked.sampler
