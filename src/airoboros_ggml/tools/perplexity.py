"""Perplexity of a model on a text, computed as llama.cpp's ``llama-perplexity`` computes it.

The text is tokenized once (BOS first when the vocabulary asks for it) and cut into non-overlapping chunks
of ``n_ctx`` tokens; each chunk is evaluated from an empty cache with its first token replaced by BOS (when
the vocabulary adds one), and only the second half is scored: the logits after position ``j`` predict token
``j + 1`` for ``j`` in ``[n_ctx // 2, n_ctx - 1)``, so every scored token sees at least ``n_ctx / 2`` tokens of
context. PPL = exp(mean NLL); its standard error is ``ppl * sqrt(var(NLL) / (count - 1))``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import ContextOverflowError
from ..model import Model
from ..progress import progress_bar

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PerplexityResult:
    """Perplexity of a model on a text and what it took."""

    ppl: float
    """exp(mean negative log-likelihood of the scored tokens)."""
    stderr: float
    """Standard error of ``ppl`` (llama.cpp's ``+/-``)."""
    nll: float
    """Mean negative log-likelihood (nats per token)."""
    n_ctx: int
    """Tokens per chunk."""
    n_chunks: int
    """Chunks evaluated."""
    n_scored: int
    """Tokens scored: ``n_chunks * (n_ctx - 1 - n_ctx // 2)``."""
    n_tokens: int
    """Tokens in the whole text."""
    running: tuple[float, ...]
    """The estimate after each chunk (llama.cpp's ``[1]...,[2]...`` line)."""
    seconds: float
    """Wall time of the evaluation."""

    @property
    def tokens_per_s(self) -> float:
        """Tokens evaluated per second (``n_chunks * n_ctx / seconds``)."""
        return self.n_chunks * self.n_ctx / self.seconds if self.seconds > 0 else float("inf")

    @property
    def scored_tokens_per_s(self) -> float:
        """Tokens scored per second (``n_scored / seconds``; about half of those evaluated)."""
        return self.n_scored / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (``--json``)."""
        data = dataclasses.asdict(self)
        data["running"] = list(self.running)
        data["tokens_per_s"] = self.tokens_per_s
        data["scored_tokens_per_s"] = self.scored_tokens_per_s
        return data


def chunk_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Negative log-likelihood of each target under its row of logits.

    Args:
        logits: float32 (n, n_vocab).
        targets: int (n,) token ids.

    Returns:
        float64 (n,): ``logsumexp(row) - row[target]``.
    """
    top = logits.max(axis=1)  # float32 (n,)
    shifted = logits - top[:, None]  # float32 (n, n_vocab), all <= 0
    np.exp(shifted, out=shifted)  # float32 exp, summed in float64 (as llama-perplexity does)
    lse = top.astype(np.float64) + np.log(shifted.sum(axis=1, dtype=np.float64))  # float64 (n,)
    return lse - logits[np.arange(len(targets)), targets].astype(np.float64)


def perplexity(
    model: Model,
    text: str | Sequence[int],
    *,
    n_ctx: int = 512,
    n_chunks: int | None = None,
    progress: bool | None = None,
    on_chunk: Callable[[int, float], object] | None = None,
) -> PerplexityResult:
    """Perplexity of ``model`` on ``text`` with llama.cpp's method (see the module docstring).

    Args:
        model: A loaded model whose context holds ``n_ctx`` tokens.
        text: The text, or its token ids (used as given).
        n_ctx: Tokens per chunk (llama.cpp's ``-c``).
        n_chunks: Evaluate at most this many chunks (default: as many as the text fills).
        progress: Draw a progress bar (default: on a terminal unless logging is quieter than INFO).
        on_chunk: Called after each chunk with its number (from 1) and the running perplexity.

    Raises:
        ValueError: the text has fewer than ``2 * n_ctx`` tokens (llama.cpp's requirement) or ``n_ctx < 4``.
        ContextOverflowError: the model's context is smaller than ``n_ctx``.
    """
    if n_ctx < 4:
        raise ValueError(f"n_ctx must be at least 4, got {n_ctx}")
    if n_ctx > model.n_ctx:
        raise ContextOverflowError(n_ctx, model.n_ctx, f"perplexity chunks of {n_ctx} tokens do not fit the "
                                   f"model's context of {model.n_ctx}; load it with n_ctx >= {n_ctx}")
    tokens = model.tokenizer.tokenize(text, add_bos=True) if isinstance(text, str) else [int(t) for t in text]
    if len(tokens) < 2 * n_ctx:
        raise ValueError(f"the text has {len(tokens)} tokens; perplexity with a context of {n_ctx} needs at least "
                         f"{2 * n_ctx} (llama.cpp's rule)")
    available = len(tokens) // n_ctx
    n_chunks = available if n_chunks is None or n_chunks <= 0 else min(n_chunks, available)
    bos = model.tokenizer.vocab.bos_id if model.tokenizer.vocab.add_bos else None
    first = n_ctx // 2
    total = total_sq = 0.0
    count = 0
    running: list[float] = []
    start = time.perf_counter()
    with progress_bar(n_chunks, "perplexity", progress=progress, unit="chunk") as bar:
        for i in range(n_chunks):
            chunk = tokens[i * n_ctx : (i + 1) * n_ctx]
            evaluated = [bos, *chunk[1:]] if bos is not None else chunk
            logits = model.logits(evaluated)  # float32 (n_ctx, n_vocab)
            nll = chunk_nll(logits[first : n_ctx - 1], np.asarray(chunk[first + 1 :]))  # float64 (n_scored,)
            total += float(nll.sum())
            total_sq += float((nll * nll).sum())
            count += len(nll)
            running.append(math.exp(total / count))
            bar.set_postfix(ppl=f"{running[-1]:.4f}")
            bar.update(1)
            log.debug("[%d] %.4f", i + 1, running[-1])
            if on_chunk is not None:
                on_chunk(i + 1, running[-1])
    seconds = time.perf_counter() - start
    mean = total / count
    variance = total_sq / count - mean * mean
    ppl = math.exp(mean)
    stderr = ppl * math.sqrt(variance / (count - 1)) if variance > 0 and count > 1 else 0.0
    return PerplexityResult(ppl, stderr, mean, n_ctx, n_chunks, count, len(tokens), tuple(running), seconds)
