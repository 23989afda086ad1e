"""Tests of airoboros_ggml.quants: bit-exact dequantize/quantize vs gguf.quants, K-quant RMSE, fused
matvec/matmul vs the numpy reference and float64 dequantize(W) @ x, and input validation."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
from gguf import quants as gq

from airoboros_ggml.ggml_types import GGMLType
from airoboros_ggml.quants import TYPE_TRAITS, dequantize, matmul, matvec, prepare_weight, quantize
from airoboros_ggml.quants.fp16 import f32_to_f16_bits
from airoboros_ggml.quants.reference import matmul_ref

WEIGHT_TYPES = [t for t, tr in TYPE_TRAITS.items() if tr.is_weight]
QUANT_TYPES = [t for t in WEIGHT_TYPES if TYPE_TRAITS[t].block_size > 1]
LEGACY = [t for t in QUANT_TYPES if TYPE_TRAITS[t].block_size == 32]
K_TYPES = [t for t in QUANT_TYPES if TYPE_TRAITS[t].block_size == 256]
# RMSE / RMS of llama.cpp's reference quantizer on Gaussian data (issue 3); ours must be within 5%.
TARGET_RMSE = {
    GGMLType.Q2_K: 0.296, GGMLType.Q3_K: 0.151, GGMLType.Q4_0: 0.086, GGMLType.Q4_1: 0.078,
    GGMLType.Q4_K: 0.071, GGMLType.Q5_0: 0.043, GGMLType.Q5_1: 0.038, GGMLType.Q5_K: 0.036,
    GGMLType.Q6_K: 0.0178, GGMLType.Q8_0: 0.0054,
}


def random_blocks(t: GGMLType, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (n_blocks, type_size): random bytes with finite f16 scales incl. extremes, plus zero blocks."""
    tr = TYPE_TRAITS[t]
    if tr.block_size == 1:
        vals = (rng.standard_normal(n_blocks) * 10.0 ** rng.integers(-6, 4, n_blocks)).astype(np.float32)
        return (vals if t == GGMLType.F32 else vals.astype(np.float16)).view(np.uint8).reshape(n_blocks, -1)
    b = rng.integers(0, 256, (n_blocks, tr.type_size), dtype=np.uint8)
    for off in tr.f16_offsets:
        h = rng.integers(0, 0x7C00, n_blocks).astype(np.uint16)  # finite positive halves incl. subnormals
        h |= (rng.integers(0, 2, n_blocks) << 15).astype(np.uint16)
        h[::17] = 0x7BFF  # max finite
        h[1::17] = 0x0001  # min subnormal
        b[:, off : off + 2] = h.view(np.uint8).reshape(n_blocks, 2)
    b[::50] = 0  # zero blocks
    return b


def gguf_dequant(raw: np.ndarray, t: GGMLType) -> np.ndarray:
    return gq.dequantize(raw, gguf.GGMLQuantizationType(int(t)))


@pytest.mark.parametrize("t", WEIGHT_TYPES, ids=lambda t: t.name)
def test_dequantize_bit_exact_vs_gguf(t: GGMLType) -> None:
    rng = np.random.default_rng(int(t))
    tr = TYPE_TRAITS[t]
    n_blocks = 3000 if tr.block_size > 1 else 3000 * 64
    blocks = random_blocks(t, n_blocks, rng)
    per_row = 4 if tr.block_size > 1 else 64
    shape = (n_blocks // per_row, per_row * tr.block_size)
    with np.errstate(all="ignore"):
        ref = gguf_dequant(blocks.reshape(shape[0], -1), t).reshape(shape)
        ours = dequantize(blocks, t, shape)
        numpy_ref = tr.dequantize_ref(blocks).reshape(shape)
    assert ours.dtype == np.float32 and ours.shape == shape
    bad = np.flatnonzero((ours.view(np.uint32) != ref.view(np.uint32)).any(axis=1))
    assert bad.size == 0, f"{t.name}: {bad.size} rows differ from gguf, first {bad[:5]}"
    assert np.array_equal(numpy_ref.view(np.uint32), ref.view(np.uint32))
    # int id and 3-D shape work too
    assert np.array_equal(dequantize(blocks, int(t), (2, shape[0] // 2, shape[1])).reshape(shape).view(np.uint32),
                          ref.view(np.uint32))


@pytest.mark.parametrize("t", LEGACY, ids=lambda t: t.name)
def test_legacy_quantize_bit_exact_vs_gguf(t: GGMLType) -> None:
    rng = np.random.default_rng(100 + int(t))
    x = rng.standard_normal((64, 1024)).astype(np.float32)
    x[0] = 0  # zero blocks
    x[1] *= np.float32(1e-6)
    x[2] *= np.float32(1e4)
    x[3, :32] = 5.0  # constant block
    ours = quantize(x, t)
    ref = gq.quantize(x, gguf.GGMLQuantizationType(int(t)))
    assert ours.shape == ref.shape
    bad = np.flatnonzero((ours != ref).any(axis=1))
    assert bad.size == 0, f"{t.name}: rows {bad[:5]} differ from gguf.quants.quantize"


def test_f16_rounding_matches_numpy() -> None:
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(2000) * 10.0 ** rng.integers(-9, 6, 2000)).astype(np.float32)
    x = np.concatenate([x, np.array([0.0, -0.0, 65504, 65519, 65520, 6e-8, 3e-8, 2.98e-8], np.float32)])
    with np.errstate(over="ignore"):
        ref = x.astype(np.float16).view(np.uint16).astype(np.int64)
    got = np.array([f32_to_f16_bits(v) for v in x])
    assert np.array_equal(got, ref)


def _rmse(t: GGMLType, x: np.ndarray) -> float:
    y = dequantize(quantize(x, t), t, x.shape)
    return float(np.sqrt(np.mean((y.astype(np.float64) - x) ** 2) / np.mean(x.astype(np.float64) ** 2)))


def test_roundtrip_rmse_table(capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((256, 1024)).astype(np.float32)
    rows = []
    for t, target in TARGET_RMSE.items():
        r = _rmse(t, x)
        rows.append((t.name, r, target))
    with capsys.disabled():
        print("\n| type | RMSE/RMS (ours) | llama.cpp | ratio |\n|---|---|---|---|")
        for name, r, target in rows:
            print(f"| {name} | {r:.4f} | {target:.4f} | {r / target:.3f} |")
    for name, r, target in rows:
        assert r <= target * 1.05, f"{name}: RMSE {r:.4f} exceeds {target} by more than 5%"
        assert r >= target * 0.8, f"{name}: RMSE {r:.4f} suspiciously far below llama.cpp's {target}"


@pytest.mark.parametrize("t", K_TYPES, ids=lambda t: t.name)
def test_k_quantize_edge_cases(t: GGMLType) -> None:
    rng = np.random.default_rng(11)
    x = rng.standard_normal((6, 256)).astype(np.float32)
    x[0] = 0
    x[1] = 3.0
    x[2] = -rng.random(256).astype(np.float32)
    x[3] *= np.float32(1e-20)
    x[4] *= np.float32(1e3)  # (f16 scales overflow beyond ~1e5, as in ggml)
    x[5, ::2] = 0
    q = quantize(x, t)
    assert q.shape == (6, TYPE_TRAITS[t].type_size)
    y = dequantize(q, t, x.shape)
    assert np.all(np.isfinite(y))
    assert np.all(y[0] == 0)
    for i in (1, 2, 4, 5):
        err = np.sqrt(np.mean((y[i] - x[i]) ** 2) / np.mean(x[i] ** 2))
        assert err < 0.5, f"{t.name} row {i}: relative error {err}"
    assert q.tobytes() == quantize(x, t).tobytes()  # deterministic


@pytest.mark.parametrize("t", WEIGHT_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("n_out", [7, 33])
def test_matvec_matmul_vs_reference(t: GGMLType, n_out: int) -> None:
    rng = np.random.default_rng(int(t) * 100 + n_out)
    n_in = 512
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    w[0, :256] = 0
    raw = quantize(w, t)
    W = prepare_weight(raw, t, n_in)
    assert (W.n_out, W.n_in, W.ggml_type) == (n_out, n_in, t)
    wd = dequantize(raw, t, (n_out, n_in)).astype(np.float64)  # float64 (n_out, n_in)
    assert np.array_equal(W.dequantize(), wd.astype(np.float32))
    ids = np.array([n_out - 1, 0, 3, 3])
    assert np.array_equal(W.get_rows(ids), wd[ids].astype(np.float32))
    for n_tok in (1, 3, 65):
        X = rng.standard_normal((n_tok, n_in)).astype(np.float32)
        X[0] *= np.float32(100.0)
        exact = X.astype(np.float64) @ wd.T  # float64 (n_tok, n_out)
        tol = 1e-5 * np.linalg.norm(wd) * np.linalg.norm(X, axis=1)[:, None]  # well inside the 1e-3 bound
        fast = matmul(W, X)
        ref = matmul_ref(raw, t, n_in, X)
        assert fast.shape == (n_tok, n_out) and fast.dtype == np.float32
        assert np.all(np.abs(fast - exact) <= tol), f"{t.name} matmul n_tok={n_tok}"
        assert np.all(np.abs(ref - exact) <= tol)
        out = np.empty(n_out, np.float32)
        v = matvec(W, X[-1], out)
        assert v is out
        assert np.all(np.abs(v - exact[-1]) <= tol[-1]), f"{t.name} matvec"
        assert np.all(np.abs(W.matvec(X[-1]) - ref[-1]) <= 2 * tol[-1])


@pytest.mark.parametrize("t", [GGMLType.Q4_K, GGMLType.Q8_0, GGMLType.F16], ids=lambda t: t.name)
def test_prepare_weight_is_zero_copy_on_readonly(t: GGMLType) -> None:
    rng = np.random.default_rng(3)
    raw = quantize(rng.standard_normal((5, 256)).astype(np.float32), t)
    raw.setflags(write=False)
    W = prepare_weight(raw, t, 256)
    assert np.shares_memory(W.raw, raw)
    before = raw.copy()
    W.matvec(np.ones(256, np.float32))
    W.matmul(np.ones((9, 256), np.float32))
    assert np.array_equal(raw, before)


def test_validation_errors() -> None:
    raw = np.zeros((4, 144), np.uint8)
    with pytest.raises(ValueError, match="multiple of 256"):
        prepare_weight(np.zeros((4, 144), np.uint8), GGMLType.Q4_K, 100)
    with pytest.raises(ValueError, match="144 bytes"):
        prepare_weight(np.zeros((4, 140), np.uint8), GGMLType.Q4_K, 256)
    with pytest.raises(ValueError, match="needs 576 bytes, got 575"):
        dequantize(raw.reshape(-1)[:575], GGMLType.Q4_K, (4, 256))
    with pytest.raises(ValueError, match="multiple of 32"):
        dequantize(np.zeros(18, np.uint8), GGMLType.Q4_0, (1, 48))
    with pytest.raises(ValueError, match="multiple of 256"):
        quantize(np.zeros((2, 300), np.float32), GGMLType.Q6_K)
    with pytest.raises(ValueError, match="unknown ggml type"):
        dequantize(raw, 99, (4, 256))
    with pytest.raises(ValueError, match="activation-only"):
        prepare_weight(np.zeros((1, 292), np.uint8), GGMLType.Q8_K, 256)
    W = prepare_weight(raw, "Q4_K", 256)
    with pytest.raises(ValueError, match="n_in=256"):
        W.matvec(np.zeros(255, np.float32))
    with pytest.raises(IndexError):
        W.get_rows(np.array([4]))


def test_f32_f16_quantize_roundtrip() -> None:
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    assert np.array_equal(dequantize(quantize(x, GGMLType.F32), GGMLType.F32, x.shape), x)
    f16 = dequantize(quantize(x, GGMLType.F16), "F16", x.shape)
    assert np.array_equal(f16, x.astype(np.float16).astype(np.float32))
