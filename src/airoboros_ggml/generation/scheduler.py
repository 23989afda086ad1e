"""Continuous batching: many sequences decoded together over the KV cache's sequence slots.

A :class:`BatchScheduler` owns a worker thread and a multi-sequence :class:`~airoboros_ggml.runtime.KVCache`.
Requests (:class:`SequenceRequest`) arrive from any thread; at every step the worker evaluates one batch
holding the next token of every decoding sequence plus chunks of the prompts waiting to be evaluated (see
:meth:`BatchScheduler.step` and :data:`MIXED_ROWS` for how rows are mixed so that results do not depend on
who shares a step), then lets each sequence choose its next token with its own
:class:`~.steps.TokenSelector` (its own logits processors, sampler and seed) and turns it into text with its
own :class:`~.text_stream.ChunkAssembler` (its own stop strings). A new request joins at the next step; a
finished or cancelled one leaves and frees its slot. As in :class:`~.steps.StepGenerator`, a token that
ends generation is never evaluated.

A request placed in a slot keeps the longest prefix of its prompt that slot already holds (KV reuse).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from ..runtime.kv_cache import KVBatch, KVCache
from .results import Chunk, Timings, Usage
from .steps import TokenSelector
from .text_stream import ChunkAssembler

log = logging.getLogger(__name__)

__all__ = ["MIXED_ROWS", "BatchScheduler", "RunBatch", "SequenceRequest"]

MIXED_ROWS = 32
"""Most rows of a step that mixes sequences: up to this batch the weight products (integer kernels over 8-bit
activations) compute every row exactly as for that row alone, so a sequence's result does not depend on
who shares its steps; larger batches take another arithmetic path (``quants.weight.INT_MATMUL_MAX_TOKENS``)."""

RunBatch = Callable[[np.ndarray, KVBatch, np.ndarray], np.ndarray]
"""``run(tokens, batch, rows) -> logits``: evaluate int64 (n_tok,) tokens placed as ``batch`` plans (appending
them to the cache) and return float32 (len(rows), n_vocab) logits of the given rows."""


@dataclasses.dataclass(eq=False)
class SequenceRequest:
    """One generation handed to the scheduler; its chunks arrive on :attr:`chunks`.

    The last item is the final :class:`Chunk` (``finish_reason``, ``usage`` and ``timings`` set) or the
    exception that ended the request.
    """

    prompt: list[int]
    """Prompt token ids (at least one)."""
    selector: TokenSelector
    """Chooses the sequence's tokens (its processors, sampler and seed)."""
    assembler: ChunkAssembler
    """Turns them into text (its stop strings)."""
    max_tokens: int
    """Tokens to generate at most (the caller keeps it within the context: ``n_ctx - len(prompt)``)."""
    chunks: queue.SimpleQueue = dataclasses.field(default_factory=queue.SimpleQueue)
    """Chunks (and finally the final chunk or an exception), in order."""
    cancelled: threading.Event = dataclasses.field(default_factory=threading.Event)
    """Set by the consumer to stop generating; the slot is freed at the next step."""
    slot: int = -1
    n_cached: int = 0
    n_evaluated: int = 0  # prompt tokens in the slot (reused + evaluated)
    n_generated: int = 0
    next_token: int | None = None  # the last chosen token, evaluated at the next step
    t_submit: float = 0.0
    t_prefilled: float = 0.0

    def cancel(self) -> None:
        """Stop generating (thread-safe; no effect once finished)."""
        self.cancelled.set()

    @property
    def decoding(self) -> bool:
        """Whether the prompt is evaluated and the sequence waits for its next token's evaluation."""
        return self.next_token is not None


class BatchScheduler:
    """Decodes many sequences together, one forward batch per step (see the module docstring).

    Args:
        cache: the multi-sequence KV cache (``n_seq`` slots); only the worker thread touches it.
        run: evaluates a batch (see :data:`RunBatch`).
        n_batch: prompt tokens per chunk, as a request alone evaluates them (decoding rows are not counted).
        kv_reuse: keep the prefix a slot already holds.
    """

    def __init__(self, cache: KVCache, run: RunBatch, n_batch: int, *, kv_reuse: bool = True):
        self.cache = cache
        self.run = run
        self.n_batch = n_batch
        self.kv_reuse = kv_reuse
        self.steps = 0
        """Forward batches evaluated so far."""
        self._prompt_turn = False  # the next step evaluates prompt chunks only
        self._waiting: deque[SequenceRequest] = deque()
        self._active: list[SequenceRequest] = []
        self._free = list(range(cache.n_seq))
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closed = False

    def submit(self, request: SequenceRequest) -> None:
        """Queue a request (thread-safe); it joins the batch at the next step with a free slot."""
        if not request.prompt:
            raise ValueError("a request needs at least one prompt token")
        request.t_submit = time.perf_counter()
        with self._cond:
            if self._closed:
                raise RuntimeError("the scheduler is closed")
            self._waiting.append(request)
            if self._worker is None:
                self._worker = threading.Thread(target=self._loop, name="airoboros-ggml-batch", daemon=True)
                self._worker.start()
            self._cond.notify()

    def close(self) -> None:
        """Stop the worker after the current step; waiting and active requests get a RuntimeError."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join()

    # ------------------------------------------------------------------ the worker

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._waiting and not self._active:
                    self._cond.wait()
                if self._closed:
                    for r in [*self._waiting, *self._active]:
                        r.chunks.put(RuntimeError("the model was closed"))
                    return
                self._admit()
            try:
                self.step()
            except Exception as e:  # a failed step ends every request in it, not the worker
                log.exception("batch step failed")
                for r in self._active:
                    self._release(r)
                    r.chunks.put(e)
                self._active = []

    def _admit(self) -> None:
        """Move waiting requests into free slots (called with the condition held)."""
        while self._waiting and self._free:
            request = self._waiting.popleft()
            if request.cancelled.is_set():
                request.chunks.put(request.assembler.finish("stop"))
                continue
            slot = max(self._free, key=lambda s: self.cache.common_prefix(request.prompt, s))
            self._free.remove(slot)
            kept = min(self.cache.common_prefix(request.prompt, slot), len(request.prompt) - 1)
            kept = kept if self.kv_reuse else 0
            self.cache.truncate(kept, slot)
            request.slot, request.n_cached, request.n_evaluated = slot, kept, kept
            self._active.append(request)

    def _release(self, request: SequenceRequest) -> None:
        with self._cond:
            self._free.append(request.slot)

    def step(self) -> None:
        """Evaluate one batch and advance every sequence in it by at most one token."""
        for r in [r for r in self._active if r.cancelled.is_set()]:
            self._finish(r, r.assembler.finish("stop"))
        counts: list[tuple[int, int]] = []
        tokens: list[int] = []
        members: list[tuple[SequenceRequest, int | None]] = []  # request, row of its logits (None: mid-prompt)
        prompt_turn, self._prompt_turn = self._prompt_turn, False
        decoders = [] if prompt_turn else [r for r in self._active if r.decoding]
        for r in decoders:  # decoding sequences: one token each
            counts.append((r.slot, 1))
            tokens.append(r.next_token)  # type: ignore[arg-type]
            members.append((r, len(tokens) - 1))
        # prompt chunks, oldest request first, cut where the request alone would cut them (n_batch tokens from
        # its first uncached one) and never split. A chunk joins other rows only while the step stays within
        # MIXED_ROWS (every row's arithmetic is then that of a row alone); a larger one runs in a step of its
        # own, and a chunk that did not fit beside decoding rows gets the next step for prompts only
        for r in self._active:
            if r.decoding:
                continue
            chunk = r.prompt[r.n_evaluated : r.n_evaluated + self.n_batch]
            if tokens and len(tokens) + len(chunk) > MIXED_ROWS:
                self._prompt_turn = self._prompt_turn or bool(decoders)
                continue
            counts.append((r.slot, len(chunk)))
            tokens.extend(chunk)
            r.n_evaluated += len(chunk)
            members.append((r, len(tokens) - 1 if r.n_evaluated == len(r.prompt) else None))
            if len(tokens) > MIXED_ROWS:
                break
        if not tokens:
            return
        rows = np.array([row for _, row in members if row is not None], dtype=np.int64)  # int64 (n_out,)
        logits = self.run(np.asarray(tokens, dtype=np.int64), self.cache.plan(counts), rows)  # (n_out, n_vocab)
        self.steps += 1
        now = time.perf_counter()
        out = 0
        for r, row in members:
            if row is None:
                continue
            if not r.decoding:
                r.t_prefilled = now
            if r.max_tokens <= 0:
                self._finish(r, r.assembler.finish("length"))
            else:
                self._choose(r, logits[out])
            out += 1

    def _choose(self, r: SequenceRequest, logits: np.ndarray) -> None:
        """Choose one sequence's next token from float32 (n_vocab,) logits; finish it if generation is over."""
        token = r.selector(logits).token
        if not r.assembler.tokenizer.is_eog(token):  # as alone: an end-of-generation token is not output
            r.n_generated += 1
        r.next_token = token
        chunk = r.assembler.push(token)
        if chunk is not None and chunk.finish_reason is not None:
            self._finish(r, chunk)
            return
        if chunk is not None:
            r.chunks.put(chunk)
        if r.n_generated >= r.max_tokens:
            self._finish(r, r.assembler.finish("length"))

    def _finish(self, r: SequenceRequest, final: Chunk) -> None:
        now = time.perf_counter()
        prefilled = r.t_prefilled or now
        n_prompt = len(r.prompt)
        usage = Usage(n_prompt, r.n_generated, r.n_cached)
        timings = Timings(prefilled - r.t_submit, n_prompt - r.n_cached, now - prefilled, r.n_generated)
        self._active.remove(r)
        self._release(r)
        r.chunks.put(dataclasses.replace(final, usage=usage, timings=timings))

