"""Several integer matrix products over one set of 8-bit activations, in one parallel region.

A decode step multiplies the same input vector by several matrices (Q, K and V; gate and up). Through
:meth:`.weight.WeightMatrix.matmul` each product quantized the input again and ran its own ``prange``
region. Here the input is (optionally RMS-normalised and) quantized once into reusable
:class:`ActivationBlocks`, and the rows of every matrix of a :class:`MatrixGroup` are split into tasks of
one parallel loop; a residual ``x += out[0]`` can be folded in after it. The per-row work is the integer
row kernels of :mod:`.int_dot` (K-quants over Q8_K) and :mod:`.int_dot_legacy` (Q4_0/Q5_0/Q8_0 over Q8_0,
Q4_1/Q5_1 over Q8_1), so every product equals the one :func:`~.int_dot.matmul_via_q8_k` and friends give;
K-quant groups of :data:`GEMM_MIN_TOKENS` or more tokens use the tiled kernel of :mod:`.int_gemm` instead
(the same bits per token, one parallel region per matrix).

One driver per activation type (the families differ in the types of their per-block side arrays) and, for
a model whose matrices of that activation type share one weight type, per that type (:func:`group_kernel`),
each taking a group of up to :data:`MAX_GROUP` matrices as a tuple (shorter groups are padded with empty
entries, so one compiled specialisation serves every group size).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import numba
import numpy as np

from ..ggml_types import GGMLType
from .fused import ROWS_PER_TASK
from .int_dot import LANES
from .int_dot import _rows as _rows_q8_k
from .int_dot_legacy import _rows_q8_0, _rows_q8_1
from .int_gemm import gemm_q8k
from .q8_activations import QK8, QK_K, quantize_q8_0_into, quantize_q8_1_into, quantize_q8_k_into
from .specialise import jit_specialised

MAX_GROUP = 3
"""Matrices per group (Q, K, V)."""

GEMM_MIN_TOKENS = 12
"""From this many tokens, K-quant groups multiply through the tiled kernel of :mod:`.int_gemm` (bit-identical
per token to the row kernels, so the switch changes no result). Measured on the 2-core AVX2 box (medians of 9
rounds, us), row kernels (tokens by groups of 4, each block unpacked once per group) / tiled: Q4_K 11008x4096
at 8 tokens 4289 / 5899, 12: 7246-7749 / 7408-7893, 16: 10879 / 10157; Q6_K 4096x11008 8: 4368 / 6487, 12:
6539-6773 / 8283-9589, 16: 9041 / 10448; Q4_K 4096x4096 8: 1676 / 1805, 12: 2957-3824 / 2605-2905, 16: 5094 /
3847."""

_AUX = {  # activation type -> (elements per side value, dtype of the side array)
    GGMLType.Q8_K: (16, np.int16),  # bsums: sum of each 16 codes
    GGMLType.Q8_0: (QK8, np.int16),  # sums: sum of each block's codes
    GGMLType.Q8_1: (QK8, np.float32),  # s: fp16(d * sum of codes)
}
_BLOCK = {GGMLType.Q8_K: QK_K, GGMLType.Q8_0: QK8, GGMLType.Q8_1: QK8}


@numba.njit(cache=True, fastmath=False)
def rms_norm_into(x, w, eps, out):
    """``out = x / sqrt(mean(x²) + eps) * w`` per row: x float32 (n_tok, n), w float32 (n,) -> out (n_tok, n).

    The mean of squares is accumulated in float64 (numpy reference: ``airoboros_ggml.runtime.forward.rms_norm``).
    """
    n = x.shape[1]
    for t in range(x.shape[0]):
        ss = 0.0
        for i in range(n):
            v = np.float64(x[t, i])
            ss += v * v
        scale = np.float32(1.0 / np.sqrt(ss / n + eps))
        for i in range(n):
            out[t, i] = x[t, i] * scale * w[i]


@numba.njit(cache=True)
def _prepare(x, norm_w, eps, xn):
    """The rows to quantize: x itself, or its RMS norm (in ``xn``) when ``norm_w`` is not empty."""
    if norm_w.shape[0] == 0:
        return x
    rms_norm_into(x, norm_w, eps, xn)
    return xn


@numba.njit(cache=True)
def _add_into(residual, y):
    """Residual += y (float32 (n_tok, n) each) when ``residual`` is not empty."""
    if residual.shape[0] == 0:
        return
    for t in range(residual.shape[0]):
        for i in range(residual.shape[1]):
            residual[t, i] += y[t, i]


@numba.njit(cache=True)
def quantize_rows_q8_k(x, norm_w, eps, xn, qs, d, bsums):
    """(Normalise and) quantize x into the Q8_K buffers (the first half of a Q8_K :func:`group_kernel`)."""
    src = _prepare(x, norm_w, eps, xn)
    for t in range(x.shape[0]):
        quantize_q8_k_into(src[t], qs[t], d[t], bsums[t])


_Q8_K, _Q8_0 = int(GGMLType.Q8_K), int(GGMLType.Q8_0)


@numba.njit(cache=True)
def _quantize_rows_q8_0(x, norm_w, eps, xn, qs, d, sums):
    """(Normalise and) quantize x into Q8_0 buffers (see :func:`quantize_rows_q8_k`)."""
    src = _prepare(x, norm_w, eps, xn)
    for t in range(x.shape[0]):
        quantize_q8_0_into(src[t], qs[t], d[t], sums[t])


@numba.njit(cache=True)
def _quantize_rows_q8_1(x, norm_w, eps, xn, qs, d, s):
    """(Normalise and) quantize x into Q8_1 buffers (see :func:`quantize_rows_q8_k`)."""
    src = _prepare(x, norm_w, eps, xn)
    for t in range(x.shape[0]):
        quantize_q8_1_into(src[t], qs[t], d[t], s[t])


_GROUP_KERNELS: dict[tuple[int, int], Callable[..., None]] = {}
"""Drivers made by :func:`group_kernel`, by (activation type, only type)."""


def group_kernel(act: int, only: int = -1) -> Callable[..., None]:
    """The grouped driver of activation type ``act`` (Q8_K, Q8_0 or Q8_1), one parallel loop.

    ``kernel(x, norm_w, eps, xn, qs, d, aux, kinds, raws, tasks, outs, residual)``: x float32 (n_tok, n_in);
    norm_w float32 (n_in,) or empty (no norm); xn float32 (n_tok, n_in) scratch; qs int8 (n_tok, n_in),
    d float32 (n_tok, n_in/block), aux (Q8_K: int16 bsums (n_tok, n_in/16); Q8_0: int16 sums, Q8_1: float32 s
    (n_tok, n_in/32)) activation buffers; kinds int64 (MAX_GROUP,); raws tuple of uint8 (n_out_i, row_bytes_i);
    tasks int64 (n_tasks, 2) the (matrix, first row) of each task (:func:`task_table`); outs tuple of float32
    (n_tok, n_out_i); residual float32 (n_tok, n_out_0) += outs[0], or empty.

    A closure over ``act`` and ``only`` (:mod:`.specialise`). ``only`` >= 0 says every matrix
    the kernel will see has that weight type (a model whose matrices of this activation type are all of one
    type, as SmolLM2's Q4_1 layers): only that type's row kernels are compiled (1.3 s less for a Q8_0 output
    matrix on a cold start); -1 serves any mix of the family's types.
    """
    kernel = _GROUP_KERNELS.get((act, only))
    if kernel is not None:
        return kernel

    lanes = LANES if act == _Q8_K else 1  # a K-quant (row, token) sums float32 lanes (int_dot.accumulate)

    def group(x, norm_w, eps, xn, qs, d, aux, kinds, raws, tasks, outs, residual):
        n_tok = x.shape[0]
        if act == _Q8_K:
            quantize_rows_q8_k(x, norm_w, eps, xn, qs, d, aux)
        elif act == _Q8_0:
            _quantize_rows_q8_0(x, norm_w, eps, xn, qs, d, aux)
        else:
            _quantize_rows_q8_1(x, norm_w, eps, xn, qs, d, aux)
        for c in numba.prange(tasks.shape[0]):
            i = tasks[c, 0]
            raw = raws[i]
            r0 = tasks[c, 1]
            r1 = min(raw.shape[0], r0 + ROWS_PER_TASK)
            acc = np.empty(n_tok * lanes, np.float32)  # float32 (lanes * n_tok,) per-task accumulators
            if act == _Q8_K:
                if only >= 0:
                    _rows_q8_k(only, raw, r0, r1, qs, d, aux, acc, outs[i])
                else:
                    _rows_q8_k(kinds[i], raw, r0, r1, qs, d, aux, acc, outs[i])
            elif act == _Q8_0:
                if only >= 0:
                    _rows_q8_0(only, raw, r0, r1, qs, d, aux, acc, outs[i])
                else:
                    _rows_q8_0(kinds[i], raw, r0, r1, qs, d, aux, acc, outs[i])
            elif only >= 0:
                _rows_q8_1(only, raw, r0, r1, qs, d, aux, acc, outs[i])
            else:
                _rows_q8_1(kinds[i], raw, r0, r1, qs, d, aux, acc, outs[i])
        _add_into(residual, outs[0])

    kernel = _GROUP_KERNELS[(act, only)] = jit_specialised(group, f"{act}_{only}".replace("-", "m"), parallel=True)
    return kernel


_NO_NORM = np.zeros(0, np.float32)
_NO_NORM.flags.writeable = False  # norm weights are read-only views of the file
_NO_RESIDUAL = np.zeros((0, 0), np.float32)


class ActivationBlocks:
    """Reusable 8-bit activation blocks of up to ``capacity`` tokens of ``n`` elements (one activation type).

    Attributes:
        act_type: Q8_K, Q8_0 or Q8_1.
        qs: int8 (capacity, n) codes.
        d: float32 (capacity, n / block) block scales.
        aux: per-block side values: int16 (capacity, n/16) ``bsums`` (Q8_K), int16 (capacity, n/32) ``sums``
            (Q8_0) or float32 (capacity, n/32) ``s`` (Q8_1) (see :mod:`.q8_activations`).
        xn: float32 (capacity, n) scratch for the normalised input.
    """

    __slots__ = ("act_type", "capacity", "n", "qs", "d", "aux", "xn", "_views")

    def __init__(self, act_type: GGMLType, capacity: int, n: int) -> None:
        if act_type not in _AUX:
            raise ValueError(f"{act_type.name} is not an activation type")
        block = _BLOCK[act_type]
        if n % block:
            raise ValueError(f"{act_type.name} needs a multiple of {block} elements, got {n}")
        per, dtype = _AUX[act_type]
        self.act_type = act_type
        self.capacity = capacity
        self.n = n
        self.qs = np.zeros((capacity, n), np.int8)  # int8 (capacity, n)
        self.d = np.zeros((capacity, n // block), np.float32)  # float32 (capacity, n/block)
        self.aux = np.zeros((capacity, n // per), dtype)  # int16 or float32 (capacity, n/per)
        self.xn = np.zeros((capacity, n), np.float32)  # float32 (capacity, n)
        self._views: dict[int, tuple[np.ndarray, ...]] = {}

    def rows(self, n_tok: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(xn, qs, d, aux) of the first n_tok tokens: contiguous views, made once per n_tok."""
        views = self._views.get(n_tok)
        if views is None:
            if not 0 < n_tok <= self.capacity:
                raise ValueError(f"{n_tok} tokens do not fit activation buffers of {self.capacity}")
            views = self._views[n_tok] = (self.xn[:n_tok], self.qs[:n_tok], self.d[:n_tok], self.aux[:n_tok])
        return views

    def dequantize(self, n_tok: int) -> np.ndarray:
        """float32 (n_tok, n) values d*q of the first n_tok rows (tests)."""
        block = _BLOCK[self.act_type]
        q = self.qs[:n_tok].reshape(-1, block).astype(np.float32)
        return (q * self.d[:n_tok].reshape(-1, 1)).reshape(n_tok, self.n)


class MatrixGroup:
    """Up to :data:`MAX_GROUP` quantized matrices with the same input length and activation type.

    Args:
        raws: uint8 (n_out_i, row_bytes_i) rows of each matrix.
        types: their weight types.
        act_type: the activation type they all multiply (``TypeTraits.activation``).
        family: every weight type of ``act_type`` the model holds (all its groups pass the same set, so they
            share one compiled driver); when that is one type the driver is compiled for it alone (see
            :func:`group_kernel`). None: a driver for any mix.
    """

    __slots__ = ("act_type", "n_outs", "_kinds", "_raws", "_tasks", "_kernel", "_tiled")

    def __init__(self, raws: Sequence[np.ndarray], types: Sequence[GGMLType], act_type: GGMLType,
                 family: Collection[GGMLType] | None = None) -> None:
        if not 1 <= len(raws) <= MAX_GROUP or len(raws) != len(types):
            raise ValueError(f"a group holds 1 to {MAX_GROUP} matrices, got {len(raws)}")
        if family is not None and not set(types) <= set(family):
            raise ValueError(f"types {[t.name for t in types]} are not all in the family {[t.name for t in family]}")
        self.act_type = act_type
        self.n_outs = tuple(int(r.shape[0]) for r in raws)
        pad = MAX_GROUP - len(raws)
        self._kinds = np.array([int(t) for t in types] + [int(types[0])] * pad, np.int64)  # int64 (MAX_GROUP,)
        self._raws = tuple(readonly(r) for r in raws) + (readonly(raws[0]),) * pad
        self._tasks: dict[int, np.ndarray] = {}  # threads -> int64 (n_tasks, 2) task_table
        only = int(next(iter(family))) if family is not None and len(set(family)) == 1 else -1
        self._kernel = group_kernel(int(act_type), only)
        self._tiled = act_type == GGMLType.Q8_K  # K-quants: the tiled kernel from GEMM_MIN_TOKENS tokens

    def __call__(
        self,
        x: np.ndarray,
        acts: ActivationBlocks,
        outs: Sequence[np.ndarray],
        norm: np.ndarray | None = None,
        eps: float = 0.0,
        residual: np.ndarray | None = None,
    ) -> None:
        """``outs[i] = norm(x) @ W_i.T`` through 8-bit activations; then ``residual += outs[0]`` if given.

        Args:
            x: float32 (n_tok, n_in) contiguous, n_tok <= ``acts.capacity``.
            acts: activation buffers of this group's type and n_in.
            outs: float32 (n_tok, n_out_i) contiguous, one per matrix.
            norm: float32 (n_in,) RMSNorm weight applied to x first (``rms_norm_into``), or None; pass a
                read-only array (:func:`readonly`, as file-mapped norms are) to reuse one compiled kernel.
            eps: RMSNorm epsilon.
            residual: float32 (n_tok, n_out_0) updated in place, or None.
        """
        outs = tuple(outs)
        outs += (outs[0],) * (MAX_GROUP - len(outs))
        xn, qs, d, aux = acts.rows(x.shape[0])
        norm_w = _NO_NORM if norm is None else norm
        if self._tiled and x.shape[0] >= GEMM_MIN_TOKENS:
            quantize_rows_q8_k(x, norm_w, float(eps), xn, qs, d, aux)
            for i in range(len(self.n_outs)):
                gemm_q8k(self._kinds[i], self._raws[i], qs, d, aux, outs[i])
            _add_into(_NO_RESIDUAL if residual is None else residual, outs[0])
            return
        n_threads = numba.get_num_threads()
        tasks = self._tasks.get(n_threads)
        if tasks is None:
            tasks = self._tasks[n_threads] = task_table(self.n_outs, n_threads)
        self._kernel(
            x, norm_w, float(eps), xn, qs, d, aux, self._kinds, self._raws,
            tasks, outs, _NO_RESIDUAL if residual is None else residual,
        )


def task_table(n_outs: Sequence[int], n_shares: int) -> np.ndarray:
    """int64 (n_tasks, 2): (matrix, first row) of each task of :data:`ROWS_PER_TASK` rows of a group's matrices.

    ``prange`` hands each of its n threads one contiguous share of the task list (1/n of it). Listing the
    matrices one after another would give one thread Q and half of K and the other the rest of K and V (in
    a q4_K_M layer V is Q6_K, 46% more bytes than Q4_K): instead share s lists rows ``[n*s/k, n*(s+1)/k)``
    of every matrix in turn (k = ``n_shares``), each thread reading the same bytes in a few long runs. QKV of
    the 7B-shaped q4_K_M file, 2 threads, alternated in one process: 1.167 -> 1.126 ms (a list interleaving
    the matrices task by task: 1.427 ms).
    """
    tasks = []
    for s in range(n_shares):
        for i, n in enumerate(n_outs):
            n_task = (n + ROWS_PER_TASK - 1) // ROWS_PER_TASK
            lo, hi = n_task * s // n_shares, n_task * (s + 1) // n_shares
            tasks += [(i, c * ROWS_PER_TASK) for c in range(lo, hi)]
    return np.array(tasks, dtype=np.int64).reshape(-1, 2)


def readonly(raw: np.ndarray) -> np.ndarray:
    """``raw`` as a read-only view (weights from files are read-only maps: one compiled specialisation for both)."""
    if not raw.flags.writeable:
        return raw
    view = raw.view()
    view.flags.writeable = False
    return view
