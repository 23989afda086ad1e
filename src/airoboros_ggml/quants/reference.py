"""Numpy reference implementations: block dequantizers and the matvec/matmul reference path.

Every function takes ``blocks``: uint8 (n_blocks, type_size) and returns float32 (n_blocks, block_size).
The arithmetic is float32 in the same order as ggml's ``dequantize_row_*`` reference code, so the
result is bit-exact. The numba kernels in :mod:`.kernels` must agree with these bit for bit.
"""

from __future__ import annotations

import numpy as np

from ..ggml_types import QK_K, GGMLType

_SH4 = np.array([0, 4], dtype=np.uint8)
_SH2 = np.array([0, 2, 4, 6], dtype=np.uint8)
_SH1 = np.arange(8, dtype=np.uint8)


def _f16(b: np.ndarray) -> np.ndarray:
    """uint8 (n, 2) -> float32 (n, 1)."""
    return np.ascontiguousarray(b).view(np.float16).astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """uint8 (n, 16k) -> uint8 (n, 32k): for each 16-byte group... low nibbles first, then high nibbles."""
    n = qs.shape[0]
    q = qs.reshape(n, -1, 1, 16) >> _SH4.reshape(1, 1, 2, 1)
    return (q & 0x0F).reshape(n, -1)


def _nibbles32(qs: np.ndarray) -> np.ndarray:
    """uint8 (n, 32k) -> uint8 (n, 64k): per 32-byte group, 32 low nibbles then 32 high nibbles."""
    n = qs.shape[0]
    q = qs.reshape(n, -1, 1, 32) >> _SH4.reshape(1, 1, 2, 1)
    return (q & 0x0F).reshape(n, -1)


def _bits(qh: np.ndarray, n_per: int) -> np.ndarray:
    """uint8 (n, B) bit planes -> uint8 (n, 8*B): plane k (bit k of every byte) forms elements k*B..k*B+B-1."""
    n = qh.shape[0]
    return ((qh.reshape(n, 1, -1) >> _SH1.reshape(1, 8, 1)) & 1).reshape(n, -1)


def _q5_high(qh4: np.ndarray) -> np.ndarray:
    """uint8 (n, 4) little-endian u32 -> uint8 (n, 32): bit j is element j's 5th bit."""
    return np.unpackbits(qh4, axis=-1, bitorder="little")


def dq_f32(b: np.ndarray) -> np.ndarray:
    """F32: Dequantize uint8 (n, type_size) blocks into float32 (n, block_size)."""
    return np.ascontiguousarray(b).view(np.float32).reshape(b.shape[0], 1)


def dq_f16(b: np.ndarray) -> np.ndarray:
    """F16: Dequantize uint8 (n, type_size) blocks into float32 (n, block_size)."""
    return np.ascontiguousarray(b).view(np.float16).astype(np.float32).reshape(b.shape[0], 1)


def dq_q4_0(b: np.ndarray) -> np.ndarray:
    """Q4_0: Dequantize uint8 (n, type_size) blocks into float32 (n, block_size)."""
    d = _f16(b[:, 0:2])
    q = _nibbles(b[:, 2:18]).astype(np.float32) - np.float32(8)
    return d * q


def dq_q4_1(b: np.ndarray) -> np.ndarray:
    """Q4_1: Dequantize uint8 (n, type_size) blocks into float32 (n, block_size)."""
    d, m = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    return d * _nibbles(b[:, 4:20]).astype(np.float32) + m


def dq_q5_0(b: np.ndarray) -> np.ndarray:
    """Q5_0: Dequantize uint8 (n, type_size) blocks into float32 (n, block_size)."""
    d = _f16(b[:, 0:2])
    q = _nibbles(b[:, 6:22]) | (_q5_high(b[:, 2:6]) << 4)
    return d * (q.astype(np.float32) - np.float32(16))


def dq_q5_1(b: np.ndarray) -> np.ndarray:
    """Q5_1: Dequantize uint8 (n, type_size) blocks into float32 (n, block_size)."""
    d, m = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    q = _nibbles(b[:, 8:24]) | (_q5_high(b[:, 4:8]) << 4)
    return d * q.astype(np.float32) + m


def dq_q8_0(b: np.ndarray) -> np.ndarray:
    """Q8_0: Dequantize uint8 (n, type_size) blocks into float32 (n, block_size)."""
    return np.ascontiguousarray(b[:, 2:34]).view(np.int8).astype(np.float32) * _f16(b[:, 0:2])


def dq_q2_k(b: np.ndarray) -> np.ndarray:
    """Q2_K: Dequantize uint8 (n, type_size) blocks into float32 (n, block_size)."""
    n = b.shape[0]
    sc, qs = b[:, 0:16], b[:, 16:80]
    d, dmin = _f16(b[:, 80:82]), _f16(b[:, 82:84])
    dl = (d * (sc & 0xF).astype(np.float32)).reshape(n, 16, 1)
    ml = (dmin * (sc >> 4).astype(np.float32)).reshape(n, 16, 1)
    q = ((qs.reshape(n, 2, 1, 32) >> _SH2.reshape(1, 1, 4, 1)) & 3).reshape(n, 16, 16).astype(np.float32)
    return (dl * q - ml).reshape(n, QK_K)


def _q3k_scales(s: np.ndarray) -> np.ndarray:
    """uint8 (n, 12) -> float32 (n, 16) signed 6-bit scales."""
    lo = np.concatenate([s[:, 0:8] & 0xF, s[:, 0:8] >> 4], axis=1)  # (n, 16)
    hi = (s[:, 8:12].reshape(-1, 1, 4) >> _SH2.reshape(1, 4, 1)).reshape(-1, 16) & 3
    return ((lo | (hi << 4)).astype(np.int8) - np.int8(32)).astype(np.float32)


def dq_q3_k(b: np.ndarray) -> np.ndarray:
    """Q3_K: Dequantize uint8 (n, type_size) blocks into float32 (n, block_size)."""
    n = b.shape[0]
    hm, qs, d = b[:, 0:32], b[:, 32:96], _f16(b[:, 108:110])
    dl = (d * _q3k_scales(b[:, 96:108])).reshape(n, 16, 1)
    low = ((qs.reshape(n, 2, 1, 32) >> _SH2.reshape(1, 1, 4, 1)) & 3).reshape(n, QK_K)
    high = _bits(hm, 32)  # (n, 256)
    q = (low.astype(np.int8) - ((high ^ 1) << 2).astype(np.int8)).astype(np.float32)
    return (dl * q.reshape(n, 16, 16)).reshape(n, QK_K)


def k4_scale_min(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Packed 6-bit scales/mins of Q4_K/Q5_K: uint8 (n, 12) -> uint8 (n, 8) scales, uint8 (n, 8) mins."""
    d, m, md = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = np.concatenate([d & 0x3F, (md & 0xF) | ((d >> 2) & 0x30)], axis=1)
    mn = np.concatenate([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], axis=1)
    return sc, mn


def dq_q4_k(b: np.ndarray) -> np.ndarray:
    """Q4_K: Dequantize uint8 (n, type_size) blocks into float32 (n, block_size)."""
    n = b.shape[0]
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    sc, mn = k4_scale_min(b[:, 4:16])
    dl = (d * sc.astype(np.float32)).reshape(n, 8, 1)
    ml = (dmin * mn.astype(np.float32)).reshape(n, 8, 1)
    q = _nibbles32(b[:, 16:144]).reshape(n, 8, 32).astype(np.float32)
    return (dl * q - ml).reshape(n, QK_K)


def dq_q5_k(b: np.ndarray) -> np.ndarray:
    """Q5_K: Dequantize uint8 (n, type_size) blocks into float32 (n, block_size)."""
    n = b.shape[0]
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    sc, mn = k4_scale_min(b[:, 4:16])
    dl = (d * sc.astype(np.float32)).reshape(n, 8, 1)
    ml = (dmin * mn.astype(np.float32)).reshape(n, 8, 1)
    q = _nibbles32(b[:, 48:176]) | (_bits(b[:, 16:48], 32) << 4)
    return (dl * q.reshape(n, 8, 32).astype(np.float32) - ml).reshape(n, QK_K)


def dq_q6_k(b: np.ndarray) -> np.ndarray:
    """Q6_K: Dequantize uint8 (n, type_size) blocks into float32 (n, block_size)."""
    n = b.shape[0]
    ql, qh = b[:, 0:128], b[:, 128:192]
    sc = np.ascontiguousarray(b[:, 192:208]).view(np.int8).astype(np.float32)
    d = _f16(b[:, 208:210])
    dl = (d * sc).reshape(n, 16, 1)
    lo = ((ql.reshape(n, 2, 1, 64) >> _SH4.reshape(1, 1, 2, 1)) & 0xF).reshape(n, 2, 4, 32)
    hi = ((qh.reshape(n, 2, 1, 32) >> _SH2.reshape(1, 1, 4, 1)) & 3).reshape(n, 2, 4, 32)
    q = (lo | (hi << 4)).astype(np.int8) - np.int8(32)
    return (dl * q.reshape(n, 16, 16).astype(np.float32)).reshape(n, QK_K)


def dequantize_rows_ref(raw_rows: np.ndarray, t: GGMLType, n_in: int) -> np.ndarray:
    """Numpy reference: uint8 (n_out, row_bytes) -> float32 (n_out, n_in)."""
    from .traits import TYPE_TRAITS  # the table lists this module's dequantizers

    tr = TYPE_TRAITS[t]
    blocks = np.ascontiguousarray(raw_rows).reshape(-1, tr.type_size)
    return tr.dequantize_ref(blocks).reshape(raw_rows.shape[0], n_in)


def matmul_ref(raw_rows: np.ndarray, t: GGMLType, n_in: int, x: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Numpy reference matmul: float32 (n_tok, n_in) or (n_in,) -> float32 (n_tok, n_out) or (n_out,).

    Dequantizes ``chunk`` rows at a time (float32), multiplies with float32 BLAS.
    """
    x2 = np.atleast_2d(np.asarray(x, dtype=np.float32))  # float32 (n_tok, n_in)
    n_out = raw_rows.shape[0]
    out = np.empty((x2.shape[0], n_out), dtype=np.float32)  # float32 (n_tok, n_out)
    for r0 in range(0, n_out, chunk):
        w = dequantize_rows_ref(raw_rows[r0 : r0 + chunk], t, n_in)  # float32 (chunk, n_in)
        out[:, r0 : r0 + chunk] = x2 @ w.T
    return out if np.ndim(x) == 2 else out[0]
