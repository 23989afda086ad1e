"""Legacy-type integer products (quants.int_dot_legacy) over Q8_0/Q8_1 activations vs float64 references.

Contract: ``out = dequantize(W) @ dequantize(Y)`` up to float32 rounding (the integer block products are
exact), where for Q4_1/Q5_1 the weight mins multiply the activation block's stored fp16 ``s`` (as in ggml)
rather than ``d * sum(q)``; and within the 8-bit activation error of the exact product ``dequantize(W) @ x``.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from airoboros_ggml.ggml_types import GGMLType
from airoboros_ggml.quants import TYPE_TRAITS, dequantize, prepare_weight, quantize
from airoboros_ggml.quants.q8_activations import Q80, Q81, quantize_q8_0_reference, quantize_q8_1_reference
from airoboros_ggml.quants.simd import HAVE_AVX2
from airoboros_ggml.quants.weight import INT_KERNELS

needs_avx2 = pytest.mark.skipif(not HAVE_AVX2, reason="integer kernels need an AVX2 CPU")
LEGACY = [t for t, tr in TYPE_TRAITS.items() if tr.activation in (GGMLType.Q8_0, GGMLType.Q8_1)]
WITH_MIN = [t for t in LEGACY if TYPE_TRAITS[t].activation == GGMLType.Q8_1]  # x = d*q + m, times Q8_1


def _activations(rng: np.random.Generator, n_tok: int, n_in: int) -> np.ndarray:
    x = rng.standard_normal((n_tok, n_in)).astype(np.float32)  # float32 (n_tok, n_in)
    # block scales 0.1 .. 1000: the fp16 d = amax/127 stays a normal half (ggml has the same limits)
    x *= (10.0 ** rng.uniform(-1, 3, (n_tok, n_in // 32, 1))).repeat(32, axis=2).reshape(n_tok, n_in)
    x[0, :32] = 0  # an all-zero block
    x[-1, -32:] = np.float32(-3.5)  # a constant block: every code -127
    return x.astype(np.float32)


def test_q8_0_and_q8_1_quantizers_match_ggml_references() -> None:
    rng = np.random.default_rng(7)
    x = _activations(rng, 3, 512)
    x[1, 300] = 3e4  # one huge outlier (s = fp16(d*sum q) stays finite)
    x[2, :32] = np.arange(32, dtype=np.float32) - np.float32(16.5)  # amax 127 below: iscale 1, all ties
    x[2, 0] = 127
    y0, y1 = Q80(x), Q81(x)
    for t in range(3):
        qs, d, sums = quantize_q8_0_reference(x[t])
        assert np.array_equal(y0.qs[t], qs) and np.array_equal(y0.d[t], d)
        assert np.array_equal(y0.sums[t], sums)
        qs1, d1, s1 = quantize_q8_1_reference(x[t])
        assert np.array_equal(y1.qs[t], qs1) and np.array_equal(y1.d[t], d1) and np.array_equal(y1.s[t], s1)
    assert np.array_equal(y0.qs, y1.qs) and np.array_equal(y0.d, y1.d)
    assert y0.qs.min() == -127 and y0.qs.max() == 127 and y0.d[0, 0] == 0 and y1.s[0, 0] == 0
    assert np.array_equal(y0.sums, y0.qs.reshape(3, -1, 32).sum(axis=2))
    assert np.array_equal(y0.d, y0.d.astype(np.float16).astype(np.float32))  # stored as fp16
    # the largest magnitude of each block maps to +-127; s is d*sum(q) up to fp16 rounding
    blocks = x.reshape(-1, 32)
    assert np.all(np.abs(y0.qs.reshape(-1, 32)).max(axis=1)[np.abs(blocks).max(axis=1) > 0] == 127)
    approx = y0.d.astype(np.float64) * y0.sums
    assert np.all(np.abs(y1.s - approx) <= 2e-3 * np.abs(approx) + 1e-30)
    err = np.abs(y0.dequantize() - x).reshape(-1, 32).max(axis=1)  # float32 (n_blocks,)
    assert np.all(err <= (1 / 254 + 1e-3) * np.abs(blocks).max(axis=1))
    # a tie: x*127/amax = k + 0.5 exactly rounds to the even neighbour (ggml's _mm256_round_ps)
    tie = np.zeros(32, np.float32)
    tie[0], tie[1], tie[2] = 127.0, 2.5, -0.5
    q, _, _ = quantize_q8_0_reference(tie)
    assert q[:3].tolist() == [127, 2, 0] and np.array_equal(Q80(tie).qs[0], q)
    with pytest.raises(ValueError, match="multiple of 32"):
        Q80(np.zeros(48, np.float32))


def _weights(t: GGMLType, n_out: int, n_in: int, rng: np.random.Generator) -> np.ndarray:
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    w *= (10.0 ** rng.uniform(-3, 2, (n_out, 1))).astype(np.float32)
    raw = quantize(w, t)  # uint8 (n_out, row_bytes)
    if n_out > 1:  # row 1: every code at its maximum (0xFF: Q8_0 code -1), finite fp16 scale and min
        raw[1] = 0xFF
        bs = TYPE_TRAITS[t].type_size
        for b in range(n_in // 32):
            for o in TYPE_TRAITS[t].f16_offsets:
                raw[1, b * bs + o : b * bs + o + 2] = np.frombuffer(np.float16(-0.001).tobytes(), np.uint8)
    if t == GGMLType.Q8_0 and n_out > 2:
        raw[2, 2:34] = 0x80  # a block of -128 codes (never written by ggml's quantizer, but valid)
    return raw


def _reference(t: GGMLType, raw: np.ndarray, wd: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 (want, size) (n_tok, n_out): the product the kernel computes and the |y| @ |W| scale."""
    y = Q81(X) if t in WITH_MIN else Q80(X)
    yd = y.dequantize().astype(np.float64)  # float64 (n_tok, n_in)
    want = yd @ wd.T
    if t in WITH_MIN:  # mins times the stored fp16 s instead of d*sum(q)
        n_out, nb = raw.shape[0], X.shape[1] // 32
        m = raw.reshape(n_out, nb, -1)[:, :, 2:4].copy().view(np.float16)[..., 0]  # float16 (n_out, nb)
        ds = y.s - y.d.astype(np.float64) * y.qs.reshape(X.shape[0], nb, 32).sum(axis=2)  # (n_tok, nb)
        want += ds @ m.astype(np.float64).T
    return want, np.abs(yd) @ np.abs(wd).T + 1e-30


@needs_avx2
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("t", LEGACY, ids=lambda t: t.name)
def test_integer_products_match_float64(t: GGMLType, n_threads: int) -> None:
    assert TYPE_TRAITS[t].int_matmul is not None and t in INT_KERNELS
    rng = np.random.default_rng(int(t) + 10 * n_threads)
    saved = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        for n_in in (32, 96, 576, 4096):
            for n_out in (1, 9, 37):
                raw = _weights(t, n_out, n_in, rng)
                W = prepare_weight(raw, t, n_in, quantized_activations=True)
                wd = dequantize(raw, t, (n_out, n_in)).astype(np.float64)  # float64 (n_out, n_in)
                for n_tok in (1, 2, 5, 32):
                    X = _activations(rng, n_tok, n_in)  # float32 (n_tok, n_in)
                    want, size = _reference(t, raw, wd, X)  # float64 (n_tok, n_out) each
                    got = W.matmul(X)
                    assert np.all(np.abs(got - want) <= 1e-5 * size), f"{t.name} {n_in} {n_out} {n_tok}"
                    exact = X.astype(np.float64) @ wd.T
                    xsize = np.abs(X.astype(np.float64)) @ np.abs(wd).T + 1e-30
                    assert np.all(np.abs(got - exact) <= 1 / 64 * xsize)  # the activation rounding
                    v = W.matvec(X[-1])
                    assert np.array_equal(v, got[-1]) if n_tok == 1 else np.allclose(v, got[-1], rtol=1e-5)
    finally:
        numba.set_num_threads(saved)


@needs_avx2
@pytest.mark.parametrize("t", LEGACY, ids=lambda t: t.name)
def test_flag_selects_the_integer_kernel(t: GGMLType) -> None:
    rng = np.random.default_rng(5)
    raw = _weights(t, 20, 256, rng)
    x = _activations(rng, 1, 256)[0]
    exact_w, int_w = prepare_weight(raw, t, 256), prepare_weight(raw, t, 256, quantized_activations=True)
    assert not np.array_equal(exact_w.matvec(x), int_w.matvec(x))  # 8-bit activations ...
    wd = np.abs(exact_w.dequantize())
    assert np.all(np.abs(exact_w.matvec(x) - int_w.matvec(x)) <= 1 / 64 * (wd @ np.abs(x)))  # ... close
