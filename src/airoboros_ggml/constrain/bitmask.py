"""Apply llguidance's allowed-token bitmask to a logits vector.

The mask is int32 ``(ceil(n_vocab / 32),)``: bit ``b`` of word ``w`` allows token ``32 * w + b``. Tokens
whose bit is clear get ``-inf``; words that are all ones (``-1``, the common case in free text) are skipped.
"""

from __future__ import annotations

import numba
import numpy as np


def bitmask_words(n_vocab: int) -> int:
    """Number of int32 words of a mask over ``n_vocab`` tokens."""
    return (n_vocab + 31) // 32


@numba.njit(cache=True)
def apply_bitmask(logits: np.ndarray, bitmask: np.ndarray) -> None:
    """Set the logits of tokens not allowed by ``bitmask`` to ``-inf``, in place.

    Args:
        logits: float32 (n_vocab,).
        bitmask: int32 (n_words,); tokens at or past ``32 * n_words`` are disallowed.
    """
    n_vocab = logits.shape[0]
    n_words = bitmask.shape[0]
    for w in range(n_words):
        word = bitmask[w]
        if word == -1:
            continue
        base = w * 32
        for b in range(min(32, n_vocab - base)):
            if (word >> b) & 1 == 0:
                logits[base + b] = -np.inf
    for i in range(n_words * 32, n_vocab):
        logits[i] = -np.inf


def apply_bitmask_reference(logits: np.ndarray, bitmask: np.ndarray) -> None:
    """Plain-numpy version of :func:`apply_bitmask` (the test oracle)."""
    bits = np.unpackbits(bitmask.astype("<i4").view(np.uint8), bitorder="little")  # uint8 (32 * n_words,)
    allowed = np.zeros(logits.shape[0], dtype=bool)  # bool (n_vocab,)
    n = min(len(bits), logits.shape[0])
    allowed[:n] = bits[:n].astype(bool)
    logits[~allowed] = -np.inf
