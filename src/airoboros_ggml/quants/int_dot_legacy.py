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
:data:`GROUP` = 8 blocks (256 weights) for every token of the batch: the blocks' codes and fp16 scales are
unpacked once, then per token a ``vphaddd`` tree turns the 8 partial-sum vectors into one vector of the 8
exact block totals ``P_b``, the offsets are subtracted in integers, and the vector is converted to float and
multiplied by the gathered ``d_b dy_b`` (plus ``m_b s_b``) with one horizontal sum per group, every float
operation written out (:data:`.simd.STRICT`, explicit FMAs: a token's result has the same bits in any
batch). ggml's AVX2 path instead converts and scales every block's 8 partial sums (4 more instructions per
block); the result is the same up to float32 rounding (measured against libggml's ``vec_dot``: 1e-6
relative). Sharing the unpacking between tokens: Q4_1 1536x576 on the 2-core box, 4 / 8 tokens 137-146 /
228-246 us -> 98-109 / 161-170 us. No integer overflow: a ``vpmaddubsw`` pair is at most 2*31*127 (Q5) or
2*128*127 (Q8_0 with a -128 weight) < 2^15.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..ggml_types import LAYOUTS, GGMLType
from . import simd as S
from .fused import PREFETCH_AHEAD, ROWS_PER_TASK, _prefetch
from .kernels import Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
from .q8_activations import Q80, Q81, QK8
from .specialise import jit_specialised

GROUP = 8
"""Blocks per intrinsic call (256 weights; 16 measured slower); a row's remaining blocks go by pairs."""

_QS_AT = {Q4_0: 2, Q4_1: 4, Q5_0: 6, Q5_1: 8, Q8_0: 2}  # byte offset of the codes in a block
_QH_AT = {Q5_0: 2, Q5_1: 4}  # byte offset of the 32 high bits (Q5 types)
_OFFSET = {Q4_0: 8, Q5_0: 16}  # codes are q - offset


def _fsum(bld, v) -> ir.Value:
    """Sum of the lanes of a float vector (pairwise tree, exactly as written; width a power of two)."""
    n = v.type.count
    while n > 1:
        n //= 2
        v = bld.fadd(S.pick(bld, v, list(range(n))), S.pick(bld, v, list(range(n, 2 * n))), flags=S.STRICT)
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


def _group_codegen(kind: int, nblk: int, one: bool):
    """Codegen of the products of blocks b0..b0+nblk-1 of a weight row (see the module docs).

    Args row, o (byte offset of block b0 in the row), qs (n_tok, n_in), d and aux (n_tok, nb), b0, acc.
    ``one``: token 0 only, ``acc + sum`` returned (acc a float32 scalar); else every token t of the batch,
    ``acc[t] += sum`` (acc float32 (n_tok,)). The weight blocks are unpacked (codes, fp16 scales) once, before
    the loop over the tokens; each token then costs its ``vpmaddubsw``/``vpmaddwd`` products, one reduction and
    a few float operations, written out (:data:`.simd.STRICT` flags, explicit FMAs) and the same code in both
    forms, so a token's bits do not depend on the batch it is in.
    """
    assert nblk in (1, 2, GROUP)
    bs = LAYOUTS[GGMLType(kind)].type_size
    i64 = ir.IntType(64)
    vf = ir.VectorType(S.F32, nblk)

    def token_sum(bld, unpacked, yp, dp, ap, acc) -> ir.Value:
        """``acc`` plus the blocks' values for the token whose codes, scales and side values are at yp, dp, ap.

        A group: ``acc + sum(lanes)``, lanes = ``P_b d_b dy_b (+ m_b s_b, one FMA)``; a single block:
        ``acc + P d dy (+ m s)`` as two FMAs (what numba's fastmath made of the earlier per-token code).
        """
        dw, mw, ws, codes = unpacked
        sums = []  # i32 (8,) partial sums of each block's products
        for k in range(nblk):
            y = S.load(bld, S.byte_ptr(bld, yp, QK8 * k), S.V32I8)
            if kind == Q8_0:  # the weight's sign moved onto the activation
                y = S.call_intrinsic(bld, "llvm.x86.avx2.psign.b", S.V32I8, [y, ws[k]])
            sums.append(S.maddwd(bld, S.maddubs(bld, codes[k], y), S.const(1, S.V16I16)))
        if nblk == 1:
            isum = bld.insert_element(ir.Constant(ir.VectorType(S.I32, 1), None), S.hsum(bld, sums[0]), S.const(0))
        elif nblk == 2:
            isum = S.hsum2(bld, *sums)
        else:  # nblk == GROUP: per-block totals in one vector
            isum = S.hsum8(bld, sums)
        if kind in _OFFSET:  # P_b - off * sum_i y_i
            ysum = bld.sext(S.load(bld, ap, ir.VectorType(S.I16, nblk)), isum.type)
            isum = bld.sub(isum, bld.mul(ysum, ir.Constant(isum.type, [_OFFSET[kind]] * nblk)))
        scale = bld.fmul(dw, S.load(bld, dp, vf), flags=S.STRICT)  # d_b * dy_b
        if nblk == 1:
            lane0 = lambda v: bld.extract_element(v, S.const(0))  # noqa: E731
            acc = S.call_intrinsic(bld, "llvm.fma.f32", S.F32, [lane0(bld.sitofp(isum, vf)), lane0(scale), acc])
            if mw is not None:  # + m s
                acc = S.call_intrinsic(bld, "llvm.fma.f32", S.F32, [lane0(mw), lane0(S.load(bld, ap, vf)), acc])
            return acc
        lanes = bld.fmul(bld.sitofp(isum, vf), scale, flags=S.STRICT)
        if mw is not None:  # + m_b s_b
            lanes = S.call_intrinsic(bld, f"llvm.fma.v{nblk}f32", vf, [mw, S.load(bld, ap, vf), lanes])
        return bld.fadd(acc, _fsum(bld, lanes), flags=S.STRICT)

    def codegen(context, bld, signature, args):
        row, o, qs, d, aux, b0, acc = args
        a_row, _, a_qs, a_d, a_aux, _, a_acc = signature.args
        rp = S.array_ptr(context, bld, a_row, row, o)
        b0 = bld.sext(b0, i64) if b0.type != i64 else b0
        dw = _gather_f16(bld, rp, [bs * k for k in range(nblk)])
        mw = _gather_f16(bld, rp, [bs * k + 2 for k in range(nblk)]) if kind in (Q4_1, Q5_1) else None
        blocks = [S.byte_ptr(bld, rp, bs * k) for k in range(nblk)]
        if kind == Q8_0:
            ws = [S.load(bld, S.byte_ptr(bld, bp, 2), S.V32I8) for bp in blocks]
            codes = [S.call_intrinsic(bld, "llvm.x86.avx2.psign.b", S.V32I8, [w, w]) for w in ws]  # |w|
        else:
            ws, codes = None, [_codes(bld, kind, bp) for bp in blocks]
        unpacked = dw, mw, ws, codes
        def pointers(t):  # token t's codes, scales and side values from block b0 on
            yp = S.item_ptr(context, bld, a_qs, qs, [t, bld.mul(b0, ir.Constant(i64, QK8))])
            return yp, S.item_ptr(context, bld, a_d, d, [t, b0]), S.item_ptr(context, bld, a_aux, aux, [t, b0])

        if one:  # token 0
            return token_sum(bld, unpacked, *pointers(ir.Constant(i64, 0)), acc)
        n_tok = cgutils.unpack_tuple(bld, context.make_array(a_d)(context, bld, d).shape)[0]
        with cgutils.for_range(bld, n_tok) as loop:
            accp = S.item_ptr(context, bld, a_acc, acc, [loop.index])
            bld.store(token_sum(bld, unpacked, *pointers(loop.index), bld.load(accp)), accp)
        return context.get_dummy_value()

    return codegen


def _tail_codegen(kind: int, one: bool):
    """Codegen of the products of blocks b and b+1 of a weight row, or of block b alone if it is the last.

    For the blocks after a row's last whole :data:`GROUP`. Arguments as :func:`_group_codegen`'s with ``nb`` (the
    row's block count) in place of the byte offset; the pair or single is chosen by a branch in the IR.
    """
    bs = LAYOUTS[GGMLType(kind)].type_size
    i64 = ir.IntType(64)
    pair, single = _group_codegen(kind, 2, one), _group_codegen(kind, 1, one)

    def codegen(context, bld, signature, args):
        row, qs, d, aux, b, nb, acc = args
        a_row, a_qs, a_d, a_aux, _, _, a_acc = signature.args
        sig = types.none(a_row, types.int64, a_qs, a_d, a_aux, types.int64, a_acc)
        b, nb = (bld.sext(v, i64) if v.type != i64 else v for v in (b, nb))
        o = bld.mul(b, ir.Constant(i64, bs))
        accp = cgutils.alloca_once_value(bld, acc) if one else None
        two = bld.icmp_signed("<", bld.add(b, ir.Constant(i64, 1)), nb)
        with bld.if_else(two) as (then, otherwise):
            for cg, branch in ((pair, then), (single, otherwise)):
                with branch:
                    res = cg(context, bld, sig, (row, o, qs, d, aux, b, acc))
                    if one:
                        bld.store(res, accp)
        return bld.load(accp) if one else context.get_dummy_value()

    return codegen


def _make_tail(kind: int, one: bool):
    def tail(typingctx, row, qs, d, aux, b, nb, acc):
        ret = types.float32 if one else types.void
        return ret(row, qs, d, aux, b, nb, acc), _tail_codegen(kind, one)

    tail.__name__ = f"_tail_{kind}{'_one' if one else ''}"
    return intrinsic(tail)


def _make_group(kind: int, nblk: int, one: bool):
    def group(typingctx, row, o, qs, d, aux, b0, acc):
        ret = types.float32 if one else types.void
        return ret(row, o, qs, d, aux, b0, acc), _group_codegen(kind, nblk, one)

    group.__name__ = f"_group_{kind}_{nblk}{'_one' if one else ''}"
    return intrinsic(group)


# Rows kernels, one per type, each compiled under a name of its own (:mod:`.specialise`): a type flag tested
# inside the block loop costs 10-20% (see int_dot). out[t, r] = dot(dequant(raw[r]), y_t) for a task's rows
# r0..r1-1 and every token t; qs int8 (n_tok, n_in), d float32 (n_tok, nb), aux int16 sums (Q80) or float32 s
# (Q81) (n_tok, nb), acc float32 (n_tok,) scratch, out float32 (n_tok, n_out). A batch reads each group of
# weight blocks once and unpacks it once for all its tokens; one token takes the single-token intrinsics (a
# scalar accumulator, no loop over tokens). The blocks after a row's last whole group go by pairs. One call
# per task rather than per row: the call of a kernel taking five arrays cost ~30% of a 576-wide Q4_1 row at
# one token (pure kernel, one thread, cycles per block and token, Q4_1 576 wide, before -> after: 1 token
# 8.17 -> 6.02, 4 tokens 4.27 -> 3.75, 8 tokens 3.45 -> 3.17; Q8_0 1 token 7.35 -> 5.23; the pairs'
# share of it: 4 tokens 3.90 -> 3.75).


def _make_rows(kind: int):
    """The rows kernel of weight type ``kind`` (see above)."""
    bs = LAYOUTS[GGMLType(kind)].type_size
    lines = (GROUP * bs + 63) // 64  # cache lines of a group, prefetched PREFETCH_AHEAD bytes ahead
    group, tail = _make_group(kind, GROUP, False), _make_tail(kind, False)
    group_one, tail_one = _make_group(kind, GROUP, True), _make_tail(kind, True)

    def rows_kernel(raw, r0, r1, qs, d, aux, acc, out):
        n_tok, nb = d.shape
        if n_tok == 1:
            for r in range(r0, r1):
                row = raw[r]
                s = np.float32(0)
                for g in range(nb // GROUP):
                    o = g * GROUP * bs
                    for k in range(lines):
                        _prefetch(row, o + PREFETCH_AHEAD + 64 * k)
                    s = group_one(row, o, qs, d, aux, g * GROUP, s)
                for p in range((nb - nb % GROUP) >> 1, (nb + 1) >> 1):
                    s = tail_one(row, qs, d, aux, 2 * p, nb, s)
                out[0, r] = s
            return
        for r in range(r0, r1):
            row = raw[r]
            acc[:] = 0
            for g in range(nb // GROUP):
                o = g * GROUP * bs
                for k in range(lines):
                    _prefetch(row, o + PREFETCH_AHEAD + 64 * k)
                group(row, o, qs, d, aux, g * GROUP, acc)
            for p in range((nb - nb % GROUP) >> 1, (nb + 1) >> 1):
                tail(row, qs, d, aux, 2 * p, nb, acc)
            for t in range(n_tok):  # not out[:, r] = acc: its shape check takes numba ~2 s to compile
                out[t, r] = acc[t]

    return jit_specialised(rows_kernel, GGMLType(kind).name.lower(), fastmath=True)


_kernel_q4_0, _kernel_q4_1, _kernel_q5_0, _kernel_q5_1, _kernel_q8_0 = (
    _make_rows(t) for t in (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)
)


@numba.njit(inline="always")  # see int_dot._rows
def _rows_q8_0(kind, raw, r0, r1, qs, d, sums, acc, out):
    """out[:, r] for rows r0..r1-1 of a Q4_0/Q5_0/Q8_0 matrix; acc float32 (n_tok,) scratch."""
    if kind == Q4_0:
        _kernel_q4_0(raw, r0, r1, qs, d, sums, acc, out)
    elif kind == Q5_0:
        _kernel_q5_0(raw, r0, r1, qs, d, sums, acc, out)
    else:
        _kernel_q8_0(raw, r0, r1, qs, d, sums, acc, out)


@numba.njit(inline="always")  # see int_dot._rows
def _rows_q8_1(kind, raw, r0, r1, qs, d, s, acc, out):
    """out[:, r] for rows r0..r1-1 of a Q4_1/Q5_1 matrix; acc float32 (n_tok,) scratch."""
    if kind == Q4_1:
        _kernel_q4_1(raw, r0, r1, qs, d, s, acc, out)
    else:
        _kernel_q5_1(raw, r0, r1, qs, d, s, acc, out)


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
