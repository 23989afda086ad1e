"""Integer matrix-vector kernels for the legacy 32-element types over Q8_0 / Q8_1 activations, as llama.cpp.

Weights ``Q4_0``, ``Q5_0`` and ``Q8_0`` multiply activations quantized to ``Q8_0``, ``Q4_1`` and ``Q5_1``
multiply ``Q8_1`` (:mod:`.q8_activations`), the pairs llama.cpp's x86 CPU backend uses. For one token and
one weight row, with ``P_b = sum_i q_i y_i`` the exact integer product of block ``b``'s codes:

* ``Q4_0`` / ``Q5_0``: ``sum_b d_b dy_b (P_b - off * sum_i y_i)`` with ``off`` = 8 / 16 (the codes stay
  unsigned in the SIMD product; the offset goes through the activation block sums ``Q80.sums``);
* ``Q4_1`` / ``Q5_1``: ``sum_b d_b dy_b P_b + m_b s_b`` (``s`` = the activation block's fp16 ``d*sum q``);
* ``Q8_0``: ``sum_b d_b dy_b P_b`` (signed x signed: ``vpsignb`` moves the weight's sign onto the
  activation, so ``vpmaddubsw`` sees ``|w|``; activation codes are in [-127, 127], so no sign overflow).

A block's products come from ``vpmaddubsw`` + ``vpmaddwd`` (8 i32 partial sums). One intrinsic call handles
:data:`GROUP` = 8 blocks (256 weights): a ``vphaddd`` tree turns their 8 partial-sum vectors into one
vector of the 8 exact block totals ``P_b``, the offsets are subtracted in integers, and the vector is
converted to float and multiplied by the gathered ``d_b dy_b`` (plus ``m_b s_b``) with one horizontal sum
per group. ggml's AVX2 path instead converts and scales every block's 8 partial sums (4 more instructions
per block); the result is the same up to float32 rounding (measured against libggml's ``vec_dot``: 1e-6
relative). No integer overflow: a ``vpmaddubsw`` pair is at most 2*31*127 (Q5) or 2*128*127 (Q8_0 with a
-128 weight) < 2^15.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..ggml_types import LAYOUTS, GGMLType
from . import simd as S
from .fused import PREFETCH_AHEAD, ROWS_PER_TASK, _prefetch
from .kernels import Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
from .q8_activations import Q80, Q81, QK8

GROUP = 8
"""Blocks per intrinsic call (256 weights; 16 measured slower); a row's remaining blocks go one per call."""

_QS_AT = {Q4_0: 2, Q4_1: 4, Q5_0: 6, Q5_1: 8, Q8_0: 2}  # byte offset of the codes in a block
_QH_AT = {Q5_0: 2, Q5_1: 4}  # byte offset of the 32 high bits (Q5 types)
_OFFSET = {Q4_0: 8, Q5_0: 16}  # codes are q - offset
V8F32 = ir.VectorType(S.F32, 8)


def _fsum(bld, v) -> ir.Value:
    """Sum of the lanes of a float vector (pairwise tree; width a power of two)."""
    n = v.type.count
    while n > 1:
        n //= 2
        v = bld.fadd(S.pick(bld, v, list(range(n))), S.pick(bld, v, list(range(n, 2 * n))))
    return bld.extract_element(v, S.const(0))


def _gather_f16(bld, rp, offsets: list[int]) -> ir.Value:
    """float32 (len(offsets),) vector of the fp16 values at rp + each byte offset."""
    h = ir.Constant(ir.VectorType(S.I16, len(offsets)), ir.Undefined)
    for k, off in enumerate(offsets):
        h = bld.insert_element(h, S.load(bld, S.byte_ptr(bld, rp, off), S.I16), S.const(k))
    n = len(offsets)
    return bld.fpext(bld.bitcast(h, ir.VectorType(ir.HalfType(), n)), ir.VectorType(S.F32, n))


def _codes(bld, kind: int, bp) -> ir.Value:
    """The 32 codes of the 4/5-bit block at ``bp`` in element order, as unsigned bytes (32,)."""
    q = S.load(bld, S.byte_ptr(bld, bp, _QS_AT[kind]), S.V16I8)
    lo = bld.and_(q, S.const(15, S.V16I8))
    hi = bld.lshr(q, S.const(4, S.V16I8))
    codes = bld.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(S.I32, 32), list(range(32))))
    if kind in _QH_AT:  # 5th bit of element j = bit j of the little-endian u32 qh
        qh = bld.bitcast(S.load(bld, S.byte_ptr(bld, bp, _QH_AT[kind]), S.I32), ir.VectorType(S.I8, 4))
        spread = S.pick(bld, qh, [j // 8 for j in range(32)])  # byte j//8 of qh in lane j
        bits = bld.and_(spread, ir.Constant(S.V32I8, [1 << (j % 8) for j in range(32)]))
        is_set = bld.icmp_unsigned("!=", bits, S.const(0, S.V32I8))
        high = bld.select(is_set, S.const(16, S.V32I8), S.const(0, S.V32I8))
        codes = bld.or_(codes, high)
    return codes


def _group_codegen(kind: int, nblk: int):
    """Codegen of ``float32 sum over blocks b0..b0+nblk-1`` for weight type ``kind`` (see the module docs)."""
    assert nblk in (1, 8)
    bs = LAYOUTS[GGMLType(kind)].type_size

    def codegen(context, bld, signature, args):
        row, o, qs, d, aux, b0 = args
        rp = S.array_ptr(context, bld, signature.args[0], row, o)
        yp = S.array_ptr(context, bld, signature.args[2], qs, bld.mul(b0, ir.Constant(b0.type, QK8)))
        dp = S.array_ptr(context, bld, signature.args[3], d, b0)
        ap = S.array_ptr(context, bld, signature.args[4], aux, b0)
        vf = ir.VectorType(S.F32, nblk)
        dw = _gather_f16(bld, rp, [bs * k for k in range(nblk)])
        scale = bld.fmul(dw, S.load(bld, dp, vf))  # d_b * dy_b
        ones = S.const(1, S.V16I16)
        sums = []  # i32 (8,) partial sums of each block's products
        for k in range(nblk):
            bp = S.byte_ptr(bld, rp, bs * k)
            y = S.load(bld, S.byte_ptr(bld, yp, QK8 * k), S.V32I8)
            if kind == Q8_0:
                w = S.load(bld, S.byte_ptr(bld, bp, 2), S.V32I8)
                absw = S.call_intrinsic(bld, "llvm.x86.avx2.psign.b", S.V32I8, [w, w])
                p = S.maddubs(bld, absw, S.call_intrinsic(bld, "llvm.x86.avx2.psign.b", S.V32I8, [y, w]))
            else:
                p = S.maddubs(bld, _codes(bld, kind, bp), y)
            sums.append(S.maddwd(bld, p, ones))
        if nblk == 1:
            one = ir.Constant(ir.VectorType(S.I32, 1), None)
            isum = bld.insert_element(one, S.hsum(bld, sums[0]), S.const(0))
        else:  # nblk == 8: per-block totals in one vector
            isum = S.hsum8(bld, sums)
        if kind in _OFFSET:  # P_b - off * sum_i y_i
            ysum = bld.sext(S.load(bld, ap, ir.VectorType(S.I16, nblk)), isum.type)
            isum = bld.sub(isum, bld.mul(ysum, ir.Constant(isum.type, [_OFFSET[kind]] * nblk)))
        lanes = bld.fmul(bld.sitofp(isum, vf), scale)
        if kind in (Q4_1, Q5_1):  # + m_b s_b
            mw = _gather_f16(bld, rp, [bs * k + 2 for k in range(nblk)])
            lanes = S.call_intrinsic(bld, f"llvm.fmuladd.v{nblk}f32", vf, [mw, S.load(bld, ap, vf), lanes])
        total = _fsum(bld, lanes)
        return total

    return codegen


def _make_group(kind: int, nblk: int):
    def group(typingctx, row, o, qs, d, aux, b0):
        return types.float32(row, o, qs, d, aux, b0), _group_codegen(kind, nblk)

    group.__name__ = f"_group_{kind}_{nblk}"
    return intrinsic(group)


_g4_0, _b4_0 = _make_group(Q4_0, GROUP), _make_group(Q4_0, 1)
_g4_1, _b4_1 = _make_group(Q4_1, GROUP), _make_group(Q4_1, 1)
_g5_0, _b5_0 = _make_group(Q5_0, GROUP), _make_group(Q5_0, 1)
_g5_1, _b5_1 = _make_group(Q5_1, GROUP), _make_group(Q5_1, 1)
_g8_0, _b8_0 = _make_group(Q8_0, GROUP), _make_group(Q8_0, 1)

# Row kernels, one per type (a type flag tested inside the block loop costs 10-20%, see int_dot): acc[t] =
# dot(dequant(row), y_t) for every token t; qs int8 (n_tok, n_in), d float32 (n_tok, nb), aux int16 sums
# (Q80) or float32 s (Q81) (n_tok, nb), acc float32 (n_tok,). Each group of weight blocks is read once for
# all tokens.


@numba.njit(cache=True, fastmath=True)
def _row_q4_0(row, qs, d, aux, acc):
    acc[:] = 0
    nb = d.shape[1]
    for g in range(nb // GROUP):
        o = g * GROUP * 18
        for k in range((GROUP * 18 + 63) // 64):
            _prefetch(row, o + PREFETCH_AHEAD + 64 * k)
        for t in range(d.shape[0]):
            acc[t] += _g4_0(row, o, qs[t], d[t], aux[t], g * GROUP)
    for b in range(nb - nb % GROUP, nb):
        for t in range(d.shape[0]):
            acc[t] += _b4_0(row, b * 18, qs[t], d[t], aux[t], b)


@numba.njit(cache=True, fastmath=True)
def _row_q4_1(row, qs, d, aux, acc):
    acc[:] = 0
    nb = d.shape[1]
    for g in range(nb // GROUP):
        o = g * GROUP * 20
        for k in range((GROUP * 20 + 63) // 64):
            _prefetch(row, o + PREFETCH_AHEAD + 64 * k)
        for t in range(d.shape[0]):
            acc[t] += _g4_1(row, o, qs[t], d[t], aux[t], g * GROUP)
    for b in range(nb - nb % GROUP, nb):
        for t in range(d.shape[0]):
            acc[t] += _b4_1(row, b * 20, qs[t], d[t], aux[t], b)


@numba.njit(cache=True, fastmath=True)
def _row_q5_0(row, qs, d, aux, acc):
    acc[:] = 0
    nb = d.shape[1]
    for g in range(nb // GROUP):
        o = g * GROUP * 22
        for k in range((GROUP * 22 + 63) // 64):
            _prefetch(row, o + PREFETCH_AHEAD + 64 * k)
        for t in range(d.shape[0]):
            acc[t] += _g5_0(row, o, qs[t], d[t], aux[t], g * GROUP)
    for b in range(nb - nb % GROUP, nb):
        for t in range(d.shape[0]):
            acc[t] += _b5_0(row, b * 22, qs[t], d[t], aux[t], b)


@numba.njit(cache=True, fastmath=True)
def _row_q5_1(row, qs, d, aux, acc):
    acc[:] = 0
    nb = d.shape[1]
    for g in range(nb // GROUP):
        o = g * GROUP * 24
        for k in range((GROUP * 24 + 63) // 64):
            _prefetch(row, o + PREFETCH_AHEAD + 64 * k)
        for t in range(d.shape[0]):
            acc[t] += _g5_1(row, o, qs[t], d[t], aux[t], g * GROUP)
    for b in range(nb - nb % GROUP, nb):
        for t in range(d.shape[0]):
            acc[t] += _b5_1(row, b * 24, qs[t], d[t], aux[t], b)


@numba.njit(cache=True, fastmath=True)
def _row_q8_0(row, qs, d, aux, acc):
    acc[:] = 0
    nb = d.shape[1]
    for g in range(nb // GROUP):
        o = g * GROUP * 34
        for k in range((GROUP * 34 + 63) // 64):
            _prefetch(row, o + PREFETCH_AHEAD + 64 * k)
        for t in range(d.shape[0]):
            acc[t] += _g8_0(row, o, qs[t], d[t], aux[t], g * GROUP)
    for b in range(nb - nb % GROUP, nb):
        for t in range(d.shape[0]):
            acc[t] += _b8_0(row, b * 34, qs[t], d[t], aux[t], b)


@numba.njit(inline="always")  # see int_dot._rows
def _rows_q8_0(kind, raw, r0, r1, qs, d, sums, acc, out):
    """out[:, r] for rows r0..r1-1 of a Q4_0/Q5_0/Q8_0 matrix; acc float32 (n_tok,) scratch."""
    for r in range(r0, r1):
        if kind == Q4_0:
            _row_q4_0(raw[r], qs, d, sums, acc)
        elif kind == Q5_0:
            _row_q5_0(raw[r], qs, d, sums, acc)
        else:
            _row_q8_0(raw[r], qs, d, sums, acc)
        out[:, r] = acc


@numba.njit(inline="always")  # see int_dot._rows
def _rows_q8_1(kind, raw, r0, r1, qs, d, s, acc, out):
    """out[:, r] for rows r0..r1-1 of a Q4_1/Q5_1 matrix; acc float32 (n_tok,) scratch."""
    for r in range(r0, r1):
        if kind == Q4_1:
            _row_q4_1(raw[r], qs, d, s, acc)
        else:
            _row_q5_1(raw[r], qs, d, s, acc)
        out[:, r] = acc


@numba.njit(cache=True, parallel=True)
def matmul_q8_0(kind, raw, qs, d, sums, out):
    """``out = Y @ W.T`` for Q4_0/Q5_0/Q8_0 rows W and Q8_0 activations Y (n_tok tokens; 1 is a matvec).

    kind: GGUF type id; raw uint8 (n_out, nb*block bytes); qs int8 (n_tok, n_in); d float32 (n_tok, nb);
    sums int16 (n_tok, nb) (:class:`~.q8_activations.Q80`) -> out float32 (n_tok, n_out).
    """
    n = raw.shape[0]
    for c in numba.prange((n + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        acc = np.empty(d.shape[0], np.float32)  # float32 (n_tok,) per-task accumulator
        r0 = c * ROWS_PER_TASK
        _rows_q8_0(kind, raw, r0, min(n, r0 + ROWS_PER_TASK), qs, d, sums, acc, out)


@numba.njit(cache=True, parallel=True)
def matmul_q8_1(kind, raw, qs, d, s, out):
    """``out = Y @ W.T`` for Q4_1/Q5_1 rows W and Q8_1 activations Y (n_tok tokens; 1 is a matvec).

    kind: GGUF type id; raw uint8 (n_out, nb*block bytes); qs int8 (n_tok, n_in); d float32 (n_tok, nb);
    s float32 (n_tok, nb) (:class:`~.q8_activations.Q81`) -> out float32 (n_tok, n_out).
    """
    n = raw.shape[0]
    for c in numba.prange((n + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        acc = np.empty(d.shape[0], np.float32)  # float32 (n_tok,) per-task accumulator
        r0 = c * ROWS_PER_TASK
        _rows_q8_1(kind, raw, r0, min(n, r0 + ROWS_PER_TASK), qs, d, s, acc, out)


def matmul_via_q8_0(t: GGMLType, raw: np.ndarray, X: np.ndarray, out: np.ndarray) -> None:
    """``out = X @ W.T`` through Q8_0 activations (integer kernel of Q4_0, Q5_0 and Q8_0 weights).

    raw uint8 (n_out, row_bytes) of type ``t``, X float32 (n_tok, n_in) -> out float32 (n_tok, n_out)
    (contiguous).
    """
    y = Q80(X)
    matmul_q8_0(int(t), raw, y.qs, y.d, y.sums, out)


def matmul_via_q8_1(t: GGMLType, raw: np.ndarray, X: np.ndarray, out: np.ndarray) -> None:
    """``out = X @ W.T`` through Q8_1 activations (integer kernel of Q4_1 and Q5_1 weights).

    Shapes as :func:`matmul_via_q8_0`.
    """
    y = Q81(X)
    matmul_q8_1(int(t), raw, y.qs, y.d, y.s, out)
