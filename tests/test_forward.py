"""The forward pass against an independent float64 implementation written here."""

from types import SimpleNamespace

import numpy as np
import pytest

from airoboros_ggml import FileType
from airoboros_ggml.formats import open_model_file, write_gguf
from airoboros_ggml.quants import dequantize
from airoboros_ggml.runtime import KVCache, LlamaForward, LlamaWeights
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab


def reference_logits(tensors, hp, tokens):
    """Straightforward float64 Llama: complex-number RoPE, per-query loops, explicit GQA."""
    W = {name: np.asarray(t.data, dtype=np.float64).reshape(t.shape) for name, t in tensors.items()}
    out_w = W.get("output.weight", W["token_embd.weight"])
    hd = hp.n_embd // hp.n_head
    group = hp.n_head // hp.n_head_kv

    def norm(x, w):
        return x / np.sqrt(np.mean(x * x) + hp.rms_norm_eps) * w

    def rope(vec, pos):  # vec (n_heads, hd): pairs (2j, 2j+1) as complex numbers
        z = vec[:, 0::2] + 1j * vec[:, 1::2]
        theta = pos * hp.rope_freq_scale * hp.rope_freq_base ** (-np.arange(0, hd, 2) / hd)
        z = z * np.exp(1j * theta)
        r = np.empty_like(vec)
        r[:, 0::2], r[:, 1::2] = z.real, z.imag
        return r

    keys = [[] for _ in range(hp.n_layer)]
    values = [[] for _ in range(hp.n_layer)]
    logits = []
    for pos, tok in enumerate(tokens):
        x = W["token_embd.weight"][tok].copy()
        for i in range(hp.n_layer):
            p = f"blk.{i}."
            n = norm(x, W[p + "attn_norm.weight"])
            q = rope((W[p + "attn_q.weight"] @ n).reshape(hp.n_head, hd), pos)
            keys[i].append(rope((W[p + "attn_k.weight"] @ n).reshape(hp.n_head_kv, hd), pos))
            values[i].append((W[p + "attn_v.weight"] @ n).reshape(hp.n_head_kv, hd))
            heads = []
            for h in range(hp.n_head):
                K = np.array([k[h // group] for k in keys[i]])
                V = np.array([v[h // group] for v in values[i]])
                s = K @ q[h] / np.sqrt(hd)
                a = np.exp(s - s.max())
                heads.append((a / a.sum()) @ V)
            x = x + W[p + "attn_output.weight"] @ np.concatenate(heads)
            m = norm(x, W[p + "ffn_norm.weight"])
            g = W[p + "ffn_gate.weight"] @ m
            x = x + W[p + "ffn_down.weight"] @ (g / (1 + np.exp(-g)) * (W[p + "ffn_up.weight"] @ m))
        logits.append(out_w @ norm(x, W["output_norm.weight"]))
    return np.array(logits)


def _model(tmp_path, hp, tied=False, seed=0):
    tensors = random_llama_tensors(hp, FileType.ALL_F32, seed=seed, tied=tied, scale=0.08)
    path = write_gguf(tmp_path / "m.gguf", hp, tiny_vocab(hp.n_vocab), tensors)
    mf = open_model_file(path)
    return tensors, LlamaForward(mf.hparams, LlamaWeights.from_model_file(mf)), mf


def _run(fwd, hp, tokens, n_batch, n_ctx=1024, kv_type="f32"):
    cache = KVCache(hp, n_ctx, kv_type)
    chunks = [fwd.logits(fwd.hidden(tokens[i : i + n_batch], cache)) for i in range(0, len(tokens), n_batch)]
    return np.concatenate(chunks)


def _rel_err(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize(
    "changes,tied",
    [
        ({}, False),  # GQA 4/2
        ({"n_head_kv": 4}, True),  # no GQA, tied embeddings
        ({"n_head": 8, "n_head_kv": 1, "n_rot": 32, "rope_freq_scale": 0.25, "rope_freq_base": 5e5}, False),
    ],
)
@pytest.mark.parametrize("n_batch", [1, 7, 512])
def test_logits_match_float64_reference(tmp_path, changes, tied, n_batch):
    hp = tiny_hparams(n_layer=2, **changes)
    tensors, fwd, _ = _model(tmp_path, hp, tied=tied)
    tokens = np.random.default_rng(1).integers(0, hp.n_vocab, 20)
    ours = _run(fwd, hp, tokens, n_batch)
    ref = reference_logits(tensors, hp, tokens)
    assert ours.shape == (20, hp.n_vocab) and ours.dtype == np.float32
    assert _rel_err(ours, ref) < 1e-4


def test_incremental_decode_equals_full_recompute(tmp_path):
    hp = tiny_hparams()
    _, fwd, _ = _model(tmp_path, hp, seed=3)
    tokens = np.random.default_rng(2).integers(0, hp.n_vocab, 30)
    full = _run(fwd, hp, tokens, 512)
    cache = KVCache(hp, 64, "f32")
    first = fwd.logits(fwd.hidden(tokens[:10], cache))
    rest = [fwd.logits(fwd.hidden(tokens[i : i + 1], cache)) for i in range(10, 30)]
    inc = np.concatenate([first, *rest])
    assert _rel_err(inc, full) < 1e-5
    # truncating the cache and re-evaluating gives the same numbers again
    cache.truncate(15)
    again = np.concatenate([fwd.logits(fwd.hidden(tokens[i : i + 1], cache)) for i in range(15, 30)])
    assert _rel_err(again, full[15:]) < 1e-5


def test_quantized_activations_stay_close_to_exact(tmp_path):
    """The default 8-bit activations (integer kernels) against exact float32 products on a q4_K_M model."""
    hp = tiny_hparams()
    tensors = random_llama_tensors(hp, FileType.MOSTLY_Q4_K_M, seed=6, scale=0.08)
    mf = open_model_file(write_gguf(tmp_path / "q4km.gguf", hp, tiny_vocab(hp.n_vocab), tensors))
    exact = LlamaForward(mf.hparams, LlamaWeights.from_model_file(mf))
    fast = LlamaForward(mf.hparams, LlamaWeights.from_model_file(mf, quantized_activations=True))
    tokens = np.random.default_rng(5).integers(0, hp.n_vocab, 24)
    for n_batch in (1, 7):  # decode steps and small prompt batches both take the integer path
        a, b = _run(exact, hp, tokens, n_batch), _run(fast, hp, tokens, n_batch)
        assert 0 < _rel_err(b, a) < 6e-2  # measured 0.038 (2 random layers; per dot product ~0.5%)
    # the exact path stays exact next to the integer one: float64 over the dequantized weights
    dequantized = {n: SimpleNamespace(data=dequantize(t.encoded(), t.ggml_type, t.shape), shape=t.shape)
                   for n, t in tensors.items()}
    assert _rel_err(_run(exact, hp, tokens, 1), reference_logits(dequantized, hp, tokens)) < 1e-4


def test_integer_kernels_give_the_same_logits_however_the_prompt_is_split(tmp_path):
    """40 prompt tokens in one batch (tiled integer kernel) or in batches of 20 / 32 + 8 (row kernels).

    The matrix products are bit-identical per token (tests/test_quants_int_gemm.py) and norms, RoPE and SiLU
    run the same per-row kernels at every batch size; what remains is float32 rounding in attention over
    spans of other lengths. Usually that leaves the logits equal to ~1e-7 (32 + 8 here); when a last-bit
    difference moves an attention output across an 8-bit rounding boundary of the next product, the tokens
    after it differ by that one quantum (20 + 20 here: 1.7e-2). Before the tiled kernel, one
    batch of 40 took exact float32 products and every row differed by the 8-bit activation error (5.9e-2).
    """
    hp = tiny_hparams()
    tensors = random_llama_tensors(hp, FileType.MOSTLY_Q4_K_M, seed=9, scale=0.08)
    mf = open_model_file(write_gguf(tmp_path / "q4km.gguf", hp, tiny_vocab(hp.n_vocab), tensors))
    fast = LlamaForward(mf.hparams, LlamaWeights.from_model_file(mf, quantized_activations=True))
    tokens = np.random.default_rng(10).integers(0, hp.n_vocab, 40)
    whole = _run(fast, hp, tokens, 512)
    for n_batch in (8, 16, 32):
        assert _rel_err(_run(fast, hp, tokens, n_batch), whole) < 1e-5, n_batch  # measured 1.8e-7
    assert _rel_err(_run(fast, hp, tokens, 20), whole) < 3e-2  # one flipped quantum (measured 1.7e-2)


def test_context_overflow_is_refused(tmp_path):
    hp = tiny_hparams()
    _, fwd, _ = _model(tmp_path, hp)
    cache = KVCache(hp, 8)
    with pytest.raises(ValueError, match="do not fit"):
        fwd.hidden(np.arange(9), cache)


def test_f16_cache_stays_close_to_exact(tmp_path):
    hp = tiny_hparams()
    tensors, fwd, _ = _model(tmp_path, hp, seed=5)
    tokens = np.random.default_rng(4).integers(0, hp.n_vocab, 24)
    exact = _run(fwd, hp, tokens, 7)
    half = _run(fwd, hp, tokens, 7, kv_type="f16")
    assert 0 < _rel_err(half, exact) < 2e-3


def test_kv_cache_memory_is_lazy_and_typed():
    hp = tiny_hparams()
    cache = KVCache(hp, 4096)
    assert cache.k.dtype == np.float16 and cache.nbytes == 2 * hp.n_layer * 4096 * hp.n_embd_kv * 2
    assert not cache.k.any()
    with pytest.raises(ValueError, match="kv_type"):
        KVCache(hp, 16, "q8_0")


def test_long_prompt_in_feed_forward_chunks_matches_reference(tmp_path):
    hp = tiny_hparams(n_layer=1)
    tensors, fwd, _ = _model(tmp_path, hp, seed=7)
    tokens = np.random.default_rng(8).integers(0, hp.n_vocab, 300)  # > FFN_CHUNK: several FFN passes
    ours = _run(fwd, hp, tokens, 512)
    assert _rel_err(ours, reference_logits(tensors, hp, tokens)) < 1e-4
