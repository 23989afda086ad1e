"""perplexity(): llama.cpp's method against an independent float64 computation on a tiny model, the uniform
model's exact value, and SmolLM2 on the committed public-domain text (sanity range here; the full-text
comparison with llama.cpp's number is a slow test)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import airoboros_ggml
from airoboros_ggml import FileType
from airoboros_ggml.formats import RawTensor, write_gguf
from airoboros_ggml.ggml_types import GGMLType
from airoboros_ggml.tools.perplexity import chunk_nll, perplexity
from airoboros_ggml.tools.synthetic import random_llama_tensors, tiny_hparams, tiny_vocab
from test_forward import reference_logits  # the float64 Llama written independently in test_forward.py

TEXT = Path(__file__).parent / "data" / "genesis-kjv.txt"
"""Genesis 1-26, King James Version (1611, public domain), from Debian's bible-kjv-text; 22,698 SmolLM2 tokens."""


def _tiny(tmp_path: Path, zero_output: bool = False):
    hp = tiny_hparams(n_vocab=300, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, n_rot=16)
    tensors = random_llama_tensors(hp, FileType.ALL_F32, seed=7, scale=0.08)
    if zero_output:
        tensors["output.weight"] = RawTensor(GGMLType.F32, (hp.n_vocab, hp.n_embd),
                                             np.zeros((hp.n_vocab, hp.n_embd), np.float32))
    path = write_gguf(tmp_path / "tiny.gguf", hp, tiny_vocab(hp.n_vocab), tensors)
    return airoboros_ggml.load(path, n_threads=1, kv_type="f32"), tensors, hp  # float32 throughout


def test_matches_an_independent_float64_computation(tmp_path: Path) -> None:
    model, tensors, hp = _tiny(tmp_path)
    rng = np.random.default_rng(0)
    tokens = [1, *rng.integers(3, hp.n_vocab, size=70).tolist()]
    n_ctx, seen = 16, []
    result = perplexity(model, tokens, n_ctx=n_ctx, progress=False, on_chunk=lambda i, p: seen.append((i, p)))

    # the method, spelled out: 4 chunks of 16 (6 tokens left over), BOS first, score positions 8..14
    nlls = []
    for c in range(len(tokens) // n_ctx):
        chunk = tokens[c * n_ctx : (c + 1) * n_ctx]
        logits = reference_logits(tensors, hp, [1, *chunk[1:]])
        for j in range(n_ctx // 2, n_ctx - 1):
            p = np.exp(logits[j] - logits[j].max())
            nlls.append(-math.log(p[chunk[j + 1]] / p.sum()))
    nlls = np.array(nlls)
    expected = math.exp(nlls.mean())
    assert (result.n_chunks, result.n_scored, result.n_tokens) == (4, 28, 71)
    assert result.ppl == pytest.approx(expected, rel=1e-5)
    assert result.stderr == pytest.approx(expected * nlls.std() / math.sqrt(len(nlls) - 1), rel=1e-4)
    assert [i for i, _ in seen] == [1, 2, 3, 4] and seen[-1][1] == result.ppl == result.running[-1]
    assert perplexity(model, tokens, n_ctx=n_ctx, n_chunks=2, progress=False).n_chunks == 2


def test_a_model_that_knows_nothing_has_perplexity_n_vocab(tmp_path: Path) -> None:
    model, _, hp = _tiny(tmp_path, zero_output=True)  # all logits 0: every token has probability 1/n_vocab
    result = perplexity(model, list(range(3, 67)), n_ctx=32, progress=False)
    assert result.ppl == pytest.approx(hp.n_vocab, rel=1e-6) and result.stderr == 0.0


def test_too_short_text_and_too_small_context(tmp_path: Path) -> None:
    model, _, _ = _tiny(tmp_path)
    with pytest.raises(ValueError, match="needs at least 64"):
        perplexity(model, list(range(3, 50)), n_ctx=32)
    small = airoboros_ggml.load(tmp_path / "tiny.gguf", n_ctx=16)
    with pytest.raises(airoboros_ggml.ContextOverflowError):
        perplexity(small, list(range(3, 100)), n_ctx=32)


def _unigram_ppl(tokens: list[int]) -> float:
    counts = np.array(list(Counter(tokens).values()), dtype=np.float64)
    p = counts / counts.sum()
    return math.exp(-(counts * np.log(p)).sum() / counts.sum())


def test_smollm2_on_genesis_is_in_a_sane_range(smollm2: Path) -> None:
    model = airoboros_ggml.load(smollm2, n_ctx=128)
    result = perplexity(model, TEXT.read_text(), n_ctx=128, n_chunks=1, progress=False)
    tokens = model.tokenizer.tokenize(TEXT.read_text())
    # A language model must beat the text's own unigram distribution (a bound fitted on the text itself,
    # ~300 here) by a wide margin, and cannot be near 1 on unseen prose.
    assert 2.0 < result.ppl < _unigram_ppl(tokens) / 4
    assert result.n_scored == 63 and result.stderr > 0


# llama.cpp on the same file and text, -c 512, all 44 chunks: 11.2436 +/- 0.2693 (22,698 tokens, as ours), measured
# 2026-11-30 with the llama.cpp vendored by llama-cpp-python 0.3.36 (its logits, llama-perplexity's chunking and
# scoring; benchmarks/quantize_quality.py's llama_cpp_perplexity). Ours then: 11.2012 +/- 0.2680.
LLAMA_CPP_GENESIS_PPL = 11.2436


@pytest.mark.slow
def test_smollm2_genesis_perplexity_matches_llama_cpp(smollm2: Path) -> None:
    model = airoboros_ggml.load(smollm2, n_ctx=512)
    result = perplexity(model, TEXT.read_text(), n_ctx=512, progress=False)
    assert result.n_tokens == 22_698 and result.n_chunks == 44 and result.n_scored == 44 * 255
    assert result.ppl == pytest.approx(LLAMA_CPP_GENESIS_PPL, rel=0.01)


def test_chunk_nll_equals_a_float64_log_softmax():
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((7, 50_000)) * 8).astype(np.float32)  # float32 (7, n_vocab)
    targets = rng.integers(0, 50_000, 7)
    rows = logits.astype(np.float64)
    want = np.log(np.exp(rows - rows.max(1, keepdims=True)).sum(1)) + rows.max(1) - rows[np.arange(7), targets]
    np.testing.assert_allclose(chunk_nll(logits, targets), want, rtol=0, atol=1e-5)
