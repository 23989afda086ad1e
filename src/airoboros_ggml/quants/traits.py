"""The traits table: one row per ggml type with its block layout and every kernel that handles it.

Each layer reads a type's facts here (as ggml's ``type_traits`` / ``type_traits_cpu``): the block layout from
:data:`airoboros_ggml.ggml_types.LAYOUTS`, the activation type its integer kernel multiplies (ggml's
``vec_dot_type``), the numpy reference dequantizer (:mod:`.reference`), the quantizer (:mod:`.quantize`), the
exact float32 matrix-vector kernel (:mod:`.fused`), the integer kernel over 8-bit activations
(:mod:`.int_dot`, :mod:`.int_dot_legacy`) and its tiled form for prompt batches (:mod:`.int_gemm`). Adding
a type is one row here plus its kernels; inside numba code (bit-exact row decoders of :mod:`.kernels`, tile
decoders of :mod:`.tiles`, K-quantizers) the type id selects the branch, since compiled code cannot read
this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from ..ggml_types import LAYOUTS, BlockLayout, GGMLType, ggml_type
from . import fused, int_dot, int_dot_legacy, int_gemm
from . import kernels as K
from . import quantize as Q
from . import reference as R

BlockFn = Callable[[np.ndarray], np.ndarray]
MatvecFn = Callable[[np.ndarray, np.ndarray, np.ndarray], None]
IntMatmulFn = Callable[[GGMLType, np.ndarray, np.ndarray, np.ndarray], None]


@dataclass(frozen=True)
class TypeTraits(BlockLayout):
    """A type's block layout (:class:`~airoboros_ggml.ggml_types.BlockLayout`) plus its kernels.

    Kernel entries are None for the activation-only types (Q8_1, Q8_K); ``activation`` and ``int_matmul``
    are None for F32/F16, whose products are always exact float32.
    """

    activation: GGMLType | None
    """Type the activations are quantized to for the integer kernel (ggml's ``vec_dot_type``): Q8_K for
    the K-quants, Q8_0 or Q8_1 for the legacy types; same block size as the weight type."""
    dequantize_ref: BlockFn | None
    """Numpy reference dequantizer, bit-exact with ggml: uint8 (n_blocks, type_size) -> float32
    (n_blocks, block_size)."""
    quantize: BlockFn | None
    """Quantizer as llama.cpp's reference one: float32 (n_blocks, block_size) -> uint8 (n_blocks, type_size)."""
    matvec: MatvecFn | None
    """Exact float32 matrix-vector kernel ``matvec(raw, x, out)``: raw uint8 (n_out, row_bytes), x float32
    (n_in,) -> out float32 (n_out,)."""
    int_matmul: IntMatmulFn | None
    """Integer kernel ``int_matmul(t, raw, X, out)`` over ``activation`` blocks: X float32 (n_tok, n_in) ->
    out float32 (n_tok, n_out) (needs AVX2: see :data:`.weight.INT_KERNELS`)."""
    int_gemm: IntMatmulFn | None
    """The same product tiled for large batches (:mod:`.int_gemm`: weight rows unpacked once per call, reused
    by every token), same signature and, per token, bit-identical results to ``int_matmul``; None where
    float32 tiles + BLAS are faster for large batches (the legacy 32-element types)."""


def _mv_f32(raw: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    w = raw.view(np.float32)  # float32 (n_out, n_in), zero copy
    if w.flags.aligned:
        fused.mv_f32(w, x, out)
    else:
        K.matvec_generic(K.F32, raw, x, out)


def _mv_q4_0(raw: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    fused.mv_q4_legacy(raw, x, out, False)


def _mv_q4_1(raw: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    fused.mv_q4_legacy(raw, x, out, True)


def _mv_q5_0(raw: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    fused.mv_q5_legacy(raw, x, out, False)


def _mv_q5_1(raw: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    fused.mv_q5_legacy(raw, x, out, True)


def _row(
    t: GGMLType,
    activation: GGMLType | None = None,
    dequantize_ref: BlockFn | None = None,
    quantize: BlockFn | None = None,
    matvec: MatvecFn | None = None,
    int_matmul: IntMatmulFn | None = None,
    int_gemm: IntMatmulFn | None = None,
) -> TypeTraits:
    layout = {f.name: getattr(LAYOUTS[t], f.name) for f in fields(BlockLayout)}
    return TypeTraits(**layout, activation=activation, dequantize_ref=dequantize_ref, quantize=quantize,
                      matvec=matvec, int_matmul=int_matmul, int_gemm=int_gemm)


_T = GGMLType
_Q8K, _Q80, _Q81 = int_dot.matmul_via_q8_k, int_dot_legacy.matmul_via_q8_0, int_dot_legacy.matmul_via_q8_1
_G8K = int_gemm.gemm_via_q8_k

TYPE_TRAITS: dict[GGMLType, TypeTraits] = {
    tr.ggml_type: tr
    for tr in (
        _row(_T.F32, None, R.dq_f32, Q.q_f32, _mv_f32),
        _row(_T.F16, None, R.dq_f16, Q.q_f16, fused.mv_f16),
        _row(_T.Q4_0, _T.Q8_0, R.dq_q4_0, Q.q_q4_0, _mv_q4_0, _Q80),
        _row(_T.Q4_1, _T.Q8_1, R.dq_q4_1, Q.q_q4_1, _mv_q4_1, _Q81),
        _row(_T.Q5_0, _T.Q8_0, R.dq_q5_0, Q.q_q5_0, _mv_q5_0, _Q80),
        _row(_T.Q5_1, _T.Q8_1, R.dq_q5_1, Q.q_q5_1, _mv_q5_1, _Q81),
        _row(_T.Q8_0, _T.Q8_0, R.dq_q8_0, Q.q_q8_0, fused.mv_q8_0, _Q80),
        _row(_T.Q8_1),
        _row(_T.Q2_K, _T.Q8_K, R.dq_q2_k, Q.k_quantizer(_T.Q2_K), fused.mv_q2_k, _Q8K, _G8K),
        _row(_T.Q3_K, _T.Q8_K, R.dq_q3_k, Q.k_quantizer(_T.Q3_K), fused.mv_q3_k, _Q8K, _G8K),
        _row(_T.Q4_K, _T.Q8_K, R.dq_q4_k, Q.k_quantizer(_T.Q4_K), fused.mv_q4_k, _Q8K, _G8K),
        _row(_T.Q5_K, _T.Q8_K, R.dq_q5_k, Q.k_quantizer(_T.Q5_K), fused.mv_q5_k, _Q8K, _G8K),
        _row(_T.Q6_K, _T.Q8_K, R.dq_q6_k, Q.k_quantizer(_T.Q6_K), fused.mv_q6_k, _Q8K, _G8K),
        _row(_T.Q8_K),
    )
}
"""Traits of every ggml type this package knows, keyed by :class:`GGMLType` (same keys as ``LAYOUTS``)."""


def traits(t: GGMLType | int | str) -> TypeTraits:
    """Return the :class:`TypeTraits` of a type given as enum, integer id or name."""
    return TYPE_TRAITS[ggml_type(t)]


def as_uint8(raw: np.ndarray) -> np.ndarray:
    """Return a contiguous uint8 view of ``raw`` (no copy when already contiguous)."""
    raw = np.asarray(raw)
    if not raw.flags.c_contiguous:
        raw = np.ascontiguousarray(raw)
    return raw.view(np.uint8) if raw.dtype != np.uint8 else raw
