"""8-bit activation blocks for the integer dot-product kernels (ggml's ``Q8_K``), as llama.cpp makes them.

``Q8_K`` block (256 elements; activations only, never stored in files): float32 ``d``, int8 ``qs[256]``,
int16 ``bsums[16]`` (sum of each 16 consecutive ``qs``); x ~= d * q. Quantization follows ggml's
``quantize_row_q8_K``: the element of largest magnitude maps to -128 exactly (``iscale = -128/max``), the
others to ``min(127, round_half_even(iscale*x))``; an all-zero block gets d = 0. Relative error of a dot
product with a weight row is about 0.3-1% of ``|w||x|``, the same as llama.cpp's own decode path.

Here the three fields are kept in three arrays (structure of arrays) so that kernels index them directly:
``qs`` int8 (n,), ``d`` float32 (n/256,), ``bsums`` int16 (n/16,).
"""

from __future__ import annotations

import numba
import numpy as np

QK_K = 256


@numba.njit(cache=True)
def quantize_q8_k_into(x, qs, d, bsums):
    """Quantize x float32 (n,) into qs int8 (n,), d float32 (n/256,), bsums int16 (n/16,); n % 256 == 0."""
    for b in range(x.shape[0] // QK_K):
        o = QK_K * b
        amax = np.float32(0)
        vmax = np.float32(0)
        for j in range(QK_K):
            a = abs(x[o + j])
            if a > amax:
                amax = a
                vmax = x[o + j]
        if amax == 0:
            d[b] = 0
            qs[o : o + QK_K] = 0
            bsums[16 * b : 16 * b + 16] = 0
            continue
        iscale = np.float32(-128) / vmax
        for j in range(QK_K):
            qs[o + j] = min(127, np.int32(np.rint(iscale * x[o + j])))
        for g in range(16):
            s = 0
            for j in range(16):
                s += qs[o + 16 * g + j]
            bsums[16 * b + g] = s
        d[b] = np.float32(1) / iscale


class Q8K:
    """Activations of ``n_tok`` tokens quantized to Q8_K, held as three arrays (see the module docstring)."""

    __slots__ = ("qs", "d", "bsums")

    def __init__(self, x: np.ndarray) -> None:
        """Quantize x float32 (n_tok, n) or (n,) (treated as one token); n % 256 == 0."""
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, x.shape[-1])  # float32 (n_tok, n)
        n_tok, n = x.shape
        if n % QK_K:
            raise ValueError(f"Q8_K needs a multiple of {QK_K} elements per token, got {n}")
        self.qs = np.empty((n_tok, n), np.int8)  # int8 (n_tok, n)
        self.d = np.empty((n_tok, n // QK_K), np.float32)  # float32 (n_tok, n/256)
        self.bsums = np.empty((n_tok, n // 16), np.int16)  # int16 (n_tok, n/16)
        # blocks never straddle tokens, so the batch quantizes as one long vector
        quantize_q8_k_into(x.reshape(-1), self.qs.reshape(-1), self.d.reshape(-1), self.bsums.reshape(-1))

    def dequantize(self) -> np.ndarray:
        """float32 (n_tok, n) values d*q."""
        n_tok, n = self.qs.shape
        return (self.qs.reshape(-1, QK_K).astype(np.float32) * self.d.reshape(-1, 1)).reshape(n_tok, n)


def quantize_q8_k_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain numpy ggml ``quantize_row_q8_K``: x float32 (n,) -> (qs, d, bsums) as :func:`quantize_q8_k_into`."""
    xb = np.asarray(x, dtype=np.float32).reshape(-1, QK_K)  # float32 (nb, 256)
    vmax = xb[np.arange(xb.shape[0]), np.argmax(np.abs(xb), axis=1)]  # float32 (nb,) first largest |x|
    safe = np.where(vmax == 0, np.float32(1), vmax)
    iscale = (np.float32(-128) / safe).astype(np.float32)  # float32 (nb,)
    q = np.minimum(127, np.rint(iscale[:, None] * xb)).astype(np.int8)  # int8 (nb, 256)
    q[vmax == 0] = 0
    d = np.where(vmax == 0, np.float32(0), np.float32(1) / iscale).astype(np.float32)
    bsums = q.reshape(-1, 16).astype(np.int16).sum(axis=1, dtype=np.int16)  # int16 (n/16,)
    return q.reshape(-1), d, bsums
