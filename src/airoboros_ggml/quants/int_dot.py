"""Integer matrix-vector kernels: K-quant weight rows times Q8_K activations, as llama.cpp's decode path.

For one token, ``out[r] = sum_b yd[b] * dot_b(row r, y)`` where ``y`` is the activation vector quantized to
Q8_K (:mod:`.q8_activations`) and ``dot_b`` is one 256-element block's product computed with 8/16-bit integer
SIMD: ``vpmaddubsw`` multiplies 32 unsigned weight codes by 32 signed activation bytes, ``vpmaddwd`` applies
the integer sub-block scales, and only the block total is converted to float (see :mod:`.simd`). That is ~4
instructions per 64 weights instead of ~20 for the exact float32 kernels of :mod:`.fused`, so the kernels run
at memory bandwidth (measured on the 2-core box: Q4_K 12.5 -> 34 GB/s, Q6_K 11.4 -> 41 GB/s).

Per block (every type): the block intrinsic returns ``float32(d_w * isum - dmin_w * msum)``; the weight
codes fed to ``vpmaddubsw`` are unsigned, and offsets (mins, Q6_K's -32, Q3_K's -4) are applied through the
activation ``bsums`` (``bsum_g`` = sum of the 16 activation bytes of group g, ``y`` the activation bytes):

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
far under 2^31.
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


def kq_value(bld, d, isum, dmin=None, msum=None) -> ir.Value:
    """``d*float(isum) - dmin*float(msum)`` (or ``d*float(isum)``), float32 scalars or vectors, as written.

    The float operations of a K-quant block's value, shared with :mod:`.int_gemm` (flags :data:`.simd.STRICT`:
    no fusing or reordering, so that both give the same bits).
    """
    value = bld.fmul(d, bld.sitofp(isum, d.type), flags=S.STRICT)
    if dmin is None:
        return value
    return bld.fsub(value, bld.fmul(dmin, bld.sitofp(msum, d.type), flags=S.STRICT), flags=S.STRICT)


def kq_value_pair(bld, dd, sums) -> ir.Value:
    """:func:`kq_value` of float32 (2,) ``dd`` = (d, dmin) and i32 (2,) ``sums`` = (isum, msum).

    The same float operations, the two products in one vector instruction.
    """
    prod = bld.fmul(dd, bld.sitofp(sums, dd.type), flags=S.STRICT)
    return bld.fsub(bld.extract_element(prod, S.const(0)), bld.extract_element(prod, S.const(1)), flags=S.STRICT)


def _block_pointers(context, builder, sig, args):
    """Pointers to the weight block, its 256 activation bytes and its 16 bsums (args: row, o, qs, bsums, b)."""
    b = args[4]
    rp = S.array_ptr(context, builder, sig.args[0], args[0], args[1])
    yp = S.array_ptr(context, builder, sig.args[2], args[2], builder.mul(b, ir.Constant(b.type, QK_K)))
    bp = S.array_ptr(context, builder, sig.args[3], args[3], builder.mul(b, ir.Constant(b.type, 16)))
    return rp, yp, bp


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


def _k4_block(bld, rp, yp, bp, qo, qh_o):
    """float32 ``d*isum - dmin*msum`` of a Q4_K (qh_o None) or Q5_K (high bits at rp + qh_o) block."""
    sb = k4_scale_bytes(bld, rp)  # u8 (32,): scales 0..7, mins 0..7, twice
    bs = S.load(bld, bp, S.V16I16)  # i16 (16,) activation sums per 16
    mins = S.maddwd(bld, bs, k4_min_coefs(bld, sb))  # i32 (8,) partial sums of msum
    acc = None
    for k, (u, sc) in enumerate(zip(k4_codes(bld, rp, qo, qh_o), k4_chunk_scales(bld, sb), strict=True)):
        y = S.load(bld, S.byte_ptr(bld, yp, 32 * k), S.V32I8)
        t = S.maddwd(bld, S.maddubs(bld, u, y), sc)
        acc = t if acc is None else bld.add(acc, t)
    return kq_value_pair(bld, S.load_f16x2(bld, rp), S.hsum2(bld, acc, mins))


@intrinsic
def _q4_k_block(typingctx, row, o, qs, bsums, b):
    """float32 ``d*isum - dmin*msum`` of the Q4_K block at row[o] and activation block b."""
    sig = types.float32(row, o, qs, bsums, b)

    def codegen(context, bld, signature, args):
        return _k4_block(bld, *_block_pointers(context, bld, signature, args), 16, None)

    return sig, codegen


@intrinsic
def _q5_k_block(typingctx, row, o, qs, bsums, b):
    """float32 ``d*isum - dmin*msum`` of the Q5_K block at row[o] and activation block b."""
    sig = types.float32(row, o, qs, bsums, b)

    def codegen(context, bld, signature, args):
        return _k4_block(bld, *_block_pointers(context, bld, signature, args), 48, 16)

    return sig, codegen


def low2_chunks(bld, rp, qo):
    """The 8 vectors u8 (32,) of 2-bit codes of elements 32j..32j+31 (j = 4h + s) from qs[64] at rp + qo."""
    m3 = S.const(3, S.V32I8)
    out = []
    for h in range(2):
        q = S.load(bld, S.byte_ptr(bld, rp, qo + 32 * h), S.V32I8)
        out += [bld.and_(q if s == 0 else bld.lshr(q, S.const(2 * s, S.V32I8)), m3) for s in range(4)]
    return out


def _group_dot(bld, codes, yp, sc):
    """i32 (8,) partial sums of ``sum_g sc_g * sum_{i in g} code_i y_i`` over 8 chunks of 32 codes."""
    acc = None
    for j, (u, scj) in enumerate(zip(codes, group_chunk_scales(bld, sc), strict=True)):
        y = S.load(bld, S.byte_ptr(bld, yp, 32 * j), S.V32I8)
        t = S.maddwd(bld, S.maddubs(bld, u, y), scj)
        acc = t if acc is None else bld.add(acc, t)
    return acc


def _offset_sum(bld, dot, bp, sc, shift: int) -> ir.Value:
    """i32 ``isum`` of the types with code offsets: the lanes of ``dot - (sum_g sc_g * bsum_g) << shift``.

    dot: i32 (8,) partial sums of the codes' products; bp: the block's 16 bsums; sc: i16 (16,) group scales;
    the offset is 2**shift (Q3_K: 4, Q6_K: 32). One horizontal sum of an exact integer vector.
    """
    offsets = S.maddwd(bld, S.load(bld, bp, S.V16I16), sc)  # i32 (8,) partial sums of sum_g sc_g * bsum_g
    return S.hsum(bld, bld.sub(dot, bld.shl(offsets, S.const(shift, S.V8I32))))


def q2_scales_mins(bld, rp) -> tuple:
    """i16 (16,) group scales and i16 (16,) group mins (0..15 each) of the Q2_K block at rp."""
    sb = S.load(bld, rp, S.V16I8)  # u8 (16,): scale | min << 4 per group
    return (bld.zext(bld.and_(sb, S.const(15, S.V16I8)), S.V16I16),
            bld.zext(bld.lshr(sb, S.const(4, S.V16I8)), S.V16I16))


@intrinsic
def _q2_k_block(typingctx, row, o, qs, bsums, b):
    """float32 ``d*isum - dmin*msum`` of the Q2_K block at row[o] and activation block b."""
    sig = types.float32(row, o, qs, bsums, b)

    def codegen(context, bld, signature, args):
        rp, yp, bp = _block_pointers(context, bld, signature, args)
        sc, mn = q2_scales_mins(bld, rp)  # i16 (16,) each: group scales and mins 0..15
        mins = S.maddwd(bld, S.load(bld, bp, S.V16I16), mn)  # i32 (8,) partial sums of msum
        dot = _group_dot(bld, low2_chunks(bld, rp, 16), yp, sc)
        return kq_value_pair(bld, S.load_f16x2(bld, S.byte_ptr(bld, rp, 80)), S.hsum2(bld, dot, mins))

    return sig, codegen


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


@intrinsic
def _q3_k_block(typingctx, row, o, qs, bsums, b):
    """float32 ``d*isum`` of the Q3_K block at row[o] and activation block b."""
    sig = types.float32(row, o, qs, bsums, b)

    def codegen(context, bld, signature, args):
        rp, yp, bp = _block_pointers(context, bld, signature, args)
        d = S.load_f16(bld, S.byte_ptr(bld, rp, 108))
        sc = q3_scales(bld, rp)  # i16 (16,) signed group scales -32..31
        return kq_value(bld, d, _offset_sum(bld, _group_dot(bld, q3_codes(bld, rp), yp, sc), bp, sc, 2))

    return sig, codegen


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


@intrinsic
def _q6_k_block(typingctx, row, o, qs, bsums, b):
    """float32 ``d*isum`` of the Q6_K block at row[o] and activation block b."""
    sig = types.float32(row, o, qs, bsums, b)

    def codegen(context, bld, signature, args):
        rp, yp, bp = _block_pointers(context, bld, signature, args)
        d = S.load_f16(bld, S.byte_ptr(bld, rp, 208))
        sc = q6_scales(bld, rp)  # i16 (16,) group scales
        return kq_value(bld, d, _offset_sum(bld, _group_dot(bld, q6_codes(bld, rp), yp, sc), bp, sc, 5))

    return sig, codegen


def unpack_block(bld, kind: int, rp) -> tuple:
    """The K-quant block at rp unpacked for ``vpmaddubsw``/``vpmaddwd``, shared with :mod:`.int_gemm`.

    Returns (codes, chunk_scales, coef, d, dmin): the 8 vectors u8 (32,) of codes of each 32-element chunk;
    the 8 vectors i16 (16,) multiplying each chunk's 16 pair sums (Q4_K/Q5_K: the sub-block scale 16 times;
    Q2_K/Q3_K/Q6_K: its two 16-element groups' scales, 8 times each); i16 (16,) coefficients of the 16
    activation bsums (Q2_K/Q4_K/Q5_K: the mins, giving ``msum``; Q3_K: ``-4*sc``, Q6_K: ``-32*sc``, the code
    offsets, added to ``isum``); float32 ``d`` and ``dmin`` (None for the types without mins).
    """
    f16 = lambda at: S.load_f16(bld, S.byte_ptr(bld, rp, at))  # noqa: E731
    if kind in (Q4_K, Q5_K):
        codes = k4_codes(bld, rp, 16, None) if kind == Q4_K else k4_codes(bld, rp, 48, 16)
        sb = k4_scale_bytes(bld, rp)  # u8 (32,): scales 0..7, mins 0..7, twice
        return codes, k4_chunk_scales(bld, sb), k4_min_coefs(bld, sb), f16(0), f16(2)
    if kind == Q2_K:
        codes, (sc, coef) = low2_chunks(bld, rp, 16), q2_scales_mins(bld, rp)
        d, dmin = f16(80), f16(82)
    elif kind == Q3_K:
        codes, sc = q3_codes(bld, rp), q3_scales(bld, rp)
        coef, d, dmin = bld.mul(sc, S.const(-4, S.V16I16)), f16(108), None
    else:  # Q6_K
        codes, sc = q6_codes(bld, rp), q6_scales(bld, rp)
        coef, d, dmin = bld.mul(sc, S.const(-32, S.V16I16)), f16(208), None
    return codes, group_chunk_scales(bld, sc), coef, d, dmin


QUAD = 4
"""Tokens whose products the batch row kernels compute together, chunk by chunk (then pairs, then one)."""


def _group_totals(bld, dots: list, corrs: list, has_min: bool) -> tuple:
    """i32 (G,) ``isum`` and (with mins) i32 (G,) ``msum`` of G = 1, 2 or 4 tokens.

    From their i32 (8,) dot and bsum-coefficient partial sums: one ``vphaddd`` tree for all of them.
    """
    g = len(dots)
    if not has_min:  # the bsum terms are code offsets, part of isum
        sums = [bld.add(dot, corr) for dot, corr in zip(dots, corrs, strict=True)]
        if g == 4:
            return S.hsum4(bld, sums), None
        if g == 2:
            return S.hsum2(bld, *sums), None
        return S.splat(bld, S.hsum(bld, sums[0]), 1), None
    if g == 4:
        tot = S.hsum8(bld, dots + corrs)  # lanes 0..3: isum, 4..7: msum
    elif g == 2:
        tot = S.hsum4(bld, dots + corrs)  # lanes 0, 1: isum, 2, 3: msum
    else:
        tot = S.hsum2(bld, dots[0], corrs[0])
    return S.pick(bld, tot, list(range(g))), S.pick(bld, tot, list(range(g, 2 * g)))


def _tokens_codegen(kind: int):
    """Codegen: ``acc[t] += dy[t, b] * value`` of the block at row[o] for every token t of the batch.

    Tokens go by groups of :data:`QUAD`, then a pair, then a single one. A group unpacks the block
    (:func:`unpack_block`) and takes its products chunk by chunk, each chunk's codes and scales used by all
    its tokens while in registers (17 unpacked vectors held for a whole batch do not fit AVX2's 16
    registers: spilled, reloaded, twice the time); its tokens' block totals share one ``vphaddd`` tree and
    one vector of float operations. A token's value is :func:`kq_value` of the same integers and its
    accumulation one FMA, as the one-token kernels compute it: the same bits.
    """
    i64 = ir.IntType(64)

    def codegen(context, bld, sig, args):
        row, o, qs, d, bsums, b, acc = args
        a_row, _, a_qs, a_d, a_bs, _, a_acc = sig.args
        rp = S.array_ptr(context, bld, a_row, row, o)
        b = bld.sext(b, i64) if b.type != i64 else b

        def group(t0, g: int) -> None:
            """The products, totals and accumulation of tokens t0 .. t0 + g - 1."""
            codes, chunk_scales, coef, dw, dmin = unpack_block(bld, kind, rp)
            toks = [bld.add(t0, ir.Constant(i64, j)) for j in range(g)]
            yps = [S.item_ptr(context, bld, a_qs, qs, [t, bld.mul(b, ir.Constant(i64, QK_K))]) for t in toks]
            dots = [None] * g
            for k in range(8):
                for j in range(g):
                    y = S.load(bld, S.byte_ptr(bld, yps[j], 32 * k), S.V32I8)
                    v = S.maddwd(bld, S.maddubs(bld, codes[k], y), chunk_scales[k])
                    dots[j] = v if dots[j] is None else bld.add(dots[j], v)
            corrs = [
                S.maddwd(bld, S.load(bld, S.item_ptr(context, bld, a_bs, bsums, [t, bld.mul(b, ir.Constant(i64, 16))]),
                                     S.V16I16), coef)
                for t in toks
            ]
            isum, msum = _group_totals(bld, dots, corrs, dmin is not None)
            if dmin is None:
                value = kq_value(bld, S.splat(bld, dw, g), isum)
            else:
                value = kq_value(bld, S.splat(bld, dw, g), isum, S.splat(bld, dmin, g), msum)
            vg = ir.VectorType(S.F32, g)
            dy = ir.Constant(vg, ir.Undefined)
            for j, t in enumerate(toks):
                dy = bld.insert_element(dy, S.load(bld, S.item_ptr(context, bld, a_d, d, [t, b]), S.F32), S.const(j))
            accp = bld.bitcast(S.item_ptr(context, bld, a_acc, acc, [t0]), vg.as_pointer())
            # acc += dy * value as the one-token kernels' numba code writes it (fastmath: one FMA per lane)
            bld.store(bld.fadd(bld.load(accp, align=4), bld.fmul(dy, value)), accp, align=4)

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


_BLOCK_BYTES = {Q2_K: 84, Q3_K: 110, Q4_K: 144, Q5_K: 176, Q6_K: 210}
_ONE_BLOCK = {Q2_K: _q2_k_block, Q3_K: _q3_k_block, Q4_K: _q4_k_block, Q5_K: _q5_k_block, Q6_K: _q6_k_block}

# Row kernels: one per type and per case (one token with a scalar accumulator, ~20% faster than the
# batched form; or a batch of tokens, each weight block read once and unpacked once per group of up to 4
# tokens), each compiled under a name of its own (:mod:`.specialise`). A type flag tested inside these loops, or a block
# function passed as an argument, cost 10-20% in measurements. Each block's cache lines are prefetched
# PREFETCH_AHEAD bytes ahead, at most 64 bytes apart so that none is skipped.


def _make_row_one(kind: int):
    """The one-token row kernel of K-quant type ``kind``: ``(row, qs, d, bsums) -> dot(dequant(row), y)``.

    qs int8 (n_in,), d float32 (nb,), bsums int16 (n_in/16,).
    """
    size = _BLOCK_BYTES[kind]
    one = _ONE_BLOCK[kind]
    lines = (size + 63) // 64

    def row_one(row, qs, d, bsums):
        acc = np.float32(0)
        for b in range(d.shape[0]):
            o = b * size
            for k in range(lines):
                _prefetch(row, o + PREFETCH_AHEAD + 64 * k)
            acc += d[b] * one(row, o, qs, bsums, b)
        return acc

    return jit_specialised(row_one, GGMLType(kind).name.lower(), fastmath=True)


_row_q2_k, _row_q3_k, _row_q4_k, _row_q5_k, _row_q6_k = (_make_row_one(t) for t in (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K))


def _make_row_batch(kind: int, block_bytes: int):
    """The batch row kernel of K-quant type ``kind``, compiled under a name of its own (:mod:`.specialise`).

    ``(row, qs, d, bsums, acc)``: acc[t] = dot(dequant(row), y_t) for every token of the batch (qs int8
    (n_tok, n_in), d float32 (n_tok, nb), bsums int16 (n_tok, n_in/16), acc float32 (n_tok,)); each block
    read once for all tokens, unpacked once per group of up to 4.
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

    return jit_specialised(row_batch, GGMLType(kind).name.lower(), fastmath=True)


_row_q2_k_batch, _row_q3_k_batch, _row_q4_k_batch, _row_q5_k_batch, _row_q6_k_batch = (
    _make_row_batch(t, _BLOCK_BYTES[t]) for t in (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)
)


@numba.njit(inline="always")
def _rows(kind, raw, r0, r1, qs, d, bsums, acc, out):
    """out[:, r] for rows r0..r1-1 of a ``kind`` matrix; acc float32 (n_tok,) scratch.

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
        out[:, r] = acc


@numba.njit(cache=True, parallel=True)
def matmul_q8k(kind, raw, qs, d, bsums, out):
    """``out = Y @ W.T`` for K-quant rows W and Q8_K activations Y (n_tok tokens; n_tok = 1 is a matvec).

    kind: Q2_K, Q3_K, Q4_K, Q5_K or Q6_K; raw uint8 (n_out, nb*block bytes); qs int8 (n_tok, n_in);
    d float32 (n_tok, nb); bsums int16 (n_tok, n_in/16) -> out float32 (n_tok, n_out).
    """
    n = raw.shape[0]
    for c in numba.prange((n + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        acc = np.empty(d.shape[0], np.float32)  # float32 (n_tok,) per-task accumulator
        _rows(kind, raw, c * ROWS_PER_TASK, min(n, c * ROWS_PER_TASK + ROWS_PER_TASK), qs, d, bsums, acc, out)


def matmul_via_q8_k(t: GGMLType, raw: np.ndarray, X: np.ndarray, out: np.ndarray) -> None:
    """``out = X @ W.T`` through Q8_K activations (the integer kernel of every K-quant weight type).

    raw uint8 (n_out, row_bytes) of K-quant type ``t``, X float32 (n_tok, n_in) -> out float32 (n_tok, n_out)
    (contiguous).
    """
    y = Q8K(X)
    matmul_q8k(int(t), raw, y.qs, y.d, y.bsums, out)
