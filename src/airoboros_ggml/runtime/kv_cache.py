"""A preallocated key/value cache, written at the position of each evaluated token."""

from __future__ import annotations

import numpy as np

from ..hparams import HParams


class KVCache:
    """Keys and values of every layer for ``n_ctx`` positions (float32).

    ``np.zeros`` maps untouched pages lazily, so resident memory grows with the positions actually used.
    """

    def __init__(self, hparams: HParams, n_ctx: int):
        self.n_ctx = n_ctx
        shape = (hparams.n_layer, hparams.n_head_kv, n_ctx, hparams.head_dim)
        self.k = np.zeros(shape, dtype=np.float32)  # float32 (n_layer, n_head_kv, n_ctx, head_dim)
        self.v = np.zeros(shape, dtype=np.float32)  # float32 (n_layer, n_head_kv, n_ctx, head_dim)
        self.tokens: list[int] = []
        """Token ids whose keys/values occupy positions 0..len(tokens)-1."""

    @property
    def n_past(self) -> int:
        """Number of positions filled."""
        return len(self.tokens)

    @property
    def nbytes(self) -> int:
        """Bytes reserved (virtual) by the cache."""
        return self.k.nbytes + self.v.nbytes

    def truncate(self, n: int) -> None:
        """Forget every position from ``n`` on (their slots are overwritten by later tokens)."""
        del self.tokens[n:]

    def clear(self) -> None:
        """Forget everything."""
        self.tokens.clear()
