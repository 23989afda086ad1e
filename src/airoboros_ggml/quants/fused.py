"""Fused matrix-vector kernels (one token): ``out[r] = dot(dequant(raw[r]), x)`` without materialising rows.

Design (measured on the 2-core box, see benchmarks/results/kernels.md; read the assembly after any change,
``dispatcher.inspect_asm(sig)``, looking for ``gather`` and scalar ``vroundss``/``vcvtsi2ss``):

* exact float32 activations (no Q8 activation quantization), ``fastmath`` so the reductions vectorise;
* packed bit fields are extracted in *float* arithmetic: a byte ``v`` is converted once to float32 and
  ``hi = floor(v / 16)``, ``lo = v - 16*hi`` — numba's integer typing would otherwise widen uint8 math to
  64-bit lanes (4-8 values per register instead of 8-16);
* **no literal 16-long innermost loops over one block.** LLVM fully unrolls such a loop and then
  vectorises the *block* loop around it with gathers, which ran 4-5x slower (the cause of the old
  ~1-2 GB/s for Q4_0/Q4_1/Q5_x/Q6_K). Each inner loop instead carries 4 blocks (legacy types), or a whole
  256-element super-block (K-quants), and where the trip count could still be unrolled it is taken from
  an array length (``accv.shape[0]``) so LLVM cannot see the constant;
* no run-time flags (``has_min``...) branching *inside* the vectorised loop (selects outside are fine);
* products accumulate into a small per-task float32 vector ``accv`` (no horizontal reduction per block);
  block scales are folded in as loop-invariant scalars; ``min``/offset terms use per-32 sums of ``x``
  (``xs``) computed once per call;
* the per-row work is a separate non-parallel ``@njit`` function called from a small ``prange`` driver
  over tasks of ``ROWS_PER_TASK`` rows: written inline in the ``prange`` body, identical loops vectorised
  several times worse;
* rows are distributed over threads with ``prange`` (the caller sets ``numba.set_num_threads``).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

from . import simd as S
from .kernels import _h, _k4_scale_min, _q3_scale

PREFETCH_AHEAD = 1024
"""Bytes ahead of the current block that the row kernels prefetch (measured: +30% on large matrices)."""


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Software prefetch (``llvm.prefetch``, read, keep in all cache levels) of ``arr[idx]``'s cache line.

    Never faults, so ``idx`` may run past the end of a row (into the next row, or beyond the buffer).
    """
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        S.prefetch(builder, builder.gep(ary.data, [args[1]]))
        return context.get_dummy_value()

    return sig, codegen

_16 = np.float32(16)
_i16 = np.float32(0.0625)


@numba.njit(cache=True, fastmath=True)
def _row_q45_k(row, x, xs, five, accv):
    """dot(dequant(row), x) for one Q4_K (five False) / Q5_K (True) row; accv float32 (32,) scratch.

    One 32-long loop per block covers all 256 elements (8 loop-invariant scales folded into the
    products) and accumulates into ``accv`` (no horizontal reduction per sub-block); the mins use the
    per-32 sums ``xs`` of x. Trip count ``accv.shape[0]`` so LLVM cannot fully unroll it.
    """
    nb = x.shape[0] // 256
    bs = 176 if five else 144
    qo = 48 if five else 16
    accv[:] = 0
    macc = np.float32(0)
    for b in range(nb):
        o = b * bs
        for k in range(3):
            _prefetch(row, o + PREFETCH_AHEAD + 64 * k)
        d = _h(row, o)
        dm = _h(row, o + 2)
        s0, m0 = _k4_scale_min(row, o + 4, 0)
        s1, m1 = _k4_scale_min(row, o + 4, 1)
        s2, m2 = _k4_scale_min(row, o + 4, 2)
        s3, m3 = _k4_scale_min(row, o + 4, 3)
        s4, m4 = _k4_scale_min(row, o + 4, 4)
        s5, m5 = _k4_scale_min(row, o + 4, 5)
        s6, m6 = _k4_scale_min(row, o + 4, 6)
        s7, m7 = _k4_scale_min(row, o + 4, 7)
        xb = b * 8
        macc += dm * (np.float32(m0) * xs[xb] + np.float32(m1) * xs[xb + 1] + np.float32(m2) * xs[xb + 2]
                      + np.float32(m3) * xs[xb + 3] + np.float32(m4) * xs[xb + 4] + np.float32(m5) * xs[xb + 5]
                      + np.float32(m6) * xs[xb + 6] + np.float32(m7) * xs[xb + 7])
        c0 = d * np.float32(s0)
        c1 = d * np.float32(s1)
        c2 = d * np.float32(s2)
        c3 = d * np.float32(s3)
        c4 = d * np.float32(s4)
        c5 = d * np.float32(s5)
        c6 = d * np.float32(s6)
        c7 = d * np.float32(s7)
        q = o + qo
        xo = b * 256
        for j in range(accv.shape[0]):
            v0 = np.float32(row[q + j])
            v1 = np.float32(row[q + 32 + j])
            v2 = np.float32(row[q + 64 + j])
            v3 = np.float32(row[q + 96 + j])
            h0 = np.floor(v0 * _i16)
            h1 = np.floor(v1 * _i16)
            h2 = np.floor(v2 * _i16)
            h3 = np.floor(v3 * _i16)
            l0 = v0 - _16 * h0
            l1 = v1 - _16 * h1
            l2 = v2 - _16 * h2
            l3 = v3 - _16 * h3
            if five:  # bit i of qh[j] is the 5th bit of sub-block i
                qh = np.float32(row[o + 16 + j])
                g1 = np.floor(qh * np.float32(0.5))
                g2 = np.floor(qh * np.float32(0.25))
                g3 = np.floor(qh * np.float32(0.125))
                g4 = np.floor(qh * np.float32(0.0625))
                g5 = np.floor(qh * np.float32(0.03125))
                g6 = np.floor(qh * np.float32(0.015625))
                g7 = np.floor(qh * np.float32(0.0078125))
                l0 += _16 * (qh - np.float32(2) * g1)
                h0 += _16 * (g1 - np.float32(2) * g2)
                l1 += _16 * (g2 - np.float32(2) * g3)
                h1 += _16 * (g3 - np.float32(2) * g4)
                l2 += _16 * (g4 - np.float32(2) * g5)
                h2 += _16 * (g5 - np.float32(2) * g6)
                l3 += _16 * (g6 - np.float32(2) * g7)
                h3 += _16 * g7
            t = c0 * l0 * x[xo + j] + c1 * h0 * x[xo + 32 + j]
            t += c2 * l1 * x[xo + 64 + j] + c3 * h1 * x[xo + 96 + j]
            t += c4 * l2 * x[xo + 128 + j] + c5 * h2 * x[xo + 160 + j]
            t += c6 * l3 * x[xo + 192 + j] + c7 * h3 * x[xo + 224 + j]
            accv[j] += t
    acc = np.float32(0)
    for j in range(32):
        acc += accv[j]
    return acc - macc


@numba.njit(cache=True, parallel=True)
def mv_q4_k(raw, x, out):
    """Q4_K: raw uint8 (n_out, nb*144), x float32 (n_in,) -> out float32 (n_out,)."""
    n = raw.shape[0]
    xs = block_sums32(x)  # float32 (n_in/32,)
    for c in numba.prange((n + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        accv = np.empty(32, np.float32)  # float32 (32,) per-task accumulator
        for r in range(c * ROWS_PER_TASK, min(n, c * ROWS_PER_TASK + ROWS_PER_TASK)):
            out[r] = _row_q45_k(raw[r], x, xs, False, accv)


@numba.njit(cache=True, parallel=True)
def mv_q5_k(raw, x, out):
    """Q5_K: raw uint8 (n_out, nb*176), x float32 (n_in,) -> out float32 (n_out,)."""
    n = raw.shape[0]
    xs = block_sums32(x)  # float32 (n_in/32,)
    for c in numba.prange((n + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        accv = np.empty(32, np.float32)  # float32 (32,) per-task accumulator
        for r in range(c * ROWS_PER_TASK, min(n, c * ROWS_PER_TASK + ROWS_PER_TASK)):
            out[r] = _row_q45_k(raw[r], x, xs, True, accv)


@numba.njit(cache=True, inline="always")
def _i8f(row, o):
    """float32 value of the int8 at row[o]."""
    v = np.float32(row[o])
    return v - np.float32(256) * np.floor(v * np.float32(1.0 / 128))


@numba.njit(cache=True, fastmath=True)
def _row_q6_k(row, x):
    """dot(dequant(row), x) for one Q6_K row: row uint8 (nb*210,), x float32 (n_in,) -> float32.

    The 16-long inner loop carries all 256 elements of a block (16 loop-invariant scales), so LLVM keeps
    it as a loop and vectorises along ``ln`` instead of unrolling it and vectorising across blocks.
    """
    nb = x.shape[0] // 256
    acc = np.float32(0)
    for b in range(nb):
        o = b * 210
        for k in range(4):
            _prefetch(row, o + PREFETCH_AHEAD + 64 * k)
        d = _h(row, o + 208)
        xb = b * 256
        bacc = np.float32(0)
        for ln in range(16):
            for h in range(2):
                for half in range(2):
                    ll = 16 * half + ln
                    va = np.float32(row[o + 64 * h + ll])
                    vc = np.float32(row[o + 64 * h + ll + 32])
                    vh = np.float32(row[o + 128 + 32 * h + ll])
                    ha = np.floor(va * _i16)
                    hc = np.floor(vc * _i16)
                    h1 = np.floor(vh * np.float32(0.25))
                    h2 = np.floor(vh * np.float32(0.0625))
                    h3 = np.floor(vh * np.float32(0.015625))
                    q0 = va - _16 * ha + _16 * (vh - np.float32(4) * h1) - np.float32(32)
                    q1 = vc - _16 * hc + _16 * (h1 - np.float32(4) * h2) - np.float32(32)
                    q2 = ha + _16 * (h2 - np.float32(4) * h3) - np.float32(32)
                    q3 = hc + _16 * h3 - np.float32(32)
                    so = o + 192 + 8 * h + half
                    xo = xb + 128 * h + ll
                    bacc += (_i8f(row, so) * q0 * x[xo] + _i8f(row, so + 2) * q1 * x[xo + 32]
                             + _i8f(row, so + 4) * q2 * x[xo + 64] + _i8f(row, so + 6) * q3 * x[xo + 96])
        acc += d * bacc
    return acc


@numba.njit(cache=True, parallel=True)
def mv_q6_k(raw, x, out):
    """Q6_K: raw uint8 (n_out, nb*210), x float32 (n_in,) -> out float32 (n_out,)."""
    for r in numba.prange(raw.shape[0]):
        out[r] = _row_q6_k(raw[r], x)


ROWS_PER_TASK = 8
"""Rows per ``prange`` task in the matvec drivers (each task allocates one small float32 accumulator)."""


@numba.njit(cache=True)
def block_sums32(x):
    """Sums of x per 32 elements: x float32 (n_in,) -> float32 (n_in/32,) (for min/offset terms)."""
    nb = x.shape[0] // 32
    xs = np.empty(nb, np.float32)  # float32 (n_in/32,)
    for b in range(nb):
        t = np.float32(0)
        for j in range(32):
            t += x[32 * b + j]
        xs[b] = t
    return xs


@numba.njit(cache=True, inline="always")
def _q4_quad(row, x, accv, o, xo, qo, d0, d1, d2, d3, step, xstep):
    """accv[j] += sum over 4 Q4 blocks of d_k * (lo_j*x + hi_j*x); no reductions.

    Block k: bytes at row[o + k*step], activations at x[xo + k*xstep]. The trip count is
    ``accv.shape[0]`` (16) rather than a literal so that LLVM cannot fully unroll the loop (it would then
    vectorise the caller's block loop with gathers instead).
    """
    for j in range(accv.shape[0]):
        v0 = np.float32(row[o + qo + j])
        v1 = np.float32(row[o + step + qo + j])
        v2 = np.float32(row[o + 2 * step + qo + j])
        v3 = np.float32(row[o + 3 * step + qo + j])
        h0 = np.floor(v0 * _i16)
        h1 = np.floor(v1 * _i16)
        h2 = np.floor(v2 * _i16)
        h3 = np.floor(v3 * _i16)
        x1 = xo + xstep
        x2 = xo + 2 * xstep
        x3 = xo + 3 * xstep
        t = d0 * ((v0 - _16 * h0) * x[xo + j] + h0 * x[xo + 16 + j])
        t += d1 * ((v1 - _16 * h1) * x[x1 + j] + h1 * x[x1 + 16 + j])
        t += d2 * ((v2 - _16 * h2) * x[x2 + j] + h2 * x[x2 + 16 + j])
        t += d3 * ((v3 - _16 * h3) * x[x3 + j] + h3 * x[x3 + 16 + j])
        accv[j] += t


@numba.njit(cache=True, inline="always")
def _q4_tail(row, x, xs, has_min, accv, nb, bs, qo, e):
    """The last ``nb % 4`` blocks of a Q4_0/Q4_1 row into accv (16,); returns their scalar terms.

    They run as one more quad over the last 4 blocks, those already done weighted 0 (rows of fewer
    than 4 blocks: one block at a time).
    """
    n4 = nb // 4
    sacc = np.float32(0)
    if nb % 4 and nb >= 4:
        b = nb - 4
        o = b * bs
        w0 = np.float32(b >= 4 * n4)
        w1 = np.float32(b + 1 >= 4 * n4)
        w2 = np.float32(b + 2 >= 4 * n4)
        d0 = w0 * _h(row, o)
        d1 = w1 * _h(row, o + bs)
        d2 = w2 * _h(row, o + 2 * bs)
        d3 = _h(row, o + 3 * bs)
        _q4_quad(row, x, accv, o, 32 * b, qo, d0, d1, d2, d3, bs, 32)
        sacc -= e * (d0 * xs[b] + d1 * xs[b + 1] + d2 * xs[b + 2] + d3 * xs[b + 3])
        if has_min:
            sacc += (w0 * _h(row, o + 2) * xs[b] + w1 * _h(row, o + bs + 2) * xs[b + 1]
                     + w2 * _h(row, o + 2 * bs + 2) * xs[b + 2] + _h(row, o + 3 * bs + 2) * xs[b + 3])
    elif nb < 4:  # fewer than 4 blocks in the row: one at a time
        for b in range(nb):
            o = b * bs
            d = _h(row, o)
            z = np.float32(0)
            _q4_quad(row, x, accv, o, 32 * b, qo, d, z, z, z, 0, 0)
            sacc += (_h(row, o + 2) if has_min else z) * xs[b] - e * d * xs[b]
    return sacc


@numba.njit(cache=True, fastmath=True)
def _row_q4_legacy(row, x, xs, has_min, accv):
    """dot(dequant(row), x) for one Q4_0/Q4_1 row: row uint8 (nb*18|20,), x float32 (n_in,) -> float32.

    ``accv``: float32 (16,) scratch. Four blocks per inner iteration, accumulating into ``accv`` (no
    horizontal reduction per block). A 16-long loop over a single block gets fully unrolled by LLVM,
    which then vectorises the *block* loop with gathers (about 5x slower). Row kernels are separate
    (non-parallel) functions: inside a ``prange`` body the same loops vectorise far worse. The last
    ``nb % 4`` blocks: :func:`_q4_tail`.
    """
    nb = x.shape[0] // 32
    bs = 20 if has_min else 18
    qo = 4 if has_min else 2
    e = np.float32(0) if has_min else np.float32(8)
    accv[:] = 0
    sacc = np.float32(0)  # sum_b (m_b - e*d_b) * xs_b
    n4 = nb // 4
    for g in range(n4):
        o = 4 * g * bs
        _prefetch(row, o + PREFETCH_AHEAD)
        _prefetch(row, o + PREFETCH_AHEAD + 64)
        d0 = _h(row, o)
        d1 = _h(row, o + bs)
        d2 = _h(row, o + 2 * bs)
        d3 = _h(row, o + 3 * bs)
        _q4_quad(row, x, accv, o, 128 * g, qo, d0, d1, d2, d3, bs, 32)
        b = 4 * g
        sacc -= e * (d0 * xs[b] + d1 * xs[b + 1] + d2 * xs[b + 2] + d3 * xs[b + 3])
        if has_min:
            sacc += (_h(row, o + 2) * xs[b] + _h(row, o + bs + 2) * xs[b + 1]
                     + _h(row, o + 2 * bs + 2) * xs[b + 2] + _h(row, o + 3 * bs + 2) * xs[b + 3])
    sacc += _q4_tail(row, x, xs, has_min, accv, nb, bs, qo, e)
    acc = np.float32(0)
    for j in range(16):
        acc += accv[j]
    return acc + sacc


@numba.njit(cache=True, inline="always")
def _q4_quad2(ra, rb, x, accv, o, xo, qo, a0, a1, a2, a3, b0, b1, b2, b3, step):
    """:func:`_q4_quad` for two rows at once (sharing the x loads): accv (32,) = row a (16) + row b (16)."""
    n16 = accv.shape[0] // 2
    for j in range(n16):
        x0 = x[xo + j]
        y0 = x[xo + 16 + j]
        x1 = x[xo + 32 + j]
        y1 = x[xo + 48 + j]
        x2 = x[xo + 64 + j]
        y2 = x[xo + 80 + j]
        x3 = x[xo + 96 + j]
        y3 = x[xo + 112 + j]
        v0 = np.float32(ra[o + qo + j])
        v1 = np.float32(ra[o + step + qo + j])
        v2 = np.float32(ra[o + 2 * step + qo + j])
        v3 = np.float32(ra[o + 3 * step + qo + j])
        h0 = np.floor(v0 * _i16)
        h1 = np.floor(v1 * _i16)
        h2 = np.floor(v2 * _i16)
        h3 = np.floor(v3 * _i16)
        t = a0 * ((v0 - _16 * h0) * x0 + h0 * y0) + a1 * ((v1 - _16 * h1) * x1 + h1 * y1)
        t += a2 * ((v2 - _16 * h2) * x2 + h2 * y2) + a3 * ((v3 - _16 * h3) * x3 + h3 * y3)
        accv[j] += t
        v0 = np.float32(rb[o + qo + j])
        v1 = np.float32(rb[o + step + qo + j])
        v2 = np.float32(rb[o + 2 * step + qo + j])
        v3 = np.float32(rb[o + 3 * step + qo + j])
        h0 = np.floor(v0 * _i16)
        h1 = np.floor(v1 * _i16)
        h2 = np.floor(v2 * _i16)
        h3 = np.floor(v3 * _i16)
        t = b0 * ((v0 - _16 * h0) * x0 + h0 * y0) + b1 * ((v1 - _16 * h1) * x1 + h1 * y1)
        t += b2 * ((v2 - _16 * h2) * x2 + h2 * y2) + b3 * ((v3 - _16 * h3) * x3 + h3 * y3)
        accv[n16 + j] += t


@numba.njit(cache=True, fastmath=True)
def _row2_q4_legacy(ra, rb, x, xs, has_min, accv):
    """:func:`_row_q4_legacy` for two rows at once: returns (dot_a, dot_b); accv float32 (32,) scratch.

    Used for short rows (few blocks, e.g. SmolLM2's 576), where per-row overhead and x loads matter:
    about 1.3-1.5x faster there; on long rows streamed from memory one row at a time measured faster.
    """
    nb = x.shape[0] // 32
    bs = 20 if has_min else 18
    qo = 4 if has_min else 2
    e = np.float32(0) if has_min else np.float32(8)
    accv[:] = 0
    sa = np.float32(0)
    sb = np.float32(0)
    for g in range(nb // 4):
        o = 4 * g * bs
        _prefetch(ra, o + PREFETCH_AHEAD)
        _prefetch(rb, o + PREFETCH_AHEAD)
        a0 = _h(ra, o)
        a1 = _h(ra, o + bs)
        a2 = _h(ra, o + 2 * bs)
        a3 = _h(ra, o + 3 * bs)
        b0 = _h(rb, o)
        b1 = _h(rb, o + bs)
        b2 = _h(rb, o + 2 * bs)
        b3 = _h(rb, o + 3 * bs)
        _q4_quad2(ra, rb, x, accv, o, 128 * g, qo, a0, a1, a2, a3, b0, b1, b2, b3, bs)
        b = 4 * g
        sa -= e * (a0 * xs[b] + a1 * xs[b + 1] + a2 * xs[b + 2] + a3 * xs[b + 3])
        sb -= e * (b0 * xs[b] + b1 * xs[b + 1] + b2 * xs[b + 2] + b3 * xs[b + 3])
        if has_min:
            sa += (_h(ra, o + 2) * xs[b] + _h(ra, o + bs + 2) * xs[b + 1]
                   + _h(ra, o + 2 * bs + 2) * xs[b + 2] + _h(ra, o + 3 * bs + 2) * xs[b + 3])
            sb += (_h(rb, o + 2) * xs[b] + _h(rb, o + bs + 2) * xs[b + 1]
                   + _h(rb, o + 2 * bs + 2) * xs[b + 2] + _h(rb, o + 3 * bs + 2) * xs[b + 3])
    va = accv[:16]
    vb = accv[16:]
    sa += _q4_tail(ra, x, xs, has_min, va, nb, bs, qo, e)
    sb += _q4_tail(rb, x, xs, has_min, vb, nb, bs, qo, e)
    for j in range(16):
        sa += va[j]
        sb += vb[j]
    return sa, sb


PAIR_MAX_BLOCKS = 32
"""Rows of at most this many 32-element blocks go through the two-row kernels."""


@numba.njit(cache=True, parallel=True)
def mv_q4_legacy(raw, x, out, has_min):
    """Q4_0 (has_min False) / Q4_1 (True): raw uint8 (n_out, nb*18|20), x float32 (n_in,) -> out (n_out,)."""
    n = raw.shape[0]
    xs = block_sums32(x)  # float32 (n_in/32,)
    pair = x.shape[0] // 32 <= PAIR_MAX_BLOCKS
    for c in numba.prange((n + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        accv = np.empty(32, np.float32)  # float32 (32,) per-task accumulator
        r = c * ROWS_PER_TASK
        end = min(n, r + ROWS_PER_TASK)
        if pair:
            while r + 1 < end:
                out[r], out[r + 1] = _row2_q4_legacy(raw[r], raw[r + 1], x, xs, has_min, accv)
                r += 2
        while r < end:
            out[r] = _row_q4_legacy(raw[r], x, xs, has_min, accv[:16])
            r += 1


@numba.njit(cache=True)
def q5_bit_sums(x):
    """Subset sums of x for the Q5 high bits: x float32 (n_in,) -> float32 (n_in/8, 256).

    ``S[g, v] = sum of x[8g + k] over the set bits k of byte v``, so the 5th-bit part of a Q5 block,
    ``sum_j bit_j * x_j``, is four table lookups (one per qh byte) instead of 32 bit extractions.
    (Measured: a per-nibble table, 8x smaller, is slower — twice the lookups.)
    """
    n8 = x.shape[0] // 8
    S = np.empty((n8, 256), np.float32)  # float32 (n_in/8, 256)
    for g in range(n8):
        S[g, 0] = 0
        for k in range(8):
            xk = x[8 * g + k]
            for v in range(1 << k):
                S[g, (1 << k) + v] = S[g, v] + xk
    return S


@numba.njit(cache=True, inline="always")
def _q5_hsum(row, S, o, g):
    """sum_j bit_j * x_j of the Q5 block whose qh (u32) is at row[o:o+4]; g = 4 * block index."""
    return (S[g, row[o]] + S[g + 1, row[o + 1]]) + (S[g + 2, row[o + 2]] + S[g + 3, row[o + 3]])


@numba.njit(cache=True, fastmath=True)
def _row_q5_legacy(row, x, xs, S, has_min, accv):
    """dot(dequant(row), x) for one Q5_0/Q5_1 row: row uint8 (nb*22|24,), x float32 (n_in,) -> float32.

    The 4 low bits go through :func:`_q4_quad` exactly as Q4_0/Q4_1; the 5th bits contribute
    ``16 * d * sum_j bit_j x_j``, looked up per qh byte in ``S`` (:func:`q5_bit_sums`).
    ``accv``: float32 (16,) scratch.
    """
    nb = x.shape[0] // 32
    bs = 24 if has_min else 22
    ho = 4 if has_min else 2
    e = np.float32(0) if has_min else _16
    accv[:] = 0
    sacc = np.float32(0)  # sum_b (m_b - e*d_b) * xs_b + 16 * d_b * hsum_b
    n4 = nb // 4
    for g in range(n4):
        o = 4 * g * bs
        _prefetch(row, o + PREFETCH_AHEAD)
        _prefetch(row, o + PREFETCH_AHEAD + 64)
        d0 = _h(row, o)
        d1 = _h(row, o + bs)
        d2 = _h(row, o + 2 * bs)
        d3 = _h(row, o + 3 * bs)
        _q4_quad(row, x, accv, o, 128 * g, ho + 4, d0, d1, d2, d3, bs, 32)
        b = 4 * g
        sacc += _16 * (d0 * _q5_hsum(row, S, o + ho, 4 * b) + d1 * _q5_hsum(row, S, o + bs + ho, 4 * b + 4)
                       + d2 * _q5_hsum(row, S, o + 2 * bs + ho, 4 * b + 8)
                       + d3 * _q5_hsum(row, S, o + 3 * bs + ho, 4 * b + 12))
        sacc -= e * (d0 * xs[b] + d1 * xs[b + 1] + d2 * xs[b + 2] + d3 * xs[b + 3])
        if has_min:
            sacc += (_h(row, o + 2) * xs[b] + _h(row, o + bs + 2) * xs[b + 1]
                     + _h(row, o + 2 * bs + 2) * xs[b + 2] + _h(row, o + 3 * bs + 2) * xs[b + 3])
    z = np.float32(0)
    if nb % 4 and nb >= 4:  # the last 4 blocks again, those already done weighted 0
        b = nb - 4
        o = b * bs
        d0 = _h(row, o) if b >= 4 * n4 else z
        d1 = _h(row, o + bs) if b + 1 >= 4 * n4 else z
        d2 = _h(row, o + 2 * bs) if b + 2 >= 4 * n4 else z
        d3 = _h(row, o + 3 * bs)
        _q4_quad(row, x, accv, o, 32 * b, ho + 4, d0, d1, d2, d3, bs, 32)
    for k in range(4 * n4, nb):  # scalar terms of the tail blocks (also when nb < 4)
        o = k * bs
        d = _h(row, o)
        if nb < 4:
            _q4_quad(row, x, accv, o, 32 * k, ho + 4, d, z, z, z, 0, 0)
        m = _h(row, o + 2) if has_min else z
        sacc += _16 * d * _q5_hsum(row, S, o + ho, 4 * k) + m * xs[k] - e * d * xs[k]
    acc = np.float32(0)
    for j in range(16):
        acc += accv[j]
    return acc + sacc


@numba.njit(cache=True, parallel=True)
def mv_q5_legacy(raw, x, out, has_min):
    """Q5_0 / Q5_1: raw uint8 (n_out, nb*22|24), x float32 (n_in,) -> out float32 (n_out,)."""
    n = raw.shape[0]
    xs = block_sums32(x)  # float32 (n_in/32,)
    S = q5_bit_sums(x)  # float32 (n_in/8, 256)
    for c in numba.prange((n + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        accv = np.empty(16, np.float32)  # float32 (16,) per-task accumulator
        for r in range(c * ROWS_PER_TASK, min(n, c * ROWS_PER_TASK + ROWS_PER_TASK)):
            out[r] = _row_q5_legacy(raw[r], x, xs, S, has_min, accv)


@numba.njit(cache=True, inline="always")
def _q8_quad(row, x, accv, o, xo, d0, d1, d2, d3, step, xstep):
    """accv[j] += sum over 4 Q8_0 blocks (int8 at row[o + k*step + 2 + j]) of d_k*q_j*x; accv (32,)."""
    o1 = o + step
    o2 = o + 2 * step
    o3 = o + 3 * step
    x1 = xo + xstep
    x2 = xo + 2 * xstep
    x3 = xo + 3 * xstep
    for j in range(accv.shape[0]):
        t = d0 * _i8f(row, o + 2 + j) * x[xo + j]
        t += d1 * _i8f(row, o1 + 2 + j) * x[x1 + j]
        t += d2 * _i8f(row, o2 + 2 + j) * x[x2 + j]
        t += d3 * _i8f(row, o3 + 2 + j) * x[x3 + j]
        accv[j] += t


@numba.njit(cache=True, fastmath=True)
def _row_q8_0(row, x, accv):
    """dot(dequant(row), x) for one Q8_0 row: row uint8 (nb*34,), x float32 (n_in,); accv float32 (32,)."""
    nb = x.shape[0] // 32
    accv[:] = 0
    n4 = nb // 4
    for g in range(n4):
        o = 4 * g * 34
        for k in range(3):
            _prefetch(row, o + PREFETCH_AHEAD + 64 * k)
        _q8_quad(row, x, accv, o, 128 * g, _h(row, o), _h(row, o + 34), _h(row, o + 68), _h(row, o + 102), 34, 32)
    z = np.float32(0)
    if nb % 4 and nb >= 4:  # the last 4 blocks again, those already done weighted 0
        b = nb - 4
        o = b * 34
        d0 = _h(row, o) if b >= 4 * n4 else z
        d1 = _h(row, o + 34) if b + 1 >= 4 * n4 else z
        d2 = _h(row, o + 68) if b + 2 >= 4 * n4 else z
        _q8_quad(row, x, accv, o, 32 * b, d0, d1, d2, _h(row, o + 102), 34, 32)
    elif nb < 4:
        for b in range(nb):
            _q8_quad(row, x, accv, 34 * b, 32 * b, _h(row, 34 * b), z, z, z, 0, 0)
    acc = np.float32(0)
    for j in range(32):
        acc += accv[j]
    return acc


@numba.njit(cache=True, parallel=True)
def mv_q8_0(raw, x, out):
    """Q8_0: raw uint8 (n_out, nb*34) -> out float32 (n_out,)."""
    n = raw.shape[0]
    for c in numba.prange((n + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        accv = np.empty(32, np.float32)  # float32 (32,) per-task accumulator
        for r in range(c * ROWS_PER_TASK, min(n, c * ROWS_PER_TASK + ROWS_PER_TASK)):
            out[r] = _row_q8_0(raw[r], x, accv)


@numba.njit(cache=True, fastmath=True)
def _row_q2_k(row, x):
    """dot(dequant(row), x) for one Q2_K row (uint8 (nb*84,)) -> float32.

    As :func:`_row_q6_k`: one 16-long loop per block carries all 256 elements; the 16 scales and mins
    are loop-invariant loads folded into the products. (No run-time flags inside the loop: a branch
    there stops vectorisation.)
    """
    nb = x.shape[0] // 256
    acc = np.float32(0)
    for b in range(nb):
        o = b * 84
        _prefetch(row, o + PREFETCH_AHEAD)
        _prefetch(row, o + PREFETCH_AHEAD + 64)
        d = _h(row, o + 80)
        dmin = _h(row, o + 82)
        for ln in range(16):
            for h in range(2):
                for half in range(2):
                    ll = 16 * half + ln
                    v = np.float32(row[o + 16 + 32 * h + ll])
                    f1 = np.floor(v * np.float32(0.25))
                    f2 = np.floor(v * np.float32(0.0625))
                    f3 = np.floor(v * np.float32(0.015625))
                    xo = b * 256 + 128 * h + ll
                    for s, q in ((0, v - np.float32(4) * f1), (1, f1 - np.float32(4) * f2),
                                 (2, f2 - np.float32(4) * f3), (3, f3)):
                        sc = np.float32(row[o + 8 * h + 2 * s + half])
                        mn = np.floor(sc * _i16)
                        acc += (d * (sc - _16 * mn) * q - dmin * mn) * x[xo + 32 * s]
    return acc


@numba.njit(cache=True, parallel=True)
def mv_q2_k(raw, x, out):
    """Q2_K: raw uint8 (n_out, nb*84), x float32 (n_in,) -> out float32 (n_out,)."""
    for r in numba.prange(raw.shape[0]):
        out[r] = _row_q2_k(raw[r], x)


@numba.njit(cache=True, fastmath=True)
def _row_q3_k(row, x, sc):
    """dot(dequant(row), x) for one Q3_K row (uint8 (nb*110,)) -> float32; sc: float32 (16,) scratch.

    As :func:`_row_q6_k`: one 16-long loop per block carries all 256 elements; the 16 scales are
    decoded into ``sc`` first (decoding them inside the loop, even loop-invariantly, broke vectorisation).
    """
    nb = x.shape[0] // 256
    acc = np.float32(0)
    for b in range(nb):
        o = b * 110
        _prefetch(row, o + PREFETCH_AHEAD)
        _prefetch(row, o + PREFETCH_AHEAD + 64)
        d = _h(row, o + 108)
        for e in range(16):
            sc[e] = d * np.float32(_q3_scale(row, o + 96, e))
        for ln in range(16):
            for h in range(2):
                for half in range(2):
                    ll = 16 * half + ln
                    v = np.float32(row[o + 32 + 32 * h + ll])
                    f1 = np.floor(v * np.float32(0.25))
                    f2 = np.floor(v * np.float32(0.0625))
                    f3 = np.floor(v * np.float32(0.015625))
                    m = np.floor(np.float32(row[o + ll]) * np.float32(1.0 / (1 << (4 * h))))
                    g1 = np.floor(m * np.float32(0.5))
                    g2 = np.floor(m * np.float32(0.25))
                    g3 = np.floor(m * np.float32(0.125))
                    g4 = np.floor(m * np.float32(0.0625))
                    q0 = v - np.float32(4) * f1 + np.float32(4) * (m - np.float32(2) * g1) - np.float32(4)
                    q1 = f1 - np.float32(4) * f2 + np.float32(4) * (g1 - np.float32(2) * g2) - np.float32(4)
                    q2 = f2 - np.float32(4) * f3 + np.float32(4) * (g2 - np.float32(2) * g3) - np.float32(4)
                    q3 = f3 + np.float32(4) * (g3 - np.float32(2) * g4) - np.float32(4)
                    xo = b * 256 + 128 * h + ll
                    e = 8 * h + half
                    acc += (sc[e] * q0 * x[xo] + sc[e + 2] * q1 * x[xo + 32] + sc[e + 4] * q2 * x[xo + 64]
                            + sc[e + 6] * q3 * x[xo + 96])
    return acc


@numba.njit(cache=True, parallel=True)
def mv_q3_k(raw, x, out):
    """Q3_K: raw uint8 (n_out, nb*110), x float32 (n_in,) -> out float32 (n_out,)."""
    n = raw.shape[0]
    for c in numba.prange((n + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        sc = np.empty(16, np.float32)  # float32 (16,) per-task scale scratch
        for r in range(c * ROWS_PER_TASK, min(n, c * ROWS_PER_TASK + ROWS_PER_TASK)):
            out[r] = _row_q3_k(raw[r], x, sc)


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
