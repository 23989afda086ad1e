"""Weight matrices over raw (memory-mapped) quantized rows: matvec, tiled matmul, row lookup.

Threads: ``matvec``/``get_rows`` run numba ``prange`` kernels; the caller chooses the thread count with
``numba.set_num_threads(n)`` (the model sets it from its ``n_threads``). ``matmul`` runs
``numba.get_num_threads()`` Python worker threads, each dequantizing its own row tiles (GIL-free numba kernel)
and multiplying them with numpy's BLAS; for best speed keep OpenBLAS itself at one thread
(``airoboros_ggml.runtime.blas.set_blas_threads(1)``), otherwise BLAS and worker threads oversubscribe.

Memory: :class:`WeightMatrix` keeps only the caller's zero-copy view of the raw rows (no side arrays;
per-call scratch is at most one float32 tile of ``TILE_ROWS x n_in`` plus a few small vectors).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from ..ggml_types import GGMLType, ggml_type
from . import kernels as K
from . import tiles
from .int_group import GEMM_MIN_TOKENS, ActivationBlocks, MatrixGroup, readonly
from .simd import HAVE_AVX2
from .traits import TYPE_TRAITS

TILE_ROWS = 256
"""Weight rows dequantized per BLAS call in :meth:`WeightMatrix.matmul` (float32 scratch of TILE_ROWS*n_in)."""

MATVEC_MAX_TOKENS = 2
"""Batches of at most this many tokens use the fused matvec kernel per token instead of tiles + BLAS."""


INT_KERNELS = {t: tr.int_matmul for t, tr in TYPE_TRAITS.items() if tr.int_matmul} if HAVE_AVX2 else {}
"""Integer ``matmul(t, raw, X, out)`` over 8-bit activations per weight type usable on this machine (AVX2)."""

INT_GEMMS = {t: tr.int_gemm for t, tr in TYPE_TRAITS.items() if tr.int_gemm} if HAVE_AVX2 else {}
"""Tiled integer ``matmul(t, raw, X, out)`` for batches above :data:`INT_MATMUL_MAX_TOKENS` (:mod:`.int_gemm`)."""

INT_MATMUL_MAX_TOKENS = 32
"""With quantized activations, batches up to this size use the integer row kernel (each weight block read
once for all tokens), larger ones the tiled integer kernel where the type has one (:data:`INT_GEMMS`, the
K-quants: weight rows unpacked once, reused by all tokens; per token bit-identical to the row kernel, so
how a prompt is split into batches does not change them), else tiles + BLAS (11008x4096 on 2 threads, ms per
token, integer rows / tiles: Q4_K 0.79 / 2.0 at 16 tokens, 1.0 / 0.57 at 512; on an AVX2-only Zen, 4096x4096 x
256 tokens, GOP per CPU-second, tiled integer / tiles + BLAS: Q4_K 92 / 71, Q6_K 103 / 68)."""



def warm_up_int_gemm(t: GGMLType | int | str) -> None:
    """Compile (or load from numba's cache) the tiled integer kernel of weight type ``t`` (no-op without one).

    Runs it once on a tiny read-only matrix, as a memory-mapped model file gives them (numba compiles one
    specialisation per argument type, read-only included; one serves all K-quants).
    """
    t = ggml_type(t)
    gemm = INT_GEMMS.get(t)
    if gemm is None:
        return
    tr = TYPE_TRAITS[t]
    raw = np.zeros((1, tr.type_size), np.uint8)  # uint8 (1, one block): zero scales are valid
    raw.setflags(write=False)
    gemm(t, raw, np.zeros((1, tr.block_size), np.float32), np.empty((1, 1), np.float32))


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _worker_pool() -> ThreadPoolExecutor:
    """Shared worker threads (as many as numba may use) for work that releases the GIL."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=numba.config.NUMBA_NUM_THREADS, thread_name_prefix="quants")
        return _POOL


def run_on_workers(work: Callable[[int, int], None], n_tasks: int) -> None:
    """``work(k, n)`` for k = 0 .. n-1 on the shared worker threads, n = min(``numba.get_num_threads()``, n_tasks).

    Worker k takes every n-th task from k (``tasks[k::n]``), so at most the model's thread count run at once
    (the pool itself holds as many threads as numba may ever use); a single worker runs in the calling thread.
    Used by the tiles of :meth:`WeightMatrix.matmul` and the attention tasks of a prompt chunk.
    """
    n = max(1, min(numba.get_num_threads(), n_tasks))
    if n == 1:
        work(0, 1)
    else:
        list(_worker_pool().map(lambda k: work(k, n), range(n)))


class WeightMatrix:
    """A quantized weight matrix ``W`` (n_out, n_in) stored as raw ggml rows.

    Attributes:
        raw: uint8 (n_out, row_bytes) — the caller's (read-only, possibly memory-mapped) rows.
        n_out: output features (rows).
        n_in: input features (row length in elements).
        ggml_type: the storage type.
        quantized_activations: ``matvec`` quantizes ``x`` to 8 bits per block and uses integer dot products,
            as llama.cpp does (every block-quantized type, on AVX2 machines: :data:`INT_KERNELS`; 2-4.5x
            faster, dot products off by ~0.5% of ``|w||x|``); ``matmul`` does the same up to
            :data:`INT_MATMUL_MAX_TOKENS` tokens, and above for the types in :data:`INT_GEMMS` (the other
            types' large batches are exact). False keeps ``x`` exact float32.
    """

    __slots__ = ("raw", "n_out", "n_in", "ggml_type", "quantized_activations", "_w32", "_matvec")

    def __init__(self, raw: np.ndarray, ggml_type_: GGMLType, n_in: int, quantized_activations: bool = False) -> None:
        self.raw = readonly(raw)  # uint8 (n_out, row_bytes); read-only, as file maps are: one kernel specialisation
        self.n_out = raw.shape[0]
        self.n_in = n_in
        self.ggml_type = ggml_type_
        self.quantized_activations = quantized_activations
        # F32 rows viewed as float32 (zero copy when 4-byte aligned)
        self._w32 = raw.view(np.float32) if ggml_type_ == GGMLType.F32 else None
        self._matvec = TYPE_TRAITS[ggml_type_].matvec  # exact kernel (raw, x, out)

    def __repr__(self) -> str:
        return f"WeightMatrix({self.ggml_type.name}, n_out={self.n_out}, n_in={self.n_in})"

    def _check_x(self, x: np.ndarray, ndim: int) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != ndim or x.shape[-1] != self.n_in:
            want = "(n_in,)" if ndim == 1 else "(n_tok, n_in)"
            raise ValueError(f"expected float32 {want} with n_in={self.n_in}, got shape {x.shape}")
        return x

    def matvec(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Return ``W @ x``: x float32 (n_in,) -> float32 (n_out,), written into ``out`` if given."""
        x = self._check_x(x, 1)  # float32 (n_in,)
        if out is None:
            out = np.empty(self.n_out, dtype=np.float32)  # float32 (n_out,)
        elif out.shape != (self.n_out,) or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be contiguous float32 ({self.n_out},), got {out.dtype} {out.shape}")
        int_kernel = INT_KERNELS.get(self.ggml_type) if self.quantized_activations else None
        if int_kernel is not None:
            int_kernel(self.ggml_type, self.raw, x.reshape(1, -1), out.reshape(1, -1))
        else:
            self._matvec(self.raw, x, out)
        return out

    def matmul(self, X: np.ndarray) -> np.ndarray:
        """Return ``X @ W.T``: X float32 (n_tok, n_in) -> float32 (n_tok, n_out).

        This is the one place that picks a kernel by batch size: batches up to ``MATVEC_MAX_TOKENS`` use the
        fused matvec per token (with ``quantized_activations``: the integer row kernel up to
        ``INT_MATMUL_MAX_TOKENS``, the tiled integer kernel above where there is one, and already from
        ``GEMM_MIN_TOKENS`` tokens for the K-quants: the same bits, faster); other larger ones
        decode ``TILE_ROWS`` rows at a time into a transient float32 tile (vectorised decoders of
        :mod:`.tiles`, equal to ``dequantize`` up to an ulp) and multiply it with BLAS (the tile is never kept).
        """
        X = self._check_x(X, 2)  # float32 (n_tok, n_in)
        n_tok = X.shape[0]
        out = np.empty((n_tok, self.n_out), dtype=np.float32)  # float32 (n_tok, n_out)
        int_kernel = INT_KERNELS.get(self.ggml_type) if self.quantized_activations else None
        if int_kernel is not None:
            gemm = INT_GEMMS.get(self.ggml_type)
            if n_tok <= INT_MATMUL_MAX_TOKENS:
                kernel = gemm if gemm is not None and n_tok >= GEMM_MIN_TOKENS else int_kernel
            else:
                kernel = gemm
            if kernel is not None:
                kernel(self.ggml_type, self.raw, X, out)
                return out
        if n_tok <= MATVEC_MAX_TOKENS:
            for i in range(n_tok):
                self.matvec(X[i], out[i])
            return out
        if self._w32 is not None and self._w32.flags.aligned:
            np.matmul(X, self._w32.T, out=out)
            return out
        rows = min(TILE_ROWS, self.n_out)
        starts = list(range(0, self.n_out, rows))
        decode_tile = tiles.decode_tile_kernel(int(self.ggml_type))

        def work(k: int, n_workers: int) -> None:
            tile = np.empty((rows, self.n_in), dtype=np.float32)  # float32 (TILE_ROWS, n_in) scratch
            for r0 in starts[k::n_workers]:
                m = min(rows, self.n_out - r0)
                decode_tile(self.raw, r0, tile[:m])
                np.matmul(X, tile[:m].T, out=out[:, r0 : r0 + m])  # each worker fills its own columns

        run_on_workers(work, len(starts))
        return out

    @property
    def activation_type(self) -> GGMLType | None:
        """The 8-bit type x is quantized to for the integer kernel (ggml's ``vec_dot_type``), or None.

        None when the products are exact float32 (``quantized_activations`` off, F32/F16, or no AVX2).
        """
        if not self.quantized_activations or self.ggml_type not in INT_KERNELS:
            return None
        return TYPE_TRAITS[self.ggml_type].activation

    def activation_blocks(self, capacity: int) -> ActivationBlocks:
        """Reusable buffers for the quantized activations of up to ``capacity`` tokens (see :func:`matrix_group`)."""
        if self.activation_type is None:
            raise ValueError(f"{self!r} multiplies exact float32 activations")
        return ActivationBlocks(self.activation_type, capacity, self.n_in)

    def get_rows(self, ids: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Dequantize selected rows: ids int (k,) -> float32 (k, n_in) (e.g. token-embedding lookup).

        ``out``: contiguous float32 (k, n_in) to write into instead of a new array.
        """
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)  # int64 (k,)
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_out):
            raise IndexError(f"row ids must be in [0, {self.n_out}), got min {ids.min()} max {ids.max()}")
        if out is None:
            out = np.empty((ids.shape[0], self.n_in), dtype=np.float32)  # float32 (k, n_in)
        K.dequantize_rows_kernel(int(self.ggml_type))(self.raw, ids, out)
        return out

    def dequantize(self) -> np.ndarray:
        """The whole matrix as float32 (n_out, n_in) (allocates it: tests and tools only)."""
        out = np.empty((self.n_out, self.n_in), dtype=np.float32)  # float32 (n_out, n_in)
        K.dequantize_range(int(self.ggml_type), self.raw, 0, out)
        return out


def prepare_weight(
    raw_rows: np.ndarray, ggml_type_: GGMLType | int | str, n_in: int, quantized_activations: bool = False
) -> WeightMatrix:
    """Wrap raw rows as a :class:`WeightMatrix` (zero copy; the rows are never written).

    Args:
        raw_rows: uint8 (n_out, row_bytes) contiguous rows, e.g. a view into a memory-mapped file.
        ggml_type_: storage type (enum, integer id or name).
        n_in: elements per row.
        quantized_activations: see :class:`WeightMatrix` (False: exact float32 products).

    Raises:
        ValueError: unsupported type, ``n_in`` not a multiple of the block, or wrong row size.
    """
    t = ggml_type(ggml_type_)
    tr = TYPE_TRAITS[t]
    if not tr.is_weight:
        raise ValueError(f"{t.name} is an activation-only type, not a weight type")
    row_bytes = tr.row_bytes(n_in)
    raw = np.asarray(raw_rows)
    if raw.dtype != np.uint8:
        raise ValueError(f"raw_rows must be uint8, got {raw.dtype}")
    if raw.ndim == 1:
        if raw.size % row_bytes:
            raise ValueError(f"{raw.size} bytes is not a whole number of {t.name} rows of {row_bytes} bytes")
        raw = raw.reshape(-1, row_bytes)
    if raw.ndim != 2 or raw.shape[1] != row_bytes:
        raise ValueError(
            f"{t.name} rows of {n_in} elements take {row_bytes} bytes; got raw_rows of shape {raw.shape}"
        )
    if not raw.flags.c_contiguous:
        raise ValueError("raw_rows must be C-contiguous")
    return WeightMatrix(raw, t, n_in, quantized_activations)


def matrix_group(mats: Sequence[WeightMatrix], family: Collection[GGMLType] | None = None) -> MatrixGroup:
    """One parallel kernel call for several matrices that read the same input (e.g. Q, K, V).

    ``group(x, acts, outs, norm=None, eps=0.0, residual=None)`` quantizes ``x`` (RMS-normalised first if
    ``norm`` is given) once into ``acts`` (:meth:`WeightMatrix.activation_blocks`) and writes every
    ``outs[i] = x @ W_i.T`` exactly as :meth:`WeightMatrix.matmul` does through 8-bit activations (see
    :class:`~.int_group.MatrixGroup`). ``family``: every weight type of the model that multiplies this
    activation type (see :class:`~.int_group.MatrixGroup`; None: a kernel for any mix).

    Raises:
        ValueError: a matrix without an integer kernel, or matrices with different inputs or activation types.
    """
    act = {m.activation_type for m in mats}
    if None in act or len(act) != 1 or len({m.n_in for m in mats}) != 1:
        raise ValueError(f"matrices {list(mats)} do not share one 8-bit activation type and input length")
    return MatrixGroup([m.raw for m in mats], [m.ggml_type for m in mats], act.pop(), family)


def matvec(W: WeightMatrix, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Functional form of :meth:`WeightMatrix.matvec`."""
    return W.matvec(x, out)


def matmul(W: WeightMatrix, X: np.ndarray) -> np.ndarray:
    """Functional form of :meth:`WeightMatrix.matmul`."""
    return W.matmul(X)
