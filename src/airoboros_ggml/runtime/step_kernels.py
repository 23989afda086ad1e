"""Small compiled kernels of the few-token forward pass: RoPE and SiLU gating.

Each replaces a handful of numpy calls (and their temporaries) per layer of a decode step with one call
that allocates nothing. Their numpy references are :func:`.rope.apply_rope` and
:func:`.forward.silu_mul`; the RMSNorm kernel is :func:`airoboros_ggml.quants.int_group.rms_norm_into`
(the grouped matrix kernels apply it to their input).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def rope_into(x, cos, sin):
    """Rotate adjacent pairs (x[2j], x[2j+1]) of every head in place (GGML's "normal" RoPE mode).

    x float32 (n_tok, n_heads, head_dim); cos, sin float32 (n_tok, n_rot / 2): the first n_rot dims of each
    head rotate. Same float32 arithmetic as :func:`.rope.apply_rope`.
    """
    half = cos.shape[1]
    for t in range(x.shape[0]):
        for h in range(x.shape[1]):
            for j in range(half):
                x0 = x[t, h, 2 * j]
                x1 = x[t, h, 2 * j + 1]
                c = cos[t, j]
                s = sin[t, j]
                x[t, h, 2 * j] = x0 * c - x1 * s
                x[t, h, 2 * j + 1] = x0 * s + x1 * c


@numba.njit(cache=True)
def rope_qk_into(q, k, cos, sin):
    """:func:`rope_into` of the queries q (n_tok, n_head, hd) and keys k (n_tok, n_head_kv, hd) in one call."""
    rope_into(q, cos, sin)
    rope_into(k, cos, sin)


@numba.njit(cache=True, inline="always")
def _silu_mul_row(g, u):
    """``g = silu(g) * u`` of one row: g, u float32 (n_ff,)."""
    one = np.float32(1)
    for i in range(g.shape[0]):
        g[i] = g[i] / (one + np.exp(-g[i])) * u[i]


@numba.njit(cache=True)
def _silu_mul_serial(g, u):
    for t in range(g.shape[0]):
        _silu_mul_row(g[t], u[t])


@numba.njit(cache=True, parallel=True)
def _silu_mul_parallel(g, u):
    for t in numba.prange(g.shape[0]):
        _silu_mul_row(g[t], u[t])


def silu_mul_into(g: np.ndarray, u: np.ndarray) -> None:
    """``g = silu(g) * u`` in place: g, u float32 (n_tok, n_ff) (reference: :func:`.forward.silu_mul`).

    Rows in parallel when there are several (a decode step of several sequences: 8 x 1536 SiLUs took 52 us
    on one core).
    """
    if g.shape[0] > 1:
        _silu_mul_parallel(g, u)
    else:
        _silu_mul_serial(g, u)
