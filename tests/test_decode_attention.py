"""One-token attention read straight from the KV cache (runtime.decode_attention) vs numpy on float32 copies."""

import numba
import numpy as np
import pytest

from airoboros_ggml.runtime.attention import softmax_attention as _attend
from airoboros_ggml.runtime.decode_attention import attend_one, attend_one_per_sequence


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=["f16", "f32"])
@pytest.mark.parametrize("n_kv,group,hd", [(4, 1, 64), (3, 3, 64), (1, 8, 128)])
def test_attend_one_matches_numpy(dtype, n_kv, group, hd, n_threads):
    rng = np.random.default_rng(n_kv * 10 + group)
    n_ctx = 70
    keys = (rng.standard_normal((n_kv, n_ctx, hd)) * 2).astype(dtype)  # (n_kv, n_ctx, hd)
    values = rng.standard_normal((n_kv, n_ctx, hd)).astype(dtype)  # (n_kv, n_ctx, hd)
    q = rng.standard_normal((n_kv, group, hd)).astype(np.float32)  # float32 (n_kv, group, hd)
    k_in = keys.view(np.uint16) if dtype == np.float16 else keys
    v_in = values.view(np.uint16) if dtype == np.float16 else values
    saved = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        for end in (1, 17, n_ctx):
            out = np.empty_like(q)
            attend_one(q, k_in, v_in, end, out)
            ref = _attend(q, keys[:, :end].astype(np.float32), values[:, :end].astype(np.float32), hd, None)
            np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
            if end == 1:  # one position: the output is that position's value exactly
                np.testing.assert_array_equal(out, np.broadcast_to(values[:, :1].astype(np.float32), out.shape))
    finally:
        numba.set_num_threads(saved)


def test_attend_one_refuses_other_cache_types():
    q = np.zeros((1, 1, 8), np.float32)
    with pytest.raises(numba.core.errors.TypingError):
        attend_one(q, np.zeros((1, 4, 8), np.float64), np.zeros((1, 4, 8), np.float64), 4, np.empty_like(q))


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=["f16", "f32"])
def test_attend_one_per_sequence_equals_attend_one_for_each(dtype):
    rng = np.random.default_rng(5)
    n_seq, n_layer, n_kv, group, n_ctx, hd = 4, 2, 3, 3, 40, 64
    keys = rng.standard_normal((n_seq, n_layer, n_kv, n_ctx, hd)).astype(dtype)
    values = rng.standard_normal((n_seq, n_layer, n_kv, n_ctx, hd)).astype(dtype)
    k_in = keys.view(np.uint16) if dtype == np.float16 else keys
    v_in = values.view(np.uint16) if dtype == np.float16 else values
    seqs = np.array([2, 0, 3], dtype=np.int64)  # int64 (3,): any slots, in any order
    ends = np.array([5, 40, 1], dtype=np.int64)  # int64 (3,)
    q = rng.standard_normal((3, n_kv, group, hd)).astype(np.float32)  # float32 (3, n_kv, group, hd)
    out = np.empty_like(q)
    attend_one_per_sequence(q, k_in, v_in, 1, seqs, ends, out)
    for i in range(3):
        alone = np.empty_like(q[i])
        attend_one(q[i], k_in[seqs[i], 1], v_in[seqs[i], 1], ends[i], alone)
        # the same arithmetic; the f16 conversion may be vectorised differently in the two kernels (seen on a
        # clean clone), so allow float32 rounding rather than demanding bit equality
        np.testing.assert_allclose(out[i], alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("start,n_tok", [(0, 300), (45, 200), (7, 5)])
def test_prompt_chunk_attention_matches_float64(start, n_tok, n_threads):
    """A prompt chunk's causal attention by (KV head, query block) tasks equals a float64 softmax over the keys
    each query may see: chunks longer than a block, chunks after cached positions, and a chunk shorter than one
    block (``attention._attend_chunk``)."""
    from airoboros_ggml.runtime.attention import QUERY_BLOCK, _attend_chunk

    assert n_tok <= 5 or n_tok > QUERY_BLOCK  # the long cases span more than one block
    rng = np.random.default_rng(start + n_tok)
    n_kv, group, hd = 3, 3, 64
    end = start + n_tok
    q = rng.standard_normal((n_kv, group, n_tok, hd)).astype(np.float32)  # float32 (n_kv, group, n_tok, hd)
    keys = (rng.standard_normal((n_kv, end, hd)) * 2).astype(np.float32)  # float32 (n_kv, end, hd)
    values = rng.standard_normal((n_kv, end, hd)).astype(np.float32)  # float32 (n_kv, end, hd)
    scores = np.einsum("hgtd,hkd->hgtk", q.astype(np.float64), keys.astype(np.float64)) / np.sqrt(hd)
    scores[..., np.arange(end)[None, :] > (start + np.arange(n_tok))[:, None]] = -np.inf  # causal
    p = np.exp(scores - scores.max(axis=-1, keepdims=True))
    ref = np.einsum("hgtk,hkd->hgtd", p / p.sum(axis=-1, keepdims=True), values.astype(np.float64))
    saved = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        out = np.full_like(q, np.nan)
        _attend_chunk(q, keys, values, start, out)
    finally:
        numba.set_num_threads(saved)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_worker_tasks_use_at_most_the_model_threads(n_threads):
    """``run_on_workers`` (prompt-chunk attention, matmul tiles) starts min(threads, tasks) workers, however many
    threads the shared pool holds; one worker runs in the calling thread."""
    import threading

    from airoboros_ggml.quants.weight import run_on_workers

    calls = []  # (worker, workers, thread) per call
    saved = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        run_on_workers(lambda k, n: calls.append((k, n, threading.get_ident())), 10)
        run_on_workers(lambda k, n: calls.append((k, n, None)), 1)
    finally:
        numba.set_num_threads(saved)
    assert sorted(c[:2] for c in calls[:-1]) == [(k, n_threads) for k in range(n_threads)]
    assert calls[-1][:2] == (0, 1)
    if n_threads == 1:
        assert calls[0][2] == threading.get_ident()
