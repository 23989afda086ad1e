"""Integer products over 8-bit activations (quants.int_dot, quants.q8_activations) against float64 references.

The kernel's contract: ``out = dequantize(W) @ dequantize(Q8_K(x))`` up to float32 rounding (the integer part
is exact), and within the Q8 activation error of the exact product ``dequantize(W) @ x``.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from airoboros_ggml.ggml_types import GGMLType
from airoboros_ggml.quants import TYPE_TRAITS, dequantize, prepare_weight, quantize
from airoboros_ggml.quants.q8_activations import Q8K, quantize_q8_k_reference
from airoboros_ggml.quants.simd import HAVE_AVX2
from airoboros_ggml.quants.weight import INT_KERNELS, INT_MATMUL_MAX_TOKENS

needs_avx2 = pytest.mark.skipif(not HAVE_AVX2, reason="integer kernels need an AVX2 CPU (float32 kernels used)")
INT_TYPES = [t for t, tr in TYPE_TRAITS.items() if tr.activation == GGMLType.Q8_K]


def _activations(rng: np.random.Generator, n_tok: int, n_in: int) -> np.ndarray:
    x = rng.standard_normal((n_tok, n_in)).astype(np.float32)  # float32 (n_tok, n_in)
    x *= (10.0 ** rng.uniform(-4, 3, (n_tok, n_in // 256, 1))).repeat(256, axis=2).reshape(n_tok, n_in)
    x[0, :256] = 0  # an all-zero block
    x[-1, 256:512] = np.float32(-3.5)  # a constant block: every code -128
    return x.astype(np.float32)


def test_q8_k_quantizer_matches_ggml_reference() -> None:
    rng = np.random.default_rng(7)
    x = _activations(rng, 3, 1024)
    x[1, 300] = 1e30  # one huge outlier
    x[2, :256] = np.arange(256, dtype=np.float32) - 128.5  # round-half-even ties after scaling
    y = Q8K(x)
    for t in range(3):
        qs, d, bsums = quantize_q8_k_reference(x[t])
        assert np.array_equal(y.qs[t], qs) and np.array_equal(y.d[t], d) and np.array_equal(y.bsums[t], bsums)
    assert y.qs.min() == -128 and y.qs.max() == 127 and (y.d[0, 0] == 0)
    # the largest magnitude of each block is -128*d (up to the rounding of d = 1/iscale)
    blocks = x.reshape(-1, 256)
    big = blocks[np.arange(blocks.shape[0]), np.argmax(np.abs(blocks), axis=1)]
    assert np.allclose(-128 * y.d.reshape(-1), big, rtol=1e-6, atol=0)
    assert np.max(np.abs(y.dequantize() - x) / (np.abs(x).max(axis=1, keepdims=True) + 1e-30)) < 1 / 254 + 1e-6
    with pytest.raises(ValueError, match="multiple of 256"):
        Q8K(np.zeros(100, np.float32))


def _weights(t: GGMLType, n_out: int, n_in: int, rng: np.random.Generator) -> np.ndarray:
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    w *= (10.0 ** rng.uniform(-3, 2, (n_out, 1))).astype(np.float32)
    raw = quantize(w, t)  # uint8 (n_out, row_bytes)
    bs = TYPE_TRAITS[t].type_size
    f16_offsets = TYPE_TRAITS[t].f16_offsets  # d (and dmin) within a block
    # row 1: every code and scale at its maximum (overflow check); row 2: every byte 0 (Q3_K: values -4 with
    # scale -32, its largest products); fp16 scales then set finite and nonzero
    for r, fill in ((1, 0xFF), (2, 0x00)):
        if r < n_out:
            raw[r] = fill
            for b in range(n_in // 256):
                for o in f16_offsets:
                    raw[r, b * bs + o : b * bs + o + 2] = np.frombuffer(np.float16(0.001).tobytes(), np.uint8)
    return raw


@needs_avx2
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("t", INT_TYPES, ids=lambda t: t.name)
def test_integer_products_match_float64(t: GGMLType, n_threads: int) -> None:
    assert t in INT_KERNELS
    rng = np.random.default_rng(int(t) + 10 * n_threads)
    saved = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        for n_in in (256, 1024):
            for n_out in (1, 9, 37):
                raw = _weights(t, n_out, n_in, rng)
                W = prepare_weight(raw, t, n_in, quantized_activations=True)
                wd = dequantize(raw, t, (n_out, n_in)).astype(np.float64)  # float64 (n_out, n_in)
                for n_tok in (1, 2, 5, INT_MATMUL_MAX_TOKENS):
                    X = _activations(rng, n_tok, n_in)  # float32 (n_tok, n_in)
                    y = Q8K(X).dequantize().astype(np.float64)  # what the kernel multiplies
                    want = y @ wd.T  # float64 (n_tok, n_out)
                    size = np.abs(y) @ np.abs(wd).T + 1e-30  # float64 (n_tok, n_out)
                    got = W.matmul(X)
                    assert np.all(np.abs(got - want) <= 1e-5 * size), f"{t.name} {n_in} {n_out} {n_tok}"
                    exact = X.astype(np.float64) @ wd.T
                    xsize = np.abs(X.astype(np.float64)) @ np.abs(wd).T + 1e-30
                    assert np.all(np.abs(got - exact) <= 1 / 128 * xsize)  # the activation rounding
                    v = W.matvec(X[-1])
                    assert np.array_equal(v, got[-1]) if n_tok == 1 else np.allclose(v, got[-1], rtol=1e-5)
    finally:
        numba.set_num_threads(saved)


@needs_avx2
def test_flag_selects_the_kernel_for_every_batch_size() -> None:
    rng = np.random.default_rng(3)
    t, n_in = GGMLType.Q4_K, 512
    raw = _weights(t, 20, n_in, rng)
    exact_w, int_w = prepare_weight(raw, t, n_in), prepare_weight(raw, t, n_in, quantized_activations=True)
    X = _activations(rng, INT_MATMUL_MAX_TOKENS + 1, n_in)
    x = X[1]
    wd = np.abs(exact_w.dequantize())
    assert not np.array_equal(exact_w.matvec(x), int_w.matvec(x))  # different arithmetic ...
    assert np.all(np.abs(exact_w.matvec(x) - int_w.matvec(x)) <= 1 / 128 * (wd @ np.abs(x)))
    # batches above the row kernel's limit take the tiled integer kernel (exact ones: tiles + BLAS)
    big_exact, big_int = exact_w.matmul(X), int_w.matmul(X)
    assert not np.array_equal(big_exact, big_int)
    assert np.all(np.abs(big_exact - big_int) <= 1 / 128 * (np.abs(X) @ wd.T))


@pytest.mark.parametrize("t", [GGMLType.F32, GGMLType.F16], ids=lambda t: t.name)
def test_types_without_integer_kernel_ignore_the_flag(t: GGMLType) -> None:
    rng = np.random.default_rng(4)
    raw = quantize(rng.standard_normal((5, 256)).astype(np.float32), t)
    x = rng.standard_normal(256).astype(np.float32)
    assert t not in INT_KERNELS
    assert np.array_equal(prepare_weight(raw, t, 256).matvec(x), prepare_weight(raw, t, 256, True).matvec(x))
