"""The measurement protocol of ``airoboros-ggml bench``, for peer engines (ctransformers, llama.cpp).

Imports nothing from airoboros-ggml (the llama.cpp worker may run in another interpreter). An engine is
given as three callables: ``reset()`` empties its context, ``evaluate(ids)`` evaluates token ids after what
was evaluated, ``next_token()`` returns the greedy next token after what was evaluated.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

TTFT_PROMPT = 16
"""Tokens of the time-to-first-token prompt (as ``airoboros_ggml.tools.bench.TTFT_PROMPT``)."""
GEN_PROMPT = 8
"""Tokens evaluated before a generation run (as ``airoboros_ggml.tools.bench.GEN_PROMPT``)."""


def measure(reset: Callable[[], None], evaluate: Callable[[Sequence[int]], None], next_token: Callable[[], int],
            n_vocab: int, n_prompt: int, n_gen: int, reps: int,
            process_age: Callable[[], float] | None = None) -> dict[str, Any]:
    """Run the protocol on random token ids.

    Returns medians of ``reps`` runs of time to first token, prompt tok/s and generation tok/s (after an
    8-token prompt and right after the long prompt); ``first_call_s`` (the first, cold call); with
    ``process_age``, ``process_ttft_s`` = its value right after that first call; and the individual ``runs``.
    """
    import numpy as np

    rng = np.random.default_rng(0)

    def ids(n: int) -> list[int]:
        return [int(t) for t in rng.integers(3, n_vocab, size=n)]

    def first_token(tokens: list[int]) -> float:
        reset()
        t = time.perf_counter()
        evaluate(tokens)
        next_token()
        return time.perf_counter() - t

    def generate(n: int) -> float:
        """Decode rate of n greedy tokens after what was evaluated: n samplings and n - 1 evaluations."""
        t = time.perf_counter()
        for i in range(n):
            token = next_token()
            if i < n - 1:
                evaluate([token])
        return (n - 1) / (time.perf_counter() - t)

    first_call_s = first_token(ids(TTFT_PROMPT))
    extra = {"process_ttft_s": process_age()} if process_age is not None else {}
    runs: dict[str, list[float]] = {"ttft_s": [], "prompt_tok_s": [], "gen_tok_s": [], "gen_long_tok_s": []}
    for _ in range(reps):
        runs["ttft_s"].append(first_token(ids(TTFT_PROMPT)))
    for _ in range(reps if n_prompt else 0):
        reset()
        t = time.perf_counter()
        evaluate(ids(n_prompt))
        runs["prompt_tok_s"].append(n_prompt / (time.perf_counter() - t))
        if n_gen:  # as airoboros-ggml bench: generation right after the long prompt
            runs["gen_long_tok_s"].append(generate(n_gen))
    for _ in range(reps if n_gen else 0):
        reset()
        evaluate(ids(GEN_PROMPT))
        runs["gen_tok_s"].append(generate(n_gen))
    med = {k: float(statistics.median(v)) if v else float("nan") for k, v in runs.items()}
    return {**med, **extra, "first_call_s": first_call_s, "runs": runs}
