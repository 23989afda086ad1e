"""A preallocated key/value cache, written at the position of each evaluated token."""

from __future__ import annotations

import mmap

import numpy as np

from ..hparams import HParams

KV_TYPES = {"f16": np.float16, "f32": np.float32}
"""Storage types of the cache: ``f16`` (as llama.cpp; half the memory) or ``f32`` (exact)."""


def _lazy_zeros(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A zero array on an anonymous map whose pages become resident only when written.

    Transparent huge pages are refused for it: with them, writing one position of a head would make a
    whole 2 MiB page resident, and a short prompt would fill the cache's full size in RSS.
    """
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    buf = mmap.mmap(-1, max(nbytes, 1))
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        try:
            buf.madvise(mmap.MADV_NOHUGEPAGE)
        except OSError:  # pragma: no cover - kernels without THP
            pass
    return np.frombuffer(buf, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize).reshape(shape)


class KVCache:
    """Keys and values of every layer for ``n_ctx`` positions.

    Resident memory grows with the positions actually used (see :func:`_lazy_zeros`).

    Args:
        hparams: the model's hyperparameters.
        n_ctx: positions to hold.
        kv_type: ``"f16"`` (default, as llama.cpp) or ``"f32"``.
    """

    def __init__(self, hparams: HParams, n_ctx: int, kv_type: str = "f16"):
        if kv_type not in KV_TYPES:
            raise ValueError(f"kv_type must be one of {', '.join(KV_TYPES)}, got {kv_type!r}")
        self.n_ctx = n_ctx
        self.kv_type = kv_type
        shape = (hparams.n_layer, hparams.n_head_kv, n_ctx, hparams.head_dim)
        self.k = _lazy_zeros(shape, KV_TYPES[kv_type])  # (n_layer, n_head_kv, n_ctx, head_dim)
        self.v = _lazy_zeros(shape, KV_TYPES[kv_type])  # (n_layer, n_head_kv, n_ctx, head_dim)
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
