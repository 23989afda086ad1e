"""Rotary position embedding in GGML's "normal" mode: adjacent pairs (x[2j], x[2j+1]) rotate.

See docs/formats.md, "RoPE".
"""

from __future__ import annotations

import numpy as np


def rope_tables(positions: np.ndarray, n_rot: int, base: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Cosines and sines of the rotation angles ``pos * scale * base**(-2j / n_rot)``.

    Returns:
        cos, sin: float32 (n_pos, n_rot // 2) each.
    """
    inv_freq = base ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)  # float64 (n_rot/2,)
    angles = np.outer(positions.astype(np.float64) * scale, inv_freq)  # float64 (n_pos, n_rot/2)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> None:
    """Rotate ``x`` in place.

    Args:
        x: float32 (n_pos, n_heads, head_dim); the first ``2 * cos.shape[1]`` dims of each head rotate.
        cos: float32 (n_pos, n_rot // 2).
        sin: float32 (n_pos, n_rot // 2).
    """
    half = cos.shape[1]
    pairs = x[:, :, : 2 * half].reshape(x.shape[0], x.shape[1], half, 2)  # view (n_pos, n_heads, half, 2)
    x0 = pairs[..., 0].copy()
    x1 = pairs[..., 1].copy()
    c = cos[:, None, :]
    s = sin[:, None, :]
    pairs[..., 0] = x0 * c - x1 * s
    pairs[..., 1] = x0 * s + x1 * c
