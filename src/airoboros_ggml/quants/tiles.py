"""Vectorisable float32 row decoders for matmul weight tiles (not bit-exact; ~1 ulp, see below).

:func:`decode_tile_kernel` gives the kernel that dequantizes consecutive rows into a float32 tile for BLAS.
Unlike the bit-exact :func:`.kernels.decode_row` (integer arithmetic, which numba widens to 64-bit lanes and does not
vectorise), these decoders extract bit fields with float arithmetic (``floor``) and may fuse
``d*q + m`` into one FMA, so a value can differ from ggml's by an ulp; products stay within 1e-6 relative
of the exact ones. :func:`.kernels.dequantize_range` / ``dequantize()`` remain bit-exact.

Loop shape (measured with the assembly): the innermost loops run over the 16 or 32 bytes of a block with
a trip count passed in at run time (``n16``/``n32``), and carry several blocks per iteration; with a
literal trip count LLVM fully unrolls them and then vectorises the *block* loop with gathers/scatters,
which is several times slower. Decoders overwrite, so a row's last partial group of blocks is simply
decoded again from ``nb - 4`` (idempotent).
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from .fused import _i8f
from .kernels import Q2_K, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K, Q8_0, _decode_row_switch, _h, _k4_scale_min
from .specialise import jit_specialised

_16 = np.float32(16)
_i16 = np.float32(0.0625)


@numba.njit(cache=True, inline="always")
def _q4_quad_dec(row, out, o, xo, qo, bs, n16, has_min):
    """Decode 4 Q4_0/Q4_1 blocks starting at row[o] into out[xo:xo+128]."""
    d0 = _h(row, o)
    d1 = _h(row, o + bs)
    d2 = _h(row, o + 2 * bs)
    d3 = _h(row, o + 3 * bs)
    e = np.float32(-8)
    m0 = _h(row, o + 2) if has_min else e * d0
    m1 = _h(row, o + bs + 2) if has_min else e * d1
    m2 = _h(row, o + 2 * bs + 2) if has_min else e * d2
    m3 = _h(row, o + 3 * bs + 2) if has_min else e * d3
    for j in range(n16):
        v0 = np.float32(row[o + qo + j])
        v1 = np.float32(row[o + bs + qo + j])
        v2 = np.float32(row[o + 2 * bs + qo + j])
        v3 = np.float32(row[o + 3 * bs + qo + j])
        h0 = np.floor(v0 * _i16)
        h1 = np.floor(v1 * _i16)
        h2 = np.floor(v2 * _i16)
        h3 = np.floor(v3 * _i16)
        out[xo + j] = d0 * (v0 - _16 * h0) + m0
        out[xo + 16 + j] = d0 * h0 + m0
        out[xo + 32 + j] = d1 * (v1 - _16 * h1) + m1
        out[xo + 48 + j] = d1 * h1 + m1
        out[xo + 64 + j] = d2 * (v2 - _16 * h2) + m2
        out[xo + 80 + j] = d2 * h2 + m2
        out[xo + 96 + j] = d3 * (v3 - _16 * h3) + m3
        out[xo + 112 + j] = d3 * h3 + m3


@numba.njit(cache=True, fastmath=True)
def _dec_q4_legacy(row, out, has_min, n16):
    """Q4_0/Q4_1 row uint8 (nb*18|20,) -> out float32 (nb*32,) (nb >= 4)."""
    nb = out.shape[0] // 32
    bs = 20 if has_min else 18
    qo = 4 if has_min else 2
    for g in range(nb // 4):
        _q4_quad_dec(row, out, 4 * g * bs, 128 * g, qo, bs, n16, has_min)
    if nb % 4:
        _q4_quad_dec(row, out, (nb - 4) * bs, 32 * (nb - 4), qo, bs, n16, has_min)


@numba.njit(cache=True, inline="always")
def _q8_pair_dec(row, out, b, n32):
    """Decode Q8_0 blocks b and b+1 of the row into out[32b:32b+64]."""
    o = 34 * b
    d0 = _h(row, o)
    d1 = _h(row, o + 34)
    for j in range(n32):
        out[32 * b + j] = d0 * _i8f(row, o + 2 + j)
        out[32 * b + 32 + j] = d1 * _i8f(row, o + 36 + j)


@numba.njit(cache=True, fastmath=True)
def _dec_q8_0(row, out, n32):
    """Q8_0 row uint8 (nb*34,) -> out float32 (nb*32,) (nb >= 2)."""
    nb = out.shape[0] // 32
    for g in range(nb // 2):
        _q8_pair_dec(row, out, 2 * g, n32)
    if nb % 2:
        _q8_pair_dec(row, out, nb - 2, n32)


@numba.njit(cache=True, fastmath=True)
def _dec_q45_k(row, out, five, n32):
    """Q4_K (five False) / Q5_K (True) row -> out float32 (nb*256,)."""
    nb = out.shape[0] // 256
    bs = 176 if five else 144
    qo = 48 if five else 16
    for b in range(nb):
        o = b * bs
        d = _h(row, o)
        dm = _h(row, o + 2)
        for k in range(4):
            s0, mn0 = _k4_scale_min(row, o + 4, 2 * k)
            s1, mn1 = _k4_scale_min(row, o + 4, 2 * k + 1)
            a0 = d * np.float32(s0)
            c0 = dm * np.float32(mn0)
            a1 = d * np.float32(s1)
            c1 = dm * np.float32(mn1)
            sh = np.float32(1.0 / (1 << (2 * k)))
            ob = 256 * b + 64 * k
            q = o + qo + 32 * k
            for j in range(n32):
                v = np.float32(row[q + j])
                h = np.floor(v * _i16)
                lo = v - _16 * h
                if five:
                    hb = np.floor(np.float32(row[o + 16 + j]) * sh)  # qh >> 2k
                    t1 = np.floor(hb * np.float32(0.5))
                    lo += _16 * (hb - np.float32(2) * t1)  # bit 2k
                    h += _16 * (t1 - np.float32(2) * np.floor(t1 * np.float32(0.5)))  # bit 2k+1
                out[ob + j] = a0 * lo - c0
                out[ob + 32 + j] = a1 * h - c1


@numba.njit(cache=True, inline="always")
def _q6_dec(row, out, o, ob, h, ll, a0, a1, a2, a3):
    """Elements ll, ll+32, ll+64, ll+96 of half h of the Q6_K block at row[o] (scales a0..a3 incl. d)."""
    va = np.float32(row[o + 64 * h + ll])
    vc = np.float32(row[o + 64 * h + ll + 32])
    vh = np.float32(row[o + 128 + 32 * h + ll])
    ha = np.floor(va * _i16)
    hc = np.floor(vc * _i16)
    h1 = np.floor(vh * np.float32(0.25))
    h2 = np.floor(vh * np.float32(0.0625))
    h3 = np.floor(vh * np.float32(0.015625))
    out[ob + ll] = a0 * (va - _16 * ha + _16 * (vh - np.float32(4) * h1) - np.float32(32))
    out[ob + ll + 32] = a1 * (vc - _16 * hc + _16 * (h1 - np.float32(4) * h2) - np.float32(32))
    out[ob + ll + 64] = a2 * (ha + _16 * (h2 - np.float32(4) * h3) - np.float32(32))
    out[ob + ll + 96] = a3 * (hc + _16 * h3 - np.float32(32))


@numba.njit(cache=True, fastmath=True)
def _dec_q6_k(row, out, n16):
    """Q6_K row uint8 (nb*210,) -> out float32 (nb*256,); scales hoisted into locals per 128 elements."""
    nb = out.shape[0] // 256
    for b in range(nb):
        o = b * 210
        d = _h(row, o + 208)
        for h in range(2):
            so = o + 192 + 8 * h
            a0 = d * _i8f(row, so)
            a1 = d * _i8f(row, so + 2)
            a2 = d * _i8f(row, so + 4)
            a3 = d * _i8f(row, so + 6)
            b0 = d * _i8f(row, so + 1)
            b1 = d * _i8f(row, so + 3)
            b2 = d * _i8f(row, so + 5)
            b3 = d * _i8f(row, so + 7)
            ob = 256 * b + 128 * h
            for ln in range(n16):
                _q6_dec(row, out, o, ob, h, ln, a0, a1, a2, a3)
                _q6_dec(row, out, o, ob, h, ln + 16, b0, b1, b2, b3)


@numba.njit(cache=True, fastmath=True)
def _dec_q2_k(row, out, n16):
    """Q2_K row uint8 (nb*84,) -> out float32 (nb*256,)."""
    nb = out.shape[0] // 256
    for b in range(nb):
        o = b * 84
        d = _h(row, o + 80)
        dmin = _h(row, o + 82)
        for ln in range(n16):
            for h in range(2):
                for half in range(2):
                    ll = 16 * half + ln
                    v = np.float32(row[o + 16 + 32 * h + ll])
                    f1 = np.floor(v * np.float32(0.25))
                    f2 = np.floor(v * np.float32(0.0625))
                    f3 = np.floor(v * np.float32(0.015625))
                    ob = 256 * b + 128 * h + ll
                    for s, q in ((0, v - np.float32(4) * f1), (1, f1 - np.float32(4) * f2),
                                 (2, f2 - np.float32(4) * f3), (3, f3)):
                        sc = np.float32(row[o + 8 * h + 2 * s + half])
                        sh = np.floor(sc * _i16)  # min (high nibble); scale = low nibble
                        out[ob + 32 * s] = (d * (sc - _16 * sh)) * q - dmin * sh


_TILE_KERNELS: dict[int, Callable[..., None]] = {}
"""Kernels made by :func:`decode_tile_kernel`, by type."""


def decode_tile_kernel(code: int) -> Callable[[np.ndarray, int, np.ndarray], None]:
    """``kernel(raw, r0, out)``: out[i] = dequantized raw[r0 + i] (float32 (rows, n)) for rows of type ``code``.

    Single-threaded, GIL-free, vectorised. Falls back to the bit-exact :func:`.kernels.decode_row` for
    F32/F16, Q5_0/Q5_1 and Q3_K (whose integer decoders measured faster than float-trick ones) and for rows
    shorter than a block group. A closure over ``code`` (:mod:`.specialise`): the other types' decoders are
    pruned before typing, so a cold start compiles one decoder (Q4_1: ~1.5 s instead of ~4.5 s for all).
    """
    kernel = _TILE_KERNELS.get(code)
    if kernel is not None:
        return kernel

    def decode_tile_of_type(raw, r0, out):
        n = out.shape[1]
        n16 = np.int64(out.shape[1] // max(1, out.shape[1] // 16)) if n >= 16 else 16
        n32 = 2 * n16
        for i in range(out.shape[0]):
            row = raw[r0 + i]
            o = out[i]
            if (code == Q4_0 or code == Q4_1) and n >= 128:
                _dec_q4_legacy(row, o, code == Q4_1, n16)
            elif code == Q8_0 and n >= 64:
                _dec_q8_0(row, o, n32)
            elif code == Q4_K or code == Q5_K:
                _dec_q45_k(row, o, code == Q5_K, n32)
            elif code == Q6_K:
                _dec_q6_k(row, o, n16)
            elif code == Q2_K:
                _dec_q2_k(row, o, n16)
            else:
                _decode_row_switch(code, row, o)

    kernel = _TILE_KERNELS[code] = jit_specialised(decode_tile_of_type, str(code), nogil=True)
    return kernel
