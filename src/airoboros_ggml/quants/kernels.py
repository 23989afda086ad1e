"""Numba kernels: bit-exact row dequantizers and fused matrix-vector products.

Block layouts (little-endian; ``f16`` = IEEE half; byte offsets within one block):

* ``Q4_0`` (32 el, 18 B): f16 d @0; qs[16] @2. Element j<16 = low nibble of qs[j], j>=16 = high nibble of
  qs[j-16]; x = d*(q-8).
* ``Q4_1`` (32 el, 20 B): f16 d @0, f16 m @2; qs[16] @4 as Q4_0; x = d*q + m.
* ``Q5_0`` (32 el, 22 B): f16 d @0; u32 qh @2 (bit j = 5th bit of element j); qs[16] @6; x = d*(q-16).
* ``Q5_1`` (32 el, 24 B): f16 d @0, f16 m @2; u32 qh @4; qs[16] @8; x = d*q + m.
* ``Q8_0`` (32 el, 34 B): f16 d @0; int8 qs[32] @2; x = d*q.
* ``Q2_K`` (256 el, 84 B): scales[16] @0 (low nibble scale, high nibble min per 16 elements); qs[64] @16;
  f16 d @80, f16 dmin @82. Element e: half h=e//128, shift s=(e%128)//32, l=e%32 -> 2 bits of
  qs[32h+l] at 2s; x = d*sc*q - dmin*m.
* ``Q3_K`` (256 el, 110 B): hmask[32] @0; qs[64] @32 (2 low bits as Q2_K); scales[12] @96 (16 signed 6-bit
  scales: low 4 bits in nibbles of bytes 0..7, top 2 bits in bytes 8..11); f16 d @108. High bit of element
  e = bit e//32 of hmask[e%32]; q = low - 4*(1-high); x = d*(sc-32)*q.
* ``Q4_K`` (256 el, 144 B): f16 d @0, f16 dmin @2; scales[12] @4 (8 6-bit scales + 8 6-bit mins);
  qs[128] @16: sub-blocks 2k/2k+1 are the low/high nibbles of qs[32k:32k+32]; x = d*sc*q - dmin*m.
* ``Q5_K`` (256 el, 176 B): f16 d, f16 dmin, scales[12] as Q4_K; qh[32] @16 (bit of element e is bit e//32
  of qh[e%32]); qs[128] @48 as Q4_K; q = nibble + 16*bit.
* ``Q6_K`` (256 el, 210 B): ql[128] @0; qh[64] @128; int8 scales[16] @192; f16 d @208. Per half h (128 el),
  l<32: el l, l+32, l+64, l+96 = low nib ql[64h+l], low nib ql[64h+l+32], high nib ql[64h+l], high nib
  ql[64h+l+32]; their 2 high bits are bits 0-1, 2-3, 4-5, 6-7 of qh[32h+l]; x = d*sc*(q-32).

Dequantizers use plain float32 arithmetic in ggml's order (no fastmath), so they are bit-exact against
ggml / ``gguf.quants``. The exact matvec kernels (:mod:`.fused`) use ``fastmath`` (reassociation, so
reductions vectorise) and exact float32 activations: they agree with the float64 product to ~1e-6
relative. The runtime's default for single tokens is the integer kernels over 8-bit activations
(:mod:`.int_dot`, :mod:`.int_dot_legacy`), as llama.cpp.
Integer codes for types: the GGUF ids (:class:`~airoboros_ggml.ggml_types.GGMLType`), as plain ints below.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from ..ggml_types import GGMLType
from .fp16 import F16_TABLE, f32_at
from .specialise import jit_specialised

# Type ids as plain ints, the form numba compares against (compile-time constants in the kernels).
F32, F16 = int(GGMLType.F32), int(GGMLType.F16)
Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 = (int(GGMLType[n]) for n in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"))
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K = (int(GGMLType[n]) for n in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"))

_f1 = np.float32(1)
_f16c = np.float32(16)


@numba.njit(cache=True, inline="always")
def _h(row, o):
    """float32 value of the f16 at row[o:o+2]."""
    return F16_TABLE[np.int64(row[o]) | (np.int64(row[o + 1]) << 8)]


@numba.njit(cache=True, inline="always")
def _k4_scale_min(row, o, j):
    """6-bit scale and min of sub-block j (0..7) of the Q4_K/Q5_K scales at row[o:o+12] (int64)."""
    if j < 4:
        return np.int64(row[o + j] & 63), np.int64(row[o + 4 + j] & 63)
    s = np.int64(row[o + 4 + j])
    return (s & 0xF) | ((np.int64(row[o + j - 4]) >> 6) << 4), (s >> 4) | ((np.int64(row[o + j]) >> 6) << 4)


@numba.njit(cache=True, inline="always")
def _q3_scale(row, o, j):
    """Signed scale (sc-32) of sub-block j (0..15) of the Q3_K scales at row[o:o+12]."""
    lo = (np.int64(row[o + j]) & 0xF) if j < 8 else (np.int64(row[o + j - 8]) >> 4)
    hi = (np.int64(row[o + 8 + j % 4]) >> (2 * (j // 4))) & 3
    return (lo | (hi << 4)) - 32


@numba.njit(cache=True)
def _row_f32(row, out):
    """Row decoder of F32 (see :func:`decode_row`)."""
    n = out.shape[0]
    for i in range(n):
        out[i] = f32_at(row, 4 * i)


@numba.njit(cache=True)
def _row_f16(row, out):
    """Row decoder of F16 (see :func:`decode_row`)."""
    n = out.shape[0]
    for i in range(n):
        out[i] = _h(row, 2 * i)


@numba.njit(cache=True)
def _row_q4_legacy(code, row, out):
    """Row decoder of Q4_0/Q4_1 (see :func:`decode_row`)."""
    n = out.shape[0]
    bs = 18 if code == Q4_0 else 20
    for b in range(n // 32):
        o = b * bs
        d = _h(row, o)
        if code == Q4_0:
            for j in range(16):
                v = np.int64(row[o + 2 + j])
                out[32 * b + j] = d * np.float32((v & 15) - 8)
                out[32 * b + j + 16] = d * np.float32((v >> 4) - 8)
        else:
            m = _h(row, o + 2)
            for j in range(16):
                v = np.int64(row[o + 4 + j])
                out[32 * b + j] = d * np.float32(v & 15) + m
                out[32 * b + j + 16] = d * np.float32(v >> 4) + m


@numba.njit(cache=True)
def _row_q5_legacy(code, row, out):
    """Row decoder of Q5_0/Q5_1 (see :func:`decode_row`)."""
    n = out.shape[0]
    bs = 22 if code == Q5_0 else 24
    ho = 2 if code == Q5_0 else 4
    for b in range(n // 32):
        o = b * bs
        d = _h(row, o)
        m = _h(row, o + 2) if code == Q5_1 else np.float32(0)
        qh = (np.int64(row[o + ho]) | (np.int64(row[o + ho + 1]) << 8) | (np.int64(row[o + ho + 2]) << 16)
              | (np.int64(row[o + ho + 3]) << 24))
        for j in range(16):
            v = np.int64(row[o + ho + 4 + j])
            q0 = (v & 15) | (((qh >> j) & 1) << 4)
            q1 = (v >> 4) | (((qh >> (j + 16)) & 1) << 4)
            if code == Q5_0:
                out[32 * b + j] = d * np.float32(q0 - 16)
                out[32 * b + j + 16] = d * np.float32(q1 - 16)
            else:
                out[32 * b + j] = d * np.float32(q0) + m
                out[32 * b + j + 16] = d * np.float32(q1) + m


@numba.njit(cache=True)
def _row_q8_0(row, out):
    """Row decoder of Q8_0 (see :func:`decode_row`)."""
    n = out.shape[0]
    for b in range(n // 32):
        o = b * 34
        d = _h(row, o)
        for j in range(32):
            v = np.int64(row[o + 2 + j])
            out[32 * b + j] = np.float32(v - 256 if v > 127 else v) * d


@numba.njit(cache=True)
def _row_q2_k(row, out):
    """Row decoder of Q2_K (see :func:`decode_row`)."""
    n = out.shape[0]
    for b in range(n // 256):
        o = b * 84
        d = _h(row, o + 80)
        dmin = _h(row, o + 82)
        for e16 in range(16):
            sc = np.int64(row[o + e16])
            dl = d * np.float32(sc & 0xF)
            ml = dmin * np.float32(sc >> 4)
            h = e16 // 8
            s = (e16 % 8) // 2
            l0 = (e16 % 2) * 16
            for ln in range(l0, l0 + 16):
                q = (np.int64(row[o + 16 + 32 * h + ln]) >> (2 * s)) & 3
                out[256 * b + 128 * h + 32 * s + ln] = dl * np.float32(q) - ml


@numba.njit(cache=True)
def _row_q3_k(row, out):
    """Row decoder of Q3_K (see :func:`decode_row`)."""
    n = out.shape[0]
    for b in range(n // 256):
        o = b * 110
        d = _h(row, o + 108)
        for e16 in range(16):
            dl = d * np.float32(_q3_scale(row, o + 96, e16))
            h = e16 // 8
            s = (e16 % 8) // 2
            l0 = (e16 % 2) * 16
            for ln in range(l0, l0 + 16):
                e = 128 * h + 32 * s + ln
                q = (np.int64(row[o + 32 + 32 * h + ln]) >> (2 * s)) & 3
                hb = (np.int64(row[o + ln]) >> (e // 32)) & 1
                out[256 * b + e] = dl * np.float32(q - 4 * (1 - hb))


@numba.njit(cache=True)
def _row_q45_k(code, row, out):
    """Row decoder of Q4_K/Q5_K (see :func:`decode_row`)."""
    n = out.shape[0]
    bs = 144 if code == Q4_K else 176
    qo = 16 if code == Q4_K else 48
    for b in range(n // 256):
        o = b * bs
        d = _h(row, o)
        dmin = _h(row, o + 2)
        for j in range(8):
            sc, mn = _k4_scale_min(row, o + 4, j)
            dl = d * np.float32(sc)
            ml = dmin * np.float32(mn)
            k = j // 2
            for ln in range(32):
                v = np.int64(row[o + qo + 32 * k + ln])
                q = (v & 15) if j % 2 == 0 else (v >> 4)
                if code == Q5_K:
                    q |= ((np.int64(row[o + 16 + ln]) >> j) & 1) << 4
                out[256 * b + 32 * j + ln] = dl * np.float32(q) - ml


@numba.njit(cache=True)
def _row_q6_k(row, out):
    """Row decoder of Q6_K (see :func:`decode_row`)."""
    n = out.shape[0]
    for b in range(n // 256):
        o = b * 210
        d = _h(row, o + 208)
        for h in range(2):
            for ln in range(32):
                qh = np.int64(row[o + 128 + 32 * h + ln])
                a = np.int64(row[o + 64 * h + ln])
                c = np.int64(row[o + 64 * h + ln + 32])
                q0 = ((a & 15) | ((qh & 3) << 4)) - 32
                q1 = ((c & 15) | (((qh >> 2) & 3) << 4)) - 32
                q2 = ((a >> 4) | (((qh >> 4) & 3) << 4)) - 32
                q3 = ((c >> 4) | (((qh >> 6) & 3) << 4)) - 32
                base = 256 * b + 128 * h + ln
                so = o + 192 + 8 * h + ln // 16
                for t, q in ((0, q0), (1, q1), (2, q2), (3, q3)):
                    sv = np.int64(row[so + 2 * t])
                    out[base + 32 * t] = (d * np.float32(sv - 256 if sv > 127 else sv)) * np.float32(q)

@numba.njit(inline="always")
def _decode_row_switch(code, row, out):
    """The per-type decoder of ``code`` (a call per branch: with ``code`` constant, numba compiles only one)."""
    if code == F32:
        _row_f32(row, out)
    elif code == F16:
        _row_f16(row, out)
    elif code == Q4_0 or code == Q4_1:
        _row_q4_legacy(code, row, out)
    elif code == Q5_0 or code == Q5_1:
        _row_q5_legacy(code, row, out)
    elif code == Q8_0:
        _row_q8_0(row, out)
    elif code == Q2_K:
        _row_q2_k(row, out)
    elif code == Q3_K:
        _row_q3_k(row, out)
    elif code == Q4_K or code == Q5_K:
        _row_q45_k(code, row, out)
    elif code == Q6_K:
        _row_q6_k(row, out)


@numba.njit(cache=True)
def decode_row(code, row, out):
    """Dequantize one row: uint8 (row_bytes,) -> float32 out (n,), bit-exact with ggml."""
    _decode_row_switch(code, row, out)


_ROWS_KERNELS: dict[int, Callable[..., None]] = {}
"""Kernels made by :func:`dequantize_rows_kernel`, by type."""


def dequantize_rows_kernel(code: int) -> Callable[[np.ndarray, np.ndarray, np.ndarray], None]:
    """``kernel(raw, ids, out)``: out[i] = dequantized raw[ids[i]] for rows of type ``code``.

    raw uint8 (n_rows, row_bytes), ids int64 (k,), out float32 (k, n). A closure over ``code``
    (:mod:`.specialise`): only that type's decoder is compiled. Serial: a token-embedding lookup is a few
    rows (a 512-token prompt of a 7B model: ~5 ms), and a ``parallel=True`` kernel costs seconds more to
    compile on a cold start.
    """
    kernel = _ROWS_KERNELS.get(code)
    if kernel is not None:
        return kernel

    def dequantize_rows_of_type(raw, ids, out):
        for i in range(ids.shape[0]):
            _decode_row_switch(code, raw[ids[i]], out[i])

    kernel = _ROWS_KERNELS[code] = jit_specialised(dequantize_rows_of_type, str(code))
    return kernel


@numba.njit(cache=True, parallel=True)
def dequantize_range(code, raw, r0, out):
    """out[i] = dequantized raw[r0 + i]: out float32 (n_rows_tile, n) — a weight tile for matmul."""
    for i in numba.prange(out.shape[0]):
        decode_row(code, raw[r0 + i], out[i])


@numba.njit(cache=True, parallel=True, fastmath=True)
def matvec_generic(code, raw, x, out):
    """out[r] = dot(dequant(raw[r]), x), decoding each row into a per-thread float32 buffer."""
    n_out = raw.shape[0]
    n = x.shape[0]
    chunk = 16
    for c in numba.prange((n_out + chunk - 1) // chunk):
        buf = np.empty(n, dtype=np.float32)  # float32 (n_in,)
        for r in range(c * chunk, min(n_out, c * chunk + chunk)):
            decode_row(code, raw[r], buf)
            acc = np.float32(0)
            for i in range(n):
                acc += buf[i] * x[i]
            out[r] = acc


@numba.njit(cache=True, nogil=True)
def dequantize_range_serial(code, raw, r0, out):
    """Single-threaded, GIL-free :func:`dequantize_range` (used by matmul's worker threads)."""
    for i in range(out.shape[0]):
        decode_row(code, raw[r0 + i], out[i])
