"""ggml quantization kernels: dequantize, quantize and fused products for every Llama weight type.

Public API::

    dequantize(raw, ggml_type, shape) -> float32 array of ``shape``
    quantize(x, ggml_type) -> uint8 (..., n // block * type_size)
    W = prepare_weight(raw_rows, ggml_type, n_in)   # zero-copy WeightMatrix
    W.matvec(x), W.matmul(X), W.get_rows(ids), W.dequantize(); matvec(W, x), matmul(W, X)
    TYPE_TRAITS[GGMLType.Q4_K]   # block layout, activation type, reference, quantizer, kernels (:mod:`.traits`)

Arithmetic: exact float32 (activations are not quantized); dequantize is bit-exact with ggml.
Threads: numba ``prange``; set them with ``numba.set_num_threads(n)``. All kernels are compiled with
``cache=True`` (on-disk cache next to the sources, or ``NUMBA_CACHE_DIR``).
"""

from __future__ import annotations

import numpy as np

from ..ggml_types import GGMLType, ggml_type
from . import kernels as _K
from .traits import TYPE_TRAITS, TypeTraits, as_uint8, traits
from .weight import TILE_ROWS, WeightMatrix, matmul, matvec, prepare_weight

__all__ = [
    "TILE_ROWS",
    "TYPE_TRAITS",
    "TypeTraits",
    "WeightMatrix",
    "dequantize",
    "matmul",
    "matvec",
    "prepare_weight",
    "quantize",
    "traits",
]

def dequantize(raw: np.ndarray, ggml_type_: GGMLType | int | str, shape: tuple[int, ...]) -> np.ndarray:
    """Decode raw ggml data into a float32 array (bit-exact with ggml's dequantizers).

    Args:
        raw: the tensor's bytes (any shape; uint8 or any dtype viewed as bytes), contiguous.
        ggml_type_: storage type (enum, integer id or name).
        shape: numpy-order shape of the result; the last dimension is the row length.

    Returns:
        float32 array of ``shape``.

    Raises:
        ValueError: unsupported type, row length not a multiple of the block, or wrong byte count.
    """
    t = ggml_type(ggml_type_)
    tr = TYPE_TRAITS[t]
    if not tr.is_weight:
        raise ValueError(f"dequantize does not support activation type {t.name}")
    shape = tuple(int(s) for s in shape)
    if not shape:
        shape = (1,)
    n_in = shape[-1]
    row_bytes = tr.row_bytes(n_in)
    n_rows = int(np.prod(shape[:-1], dtype=np.int64))
    raw = as_uint8(raw).reshape(-1)
    if raw.size != n_rows * row_bytes:
        raise ValueError(
            f"{t.name} tensor of shape {shape} needs {n_rows * row_bytes} bytes, got {raw.size}"
        )
    out = np.empty((n_rows, n_in), dtype=np.float32)  # float32 (n_rows, n_in)
    if n_rows:
        _K.dequantize_range(int(t), raw.reshape(n_rows, row_bytes), 0, out)
    return out.reshape(shape)


def quantize(x: np.ndarray, ggml_type_: GGMLType | int | str) -> np.ndarray:
    """Quantize float data as ggml/llama.cpp would (reference quantizers, no importance matrix).

    Args:
        x: float array (..., n) with n a multiple of the type's block size.
        ggml_type_: target type (F32, F16, legacy or K-quant weight type).

    Returns:
        uint8 (..., n // block_size * type_size).

    Raises:
        ValueError: unsupported type or bad row length.
    """
    t = ggml_type(ggml_type_)
    tr = TYPE_TRAITS[t]
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 0:
        raise ValueError("quantize needs at least a 1-D array")
    n = x.shape[-1]
    row_bytes = tr.row_bytes(n)
    out_shape = x.shape[:-1] + (row_bytes,)
    if tr.quantize is None:
        raise ValueError(f"quantize does not support {t.name}")
    blocks = x.reshape(-1, tr.block_size)  # float32 (n_blocks, block)
    return tr.quantize(blocks).reshape(out_shape)  # uint8 (..., row_bytes)
