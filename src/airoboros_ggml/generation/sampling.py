"""Token sampling: llama.cpp's 2023 sampler chain as small pure numpy functions.

Order (llama.cpp ``main``, docs/formats.md, "Generation defaults", plus min-p as added in late 2023)::

    logit bias -> repeat / frequency / presence penalties over the last N tokens
      -> (temperature <= 0: argmax)
      -> top-k -> tail-free -> typical -> top-p -> min-p -> temperature -> draw
      or, with mirostat 1/2: temperature -> mirostat v1/v2 (draw + update of mu)

The truncation steps work on :class:`Candidates` — parallel arrays of token ids and logits, optionally
sorted by descending logit — so that after top-k only a few dozen entries are touched. Each step mirrors
the corresponding ``llama_sample_*`` function of llama.cpp (2023), including its ``min_keep`` rules.

Differences from llama.cpp ``main`` (2023): the penalty window is the real token history (``main``
pre-filled its window with token id 0), newlines are penalised like any token (``main``'s
``penalize_nl`` default), and the draw uses numpy's PCG64 rather than ``std::mt19937``, so seeded draws
are reproducible here but not identical to llama.cpp's.

:func:`make_sampler` composes the chain from :class:`~airoboros_ggml.generation.options.SamplingOptions`.
Logit bias and penalties are logits processors (:mod:`.processors`): :meth:`Sampler.sample` applies them and
then the chain; generation applies its own list of processors and calls :meth:`Sampler.choose` for the chain
alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .options import SamplingOptions
from .processors import LogitsProcessor, apply_logit_bias, apply_penalties, make_logits_processors

__all__ = [
    "Candidates",
    "Sampler",
    "apply_logit_bias",
    "apply_penalties",
    "draw",
    "make_sampler",
    "min_p",
    "mirostat_v1",
    "mirostat_v2",
    "softmax",
    "tail_free",
    "temperature",
    "top_k",
    "top_p",
    "typical",
]

MIROSTAT_M = 100
"""Number of top tokens mirostat v1 uses to estimate the Zipf exponent (llama.cpp's value)."""

_PREFIX_START = 256
"""First prefix length :func:`top_p` sorts when its input is large and unsorted."""

_DRAW_BLOCK = 256
"""Block length of the two-level inverse-CDF draw in :func:`_draw_index`."""

_SUBSAMPLE = 2048
"""Subsample size :func:`_top_indices` uses to find a lower bound on the k-th largest logit."""


class Candidates(NamedTuple):
    """Token ids with their logits; ``is_sorted`` says the logits are in descending order."""

    ids: np.ndarray  # int64 (n,)
    logits: np.ndarray  # float32 (n,)
    is_sorted: bool = False

    @classmethod
    def from_logits(cls, logits: np.ndarray, ids: np.ndarray | None = None) -> Candidates:
        """Wrap a full logits vector ``float32 (n_vocab,)`` (not copied); ``ids`` defaults to 0..n_vocab-1."""
        if ids is None:
            ids = np.arange(logits.shape[0], dtype=np.int64)  # int64 (n_vocab,)
        return cls(ids, logits, False)

    def take(self, index: np.ndarray | slice, is_sorted: bool) -> Candidates:
        """Select entries by an index array or slice."""
        return Candidates(self.ids[index], self.logits[index], is_sorted)


# --- candidate steps -------------------------------------------------------------------------------


def _top_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Return the indices of the ``k`` largest of ``values`` (float32 (n,)), in no particular order.

    Exact, and much faster than ``argpartition`` over a whole vocabulary: the k-th largest value of a
    strided subsample is a lower bound on the k-th largest overall, so the entries at or above it are a
    small superset of the answer, which ``argpartition`` then finishes.
    """
    n = values.shape[0]
    if k >= n:
        return np.arange(n)
    stride = n // max(8 * k, _SUBSAMPLE)
    if stride >= 2:
        sample = values[::stride]  # float32 (n // stride,)
        bound = np.partition(sample, sample.shape[0] - k)[sample.shape[0] - k]
        if np.isfinite(bound):
            sup = np.flatnonzero(values >= bound)  # int64 (>= k,) superset of the top k
            if sup.shape[0] > k:
                return sup[np.argpartition(values[sup], sup.shape[0] - k)[sup.shape[0] - k :]]
            return sup
    return np.argpartition(values, n - k)[n - k :]


def _sorted(c: Candidates) -> Candidates:
    if c.is_sorted:
        return c
    order = np.argsort(-c.logits)  # int64 (n,)
    return c.take(order, True)


def _probs(logits: np.ndarray) -> np.ndarray:
    """Softmax of ``float32 (n,)`` logits as llama.cpp computes it (float32)."""
    top = logits.max()
    if not np.isfinite(top):
        raise ValueError("cannot sample: every candidate token has logit -inf (or NaN)")
    p = np.exp(logits - top)  # float32 (n,)
    return p / p.sum(dtype=np.float32)


def softmax(c: Candidates) -> tuple[Candidates, np.ndarray]:
    """Sort candidates by descending logit and return them with their probabilities ``float32 (n,)``."""
    c = _sorted(c)
    return c, _probs(c.logits)


def top_k(c: Candidates, k: int, min_keep: int = 1) -> Candidates:
    """Keep the ``k`` largest logits, sorted (``llama_sample_top_k``); ``k <= 0`` or ``k >= n`` keeps all.

    Costs O(n) plus a sort of ``k`` entries (see :func:`_top_indices`).
    """
    n = c.ids.shape[0]
    if k <= 0 or k >= n:
        return c
    k = max(k, min_keep)
    if c.is_sorted:
        return c.take(slice(0, k), True)
    return _sorted(c.take(_top_indices(c.logits, k), False))


def tail_free(c: Candidates, z: float, min_keep: int = 1) -> Candidates:
    """Tail-free sampling (``llama_sample_tail_free``); ``z >= 1`` disables."""
    if z >= 1.0 or c.ids.shape[0] <= 2:
        return c
    c, p = softmax(c)
    d2 = np.abs(np.diff(p, n=2))  # float32 (n - 2,) |second derivative| (sign of diff irrelevant)
    total = d2.sum(dtype=np.float32)
    d2 = d2 / total if total > 1e-6 else np.full_like(d2, 1.0 / d2.shape[0])
    cum = np.cumsum(d2)  # float32 (n - 2,)
    hits = np.flatnonzero(cum > z)
    hits = hits[hits >= min_keep]
    last = int(hits[0]) if hits.size else c.ids.shape[0]
    return c.take(slice(0, last), True)


def typical(c: Candidates, p: float, min_keep: int = 1) -> Candidates:
    """Locally typical sampling (``llama_sample_typical``); ``p >= 1`` disables. The result is unsorted."""
    if p >= 1.0:
        return c
    c, probs = softmax(c)
    with np.errstate(divide="ignore"):
        logp = np.log(probs)  # float32 (n,)
    entropy = -np.sum(np.where(probs > 0, probs * logp, 0.0), dtype=np.float32)
    shifted = np.abs(-logp - entropy)  # float32 (n,)
    order = np.argsort(shifted)  # int64 (n,)
    cum = np.cumsum(probs[order])  # float32 (n,)
    hits = np.flatnonzero(cum > p)
    hits = hits[hits >= min_keep - 1]
    last = int(hits[0]) + 1 if hits.size else c.ids.shape[0]
    return c.take(order[:last], False)


def top_p(c: Candidates, p: float, min_keep: int = 1) -> Candidates:
    """Nucleus sampling (``llama_sample_top_p``); ``p >= 1`` disables. The result is sorted.

    For a large unsorted input only a growing prefix of the largest logits is sorted, until it holds
    probability mass ``p``; the result equals that of a full sort.
    """
    if p >= 1.0:
        return c
    n = c.ids.shape[0]
    probs = _probs(c.logits)  # float32 (n,) in c's order
    m = n if c.is_sorted else min(n, _PREFIX_START)
    while True:
        if c.is_sorted:
            idx = np.arange(m)
        elif m < n:
            part = _top_indices(c.logits, m)  # int64 (m,)
            idx = part[np.argsort(-c.logits[part])]
        else:
            idx = np.argsort(-c.logits)
        cum = np.cumsum(probs[idx])  # float32 (m,)
        hits = np.flatnonzero(cum >= p)
        hits = hits[hits + 1 >= min_keep]
        if hits.size or m == n:
            last = int(hits[0]) + 1 if hits.size else n
            return c.take(idx[:last], True)
        m = min(n, m * 4)


def min_p(c: Candidates, p: float, min_keep: int = 1) -> Candidates:
    """Min-p sampling (``llama_sample_min_p``): keep tokens with probability >= ``p`` x the largest.

    ``p <= 0`` disables. Computed on logits (``logit >= max + log p``) without sorting.
    """
    if p <= 0.0 or c.ids.shape[0] == 0:
        return c
    threshold = c.logits.max() + np.float32(math.log(p))
    keep = c.logits >= threshold  # bool (n,)
    if int(keep.sum()) >= min_keep:
        return c.take(keep, c.is_sorted)
    return top_k(c, min_keep)


def temperature(c: Candidates, temp: float) -> Candidates:
    """Divide the logits by ``temp`` (> 0) (``llama_sample_temperature``)."""
    return Candidates(c.ids, c.logits / np.float32(temp), c.is_sorted)


def _draw_index(c: Candidates, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """Draw an index into ``c``; also return the candidates' probabilities ``float32 (n,)``.

    Inverse-CDF sampling. A cumulative sum is slow in numpy, so for many candidates a block is chosen
    first from per-block sums and the cumulative sum is taken only inside that block.
    """
    probs = _probs(c.logits)  # float32 (n,)
    n = probs.shape[0]
    base, local = 0, probs
    if n > 4 * _DRAW_BLOCK:
        nb = -(-n // _DRAW_BLOCK)
        padded = np.zeros(nb * _DRAW_BLOCK, dtype=np.float32)  # float32 (nb * B,)
        padded[:n] = probs
        block_cdf = np.cumsum(padded.reshape(nb, _DRAW_BLOCK).sum(axis=1), dtype=np.float64)  # (nb,)
        u = rng.random() * block_cdf[-1]
        b = min(int(np.searchsorted(block_cdf, u, side="right")), nb - 1)
        while block_cdf[b] == (block_cdf[b - 1] if b else 0.0):  # rounding put u on an empty block
            b -= 1
        u -= block_cdf[b - 1] if b else 0.0
        base = b * _DRAW_BLOCK
        local = probs[base : base + _DRAW_BLOCK]  # float32 (<= B,)
    else:
        u = rng.random() * float(np.sum(probs, dtype=np.float64))
    cdf = np.cumsum(local, dtype=np.float64)  # float64 (<= B,) or (n,)
    i = int(np.searchsorted(cdf, u, side="right"))
    if i >= cdf.shape[0]:  # rounding at the very top: the last entry with non-zero probability
        i = int(np.flatnonzero(local > 0)[-1])
    return base + i, probs


def draw(c: Candidates, rng: np.random.Generator) -> int:
    """Draw one token id from the softmax of the candidates (``llama_sample_token``)."""
    return int(c.ids[_draw_index(c, rng)[0]])


def mirostat_v1(
    c: Candidates, tau: float, eta: float, mu: float, rng: np.random.Generator, m: int = MIROSTAT_M
) -> tuple[int, float]:
    """Mirostat 1.0 (``llama_sample_token_mirostat``): draw a token and return it with the updated mu.

    Estimates the Zipf exponent ``s`` from the ``m`` most likely tokens, derives the top-k size that
    gives surprise ``mu``, draws from it and moves ``mu`` by ``eta`` towards the target ``tau``.
    Where llama.cpp would turn a computed k below 1 into "keep everything", k is clamped to [1, n].
    """
    n = c.ids.shape[0]
    probs = _probs(c.logits)  # float32 (n,)
    top = _top_indices(c.logits, min(m, n))
    p = np.sort(probs[top])[::-1].astype(np.float64)  # float64 (min(m, n),) descending
    t = np.log(np.arange(2.0, p.shape[0] + 1) / np.arange(1.0, p.shape[0]))  # float64 (min(m, n) - 1,)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        b = np.log(p[:-1] / p[1:])  # float64 (min(m, n) - 1,)
        s_hat = float(np.sum(t * b) / np.sum(t * t))
        eps = s_hat - 1.0
        k = (eps * 2.0**mu / (1.0 - float(n) ** -eps)) ** (1.0 / s_hat)
    k_int = int(k) if math.isfinite(k) and 1.0 <= k < n else (n if k >= n else 1)
    c = top_k(c, k_int)
    i, probs = _draw_index(c, rng)
    return int(c.ids[i]), mu - eta * (-math.log2(float(probs[i])) - tau)


def mirostat_v2(
    c: Candidates, tau: float, eta: float, mu: float, rng: np.random.Generator
) -> tuple[int, float]:
    """Mirostat 2.0 (``llama_sample_token_mirostat_v2``): draw a token and return it with the updated mu.

    Keeps the tokens whose surprise ``-log2 p`` is at most ``mu`` (at least the most likely one) — the
    prefix llama.cpp keeps after sorting — draws from them and moves ``mu`` by ``eta`` towards ``tau``.
    """
    probs = _probs(c.logits)  # float32 (n,)
    with np.errstate(divide="ignore"):
        keep = np.flatnonzero(-np.log2(probs) <= mu)  # int64 (n_keep,)
    if keep.size == 0:
        keep = np.array([int(np.argmax(probs))])
    c = c.take(keep, c.is_sorted)
    i, probs = _draw_index(c, rng)
    return int(c.ids[i]), mu - eta * (-math.log2(float(probs[i])) - tau)


# --- the composed sampler --------------------------------------------------------------------------


class Sampler:
    """The llama.cpp sampler chain configured by :class:`SamplingOptions`; build with :func:`make_sampler`.

    Holds its own ``numpy.random.Generator`` (seeded from ``options.seed``; None = fresh OS entropy)
    and the mirostat state ``mu`` (starting at ``2 * mirostat_tau``). Use one sampler per generation
    call; it is not thread-safe.
    """

    def __init__(self, options: SamplingOptions, n_vocab: int):
        self.options = options
        self.n_vocab = n_vocab
        self.logits_processors: list[LogitsProcessor] = make_logits_processors(options, n_vocab)
        """Logit bias and penalties from ``options``, applied by :meth:`sample` before the chain."""
        self._all_ids = np.arange(n_vocab, dtype=np.int64)  # int64 (n_vocab,)
        self.rng = np.random.default_rng(options.seed)
        self.mu = 2.0 * options.mirostat_tau

    def sample(self, logits: np.ndarray, history: Sequence[int] = ()) -> int:
        """Pick the next token: logit bias and penalties, then the chain (:meth:`choose`).

        Args:
            logits: float32 (n_vocab,) the model's output for the last position (not modified).
            history: token ids so far (prompt and generated), oldest first; the penalty window is its
                last ``repeat_last_n`` entries.

        Returns:
            The chosen token id.
        """
        if logits.shape != (self.n_vocab,):
            raise ValueError(f"expected logits of shape ({self.n_vocab},), got {logits.shape}")
        x = np.array(logits, dtype=np.float32)  # float32 (n_vocab,) private copy
        for processor in self.logits_processors:
            x = processor(history, x)
        return self.choose(x)

    def choose(self, logits: np.ndarray) -> int:
        """The chain alone, on already processed logits: argmax at temperature <= 0, else truncate and draw.

        Args:
            logits: float32 (n_vocab,) (not modified).

        Returns:
            The chosen token id.
        """
        o = self.options
        if o.temperature <= 0.0:
            return int(np.argmax(logits))
        c = Candidates.from_logits(logits, self._all_ids)
        if o.mirostat == 1:
            token, self.mu = mirostat_v1(temperature(c, o.temperature), o.mirostat_tau, o.mirostat_eta,
                                         self.mu, self.rng)
            return token
        if o.mirostat == 2:
            token, self.mu = mirostat_v2(temperature(c, o.temperature), o.mirostat_tau, o.mirostat_eta,
                                         self.mu, self.rng)
            return token
        c = top_k(c, o.top_k)
        c = tail_free(c, o.tfs_z)
        c = typical(c, o.typical_p)
        c = top_p(c, o.top_p)
        c = min_p(c, o.min_p)
        c = temperature(c, o.temperature)
        return draw(c, self.rng)


def make_sampler(options: SamplingOptions, n_vocab: int) -> Sampler:
    """Build the sampler chain for ``options`` over a vocabulary of ``n_vocab`` tokens.

    Seed semantics: ``options.seed`` seeds the sampler's own generator, so two samplers made with the
    same seed, fed the same logits and histories, return the same tokens; ``seed=None`` draws fresh OS
    entropy, so each sampler (each generation call) differs.

    Raises:
        ValueError: a ``logit_bias`` token id is outside the vocabulary.
    """
    return Sampler(options, n_vocab)
