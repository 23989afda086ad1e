"""The fused few-token path: its small kernels against numpy, grouped products against single ones, warm-up."""

import numpy as np
import pytest

from airoboros_ggml import FileType
from airoboros_ggml.formats import open_model_file, write_gguf
from airoboros_ggml.ggml_types import GGMLType
from airoboros_ggml.quants import prepare_weight, quantize
from airoboros_ggml.quants.fused import ROWS_PER_TASK
from airoboros_ggml.quants.int_group import readonly, rms_norm_into, task_table
from airoboros_ggml.quants.simd import HAVE_AVX2
from airoboros_ggml.quants.weight import matrix_group
from airoboros_ggml.runtime import KVCache, LlamaForward, LlamaWeights
from airoboros_ggml.runtime.forward import rms_norm, silu_mul
from airoboros_ggml.runtime.kv_cache import store_spans
from airoboros_ggml.runtime.rope import apply_rope, rope_tables
from airoboros_ggml.runtime.step_kernels import rope_qk_into, silu_mul_into
from airoboros_ggml.runtime.warmup import dispatcher_signatures, kernel_plan, warm_up
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab

rng = np.random.default_rng(11)
needs_avx2 = pytest.mark.skipif(not HAVE_AVX2, reason="the integer kernels need AVX2")


def test_rms_norm_kernel_matches_numpy():
    x = rng.standard_normal((3, 576), dtype=np.float32) * 4
    w = readonly(rng.standard_normal(576, dtype=np.float32))
    out = np.empty_like(x)
    rms_norm_into(x, w, 1e-5, out)
    np.testing.assert_allclose(out, rms_norm(x, w, 1e-5), rtol=2e-6, atol=1e-7)


def test_rope_kernel_equals_numpy():
    cos, sin = rope_tables(np.arange(5, 8), 32, 10000.0, 0.5)  # n_rot 32 of head_dim 64: half the dims rotate
    q = rng.standard_normal((3, 4, 64), dtype=np.float32)
    k = rng.standard_normal((3, 2, 64), dtype=np.float32)
    q_ref, k_ref = q.copy(), k.copy()
    apply_rope(q_ref, cos, sin)
    apply_rope(k_ref, cos, sin)
    rope_qk_into(q, k, cos, sin)
    np.testing.assert_array_equal(q, q_ref)
    np.testing.assert_array_equal(k, k_ref)


@pytest.mark.parametrize("n_tok", [1, 3])  # one row (serial kernel), several (rows in parallel)
def test_silu_mul_kernel_matches_numpy(n_tok):
    g = rng.standard_normal((n_tok, 512), dtype=np.float32) * 6
    g[0, :3] = [-200.0, 200.0, 0.0]  # exp overflow: silu -> -0
    u = rng.standard_normal((n_tok, 512), dtype=np.float32)
    ref = silu_mul(g.copy(), u)
    silu_mul_into(g, u)
    np.testing.assert_allclose(g, ref, rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_cache_store_kernel_equals_numpy_assignment(dtype):
    """Keys/values written by the kernel equal numpy's (f16: round to nearest even, subnormals, overflow)."""
    k = rng.standard_normal((3, 2, 64), dtype=np.float32) * np.float32(1000)
    v = rng.standard_normal((3, 2, 64), dtype=np.float32) * np.float32(1e-6)
    k[0, 0, :3] = [7e4, -1e5, 3e-8]
    keys, values = np.zeros((2, 10, 64), dtype), np.zeros((2, 10, 64), dtype)
    bits = np.uint16 if dtype == np.float16 else np.float32
    span = [np.array([x], np.int64) for x in (0, 4, 0, 3)]  # sequence 0 at positions 4.., rows 0..2
    # as a whole cache of one sequence and one layer: (n_seq, n_layer, n_kv, n_ctx, hd) = (1, 1, 2, 10, 64)
    store_spans(keys.view(bits)[None, None], values.view(bits)[None, None], 0, *span, k, v)
    ref_k, ref_v = np.zeros_like(keys), np.zeros_like(values)
    with np.errstate(over="ignore"):  # 7e4 and -1e5 overflow f16 to +-inf, as in the kernel
        ref_k[:, 4:7] = k.transpose(1, 0, 2)
        ref_v[:, 4:7] = v.transpose(1, 0, 2)
    np.testing.assert_array_equal(keys.view(bits), ref_k.view(bits))
    np.testing.assert_array_equal(values.view(bits), ref_v.view(bits))


def _matrix(t, n_out, n_in, seed):
    w = np.random.default_rng(seed).standard_normal((n_out, n_in), dtype=np.float32) * 0.05
    return prepare_weight(quantize(w, t), t, n_in, quantized_activations=True)


@needs_avx2
@pytest.mark.parametrize(
    "types",
    [
        (GGMLType.Q4_K, GGMLType.Q4_K, GGMLType.Q6_K),  # Q8_K activations, mixed K-quants (q4_K_M's wv)
        (GGMLType.Q4_1, GGMLType.Q5_1),  # Q8_1
        (GGMLType.Q4_0, GGMLType.Q8_0, GGMLType.Q5_0),  # Q8_0
    ],
)
@pytest.mark.parametrize("n_tok", [1, 5])
def test_group_equals_separate_products(types, n_tok):
    """One quantization shared by the group, one parallel loop: the same numbers as each matrix's matmul."""
    n_in = 512
    mats = [_matrix(t, n_out, n_in, i) for i, (t, n_out) in enumerate(zip(types, (24, 256, 40), strict=False))]
    x = rng.standard_normal((n_tok, n_in), dtype=np.float32)
    norm = readonly(1 + 0.1 * rng.standard_normal(n_in, dtype=np.float32))
    group = matrix_group(mats)
    acts = mats[0].activation_blocks(8)
    outs = [np.full((n_tok, m.n_out), np.nan, np.float32) for m in mats]
    group(x, acts, outs)
    for m, out in zip(mats, outs, strict=True):
        np.testing.assert_array_equal(out, m.matmul(x))
    normed = np.empty_like(x)
    rms_norm_into(x, norm, 1e-5, normed)
    group(x, acts, outs, norm, 1e-5)
    for m, out in zip(mats, outs, strict=True):
        np.testing.assert_array_equal(out, m.matmul(normed))
    np.testing.assert_allclose(acts.dequantize(n_tok), normed, atol=np.abs(normed).max() / 100)
    # a residual is added after the products: x += W0 @ x' (square first matrix)
    sq = _matrix(types[0], n_in, n_in, 9)
    res = rng.standard_normal((n_tok, n_in), dtype=np.float32)
    expect = res + sq.matmul(x)
    tmp = np.empty((n_tok, n_in), np.float32)
    matrix_group([sq])(x, acts, [tmp], residual=res)
    np.testing.assert_array_equal(res, expect)


@pytest.mark.parametrize("n_outs", [(4096, 4096, 4096), (11008, 4096), (20, 9, 3)])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_task_table_gives_every_thread_share_the_same_part_of_each_matrix(n_outs, n_threads):
    """Each task once; each thread's contiguous share holds about 1/n of every matrix, in runs of rows."""
    tasks = task_table(n_outs, n_threads)
    expect = sorted((i, r0) for i, n in enumerate(n_outs) for r0 in range(0, n, ROWS_PER_TASK))
    assert sorted(map(tuple, tasks.tolist())) == expect
    bounds = [len(tasks) * s // n_threads for s in range(n_threads + 1)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        share = tasks[lo:hi]
        for i, n in enumerate(n_outs):
            rows = share[share[:, 0] == i, 1]
            assert abs(len(rows) * ROWS_PER_TASK - n / n_threads) <= 2 * ROWS_PER_TASK, (i, len(rows))
            assert np.all(np.diff(rows) == ROWS_PER_TASK)  # one run of consecutive tasks per matrix


def test_group_refuses_mixed_activation_types():
    mats = [_matrix(GGMLType.Q4_K, 8, 256, 0), _matrix(GGMLType.Q4_0, 8, 256, 1)]
    with pytest.raises(ValueError, match="activation type"):
        matrix_group(mats)
    exact = prepare_weight(quantize(np.zeros((8, 256), np.float32), GGMLType.Q4_K), GGMLType.Q4_K, 256)
    with pytest.raises(ValueError, match="activation type"):
        matrix_group([exact])


def _tiny_model(tmp_path, ftype, quantized):
    hp = tiny_hparams()
    tensors = random_llama_tensors(hp, ftype, seed=2, scale=0.08)
    mf = open_model_file(write_gguf(tmp_path / "m.gguf", hp, tiny_vocab(hp.n_vocab), tensors))
    return hp, LlamaWeights.from_model_file(mf, quantized_activations=quantized)


@needs_avx2
def test_scheduler_batch_equals_one_sequence_at_a_time(tmp_path):
    """Two sequences decoded in one few-token batch give each sequence's own logits."""
    hp, weights = _tiny_model(tmp_path, FileType.MOSTLY_Q4_0, True)
    fwd = LlamaForward(hp, weights)
    prompts = [np.array([1, 5, 9]), np.array([2, 7])]
    together = KVCache(hp, 16, n_seq=2)
    alone = [KVCache(hp, 16) for _ in prompts]
    for seq, p in enumerate(prompts):
        fwd.hidden(p, together, together.batch(len(p), seq))
        fwd.hidden(p, alone[seq])
    batch = together.plan([(0, 1), (1, 1)])
    both = fwd.logits(fwd.hidden(np.array([3, 4]), together, batch))
    each = [fwd.logits(fwd.hidden(np.array([t]), c))[0] for t, c in zip((3, 4), alone, strict=True)]
    np.testing.assert_allclose(both, np.stack(each), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ftype,quantized", [(FileType.MOSTLY_Q4_K_M, True), (FileType.MOSTLY_Q4_1, False)])
def test_warm_up_leaves_nothing_to_compile(tmp_path, ftype, quantized):
    """After warm-up, a long prompt, a short one, decode steps and a two-sequence batch add no signature."""
    hp, weights = _tiny_model(tmp_path, ftype, quantized)
    fwd = LlamaForward(hp, weights)
    warm_up(kernel_plan(weights, "f16", n_seq=2), progress=False)
    before = dispatcher_signatures()
    assert before and sum(before.values()) > 0
    cache = KVCache(hp, 128, "f16", n_seq=2)
    fwd.logits(fwd.hidden(np.arange(40), cache))  # prompt longer than the few-token path
    fwd.logits(fwd.hidden(np.arange(3), cache, cache.batch(3, 1)))  # short prompt in sequence 1
    for step in range(3):
        fwd.logits(fwd.hidden(np.array([step]), cache))
    fwd.logits(fwd.hidden(np.array([1, 2]), cache, cache.plan([(0, 1), (1, 1)])))
    after = dispatcher_signatures()
    assert {k: v for k, v in after.items() if before.get(k) != v} == {}


def test_warm_up_marker_changes_with_the_sources(tmp_path, monkeypatch):
    """A marker left by a warm-up before the package's sources changed (numba then recompiles everything)
    does not count: its name depends on the sources' sizes and modification times."""
    from airoboros_ggml.runtime import warmup

    hp, weights = _tiny_model(tmp_path, FileType.MOSTLY_Q4_1, False)
    plan = kernel_plan(weights, "f16", n_seq=1)
    monkeypatch.setattr(warmup, "cache_dir", lambda: str(tmp_path))
    before = warmup._marker(plan)
    assert before is not None and before.parent == tmp_path and before == warmup._marker(plan)
    assert "runtime/warmup.py:" in warmup._sources_fingerprint()  # every source, with its size and mtime
    monkeypatch.setattr(warmup, "_sources_fingerprint", lambda: "rope.py:1234:1")
    assert warmup._marker(plan) != before
