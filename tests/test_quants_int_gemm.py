"""The tiled integer kernels of prompt batches (quants.int_gemm) against float64 references and the row kernels.

Contract: as the row kernels (tests/test_quants_int_dot.py), ``out = dequantize(W) @ dequantize(Q8_K(x))`` up
to float32 rounding, for every weight type with an ``int_gemm`` in the traits table; and per token bit for bit
what the row kernel of small batches (and the single-token matvec) gives, so that how a prompt is cut into
batches never changes a result.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from airoboros_ggml.ggml_types import GGMLType
from airoboros_ggml.quants import TYPE_TRAITS, dequantize, int_gemm, prepare_weight
from airoboros_ggml.quants.int_gemm import TILE_ROWS
from airoboros_ggml.quants.int_group import GEMM_MIN_TOKENS, ActivationBlocks, MatrixGroup, readonly
from airoboros_ggml.quants.q8_activations import Q8K
from airoboros_ggml.quants.simd import HAVE_AVX2
from airoboros_ggml.quants.weight import INT_GEMMS, INT_MATMUL_MAX_TOKENS, warm_up_int_gemm
from test_quants_int_dot import _activations as k_activations
from test_quants_int_dot import _weights as k_weights

needs_avx2 = pytest.mark.skipif(not HAVE_AVX2, reason="integer kernels need an AVX2 CPU")
GEMM_TYPES = [t for t, tr in TYPE_TRAITS.items() if tr.int_gemm is not None]


def test_every_k_quant_has_a_tiled_kernel() -> None:
    k_quants = [t for t, tr in TYPE_TRAITS.items() if tr.activation == GGMLType.Q8_K]
    assert GEMM_TYPES == k_quants and len(k_quants) == 5
    assert not HAVE_AVX2 or set(INT_GEMMS) == set(GEMM_TYPES)


def _case(t: GGMLType, n_out: int, n_in: int, n_tok: int, rng: np.random.Generator):
    """(raw, X, want, size): weights, activations and the float64 product the kernel computes."""
    raw, X = k_weights(t, n_out, n_in, rng), k_activations(rng, n_tok, n_in)
    wd = dequantize(raw, t, (n_out, n_in)).astype(np.float64)  # float64 (n_out, n_in)
    y = Q8K(X).dequantize().astype(np.float64)  # float64 (n_tok, n_in) what the kernel multiplies
    return raw, X, y @ wd.T, np.abs(y) @ np.abs(wd).T + 1e-30


@needs_avx2
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("t", GEMM_TYPES, ids=lambda t: t.name)
def test_tiled_products_match_float64(t: GGMLType, n_threads: int) -> None:
    rng = np.random.default_rng(int(t) + 100 * n_threads)
    saved = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        for n_in in (256, 1024):
            for n_out in (1, 9, TILE_ROWS + 5):  # odd, and not a multiple of the row tile
                for n_tok in (33, 37, 100):  # not a multiple of the 4-token micro-kernel
                    raw, X, want, size = _case(t, n_out, n_in, n_tok, rng)
                    W = prepare_weight(raw, t, n_in, quantized_activations=True)
                    got = W.matmul(X)  # float32 (n_tok, n_out)
                    assert got.shape == (n_tok, n_out)
                    assert np.all(np.abs(got - want) <= 1e-5 * size), f"{t.name} {n_in} {n_out} {n_tok}"
    finally:
        numba.set_num_threads(saved)


@needs_avx2
@pytest.mark.parametrize("t", GEMM_TYPES, ids=lambda t: t.name)
def test_a_token_gives_the_same_bits_in_any_batch(t: GGMLType) -> None:
    """41 tokens in one tiled call == a tiled batch of 32 == row-kernel batches of 3 and 5 == matvec."""
    rng = np.random.default_rng(int(t))
    n_in = 768  # 3 blocks per row: an odd count
    raw, X, _, _ = _case(t, 2 * TILE_ROWS + 3, n_in, INT_MATMUL_MAX_TOKENS + 9, rng)
    W = prepare_weight(raw, t, n_in, quantized_activations=True)
    whole = W.matmul(X)  # the tiled kernel
    assert 5 < GEMM_MIN_TOKENS <= 32  # below: the row kernel
    parts = np.concatenate([W.matmul(X[:32]), W.matmul(X[32:35]), W.matmul(X[35:40]), W.matvec(X[40])[None]])
    assert np.array_equal(whole, parts)
    assert np.array_equal(W.matmul(X[::-1])[::-1], whole)  # position in the batch does not matter


@needs_avx2
def test_a_group_gives_the_same_bits_tiled_and_by_rows() -> None:
    """A Q/K/V-like group (mixed K-quant types, RMSNorm folded in, a residual): a batch through the tiled
    kernel equals its tokens computed through the row kernels (batches of 1, 4, 2 and the rest)."""
    rng = np.random.default_rng(7)
    n_in, n_outs = 512, (40, 24, 24)
    kinds = (GGMLType.Q4_K, GGMLType.Q6_K, GGMLType.Q5_K)
    raws = [k_weights(t, n, n_in, rng) for t, n in zip(kinds, n_outs, strict=True)]
    group = MatrixGroup(raws, kinds, GGMLType.Q8_K)
    acts = ActivationBlocks(GGMLType.Q8_K, INT_MATMUL_MAX_TOKENS, n_in)
    norm = readonly(rng.standard_normal(n_in).astype(np.float32))
    n_tok = GEMM_MIN_TOKENS + 1  # tiled; its parts below are row-kernel batches
    X = k_activations(rng, n_tok, n_in)
    base = rng.standard_normal((n_tok, n_outs[0])).astype(np.float32)

    def run(rows: slice):
        outs = [np.zeros((rows.stop - rows.start, n), np.float32) for n in n_outs]
        residual = base[rows].copy()
        group(np.ascontiguousarray(X[rows]), acts, outs, norm, 1e-5, residual)
        return [residual, *outs]

    whole = run(slice(0, n_tok))
    parts = [run(slice(a, b)) for a, b in ((0, 1), (1, 5), (5, 7), (7, n_tok))]
    for i, got in enumerate(whole):
        assert np.array_equal(got, np.concatenate([p[i] for p in parts])), i


@needs_avx2
def test_warm_up_compiles_the_kernels_a_type_needs() -> None:
    for t in (GGMLType.F16, GGMLType.Q4_1):
        warm_up_int_gemm(t)  # no tiled integer kernel: nothing to do
    warm_up_int_gemm(GGMLType.Q4_K)
    assert int_gemm.gemm_q8k.signatures  # compiled (or loaded from numba's cache) for a memory-mapped file
    assert any(sig[1].mutable is False for sig in int_gemm.gemm_q8k.signatures)
