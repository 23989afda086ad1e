"""Logits processors: what changes the model's logits before the sampler chain chooses a token.

A logits processor is any callable ``processor(tokens, logits) -> logits`` where ``tokens`` are the ids so
far (prompt, then generated, oldest first) and ``logits`` float32 (n_vocab,) the scores of the next token; it
may modify ``logits`` in place and must return the array to pass on. Processors are created per generation
call (they may hold state, e.g. a grammar matcher advancing on ``tokens[-1]``) and applied in order after
the forward pass, before the sampler chain (:mod:`.sampling`). llama.cpp's 2023 chain starts with logit bias
then repetition penalties; :func:`make_logits_processors` builds those two from the sampling options.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .options import SamplingOptions

__all__ = [
    "LogitBias",
    "LogitsProcessor",
    "Penalties",
    "apply_logit_bias",
    "apply_penalties",
    "make_logits_processors",
]

LogitsProcessor = Callable[[Sequence[int], np.ndarray], np.ndarray]
"""``processor(tokens, logits float32 (n_vocab,)) -> logits`` (may modify and return its input)."""


def apply_logit_bias(logits: np.ndarray, ids: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """Add ``biases`` to ``logits[ids]`` in place and return ``logits``.

    Args:
        logits: float32 (n_vocab,), modified in place.
        ids: int64 (n_bias,) distinct token ids.
        biases: float32 (n_bias,) values to add (``-inf`` bans a token).
    """
    if ids.size:
        logits[ids] += biases
    return logits


def apply_penalties(
    logits: np.ndarray,
    last_tokens: np.ndarray,
    repeat_penalty: float,
    frequency_penalty: float,
    presence_penalty: float,
) -> np.ndarray:
    """Penalise tokens seen in ``last_tokens``, in place, as llama.cpp's 2023 samplers do.

    ``llama_sample_repetition_penalty``: a seen token's logit is divided by ``repeat_penalty`` when it is
    positive and multiplied by it otherwise. ``llama_sample_frequency_and_presence_penalties``: then
    ``logit -= count * frequency_penalty + presence_penalty`` where ``count`` is its number of occurrences.

    Args:
        logits: float32 (n_vocab,), modified in place.
        last_tokens: int (n_last,) the penalty window, oldest first.
        repeat_penalty: 1 disables.
        frequency_penalty: 0 disables.
        presence_penalty: 0 disables.

    Returns:
        ``logits``.
    """
    if last_tokens.size == 0:
        return logits
    seen, counts = np.unique(last_tokens, return_counts=True)  # int64 (n_seen,), int64 (n_seen,)
    if repeat_penalty != 1.0:
        vals = logits[seen]  # float32 (n_seen,)
        penalty = np.float32(repeat_penalty)
        logits[seen] = np.where(vals <= 0, vals * penalty, vals / penalty)
    if frequency_penalty != 0.0 or presence_penalty != 0.0:
        delta = counts * frequency_penalty + presence_penalty  # float64 (n_seen,)
        logits[seen] -= delta.astype(np.float32)
    return logits


class LogitBias:
    """Adds a fixed bias to some tokens' logits (``-inf`` bans them).

    Args:
        bias: token id -> value to add.
        n_vocab: vocabulary size (ids are checked against it).

    Raises:
        ValueError: a token id is outside the vocabulary.
    """

    def __init__(self, bias: Mapping[int, float], n_vocab: int):
        bad = [t for t in bias if not 0 <= t < n_vocab]
        if bad:
            raise ValueError(f"logit_bias: token id {bad[0]} is out of range for a vocabulary of {n_vocab} tokens")
        self.ids = np.fromiter(bias.keys(), dtype=np.int64, count=len(bias))  # int64 (n_bias,)
        self.biases = np.fromiter(bias.values(), dtype=np.float32, count=len(bias))  # float32 (n_bias,)

    def __call__(self, tokens: Sequence[int], logits: np.ndarray) -> np.ndarray:
        """Add the biases to ``logits`` float32 (n_vocab,) in place."""
        return apply_logit_bias(logits, self.ids, self.biases)


class Penalties:
    """Repeat, frequency and presence penalties over the last ``last_n`` tokens (see :func:`apply_penalties`).

    Args:
        last_n: window length; ``-1`` the whole history, ``0`` none.
        repeat_penalty: 1 disables.
        frequency_penalty: 0 disables.
        presence_penalty: 0 disables.
    """

    def __init__(self, last_n: int, repeat_penalty: float, frequency_penalty: float, presence_penalty: float):
        self.last_n = last_n
        self.repeat_penalty = repeat_penalty
        self.frequency_penalty = frequency_penalty
        self.presence_penalty = presence_penalty

    def window(self, tokens: Sequence[int]) -> np.ndarray:
        """int64 (n_last,) the penalty window of ``tokens``, oldest first."""
        n = self.last_n
        if n == 0 or len(tokens) == 0:
            return np.empty(0, dtype=np.int64)
        return np.asarray(tokens if n < 0 else tokens[-n:], dtype=np.int64)

    def __call__(self, tokens: Sequence[int], logits: np.ndarray) -> np.ndarray:
        """Penalise the tokens of the window in ``logits`` float32 (n_vocab,), in place."""
        return apply_penalties(
            logits, self.window(tokens), self.repeat_penalty, self.frequency_penalty, self.presence_penalty
        )


def make_logits_processors(options: SamplingOptions, n_vocab: int) -> list[LogitsProcessor]:
    """The processors ``options`` asks for, in llama.cpp's order: logit bias, then penalties.

    Processors that would change nothing are left out (no bias; a window of 0 or neutral penalties).

    Raises:
        ValueError: a ``logit_bias`` token id is outside the vocabulary.
    """
    processors: list[LogitsProcessor] = []
    if options.logit_bias:
        processors.append(LogitBias(options.logit_bias, n_vocab))
    penalties = (options.repeat_penalty, options.frequency_penalty, options.presence_penalty)
    if options.repeat_last_n != 0 and penalties != (1.0, 0.0, 0.0):
        processors.append(Penalties(options.repeat_last_n, *penalties))
    return processors
