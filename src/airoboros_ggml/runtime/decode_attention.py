"""Attention of one new token over the cached keys and values, read straight from the cache.

numpy would first convert the whole f16 cache of a layer to float32 (``astype``: a full extra write and
read of it, at ~1-2 ns per element) and then run small batched products: at 512 cached positions of a 7B
model that took ~270 ms per token, more than all the weight products together. This kernel converts each
key/value element in registers (``vcvtph2ps`` via an LLVM intrinsic; numba has no float16 type) and
streams the cache once, one KV head per thread. Prompt batches keep the numpy path in
:mod:`.forward` (their conversion is shared by every token of the batch).

No ``fastmath``: numba's cached machine code of a fast-math kernel need not compute what the code it compiled
in the first process computed (here 1 ulp apart, enough to flip a sampled token between a first and a second
run; ``tests/test_numba_cache.py``). The dot products are written as explicit 8-lane vector operations with
strict float flags (:data:`_madd32`), so they vectorize without it: 15 ms per 7B token at 512 cached
positions on 2 AVX2 cores, against 12 ms with ``fastmath`` and 40 ms for the scalar loop.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..quants import simd as S


@intrinsic
def _kv_at(typingctx, arr, idx):
    """float32 value of ``arr.flat[idx]`` for a contiguous float32 array or uint16 array of f16 bit patterns."""
    if not isinstance(arr, types.Array) or arr.dtype not in (types.uint16, types.float32):
        return None
    half = arr.dtype == types.uint16
    sig = types.float32(arr, idx)

    def codegen(context, builder, signature, args):
        ptr = S.array_ptr(context, builder, signature.args[0], args[0], args[1])
        if half:
            return S.load_f16(builder, ptr)
        return builder.load(ptr)

    return sig, codegen


def _madd_codegen(chunks: int, half: bool):
    """Codegen of ``acc[0:8] += sum over c < chunks of q[8c:8c+8] * kv[8c:8c+8]`` (pairwise over c)."""

    def codegen(context, builder, signature, args):
        v8f = ir.VectorType(S.F32, 8)
        acc_ptr = builder.bitcast(S.array_ptr(context, builder, signature.args[0], args[0], S.const(0)),
                                  v8f.as_pointer())
        q_ptr = S.array_ptr(context, builder, signature.args[1], args[1], args[2])
        kv_ptr = S.array_ptr(context, builder, signature.args[3], args[3], args[4])
        products = []
        for c in range(chunks):
            qv = S.load(builder, S.byte_ptr(builder, q_ptr, 8 * c), v8f)
            if half:
                kvv = builder.fpext(S.load(builder, S.byte_ptr(builder, kv_ptr, 8 * c),
                                           ir.VectorType(ir.HalfType(), 8)), v8f)
            else:
                kvv = S.load(builder, S.byte_ptr(builder, kv_ptr, 8 * c), v8f)
            products.append(builder.fmul(qv, kvv, flags=S.STRICT))
        while len(products) > 1:  # a fixed pairwise tree
            products = [builder.fadd(a, b, flags=S.STRICT) for a, b in zip(products[::2], products[1::2], strict=True)]
        total = builder.fadd(builder.load(acc_ptr, align=4), products[0], flags=S.STRICT)
        builder.store(total, acc_ptr, align=4)
        return context.get_dummy_value()

    return codegen


def _make_madd(chunks: int):
    def madd(typingctx, acc, q, q_at, kv, kv_at):
        if not isinstance(kv, types.Array) or kv.dtype not in (types.uint16, types.float32):
            return None
        return types.void(acc, q, q_at, kv, kv_at), _madd_codegen(chunks, kv.dtype == types.uint16)

    madd.__name__ = f"_madd{8 * chunks}"
    return intrinsic(madd)


_madd8 = _make_madd(1)
"""``_madd8(acc, q, q_at, kv, kv_at)``: acc float32 (8,) += q.flat[q_at:q_at+8] * kv.flat[kv_at:kv_at+8], one
8-lane multiply and add; q float32, kv float32 or uint16 (f16 bits, ``vcvtph2ps``). The float instructions
carry :data:`.simd.STRICT` flags: no contraction into an FMA, no reassociation."""
_madd32 = _make_madd(4)
"""``_madd32``: the same over 32 elements, four products summed pairwise before one add into acc."""


@numba.njit(cache=True, inline="always")
def _dot(q, q_at, kv, kv_at, hd, acc):
    """float32 sum over d < hd of q.flat[q_at + d] * kv.flat[kv_at + d] in a fixed order.

    Eight lanes (d mod 8) accumulated by :data:`_madd32` / :data:`_madd8`, then a fixed tree and the tail:
    the same result whether numba compiled this kernel in this process or loaded it from its cache. (With
    ``fastmath`` the two differed in the last bit, which flipped a sampled SmolLM2 token between a first and a
    second run.)
    acc: float32 (8,) scratch.
    """
    for i in range(8):
        acc[i] = 0
    wide = hd - hd % 32
    for d in range(0, wide, 32):
        _madd32(acc, q, q_at + d, kv, kv_at + d)
    main = hd - hd % 8
    for d in range(wide, main, 8):
        _madd8(acc, q, q_at + d, kv, kv_at + d)
    s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
    for d in range(main, hd):
        s += q.flat[q_at + d] * _kv_at(kv, kv_at + d)
    return s


@numba.njit(cache=True)
def _attend_head(q, keys, values, end, scale, scores, out):
    """Softmax attention of the queries of one KV head.

    q float32 (group, hd); keys/values (n_ctx, hd) float32 or uint16 (f16 bits), positions 0..end-1 used;
    scores float32 (group, end) scratch -> out float32 (group, hd). No fast-math (see :func:`_dot`): the
    value sums are element-wise over d, which vectorizes as written.
    """
    group, hd = q.shape
    acc = np.empty(8, np.float32)  # float32 (8,) lanes of one dot product
    for j in range(end):
        for g in range(group):
            scores[g, j] = _dot(q, g * hd, keys, j * hd, hd, acc) * scale
    for g in range(group):
        m = scores[g, 0]
        for j in range(1, end):
            m = max(m, scores[g, j])
        total = np.float32(0)
        for j in range(end):
            e = np.exp(scores[g, j] - m)
            scores[g, j] = e
            total += e
        inv = np.float32(1) / total
        for j in range(end):
            scores[g, j] *= inv
    out[:] = 0
    for j in range(end):
        for g in range(group):
            p = scores[g, j]
            for d in range(hd):
                out[g, d] += p * _kv_at(values, j * hd + d)


@numba.njit(cache=True, parallel=True)
def attend_one(q, keys, values, end, out):
    """Attention of one query token over one layer of the cache.

    q float32 (n_kv, group, hd) (the token's heads grouped by KV head); keys/values (n_kv, n_ctx, hd)
    float32 or uint16 (f16 bits); end = positions used -> out float32 (n_kv, group, hd).
    """
    scale = np.float32(1) / np.sqrt(np.float32(q.shape[2]))
    for h in numba.prange(q.shape[0]):
        scores = np.empty((q.shape[1], end), np.float32)  # float32 (group, end)
        _attend_head(q[h], keys[h], values[h], end, scale, scores, out[h])


@numba.njit(cache=True, parallel=True)
def attend_one_per_sequence(q, keys, values, layer, seqs, ends, out):
    """:func:`attend_one` for one new token in each of several sequences, in one parallel region.

    q float32 (n, n_kv, group, hd); keys/values the whole cache (n_seq, n_layer, n_kv, n_ctx, hd), float32
    or uint16 (f16 bits); token i belongs to sequence ``seqs[i]`` and sees its positions 0..ends[i]-1
    (int64 (n,) each) -> out float32 (n, n_kv, group, hd). Each (token, head) is computed exactly as
    :func:`attend_one` computes it, so batching decode steps changes no attention output.
    """
    n, n_kv = q.shape[0], q.shape[1]
    scale = np.float32(1) / np.sqrt(np.float32(q.shape[3]))
    for t in numba.prange(n * n_kv):
        i = t // n_kv
        h = t - i * n_kv
        scores = np.empty((q.shape[2], ends[i]), np.float32)  # float32 (group, end)
        _attend_head(q[i, h], keys[seqs[i], layer, h], values[seqs[i], layer, h], ends[i], scale, scores, out[i, h])
