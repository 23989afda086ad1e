"""Fused matrix-vector kernels (one token): ``out[r] = dot(dequant(raw[r]), x)`` without materialising rows.

Design (measured on the 2-core AVX2 box, see benchmarks/results/kernels.md):

* exact float32 activations (no Q8 activation quantization), ``fastmath`` so the reductions vectorise;
* packed bit fields are extracted in *float* arithmetic: a byte ``v`` is converted once to float32 and
  ``hi = floor(v / 16)``, ``lo = v - 16*hi`` — numba's integer typing would otherwise widen uint8 math to
  64-bit lanes (4 values per AVX2 register instead of 8); this alone took Q4_K from 7 to 11 GB/s;
* per-block scales are decoded outside the innermost loop; the ``min`` terms of the K-quants use per-32
  sums of ``x`` (``xs``) computed once per call, so the inner loop is a pure ``q*x`` dot;
* rows are distributed over threads with ``prange`` (the caller sets ``numba.set_num_threads``).
"""

from __future__ import annotations

import numba
import numpy as np

from .kernels import _h, _k4_scale_min, _q3_scale

_16 = np.float32(16)
_i16 = np.float32(0.0625)


@numba.njit(cache=True, parallel=True, fastmath=True)
def mv_q4_k(raw, x, xs, out):
    """Q4_K: raw uint8 (n_out, nb*144), x float32 (n_in,), xs float32 (n_in/32,) -> out float32 (n_out,)."""
    n_out = raw.shape[0]
    nb = x.shape[0] // 256
    for r in numba.prange(n_out):
        row = raw[r]
        acc = np.float32(0)
        for b in range(nb):
            o = b * 144
            d = _h(row, o)
            dm = _h(row, o + 2)
            bacc = np.float32(0)
            macc = np.float32(0)
            for k in range(4):
                s0, m0 = _k4_scale_min(row, o + 4, 2 * k)
                s1, m1 = _k4_scale_min(row, o + 4, 2 * k + 1)
                q = o + 16 + 32 * k
                xb = b * 256 + 64 * k
                alo = np.float32(0)
                ahi = np.float32(0)
                for j in range(32):
                    v = np.float32(row[q + j])
                    h = np.floor(v * _i16)
                    alo += (v - _16 * h) * x[xb + j]
                    ahi += h * x[xb + 32 + j]
                bacc += np.float32(s0) * alo + np.float32(s1) * ahi
                macc += np.float32(m0) * xs[b * 8 + 2 * k] + np.float32(m1) * xs[b * 8 + 2 * k + 1]
            acc += d * bacc - dm * macc
        out[r] = acc


@numba.njit(cache=True, parallel=True, fastmath=True)
def mv_q5_k(raw, x, xs, out):
    """Q5_K: raw uint8 (n_out, nb*176); as :func:`mv_q4_k` plus the 5th bit from qh."""
    n_out = raw.shape[0]
    nb = x.shape[0] // 256
    for r in numba.prange(n_out):
        row = raw[r]
        acc = np.float32(0)
        for b in range(nb):
            o = b * 176
            d = _h(row, o)
            dm = _h(row, o + 2)
            bacc = np.float32(0)
            macc = np.float32(0)
            for k in range(4):
                s0, m0 = _k4_scale_min(row, o + 4, 2 * k)
                s1, m1 = _k4_scale_min(row, o + 4, 2 * k + 1)
                q = o + 48 + 32 * k
                xb = b * 256 + 64 * k
                sh = np.float32(1.0 / (1 << (2 * k)))
                alo = np.float32(0)
                ahi = np.float32(0)
                for j in range(32):
                    v = np.float32(row[q + j])
                    h = np.floor(v * _i16)
                    hb = np.floor(np.float32(row[o + 16 + j]) * sh)  # qh >> 2k
                    b1 = np.floor(hb * np.float32(0.5))
                    b0 = hb - np.float32(2) * b1  # bit 2k
                    b1 = b1 - np.float32(2) * np.floor(b1 * np.float32(0.5))  # bit 2k+1
                    alo += (v - _16 * h + _16 * b0) * x[xb + j]
                    ahi += (h + _16 * b1) * x[xb + 32 + j]
                bacc += np.float32(s0) * alo + np.float32(s1) * ahi
                macc += np.float32(m0) * xs[b * 8 + 2 * k] + np.float32(m1) * xs[b * 8 + 2 * k + 1]
            acc += d * bacc - dm * macc
        out[r] = acc


@numba.njit(cache=True, parallel=True, fastmath=True)
def mv_q6_k(raw, x, xs, out):
    """Q6_K: raw uint8 (n_out, nb*210) -> out float32 (n_out,). ``xs``: float32 (n_in/16,) sums of x."""
    n_out = raw.shape[0]
    nb = x.shape[0] // 256
    for r in numba.prange(n_out):
        row = raw[r]
        acc = np.float32(0)
        for b in range(nb):
            o = b * 210
            d = _h(row, o + 208)
            bacc = np.float32(0)
            for h in range(2):
                xb = b * 256 + 128 * h
                for half in range(2):  # ln in [16*half, 16*half+16): one scale per 16 elements per group
                    a0 = np.float32(0)
                    a1 = np.float32(0)
                    a2 = np.float32(0)
                    a3 = np.float32(0)
                    for ln in range(16 * half, 16 * half + 16):
                        va = np.float32(row[o + 64 * h + ln])
                        vc = np.float32(row[o + 64 * h + ln + 32])
                        vh = np.float32(row[o + 128 + 32 * h + ln])
                        ha = np.floor(va * _i16)
                        hc = np.floor(vc * _i16)
                        h1 = np.floor(vh * np.float32(0.25))
                        h2 = np.floor(vh * np.float32(0.0625))
                        h3 = np.floor(vh * np.float32(0.015625))
                        q0 = va - _16 * ha + _16 * (vh - np.float32(4) * h1)
                        q1 = vc - _16 * hc + _16 * (h1 - np.float32(4) * h2)
                        q2 = ha + _16 * (h2 - np.float32(4) * h3)
                        q3 = hc + _16 * h3
                        a0 += q0 * x[xb + ln]
                        a1 += q1 * x[xb + ln + 32]
                        a2 += q2 * x[xb + ln + 64]
                        a3 += q3 * x[xb + ln + 96]
                    so = o + 192 + 8 * h + half
                    ib = (xb + 16 * half) // 16
                    for t, a in ((0, a0), (1, a1), (2, a2), (3, a3)):
                        sv = np.int64(row[so + 2 * t])
                        sc = np.float32(sv - 256 if sv > 127 else sv)
                        bacc += sc * (a - np.float32(32) * xs[ib + 2 * t])
            acc += d * bacc
        out[r] = acc


@numba.njit(cache=True, parallel=True, fastmath=True)
def mv_q4_legacy(raw, x, xs, out, has_min):
    """Q4_0 (has_min False) / Q4_1 (True): raw uint8 (n_out, nb*18|20), xs float32 (n_in/32,)."""
    n_out = raw.shape[0]
    nb = x.shape[0] // 32
    bs = 20 if has_min else 18
    qo = 4 if has_min else 2
    for r in numba.prange(n_out):
        row = raw[r]
        acc = np.float32(0)
        for b in range(nb):
            o = b * bs
            d = _h(row, o)
            a = np.float32(0)
            for j in range(16):
                v = np.float32(row[o + qo + j])
                h = np.floor(v * _i16)
                a += (v - _16 * h) * x[32 * b + j] + h * x[32 * b + 16 + j]
            if has_min:
                acc += d * a + _h(row, o + 2) * xs[b]
            else:
                acc += d * (a - np.float32(8) * xs[b])
        out[r] = acc


@numba.njit(cache=True, parallel=True, fastmath=True)
def mv_q5_legacy(raw, x, xs, out, has_min):
    """Q5_0 / Q5_1: raw uint8 (n_out, nb*22|24), xs float32 (n_in/32,)."""
    n_out = raw.shape[0]
    nb = x.shape[0] // 32
    bs = 24 if has_min else 22
    ho = 4 if has_min else 2
    for r in numba.prange(n_out):
        row = raw[r]
        acc = np.float32(0)
        for b in range(nb):
            o = b * bs
            d = _h(row, o)
            a = np.float32(0)
            for j in range(16):
                v = np.float32(row[o + ho + 4 + j])
                h = np.floor(v * _i16)
                a += (v - _16 * h) * x[32 * b + j] + h * x[32 * b + 16 + j]
            hb = np.float32(0)
            for k in range(4):
                v = np.float32(row[o + ho + k])
                for t in range(8):
                    f = np.floor(v * np.float32(0.5))
                    hb += (v - np.float32(2) * f) * x[32 * b + 8 * k + t]
                    v = f
            a += _16 * hb
            if has_min:
                acc += d * a + _h(row, o + 2) * xs[b]
            else:
                acc += d * (a - _16 * xs[b])
        out[r] = acc


@numba.njit(cache=True, parallel=True, fastmath=True)
def mv_q8_0(raw, x, out):
    """Q8_0: raw uint8 (n_out, nb*34) -> out float32 (n_out,)."""
    n_out = raw.shape[0]
    nb = x.shape[0] // 32
    for r in numba.prange(n_out):
        row = raw[r]
        acc = np.float32(0)
        for b in range(nb):
            o = b * 34
            a = np.float32(0)
            for j in range(32):
                v = np.float32(row[o + 2 + j])
                a += (v - np.float32(256) * np.floor(v * np.float32(1.0 / 128))) * x[32 * b + j]
            acc += _h(row, o) * a
        out[r] = acc


@numba.njit(cache=True, parallel=True, fastmath=True)
def mv_q2_k(raw, x, xs, out):
    """Q2_K: raw uint8 (n_out, nb*84), xs float32 (n_in/16,) -> out float32 (n_out,)."""
    n_out = raw.shape[0]
    nb = x.shape[0] // 256
    for r in numba.prange(n_out):
        row = raw[r]
        acc = np.float32(0)
        for b in range(nb):
            o = b * 84
            d = _h(row, o + 80)
            dmin = _h(row, o + 82)
            bacc = np.float32(0)
            macc = np.float32(0)
            for h in range(2):
                for half in range(2):
                    a0 = np.float32(0)
                    a1 = np.float32(0)
                    a2 = np.float32(0)
                    a3 = np.float32(0)
                    xb = b * 256 + 128 * h
                    for ln in range(16 * half, 16 * half + 16):
                        v = np.float32(row[o + 16 + 32 * h + ln])
                        f1 = np.floor(v * np.float32(0.25))
                        f2 = np.floor(v * np.float32(0.0625))
                        f3 = np.floor(v * np.float32(0.015625))
                        a0 += (v - np.float32(4) * f1) * x[xb + ln]
                        a1 += (f1 - np.float32(4) * f2) * x[xb + 32 + ln]
                        a2 += (f2 - np.float32(4) * f3) * x[xb + 64 + ln]
                        a3 += f3 * x[xb + 96 + ln]
                    for s, a in ((0, a0), (1, a1), (2, a2), (3, a3)):
                        e16 = 8 * h + 2 * s + half
                        sc = np.int64(row[o + e16])
                        bacc += np.float32(sc & 0xF) * a
                        macc += np.float32(sc >> 4) * xs[b * 16 + e16]
            acc += d * bacc - dmin * macc
        out[r] = acc


@numba.njit(cache=True, parallel=True, fastmath=True)
def mv_q3_k(raw, x, xs, out):
    """Q3_K: raw uint8 (n_out, nb*110), xs float32 (n_in/16,) -> out float32 (n_out,)."""
    n_out = raw.shape[0]
    nb = x.shape[0] // 256
    for r in numba.prange(n_out):
        row = raw[r]
        acc = np.float32(0)
        for b in range(nb):
            o = b * 110
            d = _h(row, o + 108)
            bacc = np.float32(0)
            for h in range(2):
                for half in range(2):
                    a0 = np.float32(0)
                    a1 = np.float32(0)
                    a2 = np.float32(0)
                    a3 = np.float32(0)
                    xb = b * 256 + 128 * h
                    for ln in range(16 * half, 16 * half + 16):
                        v = np.float32(row[o + 32 + 32 * h + ln])
                        f1 = np.floor(v * np.float32(0.25))
                        f2 = np.floor(v * np.float32(0.0625))
                        f3 = np.floor(v * np.float32(0.015625))
                        m = np.floor(np.float32(row[o + ln]) * np.float32(1.0 / (1 << (4 * h))))
                        g1 = np.floor(m * np.float32(0.5))
                        g2 = np.floor(m * np.float32(0.25))
                        g3 = np.floor(m * np.float32(0.125))
                        g4 = np.floor(m * np.float32(0.0625))
                        a0 += (v - np.float32(4) * f1 + np.float32(4) * (m - np.float32(2) * g1)) * x[xb + ln]
                        a1 += (f1 - np.float32(4) * f2 + np.float32(4) * (g1 - np.float32(2) * g2)) * x[xb + 32 + ln]
                        a2 += (f2 - np.float32(4) * f3 + np.float32(4) * (g2 - np.float32(2) * g3)) * x[xb + 64 + ln]
                        a3 += (f3 + np.float32(4) * (g3 - np.float32(2) * g4)) * x[xb + 96 + ln]
                    for s, a in ((0, a0), (1, a1), (2, a2), (3, a3)):
                        e16 = 8 * h + 2 * s + half
                        sc = np.float32(_q3_scale(row, o + 96, e16))
                        bacc += sc * (a - np.float32(4) * xs[b * 16 + e16])
            acc += d * bacc
        out[r] = acc


@numba.njit(cache=True, parallel=True, fastmath=True)
def mv_f16(raw, x, out):
    """F16: raw uint8 (n_out, 2*n_in) -> out float32 (n_out,)."""
    n_out = raw.shape[0]
    n = x.shape[0]
    for r in numba.prange(n_out):
        row = raw[r]
        acc = np.float32(0)
        for i in range(n):
            acc += _h(row, 2 * i) * x[i]
        out[r] = acc


@numba.njit(cache=True, parallel=True, fastmath=True)
def mv_f32(w, x, out):
    """F32: w float32 (n_out, n_in) -> out float32 (n_out,)."""
    for r in numba.prange(w.shape[0]):
        acc = np.float32(0)
        for i in range(x.shape[0]):
            acc += w[r, i] * x[i]
        out[r] = acc
