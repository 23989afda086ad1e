"""Causal self-attention of a batch over the KV cache, one sequence span at a time.

A one-token span (decoding) runs :func:`.decode_attention.attend_one` straight on the cache's storage; a
longer span (a prompt chunk) converts the span's keys/values to float32 once and runs numpy products with
a causal mask, by tasks of one KV head and :data:`QUERY_BLOCK` positions on the worker threads (small
``(group * block, n_keys)`` scores; a block reads only the keys it may see). Measured on the 2-core box, one
layer of a 512-token chunk: SmolLM2 (3 KV heads of 3 queries, hd 64) 13.8 -> 6.0 ms, 7B (32 heads, hd 128)
77 -> 35 ms, against one head at a time over all keys on one thread. Queries see only keys of their own
sequence (each span reads its own slot).
"""

from __future__ import annotations

import numpy as np

from ..quants.weight import run_on_workers
from .decode_attention import attend_one, attend_one_per_sequence
from .kv_cache import KVBatch, KVCache, KVSpan

QUERY_BLOCK = 128
"""Query positions per attention task of a prompt chunk (see :func:`_attend_chunk`)."""


def attend(q: np.ndarray, cache: KVCache, layer: int, batch: KVBatch) -> np.ndarray:
    """Attention of every query of ``batch`` over its own sequence's cached keys (already updated).

    Args:
        q: float32 (n_tok, n_head, head_dim) queries after RoPE, rows as in the batch.
        cache: the cache holding this layer's keys and values for the batch's positions.
        layer: layer index.
        batch: where the rows sit in the cache.

    Returns:
        float32 (n_tok, n_head * head_dim).
    """
    if len(batch.spans) == 1:
        return _attend_span(q, cache, layer, batch.spans[0])
    n_tok, n_head, hd = q.shape
    out = np.empty((n_tok, n_head * hd), dtype=np.float32)  # float32 (n_tok, n_head * hd)
    n_kv = cache.k.shape[2]
    if n_tok == len(batch.spans):  # a decode step: one token per sequence, row i in span i
        seqs, starts, _, _ = batch.arrays
        qg = np.ascontiguousarray(q).reshape(n_tok, n_kv, n_head // n_kv, hd)  # (n_tok, n_kv, group, hd)
        att = out.reshape(qg.shape)  # float32 (n_tok, n_kv, group, hd), a view of out
        attend_one_per_sequence(qg, *cache.raw_all(), layer, seqs, starts + 1, att)
        return out
    decoding = [s for s in batch.spans if s.n_tok == 1]
    if len(decoding) > 1:  # one new token in each of several sequences: one parallel kernel call
        rows = np.array([s.row for s in decoding], dtype=np.int64)  # int64 (n_dec,)
        seqs = np.array([s.seq for s in decoding], dtype=np.int64)  # int64 (n_dec,)
        ends = np.array([s.end for s in decoding], dtype=np.int64)  # int64 (n_dec,)
        qg = np.ascontiguousarray(q[rows].reshape(len(rows), n_kv, n_head // n_kv, hd))  # (n_dec, n_kv, group, hd)
        att = np.empty_like(qg)  # float32 (n_dec, n_kv, group, hd)
        attend_one_per_sequence(qg, *cache.raw_all(), layer, seqs, ends, att)
        out[rows] = att.reshape(len(rows), n_head * hd)
    for span in batch.spans:
        if span.n_tok > 1 or len(decoding) == 1:
            out[span.rows] = _attend_span(q[span.rows], cache, layer, span)
    return out


def _attend_span(q: np.ndarray, cache: KVCache, layer: int, span: KVSpan) -> np.ndarray:
    """Attention of one span: q float32 (n_tok, n_head, hd) -> float32 (n_tok, n_head * hd)."""
    n_tok, n_head, hd = q.shape
    keys, values = cache.raw(layer, span.seq)  # (n_kv, n_ctx, hd) storage
    n_kv = keys.shape[0]
    group = n_head // n_kv
    end = span.end
    # queries grouped by the KV head they share: (n_kv, group * n_tok, hd)
    qg = q.reshape(n_tok, n_kv, group, hd).transpose(1, 2, 0, 3).reshape(n_kv, group * n_tok, hd)
    if n_tok == 1:  # straight from the cache, no float32 copy of it
        out = np.empty((n_kv, group, hd), dtype=np.float32)  # float32 (n_kv, group, hd)
        attend_one(np.ascontiguousarray(qg), keys, values, end, out)
    else:  # float32 copies of the span's keys and values, then tasks of one KV head and query block
        keys = cache.keys(layer, span.seq, end)  # float32 (n_kv, n_keys, hd)
        values = cache.values(layer, span.seq, end)  # float32 (n_kv, n_keys, hd)
        out = np.empty((n_kv, group, n_tok, hd), dtype=np.float32)  # float32 (n_kv, group, n_tok, hd)
        _attend_chunk(qg.reshape(n_kv, group, n_tok, hd), keys, values, span.start, out)
    return out.reshape(n_kv, group, n_tok, hd).transpose(2, 0, 1, 3).reshape(n_tok, n_head * hd)


def _attend_chunk(q: np.ndarray, keys: np.ndarray, values: np.ndarray, start: int, out: np.ndarray) -> None:
    """Causal attention of a chunk of queries at positions start.. over the keys before each, into ``out``.

    q float32 (n_kv, group, n_tok, hd); keys/values float32 (n_kv, start + n_tok, hd); out float32 (n_kv,
    group, n_tok, hd). Tasks of one KV head and :data:`QUERY_BLOCK` positions read only the keys their last
    query may see (a 512-token chunk computes 62% of the full score matrix); costliest first, each of the
    model's threads takes the next one when it is free (:func:`~airoboros_ggml.quants.weight.run_on_workers`;
    numpy's BLAS and ufuncs release the GIL).
    """
    n_kv, group, n_tok, hd = q.shape
    masks = {}  # first position of a block -> float32 (block length, keys it sees): 0 or -inf
    for t0 in range(0, n_tok, QUERY_BLOCK):
        t1 = min(n_tok, t0 + QUERY_BLOCK)
        hidden = np.arange(start + t1)[None, :] > (start + np.arange(t0, t1))[:, None]  # bool (t1 - t0, start + t1)
        masks[t0] = np.where(hidden, np.float32(-np.inf), np.float32(0))
    tasks = sorted(((h, t0) for h in range(n_kv) for t0 in masks), key=lambda task: -task[1])
    queue = iter(tasks)  # shared by the workers: each takes the next task when it is free

    def work(_worker: int, _n_workers: int) -> None:
        for h, t0 in queue:
            causal = masks[t0]
            n_pos, n_keys = causal.shape
            qh = q[h, :, t0 : t0 + n_pos].reshape(group * n_pos, hd)  # float32 (group * n_pos, hd)
            att = softmax_attention(qh, keys[h, :n_keys], values[h, :n_keys], hd, causal)
            out[h, :, t0 : t0 + n_pos] = att.reshape(group, n_pos, hd)

    run_on_workers(work, len(tasks))


def softmax_attention(
    q: np.ndarray, keys: np.ndarray, values: np.ndarray, hd: int, bias: np.ndarray | None
) -> np.ndarray:
    """Softmax attention: q (..., n_q, hd), keys/values (..., n_keys, hd) -> (..., n_q, hd).

    ``bias`` float32 (n_pos, n_keys) is added to the scores of every run of ``n_pos`` consecutive query rows
    (``n_q`` a multiple of ``n_pos``): 0 where a query may see a key, -inf where not (the causal mask of one
    KV head's query group). Adding it costs ~1/30 of assigning through a boolean mask.
    """
    scores = np.matmul(q, np.swapaxes(keys, -1, -2))  # float32 (..., n_q, n_keys)
    scores *= np.float32(1.0 / np.sqrt(hd))
    if bias is not None:
        runs = scores.reshape(scores.shape[:-2] + (-1,) + bias.shape)  # view (..., n_q / n_pos, n_pos, n_keys)
        runs += bias
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return np.matmul(scores, values)
