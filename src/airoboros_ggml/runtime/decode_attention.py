"""Attention of one new token over the cached keys and values, read straight from the cache.

numpy would first convert the whole f16 cache of a layer to float32 (``astype``: a full extra write and
read of it, at ~1-2 ns per element) and then run small batched products: at 512 cached positions of a 7B
model that took ~270 ms per token, more than all the weight products together. This kernel converts each
key/value element in registers (``vcvtph2ps`` via an LLVM intrinsic; numba has no float16 type) and
streams the cache once, one KV head per thread. Prompt batches keep the numpy path in
:mod:`.forward` (their conversion is shared by every token of the batch).
"""

from __future__ import annotations

import numba
import numpy as np
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


@numba.njit(cache=True, fastmath=True)
def _attend_head(q, keys, values, end, scale, scores, out):
    """Softmax attention of the queries of one KV head.

    q float32 (group, hd); keys/values (n_ctx, hd) float32 or uint16 (f16 bits), positions 0..end-1 used;
    scores float32 (group, end) scratch -> out float32 (group, hd).
    """
    group, hd = q.shape
    for j in range(end):
        for g in range(group):
            s = np.float32(0)
            for d in range(hd):
                s += q[g, d] * _kv_at(keys, j * hd + d)
            scores[g, j] = s * scale
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
