"""Integer matrix-vector kernels: K-quant weight rows times Q8_K activations, as llama.cpp's decode path.

For one token, ``out[r] = sum_b yd[b] * dot_b(row r, y)`` where ``y`` is the activation vector quantized to
Q8_K (:mod:`.q8_activations`) and ``dot_b`` is one 256-element block's product computed with 8/16-bit integer
SIMD: ``vpmaddubsw`` multiplies 32 unsigned weight codes by 32 signed activation bytes, ``vpmaddwd`` applies
the integer sub-block scales (see :mod:`.simd`). That is ~4 instructions per 64 weights instead of ~20 for the
exact float32 kernels of :mod:`.fused`, so the kernels run at memory bandwidth (measured on the 2-core box:
Q4_K 12.5 -> 34 GB/s, Q6_K 11.4 -> 41 GB/s).

Per block and token (every type), the products are exact integers in the 8 i32 lanes of a vector (``isum``
and ``msum`` below are their lane sums); the lanes are not summed per block (a horizontal sum cost ~20% of a
Q4_K block) but converted to float and added, scaled, to a float32 (8,) accumulator per (row, token)
(:func:`accumulate`: ``d_w*yd`` times the ``isum`` lanes, ``-dmin_w*yd`` times the ``msum`` lanes), folded
once per row (:func:`lane_total`). The weight codes fed to ``vpmaddubsw`` are unsigned, and offsets (mins,
Q6_K's -32, Q3_K's -4) are applied through the activation ``bsums`` (``bsum_g`` = sum of the 16 activation
bytes of group g, ``y`` the activation bytes):

* ``Q2_K``: ``isum = sum_g sc_g * sum_{i in g} q_i y_i`` (16 groups of 16, 2-bit q, sc_g = low nibble of
  scales[g]), ``msum = sum_g m_g * bsum_g`` (m_g = high nibble).
* ``Q3_K``: ``u = low2 + 4*hmask_bit`` (0..7) is the code and ``u - 4`` the value, so ``isum = sum_g sc_g *
  sum_{i in g} u_i y_i - 4 * sum_g sc_g * bsum_g`` (16 groups of 16, sc_g = 6-bit scale - 32 in -32..31,
  unpacked from the 12 bytes with 32-bit masks as ggml does), no mins.
* ``Q4_K``: ``isum = sum_k sc_k * sum_{i in k} q_i y_i`` (8 sub-blocks of 32, 4-bit q), ``msum = sum_k
  m_k * (bsum_{2k} + bsum_{2k+1})``; scales and mins unpacked from the 12 bytes with 32-bit masks.
* ``Q5_K``: as Q4_K with 5-bit q = nibble | (qh bit << 4) (0..31); the bit of element e is bit e//32 of
  qh[e%32].
* ``Q6_K``: ``isum = sum_g sc_g * sum_{i in g} q_i y_i - 32 * sum_g sc_g * bsum_g`` (16 groups of 16, 6-bit
  q, int8 scales), no mins.

No integer overflow: ``vpmaddubsw`` saturates a pair sum to int16, and the largest pair |u0*y0 + u1*y1| is
2 * qmax * 128 = 768 (Q2_K), 1792 (Q3_K), 3840 (Q4_K), 7936 (Q5_K), 16128 (Q6_K), all < 2^15; ``vpmaddwd``
with scales |sc| <= 63 (Q6_K int8: 128) and a block total (at most 256 * 63 * 128 * 128 ~ 2^28 for Q6_K) stay
far under 2^31. Every kernel of a K-quant type (the one-token and batch row kernels here, the tiles of
:mod:`.int_gemm`) computes the same lanes with the same float operations: a token's result does not depend on
the batch or the kernel (tested bit for bit).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..ggml_types import GGMLType
from . import simd as S
from .fused import PREFETCH_AHEAD, ROWS_PER_TASK, _prefetch
from .kernels import Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
from .q8_activations import Q8K, QK_K
from .specialise import jit_specialised


def k4_scale_bytes(bld, rp) -> ir.Value:
    """u8 (32,): the 6-bit scales 0..7 then mins 0..7 of the Q4_K/Q5_K block at rp, in both 128-bit halves.

    ggml's 32-bit-mask unpacking of the 12 bytes at rp + 4, done in one vector: with u0, u1, u2 those bytes'
    words, the result words are ``u0 & m6``, ``u2 & m4 | (u0 >> 6 & m2) << 4``, ``u1 & m6`` and ``u2 >> 4 & m4
    | (u1 >> 6 & m2) << 4``.
    """
    v4 = ir.VectorType(S.I32, 4)
    v = S.load(bld, rp, v4)  # i32 (4,): d and dmin, u0, u1, u2
    lanes = lambda *c: ir.Constant(v4, list(c))  # noqa: E731
    m6, m4, m2 = 0x3F3F3F3F, 0x0F0F0F0F, 0x03030303
    low = bld.and_(bld.lshr(S.pick(bld, v, [1, 3, 2, 3]), lanes(0, 0, 0, 4)), lanes(m6, m4, m6, m4))
    top = bld.shl(bld.and_(bld.lshr(S.pick(bld, v, [1, 1, 2, 2]), lanes(6, 6, 6, 6)), lanes(0, m2, 0, m2)),
                  lanes(4, 4, 4, 4))
    return S.pick(bld, bld.bitcast(bld.or_(low, top), S.V16I8), list(range(16)) * 2)


def k4_chunk_scales(bld, sb) -> list:
    """The 8 vectors i16 (16,) holding sub-block k's scale 16 times (sb from :func:`k4_scale_bytes`)."""
    return [bld.bitcast(S.pshufb(bld, sb, [k, -1] * 16), S.V16I16) for k in range(8)]


def k4_min_coefs(bld, sb) -> ir.Value:
    """i16 (16,): lane g = the min of sub-block g // 2, the coefficient of the activations' bsum g."""
    return bld.bitcast(S.pshufb(bld, sb, [i for g in range(16) for i in (8 + g // 2, -1)]), S.V16I16)


def group_chunk_scales(bld, sc) -> list:
    """The 8 vectors i16 (16,) ``[sc[2k]] * 8 + [sc[2k+1]] * 8`` of the 16 group scales sc i16 (16,)."""
    halves = (S.pick(bld, sc, list(range(8)) * 2), S.pick(bld, sc, list(range(8, 16)) * 2))
    out = []
    for k in range(8):
        j = 2 * k % 8  # groups 2k, 2k+1 are words j, j+1 of halves[k // 4]
        mask = [2 * j, 2 * j + 1] * 8 + [2 * j + 2, 2 * j + 3] * 8
        out.append(bld.bitcast(S.pshufb(bld, halves[k // 4], mask), S.V16I16))
    return out


def k4_codes(bld, rp, qo, qh_o) -> list:
    """The 8 vectors u8 (32,) of codes of sub-blocks 0..7 of the Q4_K (qh_o None) / Q5_K block at rp."""
    qh = None if qh_o is None else S.load(bld, S.byte_ptr(bld, rp, qh_o), S.V32I8)
    one, four = S.const(1, S.V32I8), S.const(4, S.V32I8)
    codes = []
    for j in range(4):  # 64 elements: low nibbles = sub-block 2j, high nibbles = 2j+1
        q = S.load(bld, S.byte_ptr(bld, rp, qo + 32 * j), S.V32I8)
        lo = bld.and_(q, S.const(15, S.V32I8))
        hi = bld.lshr(q, S.const(4, S.V32I8))
        if qh is not None:  # 5th bit of sub-block k = bit k of qh
            lo = bld.or_(lo, bld.shl(bld.and_(bld.lshr(qh, S.const(2 * j, S.V32I8)), one), four))
            hi = bld.or_(hi, bld.shl(bld.and_(bld.lshr(qh, S.const(2 * j + 1, S.V32I8)), one), four))
        codes += [lo, hi]
    return codes


def low2_chunks(bld, rp, qo):
    """The 8 vectors u8 (32,) of 2-bit codes of elements 32j..32j+31 (j = 4h + s) from qs[64] at rp + qo."""
    m3 = S.const(3, S.V32I8)
    out = []
    for h in range(2):
        q = S.load(bld, S.byte_ptr(bld, rp, qo + 32 * h), S.V32I8)
        out += [bld.and_(q if s == 0 else bld.lshr(q, S.const(2 * s, S.V32I8)), m3) for s in range(4)]
    return out


def q2_scales_mins(bld, rp) -> tuple:
    """i16 (16,) group scales and i16 (16,) group mins (0..15 each) of the Q2_K block at rp."""
    sb = S.load(bld, rp, S.V16I8)  # u8 (16,): scale | min << 4 per group
    return (bld.zext(bld.and_(sb, S.const(15, S.V16I8)), S.V16I16),
            bld.zext(bld.lshr(sb, S.const(4, S.V16I8)), S.V16I16))


def q3_scales(bld, rp) -> ir.Value:
    """i16 (16,) signed group scales -32..31 of the Q3_K block at rp (ggml's kmask1/kmask2 unpacking).

    With u0, u1, u2 the words of the 12 scale bytes at rp + 96, the scale bytes' words are ``u0 & m4 | (u2 &
    m2) << 4``, ``u1 & m4 | (u2 >> 2 & m2) << 4``, ``u0 >> 4 & m4 | (u2 >> 4 & m2) << 4`` and ``u1 >> 4 & m4 |
    (u2 >> 6 & m2) << 4``, computed in one vector (loaded from rp + 92: the block ends 2 bytes after u2).
    """
    v4 = ir.VectorType(S.I32, 4)
    v = S.load(bld, S.byte_ptr(bld, rp, 92), v4)  # i32 (4,): hmask/qs tail, u0, u1, u2
    lanes = lambda *c: ir.Constant(v4, list(c))  # noqa: E731
    low = bld.and_(bld.lshr(S.pick(bld, v, [1, 2, 1, 2]), lanes(0, 0, 4, 4)), lanes(*[0x0F0F0F0F] * 4))
    top = bld.and_(bld.lshr(S.pick(bld, v, [3, 3, 3, 3]), lanes(0, 2, 4, 6)), lanes(*[0x03030303] * 4))
    words = bld.or_(low, bld.shl(top, lanes(4, 4, 4, 4)))  # bytes: 6-bit scales of groups 0..15
    sc6 = bld.zext(bld.bitcast(words, S.V16I8), S.V16I16)
    return bld.sub(sc6, S.const(32, S.V16I16))


def q3_codes(bld, rp) -> list:
    """The 8 vectors u8 (32,) of codes u = low2 + 4 * high bit (0..7) of the Q3_K block at rp."""
    hm = S.load(bld, rp, S.V32I8)  # hmask: bit j of byte l = high bit of element 32j + l
    one = S.const(1, S.V32I8)
    two = S.const(2, S.V32I8)
    return [
        bld.or_(u, bld.shl(bld.and_(bld.lshr(hm, S.const(j, S.V32I8)) if j else hm, one), two))
        for j, u in enumerate(low2_chunks(bld, rp, 32))
    ]


def q6_codes(bld, rp) -> list:
    """The 8 vectors u8 (32,) of 6-bit codes (0..63) of elements 32k..32k+31 of the Q6_K block at rp."""
    m15, m3 = S.const(15, S.V32I8), S.const(3, S.V32I8)
    codes = []
    for h in range(2):  # halves of 128 elements
        qa = S.load(bld, S.byte_ptr(bld, rp, 64 * h), S.V32I8)
        qc = S.load(bld, S.byte_ptr(bld, rp, 64 * h + 32), S.V32I8)
        qh = S.load(bld, S.byte_ptr(bld, rp, 128 + 32 * h), S.V32I8)
        high = [  # bits 4-5 of the codes: bit pairs of qh
            bld.shl(bld.and_(bld.lshr(qh, S.const(s, S.V32I8)), m3), S.const(4, S.V32I8)) for s in (0, 2, 4, 6)
        ]
        codes += [
            bld.or_(bld.and_(qa, m15), high[0]),
            bld.or_(bld.and_(qc, m15), high[1]),
            bld.or_(bld.lshr(qa, S.const(4, S.V32I8)), high[2]),
            bld.or_(bld.lshr(qc, S.const(4, S.V32I8)), high[3]),
        ]
    return codes


def q6_scales(bld, rp) -> ir.Value:
    """i16 (16,) int8 group scales of the Q6_K block at rp."""
    return bld.sext(S.load(bld, S.byte_ptr(bld, rp, 192), S.V16I8), S.V16I16)


def unpack_block(bld, kind: int, rp) -> tuple:
    """The K-quant block at rp unpacked for ``vpmaddubsw``/``vpmaddwd``, shared with :mod:`.int_gemm`.

    Returns (codes, chunk_scales, coef, d, dmin): the 8 vectors u8 (32,) of codes of each 32-element chunk;
    the 8 vectors i16 (16,) multiplying each chunk's 16 pair sums (Q4_K/Q5_K: the sub-block scale 16 times;
    Q2_K/Q3_K/Q6_K: its two 16-element groups' scales, 8 times each); i16 (16,) coefficients of the 16
    activation bsums (Q2_K/Q4_K/Q5_K: the mins, giving ``msum``; Q3_K: ``-4*sc``, Q6_K: ``-32*sc``, the code
    offsets, added to ``isum``); float32 ``d`` and ``dmin`` (None for the types without mins).
    """
    f16 = lambda at: S.load_f16(bld, S.byte_ptr(bld, rp, at))  # noqa: E731

    def f16_pair(at: int) -> tuple:  # d and dmin, adjacent: one load, one conversion
        pair = S.load_f16x2(bld, S.byte_ptr(bld, rp, at))
        return bld.extract_element(pair, S.const(0)), bld.extract_element(pair, S.const(1))

    if kind in (Q4_K, Q5_K):
        codes = k4_codes(bld, rp, 16, None) if kind == Q4_K else k4_codes(bld, rp, 48, 16)
        sb = k4_scale_bytes(bld, rp)  # u8 (32,): scales 0..7, mins 0..7, twice
        return codes, k4_chunk_scales(bld, sb), k4_min_coefs(bld, sb), *f16_pair(0)
    if kind == Q2_K:
        codes, (sc, coef) = low2_chunks(bld, rp, 16), q2_scales_mins(bld, rp)
        d, dmin = f16_pair(80)
    elif kind == Q3_K:
        codes, sc = q3_codes(bld, rp), q3_scales(bld, rp)
        coef, d, dmin = bld.mul(sc, S.const(-4, S.V16I16)), f16(108), None
    else:  # Q6_K
        codes, sc = q6_codes(bld, rp), q6_scales(bld, rp)
        coef, d, dmin = bld.mul(sc, S.const(-32, S.V16I16)), f16(208), None
    return codes, group_chunk_scales(bld, sc), coef, d, dmin


LANES = 8
"""Float32 lanes of a K-quant (row, token) accumulator (:func:`accumulate`); :func:`lane_total` folds them."""


def chunk_products(bld, codes: list, chunk_scales: list, yp) -> ir.Value:
    """i32 (8,) lane sums of ``sum_k chunk_scales[k] * (codes[k] . y_k)`` over a block's 8 chunks of 32."""
    acc = None
    for k in range(8):
        y = S.load(bld, S.byte_ptr(bld, yp, 32 * k), S.V32I8)
        t = S.maddwd(bld, S.maddubs(bld, codes[k], y), chunk_scales[k])
        acc = t if acc is None else bld.add(acc, t)
    return acc


def accumulate(bld, acc, dot, corr, dw, dmin, dy) -> ir.Value:
    """``acc`` (float32 (8,)) plus one block's lane values for one token; the float arithmetic of every kernel.

    dot: i32 (8,) lane sums of the code products (:func:`chunk_products`); corr: i32 (8,) lane sums of the
    bsums times the :func:`unpack_block` coefficients; dw, dmin: the block's float32 scales (dmin None for the
    types without mins); dy: the token's activation scale. Without mins the lanes are ``float(dot + corr) *
    (dw*dy)`` (corr: the code offsets); with mins, lane p < 4 is ``float(dot[p] + dot[p+4]) * (dw*dy)`` and
    lane 4 + p is ``float(corr[p] + corr[p+4]) * (-dmin*dy)``. One ``llvm.fma`` per block and token. The integer lanes
    are exact; they convert exactly up to 2^24 (every lane of Q2_K..Q5_K; Q6_K's can exceed it, and round the
    same way in every kernel).
    """
    if dmin is None:
        scale = S.splat(bld, bld.fmul(dw, dy, flags=S.STRICT), LANES)
        return S.fma(bld, bld.sitofp(bld.add(dot, corr), S.V8F32), scale, acc)
    # lanes 0..3: dot's 128-bit halves added, 4..7: corr's (exact: |lane| < 2^24 for Q2_K/Q4_K/Q5_K)
    both = bld.add(bld.shuffle_vector(dot, corr, ir.Constant(S.V8I32, [0, 1, 2, 3, 8, 9, 10, 11])),
                   bld.shuffle_vector(dot, corr, ir.Constant(S.V8I32, [4, 5, 6, 7, 12, 13, 14, 15])))
    pair = ir.Constant(ir.VectorType(S.F32, 2), ir.Undefined)
    pair = bld.insert_element(bld.insert_element(pair, dw, S.const(0)), dmin, S.const(1))
    w = bld.bitcast(bld.xor(bld.bitcast(S.pick(bld, pair, [0, 0, 0, 0, 1, 1, 1, 1]), S.V8I32),
                            ir.Constant(S.V8I32, [0] * 4 + [-(1 << 31)] * 4)), S.V8F32)  # dw x4, -dmin x4
    return S.fma(bld, bld.sitofp(both, S.V8F32), bld.fmul(w, S.splat(bld, dy, LANES), flags=S.STRICT), acc)


@intrinsic
def lane_total(typingctx, acc, i):
    """float32 sum of the lanes ``acc[LANES*i : LANES*i + LANES]`` in the fixed order of :func:`.simd.fold_lanes`."""
    sig = types.float32(acc, i)

    def codegen(context, bld, signature, args):
        p = S.array_ptr(context, bld, signature.args[0], args[0], bld.mul(args[1], ir.Constant(args[1].type, LANES)))
        return S.fold_lanes(bld, bld.load(bld.bitcast(p, S.V8F32.as_pointer()), align=4))

    return sig, codegen


QUAD = 4
"""Tokens whose products the batch row kernels compute together, chunk by chunk (then pairs, then one)."""

_BLOCK_BYTES = {Q2_K: 84, Q3_K: 110, Q4_K: 144, Q5_K: 176, Q6_K: 210}


def _row_one_codegen(kind: int):
    """Codegen: ``dot(dequant(row), y)`` of one K-quant row and one token, the loop over blocks in IR.

    The lane accumulator stays in registers for the whole row (one float32 (8,) vector, folded once at
    the end); each block's cache lines are prefetched PREFETCH_AHEAD bytes ahead.
    """
    size = _BLOCK_BYTES[kind]
    i64 = ir.IntType(64)

    def codegen(context, bld, sig, args):
        row, qs, d, bsums = args
        zero = ir.Constant(i64, 0)
        rp0, yp0, dp0, bp0 = (S.array_ptr(context, bld, t, a, zero) for t, a in zip(sig.args, args, strict=True))
        nb = cgutils.unpack_tuple(bld, context.make_array(sig.args[2])(context, bld, d).shape)[0]
        accp = cgutils.alloca_once_value(bld, ir.Constant(S.V8F32, [0.0] * LANES))
        with cgutils.for_range(bld, nb) as loop:
            b = loop.index
            rp = bld.gep(rp0, [bld.mul(b, ir.Constant(i64, size))])
            for k in range((size + 63) // 64):
                S.prefetch(bld, bld.gep(rp, [ir.Constant(i64, PREFETCH_AHEAD + 64 * k)]))
            codes, chunk_scales, coef, dw, dmin = unpack_block(bld, kind, rp)
            dot = chunk_products(bld, codes, chunk_scales, bld.gep(yp0, [bld.mul(b, ir.Constant(i64, QK_K))]))
            corr = S.maddwd(bld, S.load(bld, bld.gep(bp0, [bld.mul(b, ir.Constant(i64, 16))]), S.V16I16), coef)
            dy = bld.load(bld.gep(dp0, [b]))
            bld.store(accumulate(bld, bld.load(accp), dot, corr, dw, dmin, dy), accp)
        return S.fold_lanes(bld, bld.load(accp))

    return codegen


def _tokens_codegen(kind: int):
    """Codegen: add the block at row[o] times every token t of the batch to t's lanes ``acc[8t : 8t + 8]``.

    Tokens go by groups of :data:`QUAD`, then a pair, then a single one. A group unpacks the block
    (:func:`unpack_block`) and takes its products chunk by chunk, each chunk's codes and scales used by all
    its tokens while in registers (17 unpacked vectors held for a whole batch do not fit AVX2's 16
    registers: spilled, reloaded, twice the time). A token's lanes get :func:`accumulate` of the same
    integers as in the one-token kernel: the same bits.
    """
    i64 = ir.IntType(64)

    def codegen(context, bld, sig, args):
        row, o, qs, d, bsums, b, acc = args
        a_row, _, a_qs, a_d, a_bs, _, a_acc = sig.args
        rp = S.array_ptr(context, bld, a_row, row, o)
        b = bld.sext(b, i64) if b.type != i64 else b

        def group(t0, g: int) -> None:
            """The products and accumulation of tokens t0 .. t0 + g - 1."""
            codes, chunk_scales, coef, dw, dmin = unpack_block(bld, kind, rp)
            toks = [bld.add(t0, ir.Constant(i64, j)) for j in range(g)]
            yps = [S.item_ptr(context, bld, a_qs, qs, [t, bld.mul(b, ir.Constant(i64, QK_K))]) for t in toks]
            dots = [None] * g
            for k in range(8):
                for j in range(g):
                    y = S.load(bld, S.byte_ptr(bld, yps[j], 32 * k), S.V32I8)
                    v = S.maddwd(bld, S.maddubs(bld, codes[k], y), chunk_scales[k])
                    dots[j] = v if dots[j] is None else bld.add(dots[j], v)
            for j, t in enumerate(toks):
                bp = S.item_ptr(context, bld, a_bs, bsums, [t, bld.mul(b, ir.Constant(i64, 16))])
                corr = S.maddwd(bld, S.load(bld, bp, S.V16I16), coef)
                dy = S.load(bld, S.item_ptr(context, bld, a_d, d, [t, b]), S.F32)
                accp = S.item_ptr(context, bld, a_acc, acc, [bld.mul(t, ir.Constant(i64, LANES))])
                accp = bld.bitcast(accp, S.V8F32.as_pointer())
                bld.store(accumulate(bld, bld.load(accp, align=4), dots[j], corr, dw, dmin, dy), accp, align=4)

        n_tok = cgutils.unpack_tuple(bld, context.make_array(a_d)(context, bld, d).shape)[0]
        done = ir.Constant(i64, 0)
        for g in (QUAD, 2, 1):  # as many groups of g as fit in the tokens left
            n_groups = bld.udiv(bld.sub(n_tok, done), ir.Constant(i64, g))
            with cgutils.for_range(bld, n_groups) as loop:
                group(bld.add(done, bld.mul(loop.index, ir.Constant(i64, g))), g)
            done = bld.add(done, bld.mul(n_groups, ir.Constant(i64, g)))
        return context.get_dummy_value()

    return codegen


def _make_tokens(kind: int):
    def tokens(typingctx, row, o, qs, d, bsums, b, acc):
        return types.void(row, o, qs, d, bsums, b, acc), _tokens_codegen(kind)

    tokens.__name__ = f"_tokens_{kind}"
    return intrinsic(tokens)


# Row kernels: one per type and per case (one token, the block loop in IR with the lanes in registers; or a
# batch of tokens, each weight block read once and unpacked once per group of up to 4 tokens), each compiled
# under a name of its own (:mod:`.specialise`). A type flag tested inside these loops, or a block function
# passed as an argument, cost 10-20% in measurements.


def _make_row_one(kind: int):
    """The one-token row kernel of K-quant type ``kind``: ``(row, qs, d, bsums) -> dot(dequant(row), y)``.

    qs int8 (n_in,), d float32 (nb,), bsums int16 (n_in/16,).
    """

    def row_dot(typingctx, row, qs, d, bsums):
        return types.float32(row, qs, d, bsums), _row_one_codegen(kind)

    row_dot.__name__ = f"_row_dot_{kind}"
    row_dot = intrinsic(row_dot)

    def row_one(row, qs, d, bsums):
        return row_dot(row, qs, d, bsums)

    return jit_specialised(row_one, GGMLType(kind).name.lower())


_row_q2_k, _row_q3_k, _row_q4_k, _row_q5_k, _row_q6_k = (_make_row_one(t) for t in (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K))


def _make_row_batch(kind: int, block_bytes: int):
    """The batch row kernel of K-quant type ``kind``, compiled under a name of its own (:mod:`.specialise`).

    ``(row, qs, d, bsums, acc)``: token t's lanes in acc[8t : 8t + 8] (qs int8 (n_tok, n_in), d float32
    (n_tok, nb), bsums int16 (n_tok, n_in/16), acc float32 (LANES * n_tok,)); each block read once for all
    tokens, unpacked once per group of up to 4.
    """
    tokens = _make_tokens(kind)
    lines = (block_bytes + 63) // 64

    def row_batch(row, qs, d, bsums, acc):
        acc[:] = 0
        for b in range(d.shape[1]):
            o = b * block_bytes
            for k in range(lines):
                _prefetch(row, o + PREFETCH_AHEAD + 64 * k)
            tokens(row, o, qs, d, bsums, b, acc)

    return jit_specialised(row_batch, GGMLType(kind).name.lower())


_row_q2_k_batch, _row_q3_k_batch, _row_q4_k_batch, _row_q5_k_batch, _row_q6_k_batch = (
    _make_row_batch(t, _BLOCK_BYTES[t]) for t in (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)
)


@numba.njit(inline="always")
def _rows(kind, raw, r0, r1, qs, d, bsums, acc, out):
    """out[:, r] for rows r0..r1-1 of a ``kind`` matrix; acc float32 (LANES * n_tok,) scratch.

    The type is tested once per row, outside the row kernels' block loops. Inlined into its callers: where
    ``kind`` is a compile-time constant (:func:`.int_group.group_kernel` of a one-type model) only that
    type's row kernels are compiled.
    """
    if d.shape[0] == 1:
        q0, d0, b0 = qs[0], d[0], bsums[0]
        for r in range(r0, r1):
            if kind == Q4_K:
                out[0, r] = _row_q4_k(raw[r], q0, d0, b0)
            elif kind == Q6_K:
                out[0, r] = _row_q6_k(raw[r], q0, d0, b0)
            elif kind == Q5_K:
                out[0, r] = _row_q5_k(raw[r], q0, d0, b0)
            elif kind == Q3_K:
                out[0, r] = _row_q3_k(raw[r], q0, d0, b0)
            else:
                out[0, r] = _row_q2_k(raw[r], q0, d0, b0)
        return
    for r in range(r0, r1):
        if kind == Q4_K:
            _row_q4_k_batch(raw[r], qs, d, bsums, acc)
        elif kind == Q6_K:
            _row_q6_k_batch(raw[r], qs, d, bsums, acc)
        elif kind == Q5_K:
            _row_q5_k_batch(raw[r], qs, d, bsums, acc)
        elif kind == Q3_K:
            _row_q3_k_batch(raw[r], qs, d, bsums, acc)
        else:
            _row_q2_k_batch(raw[r], qs, d, bsums, acc)
        for t in range(d.shape[0]):
            out[t, r] = lane_total(acc, t)


@numba.njit(cache=True, parallel=True)
def matmul_q8k(kind, raw, qs, d, bsums, out):
    """``out = Y @ W.T`` for K-quant rows W and Q8_K activations Y (n_tok tokens; n_tok = 1 is a matvec).

    kind: Q2_K, Q3_K, Q4_K, Q5_K or Q6_K; raw uint8 (n_out, nb*block bytes); qs int8 (n_tok, n_in);
    d float32 (n_tok, nb); bsums int16 (n_tok, n_in/16) -> out float32 (n_tok, n_out).
    """
    n = raw.shape[0]
    for c in numba.prange((n + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        acc = np.empty(LANES * d.shape[0], np.float32)  # float32 (LANES * n_tok,) per-task lanes
        _rows(kind, raw, c * ROWS_PER_TASK, min(n, c * ROWS_PER_TASK + ROWS_PER_TASK), qs, d, bsums, acc, out)


def matmul_via_q8_k(t: GGMLType, raw: np.ndarray, X: np.ndarray, out: np.ndarray) -> None:
    """``out = X @ W.T`` through Q8_K activations (the integer kernel of every K-quant weight type).

    raw uint8 (n_out, row_bytes) of K-quant type ``t``, X float32 (n_tok, n_in) -> out float32 (n_tok, n_out)
    (contiguous).
    """
    y = Q8K(X)
    matmul_q8k(int(t), raw, y.qs, y.d, y.bsums, out)
