"""The KV cache's own API (batches, update, views, bookkeeping) and sequence slots in the forward pass."""

import numpy as np
import pytest

from airoboros_ggml import FileType
from airoboros_ggml.formats import open_model_file, write_gguf
from airoboros_ggml.runtime import KVCache, LlamaForward, LlamaWeights
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab

HP = tiny_hparams(n_layer=2)


def _kv(rng, n_tok):
    shape = (n_tok, HP.n_head_kv, HP.head_dim)
    return rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("kv_type", ["f16", "f32"])
def test_update_then_views_read_back_what_was_written(kv_type):
    rng = np.random.default_rng(0)
    cache = KVCache(HP, 16, kv_type, n_seq=2)
    k0, v0 = _kv(rng, 5)
    k1, v1 = _kv(rng, 3)
    batch = cache.plan([(1, 3), (0, 5)])  # rows 0-2 extend sequence 1, rows 3-7 sequence 0
    assert batch.n_tok == 8 and list(batch.positions()) == [0, 1, 2, 0, 1, 2, 3, 4]
    cache.update(1, batch, np.concatenate([k1, k0]), np.concatenate([v1, v0]))
    cache.advance(batch, [7, 8, 9, 1, 2, 3, 4, 5])
    tol = 1e-3 if kv_type == "f16" else 0
    np.testing.assert_allclose(cache.keys(1, 0, 5), k0.transpose(1, 0, 2), rtol=tol)
    np.testing.assert_allclose(cache.values(1, 1, 3), v1.transpose(1, 0, 2), rtol=tol)
    assert cache.keys(1, 0, 5).dtype == np.float32 and cache.keys(1, 0, 5).shape == (HP.n_head_kv, 5, HP.head_dim)
    assert not cache.keys(0, 0, 5).any()  # another layer is untouched
    assert cache.seq_tokens == [[1, 2, 3, 4, 5], [7, 8, 9]] and cache.tokens == [1, 2, 3, 4, 5]
    assert cache.length(1) == 3 and cache.n_past == 5
    # the raw storage is the cache itself (no copy), float16 as its bit patterns
    rk, rv = cache.raw(1, 0)
    assert rk.shape == (HP.n_head_kv, 16, HP.head_dim) and rk.flags.c_contiguous
    assert rk.dtype == (np.uint16 if kv_type == "f16" else np.float32)
    raw_keys = rk[:, :5].view(np.float16) if kv_type == "f16" else rk[:, :5]
    np.testing.assert_array_equal(raw_keys.astype(np.float32), cache.keys(1, 0, 5))
    # the next batch of a sequence starts where it ended
    assert cache.batch(2, seq=1).spans[0].start == 3


@pytest.mark.parametrize("kv_type", ["f16", "f32"])
def test_a_batch_of_spans_stores_what_each_span_alone_stores(kv_type):
    """One update of a 3-span batch (one kernel call) leaves the storage bit for bit as 3 single-span updates."""
    rng = np.random.default_rng(5)
    k, v = _kv(rng, 7)
    k *= np.float32(1000)  # f16 overflow and rounding on the way
    together, alone = KVCache(HP, 16, kv_type, n_seq=3), KVCache(HP, 16, kv_type, n_seq=3)
    for cache in (together, alone):  # sequences at different lengths first
        cache.advance(cache.plan([(0, 2), (2, 5)]), [1, 2, 1, 2, 3, 4, 5])
    batch = together.plan([(2, 1), (0, 4), (1, 2)])
    together.update(1, batch, k, v)
    for span in batch.spans:
        alone.update(1, alone.plan([(span.seq, span.n_tok)]), k[span.rows], v[span.rows])
    for got, want in zip(together.raw_all(), alone.raw_all(), strict=True):
        assert np.array_equal(got, want) and got[:, 1].any()


def test_plan_refuses_overflow_and_repeated_or_unknown_sequences():
    cache = KVCache(HP, 8, n_seq=2)
    with pytest.raises(ValueError, match="do not fit"):
        cache.batch(9)
    with pytest.raises(ValueError, match="repeated"):
        cache.plan([(0, 1), (0, 1)])
    with pytest.raises(ValueError, match="unknown"):
        cache.plan([(2, 1)])
    with pytest.raises(ValueError, match="n_seq"):
        KVCache(HP, 8, n_seq=0)


def test_truncate_and_clear_one_sequence_leave_the_others():
    cache = KVCache(HP, 8, n_seq=3)
    for seq in range(3):
        batch = cache.batch(4, seq=seq)
        cache.advance(batch, [seq] * 4)
    cache.truncate(1, seq=1)
    cache.clear(seq=2)
    assert cache.seq_tokens == [[0] * 4, [1], []]
    assert cache.batch(1, seq=1).spans[0].start == 1
    cache.clear()
    assert cache.seq_tokens == [[], [], []]


@pytest.mark.parametrize("kv_type", ["f16", "f32"])
def test_sequences_in_one_batch_equal_each_sequence_alone(tmp_path, kv_type):
    """Two prompts in one batch, then their decode steps in one batch: the same logits as each alone."""
    tensors = random_llama_tensors(HP, FileType.ALL_F32, seed=11, scale=0.08)
    mf = open_model_file(write_gguf(tmp_path / "m.gguf", HP, tiny_vocab(HP.n_vocab), tensors))
    fwd = LlamaForward(mf.hparams, LlamaWeights.from_model_file(mf))
    rng = np.random.default_rng(3)
    prompts = [rng.integers(0, HP.n_vocab, 6), rng.integers(0, HP.n_vocab, 9)]
    steps = [rng.integers(0, HP.n_vocab, 3), rng.integers(0, HP.n_vocab, 3)]

    alone = []
    for prompt, step in zip(prompts, steps, strict=True):
        cache = KVCache(HP, 32, kv_type)
        rows = [fwd.logits(fwd.hidden(prompt, cache))]
        rows += [fwd.logits(fwd.hidden(step[i : i + 1], cache)) for i in range(len(step))]
        alone.append(np.concatenate(rows))  # float32 (n_prompt + n_step, n_vocab)

    cache = KVCache(HP, 32, kv_type, n_seq=2)
    batch = cache.plan([(1, len(prompts[1])), (0, len(prompts[0]))])
    first = fwd.logits(fwd.hidden(np.concatenate([prompts[1], prompts[0]]), cache, batch))
    together = [[first[len(prompts[1]) :]], [first[: len(prompts[1])]]]
    for i in range(3):
        batch = cache.plan([(0, 1), (1, 1)])
        out = fwd.logits(fwd.hidden(np.array([steps[0][i], steps[1][i]]), cache, batch))
        together[0].append(out[:1])
        together[1].append(out[1:])
    for seq in range(2):
        got = np.concatenate(together[seq])
        # batched rows take the matmul kernels instead of matvec: float order differs (measured f32 1e-6),
        # and an f16 cache can round a key the other way (measured 1.2e-4)
        assert np.abs(got - alone[seq]).max() / np.abs(alone[seq]).max() < (1e-5 if kv_type == "f32" else 1e-3)
    assert cache.seq_tokens[0] == [*prompts[0], *steps[0]] and cache.seq_tokens[1] == [*prompts[1], *steps[1]]
