"""8-bit activation blocks for the integer dot-product kernels (ggml's ``Q8_K``), as llama.cpp makes them.

``Q8_K`` block (256 elements; activations only, never stored in files): float32 ``d``, int8 ``qs[256]``,
int16 ``bsums[16]`` (sum of each 16 consecutive ``qs``); x ~= d * q. Quantization follows ggml's
``quantize_row_q8_K``: the element of largest magnitude maps to -128 exactly (``iscale = -128/max``), the
others to ``min(127, round_half_even(iscale*x))``; an all-zero block gets d = 0. Relative error of a dot
product with a weight row is about 0.3-1% of ``|w||x|``, the same as llama.cpp's own decode path.

Here the three fields are kept in three arrays (structure of arrays) so that kernels index them directly:
``qs`` int8 (n,), ``d`` float32 (n/256,), ``bsums`` int16 (n/16,).

For the legacy 32-element weight types, :class:`Q80` and :class:`Q81` hold ggml's ``Q8_0`` / ``Q8_1``
activation blocks (fp16 ``d = amax/127``, codes ``round_half_even(x*127/amax)`` in [-127, 127]; ``Q8_1``
adds fp16 ``s = d*sum(q)``), bit-identical to ggml's x86 (AVX2) quantizers; see the class docstrings.
"""

from __future__ import annotations

import numba
import numpy as np

from .fp16 import f32_round_f16

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


# --- legacy 32-element activation blocks (Q8_0 / Q8_1) for the Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 integer kernels ---

QK8 = 32
"""Elements per Q8_0 / Q8_1 activation block."""


@numba.njit(cache=True)
def _quantize_q8_block32(x, o, qs):
    """Quantize x[o:o+32] into qs[o:o+32] as ggml's AVX2 ``quantize_row_q8_0``; return (d float32, sum q)."""
    amax = np.float32(0)
    for j in range(QK8):
        amax = max(amax, abs(x[o + j]))
    d = amax / np.float32(127)
    iscale = np.float32(127) / amax if amax != 0 else np.float32(0)
    s = 0
    for j in range(QK8):
        q = np.int32(np.rint(x[o + j] * iscale))
        qs[o + j] = q
        s += q
    return d, s


@numba.njit(cache=True)
def quantize_q8_0_into(x, qs, d, sums):
    """Q8_0: x float32 (n,) -> qs int8 (n,), d float32 (n/32,) (fp16 value), sums int16 (n/32,); n%32 == 0."""
    for b in range(x.shape[0] // QK8):
        db, s = _quantize_q8_block32(x, QK8 * b, qs)
        d[b] = f32_round_f16(db)
        sums[b] = s


@numba.njit(cache=True)
def quantize_q8_1_into(x, qs, d, s):
    """Q8_1: x float32 (n,) -> qs int8 (n,), d float32 (n/32,), s float32 (n/32,) (both fp16-rounded)."""
    for b in range(x.shape[0] // QK8):
        db, sb = _quantize_q8_block32(x, QK8 * b, qs)
        d[b] = f32_round_f16(db)
        s[b] = f32_round_f16(db * np.float32(sb))  # ggml: the unrounded d times the integer sum


class Q80:
    """Activations of ``n_tok`` tokens quantized to ggml's ``Q8_0`` (for Q4_0, Q5_0 and Q8_0 weights).

    ``Q8_0`` block (32 elements): fp16 ``d``, int8 ``qs[32]``; x ~= d * q. Quantization follows ggml's AVX2
    ``quantize_row_q8_0`` (what llama.cpp's x86 CPU backend multiplies with): ``amax = max|x|``, ``d =
    fp16(amax/127)``, ``q = round_half_even(x * (127/amax))`` (float32 product; codes in [-127, 127]); an
    all-zero block gets d = 0 and q = 0. The products use the fp16-rounded ``d``, as ggml does.

    Held as arrays (structure of arrays): ``qs`` int8 (n_tok, n), ``d`` float32 (n_tok, n/32) (the fp16
    value), and ``sums`` int16 (n_tok, n/32), the integer sum of each block's ``qs`` (derived, not part of
    ggml's block: the kernels apply the Q4_0/Q5_0 offsets -8/-16 through it).
    """

    __slots__ = ("qs", "d", "sums")

    def __init__(self, x: np.ndarray) -> None:
        """Quantize x float32 (n_tok, n) or (n,) (treated as one token); n % 32 == 0."""
        x = _tokens(x)  # float32 (n_tok, n)
        n_tok, n = x.shape
        self.qs = np.empty((n_tok, n), np.int8)  # int8 (n_tok, n)
        self.d = np.empty((n_tok, n // QK8), np.float32)  # float32 (n_tok, n/32)
        self.sums = np.empty((n_tok, n // QK8), np.int16)  # int16 (n_tok, n/32)
        quantize_q8_0_into(x.reshape(-1), self.qs.reshape(-1), self.d.reshape(-1), self.sums.reshape(-1))

    def dequantize(self) -> np.ndarray:
        """float32 (n_tok, n) values d*q."""
        return _dequantize32(self.qs, self.d)


class Q81:
    """Activations of ``n_tok`` tokens quantized to ggml's ``Q8_1`` (for Q4_1 and Q5_1 weights).

    ``Q8_1`` block (32 elements): fp16 ``d``, fp16 ``s``, int8 ``qs[32]``; ``d`` and ``qs`` exactly as
    :class:`Q80`, and ``s = fp16(d_f32 * sum(qs))`` with the float32 ``d = amax/127`` before its rounding
    (ggml's ``quantize_row_q8_1``). A weight block's ``m`` multiplies ``s`` (``sum_i m * d*q_i``).

    Held as arrays: ``qs`` int8 (n_tok, n), ``d`` float32 (n_tok, n/32), ``s`` float32 (n_tok, n/32) (both
    the fp16 values).
    """

    __slots__ = ("qs", "d", "s")

    def __init__(self, x: np.ndarray) -> None:
        """Quantize x float32 (n_tok, n) or (n,) (treated as one token); n % 32 == 0."""
        x = _tokens(x)  # float32 (n_tok, n)
        n_tok, n = x.shape
        self.qs = np.empty((n_tok, n), np.int8)  # int8 (n_tok, n)
        self.d = np.empty((n_tok, n // QK8), np.float32)  # float32 (n_tok, n/32)
        self.s = np.empty((n_tok, n // QK8), np.float32)  # float32 (n_tok, n/32)
        quantize_q8_1_into(x.reshape(-1), self.qs.reshape(-1), self.d.reshape(-1), self.s.reshape(-1))

    def dequantize(self) -> np.ndarray:
        """float32 (n_tok, n) values d*q."""
        return _dequantize32(self.qs, self.d)


def _tokens(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    x = x.reshape(-1, x.shape[-1])  # float32 (n_tok, n)
    if x.shape[1] % QK8:
        raise ValueError(f"Q8_0/Q8_1 need a multiple of {QK8} elements per token, got {x.shape[1]}")
    return x


def _dequantize32(qs: np.ndarray, d: np.ndarray) -> np.ndarray:
    n_tok, n = qs.shape
    return (qs.reshape(-1, QK8).astype(np.float32) * d.reshape(-1, 1)).reshape(n_tok, n)


def quantize_q8_0_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain numpy ggml AVX2 ``quantize_row_q8_0``: x float32 (n,) -> (qs, d, sums) like the numba kernel."""
    qs, d32 = _q8_reference(x)
    sums = qs.reshape(-1, QK8).astype(np.int32).sum(axis=1).astype(np.int16)  # int16 (n/32,)
    return qs.reshape(-1), d32.astype(np.float16).astype(np.float32), sums


def quantize_q8_1_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain numpy ggml ``quantize_row_q8_1``: x float32 (n,) -> (qs, d, s) as :func:`quantize_q8_1_into`."""
    qs, d32 = _q8_reference(x)
    total = qs.reshape(-1, QK8).astype(np.int32).sum(axis=1).astype(np.float32)  # float32 (n/32,)
    s = (d32 * total).astype(np.float16).astype(np.float32)  # float32 (n/32,)
    return qs.reshape(-1), d32.astype(np.float16).astype(np.float32), s


def _q8_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 (n/32, 32) codes and float32 (n/32,) unrounded d = amax/127 of ggml's Q8_0/Q8_1 quantizers."""
    xb = np.asarray(x, dtype=np.float32).reshape(-1, QK8)  # float32 (nb, 32)
    amax = np.abs(xb).max(axis=1)  # float32 (nb,)
    d32 = (amax / np.float32(127)).astype(np.float32)  # float32 (nb,)
    with np.errstate(divide="ignore"):
        iscale = np.where(amax != 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)  # (nb,)
    qs = np.rint(xb * iscale[:, None]).astype(np.int8)  # int8 (nb, 32)
    return qs, d32
