"""Integer matrix-matrix kernels for prompt batches: weight tiles unpacked once, reused by every token.

The row kernels of :mod:`.int_dot` / :mod:`.int_dot_legacy` extract a weight block's codes again for every
token; for a prompt of hundreds of tokens that extraction, not the multiplication, is most of the work. Here
a task takes :data:`TILE_ROWS` weight rows, unpacks them once into a byte scratch that stays in L2
(codes as unsigned bytes, ready for ``vpmaddubsw``; scales pre-broadcast as int16 vectors, ready for
``vpmaddwd``; ``d``/``dmin`` as float32), then sweeps all tokens 4 at a time over pairs of tile rows: a
micro-kernel (one LLVM IR intrinsic per block) computes the 2 rows x 4 tokens = 8 products of a block with
8 integer accumulators, reduces them with one ``vphaddd`` tree to a vector of 8 exact block totals, and
finishes in float32. Tasks (row tiles) run in parallel over ``prange``; activations are quantized once per
call (Q8_K / Q8_0 / Q8_1, :mod:`.q8_activations`), as for the row kernels.

Scratch layout per tile row (bytes):

* K-quants (``Q2_K`` .. ``Q6_K``), :data:`KQ_BLOCK` = 576 bytes per 256-element block: codes u8 [256] in
  element order @0; int16 [8][16] @256, the multiplier of each 32-code chunk's 16 ``vpmaddubsw`` pair sums
  (Q4_K/Q5_K: the sub-block scale 16 times; Q2_K/Q3_K/Q6_K: the scales of its two 16-element groups, 8
  times each); int16 [16] @512, coefficients of the 16 activation ``bsums`` (Q2_K/Q4_K/Q5_K: the mins,
  giving ``msum``; Q3_K: ``-4*sc``, Q6_K: ``-32*sc``, the code offsets, added to ``isum``); float32 ``d``
  @544 and ``dmin`` @548. The block value is ``d*isum - dmin*msum`` (or ``d*isum``), exactly the integers
  and float operations of :mod:`.int_dot` (see there for the per-type formulas and overflow bounds).
* Legacy types (``Q4_0``, ``Q4_1``, ``Q5_0``, ``Q5_1``, ``Q8_0``), :data:`LEGACY_GROUP` = 320 bytes per
  group of 8 blocks (256 elements; a row's last group may be partial): codes [8][32] @0 (unsigned 4/5-bit
  codes; Q8_0 the signed bytes), float32 ``d`` [8] @256, float32 ``m`` [8] @288; the float finish is
  :func:`.int_dot_legacy.group_total`, shared with the row kernels.

Results: each token's output is computed with the same integer sums and the same float32 operations in the
same order as the row kernels (fused multiply-add of ``d_y * block`` into the running sum, block after
block), so a token's result does not depend on the batch it was computed in, nor on which kernel served
that batch (tested bit for bit). AVX2 only (``vpmaddubsw``/``vpmaddwd``/``vphaddd``); a ``vpdpbusd``
(AVX-VNNI / AVX512-VNNI) micro-kernel would fuse ``vpmaddubsw`` + ``vpmaddwd(ones)`` but not the int16
scaling of the K-quants, and is left as a follow-up (it cannot be tested on AVX2-only CI).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..ggml_types import GGMLType
from . import int_dot as D
from . import simd as S
from .int_dot_legacy import block_codes, block_sum, group_total
from .kernels import Q2_K, Q3_K, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0
from .q8_activations import Q8K, Q80, Q81

TILE_ROWS = 16
"""Weight rows unpacked per task (their scratch, at most ~400 KB for 11008-wide rows, stays in L2)."""

TOKENS = 4
"""Tokens per micro-kernel call (2 rows x 4 tokens = 8 accumulators, one ``vphaddd`` tree)."""

KQ_BLOCK = 576
"""Scratch bytes per unpacked K-quant block (see the module docstring)."""

LEGACY_GROUP = 320
"""Scratch bytes per unpacked group of 8 legacy blocks (see the module docstring)."""


# --- the micro-kernels (LLVM IR) ---


def _item_ptr(context, bld, aty, ary, inds) -> ir.Value:
    """Pointer to ``ary[inds]`` of a numba array argument (no bounds check)."""
    return cgutils.get_item_pointer(context, bld, aty, context.make_array(aty)(context, bld, ary), inds)


def _splat_pairs(bld, values: list, per: int) -> ir.Value:
    """float32 (8,) vector ``[values[0]] * per + [values[1]] * per + ...`` (lane p = values[p // per])."""
    v = ir.Constant(ir.VectorType(S.F32, 8), ir.Undefined)
    for p in range(8):
        v = bld.insert_element(v, values[p // per], S.const(p))
    return v


def _kq_codegen(has_min: bool):
    """Micro-kernel: acc[4r + t] += d_y(t) * block value of tile row i_r times token t, for one K-quant block."""

    def codegen(context, bld, sig, args):
        tile, i0, i1, b, qs, bsums, dy, t0, t1, t2, t3, acc = args
        a_tile, a_qs, a_bs, a_dy, a_acc = sig.args[0], sig.args[4], sig.args[5], sig.args[6], sig.args[11]
        i64 = ir.IntType(64)
        b64 = bld.sext(b, i64) if b.type != i64 else b
        wo = bld.mul(b64, ir.Constant(i64, KQ_BLOCK))
        wp = [_item_ptr(context, bld, a_tile, tile, [i, wo]) for i in (i0, i1)]
        toks = (t0, t1, t2, t3)
        yp = [_item_ptr(context, bld, a_qs, qs, [t, bld.mul(b64, ir.Constant(i64, 256))]) for t in toks]
        bp = [_item_ptr(context, bld, a_bs, bsums, [t, bld.mul(b64, ir.Constant(i64, 16))]) for t in toks]
        dys = [S.load(bld, _item_ptr(context, bld, a_dy, dy, [t, b64]), S.F32) for t in toks]
        accs = [None] * 8  # i32 (8,) per pair p = 4*r + t
        for k in range(8):  # 32-code chunks
            w = [S.load(bld, S.byte_ptr(bld, p, 32 * k), S.V32I8) for p in wp]
            sc = [S.load(bld, S.byte_ptr(bld, p, 256 + 32 * k), S.V16I16) for p in wp]
            for t in range(4):
                y = S.load(bld, S.byte_ptr(bld, yp[t], 32 * k), S.V32I8)
                for r in range(2):
                    v = S.maddwd(bld, S.maddubs(bld, w[r], y), sc[r])
                    accs[4 * r + t] = v if accs[4 * r + t] is None else bld.add(accs[4 * r + t], v)
        coef = [S.load(bld, S.byte_ptr(bld, p, 512), S.V16I16) for p in wp]
        bsv = [S.load(bld, p, S.V16I16) for p in bp]
        corr = [S.maddwd(bld, bsv[p % 4], coef[p // 4]) for p in range(8)]
        f32 = lambda p, o: S.load(bld, S.byte_ptr(bld, p, o), S.F32)  # noqa: E731
        dv = _splat_pairs(bld, [f32(wp[0], 544), f32(wp[1], 544)], 4)
        if has_min:
            dminv = _splat_pairs(bld, [f32(wp[0], 548), f32(wp[1], 548)], 4)
            f = D.kq_value(bld, dv, S.hsum8(bld, accs), dminv, S.hsum8(bld, corr))
        else:
            f = D.kq_value(bld, dv, S.hsum8(bld, [bld.add(a, c) for a, c in zip(accs, corr, strict=True)]))
        # acc += d_y * f as the row kernels' numba code writes it (numba's fastmath flags: one FMA)
        v8f = ir.VectorType(S.F32, 8)
        accp = bld.bitcast(_item_ptr(context, bld, a_acc, acc, [ir.Constant(i64, 0)]), v8f.as_pointer())
        dyv = _splat_pairs(bld, dys + dys, 1)
        bld.store(bld.fadd(bld.load(accp, align=4), bld.fmul(dyv, f)), accp, align=4)
        return context.get_dummy_value()

    return codegen


def _make_kq(has_min: bool):
    def kq_block(typingctx, tile, i0, i1, b, qs, bsums, dy, t0, t1, t2, t3, acc):
        return types.void(tile, i0, i1, b, qs, bsums, dy, t0, t1, t2, t3, acc), _kq_codegen(has_min)

    kq_block.__name__ = f"_kq_block_{'min' if has_min else 'nomin'}"
    return intrinsic(kq_block)


_kq_min, _kq_nomin = _make_kq(True), _make_kq(False)


def _legacy_codegen(kind: int, nblk: int):
    """Micro-kernel: acc[4r + t] += total of ``nblk`` (8, or 1: block k) legacy blocks, tile row i_r x token t."""

    def codegen(context, bld, sig, args):
        tile, i0, i1, g, k, qs, dy, aux, t0, t1, t2, t3, acc = args
        a_tile, a_qs, a_dy, a_aux, a_acc = sig.args[0], sig.args[5], sig.args[6], sig.args[7], sig.args[12]
        i64 = ir.IntType(64)
        g64 = bld.sext(g, i64) if g.type != i64 else g
        k64 = bld.sext(k, i64) if k.type != i64 else k
        go = bld.mul(g64, ir.Constant(i64, LEGACY_GROUP))
        wp = [_item_ptr(context, bld, a_tile, tile, [i, go]) for i in (i0, i1)]
        b0 = bld.add(bld.mul(g64, ir.Constant(i64, 8)), k64)  # first activation block
        toks = (t0, t1, t2, t3)
        yp = [_item_ptr(context, bld, a_qs, qs, [t, bld.mul(b0, ir.Constant(i64, 32))]) for t in toks]
        dp = [_item_ptr(context, bld, a_dy, dy, [t, b0]) for t in toks]
        ap = [_item_ptr(context, bld, a_aux, aux, [t, b0]) for t in toks]
        vf = ir.VectorType(S.F32, nblk)
        blocks = range(8) if nblk == 8 else [None]

        def wblock(p, j):  # code vector of block j (None: block k) of the group at p
            off = ir.Constant(i64, 32 * j) if j is not None else bld.mul(k64, ir.Constant(i64, 32))
            return S.load(bld, bld.gep(p, [off]), S.V32I8)

        def wvec(p, at):  # float32 (nblk,) at p + at (+ 4k for one block)
            off = ir.Constant(i64, at)
            if nblk == 1:
                off = bld.add(off, bld.mul(k64, ir.Constant(i64, 4)))
            return S.load(bld, bld.gep(p, [off]), vf)

        w = [[wblock(p, j) for j in blocks] for p in wp]
        dw = [wvec(p, 256) for p in wp]
        mw = [wvec(p, 288) for p in wp] if kind in (Q4_1, Q5_1) else [None, None]
        totals = []
        for r in range(2):
            for t in range(4):
                sums = [block_sum(bld, kind, w[r][j], S.load(bld, S.byte_ptr(bld, yp[t], 32 * j), S.V32I8))
                        for j in range(len(blocks))]
                totals.append(group_total(bld, kind, sums, dw[r], mw[r], dp[t], ap[t]))
        v8f = ir.VectorType(S.F32, 8)  # acc += total, as the row kernels' numba code
        accp = bld.bitcast(_item_ptr(context, bld, a_acc, acc, [ir.Constant(i64, 0)]), v8f.as_pointer())
        bld.store(bld.fadd(bld.load(accp, align=4), _splat_pairs(bld, totals, 1)), accp, align=4)
        return context.get_dummy_value()

    return codegen


def _make_legacy(kind: int, nblk: int):
    def legacy_block(typingctx, tile, i0, i1, g, k, qs, dy, aux, t0, t1, t2, t3, acc):
        sig = types.void(tile, i0, i1, g, k, qs, dy, aux, t0, t1, t2, t3, acc)
        return sig, _legacy_codegen(kind, nblk)

    legacy_block.__name__ = f"_legacy_{kind}_{nblk}"
    return intrinsic(legacy_block)


_l4_0, _l4_0_1 = _make_legacy(Q4_0, 8), _make_legacy(Q4_0, 1)
_l4_1, _l4_1_1 = _make_legacy(Q4_1, 8), _make_legacy(Q4_1, 1)
_l5_0, _l5_0_1 = _make_legacy(Q5_0, 8), _make_legacy(Q5_0, 1)
_l5_1, _l5_1_1 = _make_legacy(Q5_1, 8), _make_legacy(Q5_1, 1)
_l8_0, _l8_0_1 = _make_legacy(Q8_0, 8), _make_legacy(Q8_0, 1)

# --- unpacking weight blocks into the scratch (LLVM IR, the code extraction of the row kernels) ---


def _kq_unpack_codegen(kind: int):
    """Codegen: unpack the K-quant block at row[o] into tile_row[base:base+KQ_BLOCK] (module docstring)."""

    def codegen(context, bld, sig, args):
        row, o, dst, base = args
        rp = S.array_ptr(context, bld, sig.args[0], row, o)
        dp = S.array_ptr(context, bld, sig.args[2], dst, base)
        f16 = lambda at: S.load_f16(bld, S.byte_ptr(bld, rp, at))  # noqa: E731
        zero = ir.Constant(S.F32, 0.0)
        if kind in (Q4_K, Q5_K):
            codes = D.k4_codes(bld, rp, 16, None) if kind == Q4_K else D.k4_codes(bld, rp, 48, 16)
            sm = D.k4_scales_mins(bld, rp)  # i16 (16,): scales 0..7, mins 0..7
            chunk_scales = [S.pick(bld, sm, [k] * 16) for k in range(8)]
            coef = S.pick(bld, sm, [8 + g // 2 for g in range(16)])
            d, dmin = f16(0), f16(2)
        else:
            if kind == Q2_K:
                codes, (sc, coef) = D.low2_chunks(bld, rp, 16), D.q2_scales_mins(bld, rp)
                d, dmin = f16(80), f16(82)
            elif kind == Q3_K:
                codes, sc = D.q3_codes(bld, rp), D.q3_scales(bld, rp)
                coef, d, dmin = bld.mul(sc, S.const(-4, S.V16I16)), f16(108), zero
            else:  # Q6_K
                codes, sc = D.q6_codes(bld, rp), D.q6_scales(bld, rp)
                coef, d, dmin = bld.mul(sc, S.const(-32, S.V16I16)), f16(208), zero
            chunk_scales = [S.pick(bld, sc, [2 * k] * 8 + [2 * k + 1] * 8) for k in range(8)]
        for k in range(8):
            bld.store(codes[k], bld.bitcast(S.byte_ptr(bld, dp, 32 * k), S.V32I8.as_pointer()), align=1)
            bld.store(chunk_scales[k], bld.bitcast(S.byte_ptr(bld, dp, 256 + 32 * k), S.V16I16.as_pointer()),
                      align=1)
        bld.store(coef, bld.bitcast(S.byte_ptr(bld, dp, 512), S.V16I16.as_pointer()), align=1)
        bld.store(d, bld.bitcast(S.byte_ptr(bld, dp, 544), S.F32.as_pointer()), align=1)
        bld.store(dmin, bld.bitcast(S.byte_ptr(bld, dp, 548), S.F32.as_pointer()), align=1)
        return context.get_dummy_value()

    return codegen


def _legacy_unpack_codegen(kind: int):
    """Codegen: unpack the legacy block at row[o] to codes at dst[base], d/m at dst[dbase], dst[dbase + 32]."""

    def codegen(context, bld, sig, args):
        row, o, dst, base, dbase = args
        rp = S.array_ptr(context, bld, sig.args[0], row, o)
        cp = S.array_ptr(context, bld, sig.args[2], dst, base)
        fp = S.array_ptr(context, bld, sig.args[2], dst, dbase)
        codes = S.load(bld, S.byte_ptr(bld, rp, 2), S.V32I8) if kind == Q8_0 else block_codes(bld, kind, rp)
        bld.store(codes, bld.bitcast(cp, S.V32I8.as_pointer()), align=1)
        m = S.load_f16(bld, S.byte_ptr(bld, rp, 2)) if kind in (Q4_1, Q5_1) else ir.Constant(S.F32, 0.0)
        bld.store(S.load_f16(bld, rp), bld.bitcast(fp, S.F32.as_pointer()), align=1)
        bld.store(m, bld.bitcast(S.byte_ptr(bld, fp, 32), S.F32.as_pointer()), align=1)
        return context.get_dummy_value()

    return codegen


def _make_unpack(kind: int):
    if kind in (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K):
        def unpack(typingctx, row, o, dst, base):
            return types.void(row, o, dst, base), _kq_unpack_codegen(kind)
    else:
        def unpack(typingctx, row, o, dst, base, dbase):
            return types.void(row, o, dst, base, dbase), _legacy_unpack_codegen(kind)

    unpack.__name__ = f"_unpack_{kind}"
    return intrinsic(unpack)


_u2_k, _u3_k, _u4_k, _u5_k, _u6_k = (_make_unpack(t) for t in (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K))
_u4_0, _u4_1, _u5_0, _u5_1, _u8_0 = (_make_unpack(t) for t in (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0))


@numba.njit(cache=True)
def _unpack_kq(kind, row, dst):
    """Unpack a K-quant row uint8 (nb*block,) into dst uint8 (nb*KQ_BLOCK,) (the type tested once per row)."""
    nb = dst.shape[0] // KQ_BLOCK
    if kind == Q4_K:
        for b in range(nb):
            _u4_k(row, b * 144, dst, b * KQ_BLOCK)
    elif kind == Q6_K:
        for b in range(nb):
            _u6_k(row, b * 210, dst, b * KQ_BLOCK)
    elif kind == Q5_K:
        for b in range(nb):
            _u5_k(row, b * 176, dst, b * KQ_BLOCK)
    elif kind == Q3_K:
        for b in range(nb):
            _u3_k(row, b * 110, dst, b * KQ_BLOCK)
    else:
        for b in range(nb):
            _u2_k(row, b * 84, dst, b * KQ_BLOCK)


@numba.njit(cache=True)
def _unpack_legacy(kind, row, nb, dst):
    """Unpack a legacy row uint8 (nb*block,) into dst uint8 (ceil(nb/8)*LEGACY_GROUP,)."""
    for b in range(nb):
        base = (b // 8) * LEGACY_GROUP
        k = b % 8
        if kind == Q4_1:
            _u4_1(row, b * 20, dst, base + 32 * k, base + 256 + 4 * k)
        elif kind == Q4_0:
            _u4_0(row, b * 18, dst, base + 32 * k, base + 256 + 4 * k)
        elif kind == Q5_0:
            _u5_0(row, b * 22, dst, base + 32 * k, base + 256 + 4 * k)
        elif kind == Q5_1:
            _u5_1(row, b * 24, dst, base + 32 * k, base + 256 + 4 * k)
        else:
            _u8_0(row, b * 34, dst, base + 32 * k, base + 256 + 4 * k)


# --- drivers ---


@numba.njit(cache=True, inline="always")
def _store(acc, out, r, r_valid, t0, n_tok, i_row):
    """out[t0 + t, r] = acc[4*i_row + t] for the valid tokens (r_valid: this tile row exists)."""
    if r_valid:
        for t in range(min(4, n_tok - t0)):
            out[t0 + t, r] = acc[4 * i_row + t]


@numba.njit(cache=True, fastmath=True)
def _tile_kq(kind, tile, nr, r0, qs, d, bsums, out):
    """All tokens times tile rows 0..nr-1 (output rows r0..): K-quant micro-kernel sweeps."""
    n_tok, nb = d.shape
    acc = np.empty(8, np.float32)  # float32 (8,) the 2 rows x 4 tokens being summed
    has_min = kind == Q2_K or kind == Q4_K or kind == Q5_K
    for t0 in range(0, n_tok, TOKENS):
        ta, tb, tc, td = t0, min(t0 + 1, n_tok - 1), min(t0 + 2, n_tok - 1), min(t0 + 3, n_tok - 1)
        for i in range(0, nr, 2):
            i1 = min(i + 1, nr - 1)
            acc[:] = 0
            if has_min:
                for b in range(nb):
                    _kq_min(tile, i, i1, b, qs, bsums, d, ta, tb, tc, td, acc)
            else:
                for b in range(nb):
                    _kq_nomin(tile, i, i1, b, qs, bsums, d, ta, tb, tc, td, acc)
            _store(acc, out, r0 + i, True, t0, n_tok, 0)
            _store(acc, out, r0 + i + 1, i + 1 < nr, t0, n_tok, 1)


@numba.njit(cache=True, parallel=True)
def gemm_q8k(kind, raw, qs, d, bsums, out):
    """``out = Y @ W.T`` for K-quant rows W and Q8_K activations Y, tile by tile (module docstring).

    kind: Q2_K..Q6_K; raw uint8 (n_out, nb*block bytes); qs int8 (n_tok, n_in); d float32 (n_tok, nb);
    bsums int16 (n_tok, n_in/16) -> out float32 (n_tok, n_out).
    """
    n_out, nb = raw.shape[0], d.shape[1]
    for c in numba.prange((n_out + TILE_ROWS - 1) // TILE_ROWS):
        r0 = c * TILE_ROWS
        nr = min(TILE_ROWS, n_out - r0)
        tile = np.empty((TILE_ROWS, nb * KQ_BLOCK), np.uint8)  # uint8 (rows, nb*576) unpacked rows
        for i in range(nr):
            _unpack_kq(kind, raw[r0 + i], tile[i])
        _tile_kq(kind, tile, nr, r0, qs, d, bsums, out)


@numba.njit(cache=True)
def _tile_legacy(kind, tile, nr, r0, qs, d, aux, out):
    """All tokens times tile rows 0..nr-1 (output rows r0..): legacy micro-kernel sweeps."""
    n_tok, nb = d.shape
    ng = nb // 8
    acc = np.empty(8, np.float32)  # float32 (8,) the 2 rows x 4 tokens being summed
    for t0 in range(0, n_tok, TOKENS):
        ta, tb, tc, td = t0, min(t0 + 1, n_tok - 1), min(t0 + 2, n_tok - 1), min(t0 + 3, n_tok - 1)
        for i in range(0, nr, 2):
            i1 = min(i + 1, nr - 1)
            acc[:] = 0
            if kind == Q4_1:
                for g in range(ng):
                    _l4_1(tile, i, i1, g, 0, qs, d, aux, ta, tb, tc, td, acc)
                for k in range(nb % 8):
                    _l4_1_1(tile, i, i1, ng, k, qs, d, aux, ta, tb, tc, td, acc)
            elif kind == Q4_0:
                for g in range(ng):
                    _l4_0(tile, i, i1, g, 0, qs, d, aux, ta, tb, tc, td, acc)
                for k in range(nb % 8):
                    _l4_0_1(tile, i, i1, ng, k, qs, d, aux, ta, tb, tc, td, acc)
            elif kind == Q5_0:
                for g in range(ng):
                    _l5_0(tile, i, i1, g, 0, qs, d, aux, ta, tb, tc, td, acc)
                for k in range(nb % 8):
                    _l5_0_1(tile, i, i1, ng, k, qs, d, aux, ta, tb, tc, td, acc)
            elif kind == Q5_1:
                for g in range(ng):
                    _l5_1(tile, i, i1, g, 0, qs, d, aux, ta, tb, tc, td, acc)
                for k in range(nb % 8):
                    _l5_1_1(tile, i, i1, ng, k, qs, d, aux, ta, tb, tc, td, acc)
            else:
                for g in range(ng):
                    _l8_0(tile, i, i1, g, 0, qs, d, aux, ta, tb, tc, td, acc)
                for k in range(nb % 8):
                    _l8_0_1(tile, i, i1, ng, k, qs, d, aux, ta, tb, tc, td, acc)
            _store(acc, out, r0 + i, True, t0, n_tok, 0)
            _store(acc, out, r0 + i + 1, i + 1 < nr, t0, n_tok, 1)


@numba.njit(cache=True, parallel=True)
def gemm_legacy(kind, raw, qs, d, aux, out):
    """``out = Y @ W.T`` for legacy rows W (Q4_0/Q5_0/Q8_0 over Q8_0, Q4_1/Q5_1 over Q8_1 activations).

    raw uint8 (n_out, nb*block bytes); qs int8 (n_tok, n_in); d float32 (n_tok, nb); aux: the activation
    block sums int16 (Q8_0) or s float32 (Q8_1), (n_tok, nb) -> out float32 (n_tok, n_out).
    """
    n_out, nb = raw.shape[0], d.shape[1]
    ng = (nb + 7) // 8
    for c in numba.prange((n_out + TILE_ROWS - 1) // TILE_ROWS):
        r0 = c * TILE_ROWS
        nr = min(TILE_ROWS, n_out - r0)
        tile = np.empty((TILE_ROWS, ng * LEGACY_GROUP), np.uint8)  # uint8 (rows, groups*320) unpacked rows
        for i in range(nr):
            _unpack_legacy(kind, raw[r0 + i], nb, tile[i])
        _tile_legacy(kind, tile, nr, r0, qs, d, aux, out)


def gemm_via_q8_k(t: GGMLType, raw: np.ndarray, X: np.ndarray, out: np.ndarray) -> None:
    """``out = X @ W.T`` for a K-quant matrix through Q8_K activations, tiled for large batches.

    raw uint8 (n_out, row_bytes) of type ``t``, X float32 (n_tok, n_in) -> out float32 (n_tok, n_out)
    (contiguous). Per token, bit-identical to :func:`.int_dot.matmul_via_q8_k`.
    """
    y = Q8K(X)
    gemm_q8k(int(t), raw, y.qs, y.d, y.bsums, out)


def gemm_via_q8_0(t: GGMLType, raw: np.ndarray, X: np.ndarray, out: np.ndarray) -> None:
    """As :func:`gemm_via_q8_k` for Q4_0/Q5_0/Q8_0 weights over Q8_0 activations."""
    y = Q80(X)
    gemm_legacy(int(t), raw, y.qs, y.d, y.sums, out)


def gemm_via_q8_1(t: GGMLType, raw: np.ndarray, X: np.ndarray, out: np.ndarray) -> None:
    """As :func:`gemm_via_q8_k` for Q4_1/Q5_1 weights over Q8_1 activations."""
    y = Q81(X)
    gemm_legacy(int(t), raw, y.qs, y.d, y.s, out)

