"""Tests of the fast paths in airoboros_ggml.quants: the vectorised matvec row kernels (block quads, tails
of 1-3 blocks, rows shorter than a quad) and the float-trick tile decoders used by matmul, against the
numpy reference and float64 ``dequantize(W) @ x``."""

from __future__ import annotations

import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from airoboros_ggml.ggml_types import GGMLType
from airoboros_ggml.quants import TYPE_TRAITS, dequantize, prepare_weight, quantize, tiles
from airoboros_ggml.quants import kernels as K
from airoboros_ggml.quants.int_group import readonly
from airoboros_ggml.quants.reference import matmul_ref

WEIGHT_TYPES = [t for t, tr in TYPE_TRAITS.items() if tr.is_weight]


def _row_lengths(t: GGMLType) -> list[int]:
    """Row lengths hitting every code path: fewer blocks than a quad, exact quads, quads + 1..3 tail."""
    bs = TYPE_TRAITS[t].block_size
    if bs == 1:
        return [16, 576]
    if bs == 32:
        return [32, 96, 160, 576, 640]  # 1, 3, 5, 18 and 20 blocks
    return [256, 768]


def _weights(t: GGMLType, n_out: int, n_in: int, rng: np.random.Generator) -> np.ndarray:
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    w *= (10.0 ** rng.uniform(-3, 2, (n_out, 1))).astype(np.float32)  # very different row scales
    w[0, : min(n_in, 64)] = 0  # zero blocks
    return quantize(w, t)


@pytest.mark.parametrize("t", WEIGHT_TYPES, ids=lambda t: t.name)
def test_matvec_matmul_fast_paths(t: GGMLType) -> None:
    rng = np.random.default_rng(1000 + int(t))
    for n_in in _row_lengths(t):
        for n_out in (1, 7, 33):
            raw = _weights(t, n_out, n_in, rng)
            W = prepare_weight(raw, t, n_in)
            wd = dequantize(raw, t, (n_out, n_in)).astype(np.float64)  # float64 (n_out, n_in)
            for n_tok in (1, 2, 3, 65):
                X = rng.standard_normal((n_tok, n_in)).astype(np.float32)  # float32 (n_tok, n_in)
                exact = X.astype(np.float64) @ wd.T  # float64 (n_tok, n_out)
                scale = np.abs(wd).sum(axis=1)[None, :] * np.abs(X).max(axis=1)[:, None]
                tol = 2e-6 * scale + 1e-30  # elementwise: ~ float32 rounding of the terms
                fast = W.matmul(X)
                assert fast.shape == (n_tok, n_out) and fast.dtype == np.float32
                bad = np.abs(fast - exact) > tol
                assert not bad.any(), f"{t.name} n_in={n_in} n_out={n_out} n_tok={n_tok}: {np.argwhere(bad)[:3]}"
                ref = matmul_ref(raw, t, n_in, X)
                assert np.all(np.abs(ref - exact) <= tol)
                v = W.matvec(X[0])
                assert np.all(np.abs(v - exact[0]) <= tol[0]), f"{t.name} matvec n_in={n_in} n_out={n_out}"


@pytest.mark.parametrize("t", [t for t in WEIGHT_TYPES if TYPE_TRAITS[t].block_size > 1], ids=lambda t: t.name)
def test_tile_decoder_matches_dequantize(t: GGMLType) -> None:
    rng = np.random.default_rng(2000 + int(t))
    for n_in in _row_lengths(t):
        raw = _weights(t, 9, n_in, rng)
        exact = dequantize(raw, t, (9, n_in))  # float32 (9, n_in), bit-exact with ggml
        tile = np.full((5, n_in), np.nan, np.float32)  # float32 (5, n_in)
        tiles.decode_tile_kernel(int(t))(readonly(raw), 3, tile)
        np.testing.assert_allclose(tile, exact[3:8], rtol=1e-6, atol=1e-6 * np.abs(exact).max())


@pytest.mark.parametrize("t", WEIGHT_TYPES, ids=lambda t: t.name)
def test_one_type_row_lookup_matches_dequantize(t: GGMLType) -> None:
    """The token-embedding lookup models call (one type's kernel) is bit-exact, in any row order."""
    rng = np.random.default_rng(3000 + int(t))
    n_in = 2 * TYPE_TRAITS[t].block_size if TYPE_TRAITS[t].block_size > 1 else 48
    raw = _weights(t, 7, n_in, rng)
    exact = dequantize(raw, t, (7, n_in))  # float32 (7, n_in)
    ids = np.array([6, 0, 3, 3], np.int64)  # int64 (4,)
    out = np.full((4, n_in), np.nan, np.float32)  # float32 (4, n_in)
    K.dequantize_rows_kernel(int(t))(readonly(raw), ids, out)
    np.testing.assert_array_equal(out, exact[ids])
    assert np.array_equal(prepare_weight(raw, t, n_in).get_rows(ids), exact[ids])


def test_one_type_kernels_compile_only_their_type(tmp_path) -> None:
    """A one-type kernel compiles that type's decoder and no other (what keeps a cold start short)."""
    script = """
import numpy as np
from airoboros_ggml.quants import kernels as K, tiles
raw = np.zeros((4, 34 * 4), np.uint8); raw.flags.writeable = False
K.dequantize_rows_kernel(K.Q8_0)(raw, np.arange(2), np.zeros((2, 128), np.float32))
tiles.decode_tile_kernel(K.Q8_0)(raw, 0, np.zeros((4, 128), np.float32))
decoders = [f for f in vars(K) if f.startswith("_row_")] + [f for f in vars(tiles) if f.startswith("_dec_")]
mods = {f: (K if f.startswith("_row_") else tiles) for f in decoders}
print(sorted(f for f in decoders if getattr(mods[f], f).signatures))
"""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}  # empty: compile, do not load
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['_dec_q8_0', '_row_q8_0']"


def test_one_type_kernels_have_their_own_cache_files() -> None:
    """Each value's kernel has its own numba index file: the warm-up and its helper process compile different
    values at once, and entries of one file written concurrently could swap their machine code."""
    from airoboros_ggml.quants.int_group import group_kernel

    kernels = [tiles.decode_tile_kernel(int(t)) for t in (GGMLType.Q8_0, GGMLType.Q4_1)]
    kernels += [K.dequantize_rows_kernel(int(t)) for t in (GGMLType.Q8_0, GGMLType.Q4_1)]
    kernels += [group_kernel(int(GGMLType.Q8_0), int(GGMLType.Q8_0)), group_kernel(int(GGMLType.Q8_0), -1)]
    names = [k._cache._cache_file._index_name for k in kernels]
    assert len(set(names)) == len(names), names


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba has a single thread on this machine")
def test_matvec_matmul_same_for_1_and_2_threads() -> None:
    """Bit-identical results for 1 and 2 threads (each output row is one thread's work), within float32
    rounding of float64, on SmolLM2-like 576-wide rows with few output rows."""
    rng = np.random.default_rng(5)
    before = numba.get_num_threads()
    try:
        for t in (GGMLType.Q4_1, GGMLType.Q8_0, GGMLType.Q6_K, GGMLType.Q4_K):
            n_in = 576 if TYPE_TRAITS[t].block_size == 32 else 768
            raw = _weights(t, 13, n_in, rng)
            W = prepare_weight(raw, t, n_in)
            X = rng.standard_normal((3, n_in)).astype(np.float32)  # float32 (3, n_in)
            wd = dequantize(raw, t, (13, n_in))  # float32 (13, n_in)
            tol = 2e-6 * np.abs(wd).sum(axis=1) * np.abs(X[0]).max()
            results = []
            for n_threads in (1, 2):
                numba.set_num_threads(n_threads)
                results.append((W.matvec(X[0]), W.matmul(X)))
            (v1, m1), (v2, m2) = results
            np.testing.assert_array_equal(v1, v2, err_msg=t.name)
            np.testing.assert_array_equal(m1, m2, err_msg=t.name)
            assert np.all(np.abs(v1 - wd.astype(np.float64) @ X[0]) <= tol)
    finally:
        numba.set_num_threads(before)


def test_q5_bit_sums_table() -> None:
    """S[g, v] = sum of x[8g + k] over the set bits k of v (used for the Q5_0/Q5_1 high bits)."""
    from airoboros_ggml.quants.fused import q5_bit_sums

    x = np.random.default_rng(9).standard_normal(64).astype(np.float32)  # float32 (64,)
    S = q5_bit_sums(x)  # float32 (8, 256)
    bits = (np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1  # int (256, 8)
    expect = x.reshape(8, 8).astype(np.float64) @ bits.T  # float64 (8, 256)
    assert S.shape == (8, 256) and S.dtype == np.float32
    np.testing.assert_allclose(S, expect, rtol=1e-6, atol=1e-6)
