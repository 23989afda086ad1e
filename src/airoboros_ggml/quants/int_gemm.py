"""Integer matrix-matrix kernels for prompt batches of K-quant weights: tiles unpacked once, reused by every token.

The row kernels of :mod:`.int_dot` extract a weight block's codes and scales again for every token; for a
prompt of hundreds of tokens that extraction, not the multiplication, is most of the work. Here a task takes
:data:`TILE_ROWS` weight rows and unpacks them once (with the row kernels' own extraction code) into a byte
scratch that stays in L2: codes as unsigned bytes, ready for ``vpmaddubsw``; scales pre-broadcast as int16
vectors, ready for ``vpmaddwd``; ``d``/``dmin`` as float32. It then sweeps all tokens over the tile: a
micro-kernel (one LLVM IR intrinsic per 256-element block) multiplies :data:`ROWS` rows by :data:`TOKENS`
tokens with 8 integer lane accumulators and adds each pair's lanes, scaled, to its float32 (8,) accumulator
(:func:`.int_dot.accumulate`). Tasks (row tiles) run in parallel over ``prange``; the activations are
quantized to Q8_K once per call (:mod:`.q8_activations`), as for the row kernels.

Scratch layout, :data:`KQ_BLOCK` = 576 bytes per block and tile row: codes u8 [256] in element order @0;
int16 [8][16] @256, the multiplier of each 32-code chunk's 16 ``vpmaddubsw`` pair sums (Q4_K/Q5_K: the
sub-block scale 16 times; Q2_K/Q3_K/Q6_K: the scales of its two 16-element groups, 8 times each); int16 [16]
@512, coefficients of the 16 activation ``bsums`` (Q2_K/Q4_K/Q5_K: the mins, giving ``msum``; Q3_K:
``-4*sc``, Q6_K: ``-32*sc``, the code offsets, added to ``isum``); float32 ``d`` @544, ``dmin`` @548 (see
:mod:`.int_dot` for the per-type formulas and overflow bounds).

Results: each token's output is computed with the same integer lanes and the same float32 operations in the
same order as the row kernels, so a token's result does not depend on the batch it was computed in, nor on
which kernel served that batch (tested bit for bit). AVX2 only (``vpmaddubsw``/``vpmaddwd``).

Not here (follow-ups): the legacy 32-element types (Q4_0 .. Q8_0) keep tiles + BLAS for large batches: each
32-element block needs its own horizontal sum and float scaling per (row, token), and a tiled version of the
row kernels' arithmetic measured slower than float32 BLAS on AVX2 (34 vs 50 GOP per CPU-second, Q4_1
1536x576, 128 tokens); and a ``vpdpbusd`` (AVX-VNNI / AVX512-VNNI) micro-kernel, which would fuse
``vpmaddubsw`` with a ``vpmaddwd`` by ones but not the int16 scaling of the K-quants, and cannot be tested on
AVX2-only CI.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..ggml_types import GGMLType
from . import int_dot as D
from . import simd as S
from .kernels import Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
from .q8_activations import Q8K

TILE_ROWS = 16
"""Weight rows unpacked per task (their scratch, at most ~400 KB for 11008-wide rows, stays in L2)."""

ROWS, TOKENS = 2, 4
"""Tile rows and tokens per K-quant micro-kernel call: 8 integer accumulators, the 2 rows' codes and scales and
a token's activations fit AVX2's 16 registers (4 x 2 spills; Q4_K 4096 x 4096 x 128 tokens, 2 threads: 22.8-24.3
ms as 4 x 2, 20.0-23.0 ms as 2 x 4)."""

KQ_BLOCK = 576
"""Scratch bytes per unpacked K-quant block (see the module docstring)."""


# --- the micro-kernels (LLVM IR) ---


def _indices(context, bld, aty, ary, n: int) -> list:
    """The n int64 values of a small int64 array argument (tile rows or tokens of a micro-kernel call)."""
    return [bld.load(S.item_ptr(context, bld, aty, ary, [ir.Constant(ir.IntType(64), j)])) for j in range(n)]


def _kq_codegen(has_min: bool):
    """Micro-kernel: lanes of pair p = TOKENS*r + t (acc[8p : 8p + 8]) += block b of row rows[r] x token toks[t]."""

    def codegen(context, bld, sig, args):
        tile, rows, b, qs, bsums, dy, toks, acc = args
        a_tile, a_rows, a_qs, a_bs, a_dy, a_toks, a_acc = (sig.args[i] for i in (0, 1, 3, 4, 5, 6, 7))
        i64 = ir.IntType(64)
        b64 = bld.sext(b, i64) if b.type != i64 else b
        wo = bld.mul(b64, ir.Constant(i64, KQ_BLOCK))
        wp = [S.item_ptr(context, bld, a_tile, tile, [i, wo]) for i in _indices(context, bld, a_rows, rows, ROWS)]
        toks = _indices(context, bld, a_toks, toks, TOKENS)
        yp = [S.item_ptr(context, bld, a_qs, qs, [t, bld.mul(b64, ir.Constant(i64, 256))]) for t in toks]
        bp = [S.item_ptr(context, bld, a_bs, bsums, [t, bld.mul(b64, ir.Constant(i64, 16))]) for t in toks]
        dys = [S.load(bld, S.item_ptr(context, bld, a_dy, dy, [t, b64]), S.F32) for t in toks]
        accs = [None] * (ROWS * TOKENS)  # i32 (8,) per pair p = TOKENS*r + t
        for k in range(8):  # 32-code chunks
            w = [S.load(bld, S.byte_ptr(bld, p, 32 * k), S.V32I8) for p in wp]
            sc = [S.load(bld, S.byte_ptr(bld, p, 256 + 32 * k), S.V16I16) for p in wp]
            for t in range(TOKENS):
                y = S.load(bld, S.byte_ptr(bld, yp[t], 32 * k), S.V32I8)
                for r in range(ROWS):
                    p = TOKENS * r + t
                    v = S.maddwd(bld, S.maddubs(bld, w[r], y), sc[r])
                    accs[p] = v if accs[p] is None else bld.add(accs[p], v)
        coef = [S.load(bld, S.byte_ptr(bld, p, 512), S.V16I16) for p in wp]
        bsv = [S.load(bld, p, S.V16I16) for p in bp]
        f32 = lambda p, o: S.load(bld, S.byte_ptr(bld, p, o), S.F32)  # noqa: E731
        dws = [f32(p, 544) for p in wp]
        dmins = [f32(p, 548) if has_min else None for p in wp]
        for p in range(ROWS * TOKENS):  # the row kernels' float arithmetic (int_dot.accumulate), pair by pair
            r, t = divmod(p, TOKENS)
            corr = S.maddwd(bld, bsv[t], coef[r])
            accp = S.item_ptr(context, bld, a_acc, acc, [ir.Constant(i64, D.LANES * p)])
            accp = bld.bitcast(accp, S.V8F32.as_pointer())
            bld.store(D.accumulate(bld, bld.load(accp, align=4), accs[p], corr, dws[r], dmins[r], dys[t]), accp,
                      align=4)
        return context.get_dummy_value()

    return codegen


def _make_kq(has_min: bool):
    def kq_block(typingctx, tile, rows, b, qs, bsums, dy, toks, acc):
        return types.void(tile, rows, b, qs, bsums, dy, toks, acc), _kq_codegen(has_min)

    kq_block.__name__ = f"_kq_block_{'min' if has_min else 'nomin'}"
    return intrinsic(kq_block)


_kq_min, _kq_nomin = _make_kq(True), _make_kq(False)


# --- unpacking weight blocks into the scratch (LLVM IR, the code extraction of the row kernels) ---


def _kq_unpack_codegen(kind: int):
    """Codegen: unpack the K-quant block at row[o] into tile_row[base:base+KQ_BLOCK] (module docstring)."""

    def codegen(context, bld, sig, args):
        row, o, dst, base = args
        rp = S.array_ptr(context, bld, sig.args[0], row, o)
        dp = S.array_ptr(context, bld, sig.args[2], dst, base)
        codes, chunk_scales, coef, d, dmin = D.unpack_block(bld, kind, rp)
        dmin = ir.Constant(S.F32, 0.0) if dmin is None else dmin
        for k in range(8):
            bld.store(codes[k], bld.bitcast(S.byte_ptr(bld, dp, 32 * k), S.V32I8.as_pointer()), align=1)
            bld.store(chunk_scales[k], bld.bitcast(S.byte_ptr(bld, dp, 256 + 32 * k), S.V16I16.as_pointer()),
                      align=1)
        bld.store(coef, bld.bitcast(S.byte_ptr(bld, dp, 512), S.V16I16.as_pointer()), align=1)
        bld.store(d, bld.bitcast(S.byte_ptr(bld, dp, 544), S.F32.as_pointer()), align=1)
        bld.store(dmin, bld.bitcast(S.byte_ptr(bld, dp, 548), S.F32.as_pointer()), align=1)
        return context.get_dummy_value()

    return codegen


def _make_unpack(kind: int):
    def unpack(typingctx, row, o, dst, base):
        return types.void(row, o, dst, base), _kq_unpack_codegen(kind)

    unpack.__name__ = f"_unpack_{kind}"
    return intrinsic(unpack)


_u2_k, _u3_k, _u4_k, _u5_k, _u6_k = (_make_unpack(t) for t in (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K))


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


# --- drivers ---


@numba.njit(cache=True, inline="always")
def _sweep_indices(rows, toks, i, nr, t0, n_tok):
    """Tile rows i.. and tokens t0.. of one micro-kernel call, clamped to the last valid ones."""
    for r in range(rows.shape[0]):
        rows[r] = min(i + r, nr - 1)
    for t in range(toks.shape[0]):
        toks[t] = min(t0 + t, n_tok - 1)


@numba.njit(cache=True, inline="always")
def _store(acc, out, r0, i, nr, t0, n_tok):
    """out[t0 + t, r0 + i + r] = the lane total of pair TOKENS*r + t, for the valid rows and tokens of a call."""
    for r in range(min(ROWS, nr - i)):
        for t in range(min(TOKENS, n_tok - t0)):
            out[t0 + t, r0 + i + r] = D.lane_total(acc, TOKENS * r + t)


@numba.njit(cache=True)
def _tile_kq(kind, tile, nr, r0, qs, d, bsums, out):
    """All tokens times tile rows 0..nr-1 (output rows r0..): K-quant micro-kernel sweeps."""
    n_tok, nb = d.shape
    acc = np.empty(ROWS * TOKENS * D.LANES, np.float32)  # float32 (ROWS*TOKENS*LANES,) the pairs' lanes
    rows = np.empty(ROWS, np.int64)
    toks = np.empty(TOKENS, np.int64)
    has_min = kind == Q2_K or kind == Q4_K or kind == Q5_K
    for t0 in range(0, n_tok, TOKENS):
        for i in range(0, nr, ROWS):
            _sweep_indices(rows, toks, i, nr, t0, n_tok)
            acc[:] = 0
            if has_min:
                for b in range(nb):
                    _kq_min(tile, rows, b, qs, bsums, d, toks, acc)
            else:
                for b in range(nb):
                    _kq_nomin(tile, rows, b, qs, bsums, d, toks, acc)
            _store(acc, out, r0, i, nr, t0, n_tok)


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


def gemm_via_q8_k(t: GGMLType, raw: np.ndarray, X: np.ndarray, out: np.ndarray) -> None:
    """``out = X @ W.T`` for a K-quant matrix through Q8_K activations, tiled for large batches.

    raw uint8 (n_out, row_bytes) of type ``t``, X float32 (n_tok, n_in) -> out float32 (n_tok, n_out)
    (contiguous). Per token, bit-identical to :func:`.int_dot.matmul_via_q8_k`.
    """
    y = Q8K(X)
    gemm_q8k(int(t), raw, y.qs, y.d, y.bsums, out)

