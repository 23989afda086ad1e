"""Quantizers for every weight type, as llama.cpp's reference quantizers.

Legacy types in numpy (bit-exact with ggml's ``quantize_row_*_ref``); K-quants in numba following ggml's
reference algorithms (``make_qkx2_quants`` for Q2_K/Q4_K/Q5_K, ``make_q3_quants`` for Q3_K,
``make_qx_quants`` for Q6_K). Block layouts: see :mod:`.kernels`.

Every block quantizer maps float32 (n_blocks, block_size) -> uint8 (n_blocks, type_size).
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from ..ggml_types import LAYOUTS, GGMLType
from .fp16 import F16_TABLE, f32_to_f16_bits
from .kernels import Q2_K, Q3_K, Q4_K, Q5_K

_GROUP_MAX_EPS = np.float32(1e-15)


def _f16_bytes(v: np.ndarray) -> np.ndarray:
    """float32 (n, 1) -> uint8 (n, 2) half bytes."""
    return v.astype(np.float16).view(np.uint8)


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """uint8 (n, 32) codes < 16 -> uint8 (n, 16): element j low nibble, j+16 high nibble."""
    return q[:, :16] | (q[:, 16:] << np.uint8(4))


def _roundf(a: np.ndarray) -> np.ndarray:
    """C ``roundf`` (half away from zero) in float32."""
    return np.sign(a) * np.floor(np.abs(a) + np.float32(0.5))


def q_q4_0(x: np.ndarray) -> np.ndarray:
    """Q4_0: Quantize float32 (n, 32) blocks into uint8 (n, type_size), bit-exact with ggml."""
    mx = np.take_along_axis(x, np.abs(x).argmax(axis=1, keepdims=True), axis=1)  # (n, 1) signed max
    d = mx / np.float32(-8)
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    q = np.trunc(x * idv + np.float32(8.5)).astype(np.float32).clip(0, 15).astype(np.uint8)
    return np.concatenate([_f16_bytes(d), _pack_nibbles(q)], axis=1)


def q_q4_1(x: np.ndarray) -> np.ndarray:
    """Q4_1: Quantize float32 (n, 32) blocks into uint8 (n, type_size), bit-exact with ggml."""
    mx, mn = x.max(axis=1, keepdims=True), x.min(axis=1, keepdims=True)
    d = (mx - mn) / np.float32(15)
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    q = np.trunc((x - mn) * idv + np.float32(0.5)).astype(np.float32).clip(0, 15).astype(np.uint8)
    return np.concatenate([_f16_bytes(d), _f16_bytes(mn), _pack_nibbles(q)], axis=1)


def _q5_pack(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 32) codes < 32 -> (qh uint8 (n, 4), qs uint8 (n, 16))."""
    qh = np.packbits(q >> np.uint8(4), axis=1, bitorder="little")
    return qh, _pack_nibbles(q & np.uint8(15))


def q_q5_0(x: np.ndarray) -> np.ndarray:
    """Q5_0: Quantize float32 (n, 32) blocks into uint8 (n, type_size), bit-exact with ggml."""
    mx = np.take_along_axis(x, np.abs(x).argmax(axis=1, keepdims=True), axis=1)
    d = mx / np.float32(-16)
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    q = np.trunc(x * idv + np.float32(16.5)).astype(np.float32).clip(0, 31).astype(np.uint8)
    qh, qs = _q5_pack(q)
    return np.concatenate([_f16_bytes(d), qh, qs], axis=1)


def q_q5_1(x: np.ndarray) -> np.ndarray:
    """Q5_1: Quantize float32 (n, 32) blocks into uint8 (n, type_size), bit-exact with ggml."""
    mx, mn = x.max(axis=1, keepdims=True), x.min(axis=1, keepdims=True)
    d = (mx - mn) / np.float32(31)
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    q = np.trunc((x - mn) * idv + np.float32(0.5)).astype(np.float32).clip(0, 31).astype(np.uint8)
    qh, qs = _q5_pack(q)
    return np.concatenate([_f16_bytes(d), _f16_bytes(mn), qh, qs], axis=1)


def q_q8_0(x: np.ndarray) -> np.ndarray:
    """Q8_0: Quantize float32 (n, 32) blocks into uint8 (n, type_size), bit-exact with ggml."""
    d = np.abs(x).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    q = _roundf(x * idv).astype(np.int8).view(np.uint8)
    return np.concatenate([_f16_bytes(d), q], axis=1)


# ---------------------------------------------------------------------------------------------------------
# K-quants (numba). nearest_int in ggml rounds half to even (the 1.5*2^23 trick) == np.rint.


@numba.njit(cache=True, inline="always")
def _nint(f):
    return np.int64(np.rint(np.float32(f)))


@numba.njit(cache=True)
def _make_qkx2_quants(n, nmax, x, w, L, laux, rmin, rdelta, nstep, use_mad):
    """Ggml make_qkx2_quants: asymmetric (scale, min) search. Returns (scale, -min); codes in L."""
    mn = x[0]
    mx = x[0]
    sum_w = w[0]
    sum_x = sum_w * x[0]
    for i in range(1, n):
        if x[i] < mn:
            mn = x[i]
        if x[i] > mx:
            mx = x[i]
        sum_w += w[i]
        sum_x += w[i] * x[i]
    if mn > 0:
        mn = np.float32(0)
    if mx == mn:
        for i in range(n):
            L[i] = 0
        return np.float32(0), -mn
    iscale = np.float32(nmax) / (mx - mn)
    scale = np.float32(1) / iscale
    best_mad = np.float32(0)
    for i in range(n):
        li = min(nmax, max(0, _nint(iscale * (x[i] - mn))))
        L[i] = li
        diff = scale * np.float32(li) + mn - x[i]
        diff = abs(diff) if use_mad else diff * diff
        best_mad += w[i] * diff
    if nstep < 1:
        return scale, -mn
    for is_ in range(nstep + 1):
        iscale = (np.float32(rmin) + np.float32(rdelta) * np.float32(is_) + np.float32(nmax)) / (mx - mn)
        sum_l = np.float32(0)
        sum_l2 = np.float32(0)
        sum_xl = np.float32(0)
        for i in range(n):
            li = min(nmax, max(0, _nint(iscale * (x[i] - mn))))
            laux[i] = li
            fl = np.float32(li)
            sum_l += w[i] * fl
            sum_l2 += w[i] * fl * fl
            sum_xl += w[i] * fl * x[i]
        dd = sum_w * sum_l2 - sum_l * sum_l
        if dd > 0:
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / dd
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / dd
            if this_min > 0:
                this_min = np.float32(0)
                this_scale = sum_xl / sum_l2
            mad = np.float32(0)
            for i in range(n):
                diff = this_scale * np.float32(laux[i]) + this_min - x[i]
                diff = abs(diff) if use_mad else diff * diff
                mad += w[i] * diff
            if mad < best_mad:
                for i in range(n):
                    L[i] = laux[i]
                best_mad = mad
                scale = this_scale
                mn = this_min
    return scale, -mn


@numba.njit(cache=True)
def _make_qx_quants(n, nmax, x, L, rmse_type):
    """Ggml make_qx_quants (symmetric, weights x^2 for rmse_type 1). Codes L in [0, 2*nmax)."""
    mx = np.float32(0)
    amax = np.float32(0)
    for i in range(n):
        ax = abs(x[i])
        if ax > amax:
            amax = ax
            mx = x[i]
    if amax < _GROUP_MAX_EPS:
        for i in range(n):
            L[i] = 0
        return np.float32(0)
    iscale = np.float32(-nmax) / mx
    sumlx = np.float32(0)
    suml2 = np.float32(0)
    for i in range(n):
        li = max(-nmax, min(nmax - 1, _nint(iscale * x[i])))
        L[i] = li + nmax
        w = x[i] * x[i]
        sumlx += w * x[i] * np.float32(li)
        suml2 += w * np.float32(li * li)
    scale = sumlx / suml2 if suml2 != 0 else np.float32(0)
    best = scale * sumlx
    for is_ in range(-9, 10):
        if is_ == 0:
            continue
        iscale = -(np.float32(nmax) + np.float32(0.1) * np.float32(is_)) / mx
        sumlx = np.float32(0)
        suml2 = np.float32(0)
        for i in range(n):
            li = max(-nmax, min(nmax - 1, _nint(iscale * x[i])))
            w = x[i] * x[i]
            sumlx += w * x[i] * np.float32(li)
            suml2 += w * np.float32(li * li)
        if suml2 > 0 and sumlx * sumlx > best * suml2:
            for i in range(n):
                L[i] = nmax + max(-nmax, min(nmax - 1, _nint(iscale * x[i])))
            scale = sumlx / suml2
            best = scale * sumlx
    return scale


@numba.njit(cache=True)
def _make_q3_quants(n, nmax, x, L):
    """Ggml make_q3_quants with do_rmse=True. Codes L in [0, 2*nmax)."""
    mx = np.float32(0)
    amax = np.float32(0)
    for i in range(n):
        ax = abs(x[i])
        if ax > amax:
            amax = ax
            mx = x[i]
    if amax < _GROUP_MAX_EPS:
        for i in range(n):
            L[i] = 0
        return np.float32(0)
    iscale = np.float32(-nmax) / mx
    sumlx = np.float32(0)
    suml2 = np.float32(0)
    for i in range(n):
        li = max(-nmax, min(nmax - 1, _nint(iscale * x[i])))
        L[i] = li
        w = x[i] * x[i]
        sumlx += w * x[i] * np.float32(li)
        suml2 += w * np.float32(li * li)
    for _itry in range(5):
        n_changed = 0
        for i in range(n):
            w = x[i] * x[i]
            slx = sumlx - w * x[i] * np.float32(L[i])
            if slx > 0:
                sl2 = suml2 - w * np.float32(L[i] * L[i])
                new_l = max(-nmax, min(nmax - 1, _nint(x[i] * sl2 / slx)))
                if new_l != L[i]:
                    slx += w * x[i] * np.float32(new_l)
                    sl2 += w * np.float32(new_l * new_l)
                    if sl2 > 0 and slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = new_l
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if n_changed == 0:
            break
    for i in range(n):
        L[i] += nmax
    return sumlx / suml2


@numba.njit(cache=True)
def _put_f16(out, o, f):
    h = f32_to_f16_bits(f)
    out[o] = h & 0xFF
    out[o + 1] = h >> 8
    return F16_TABLE[h]


@numba.njit(cache=True)
def _pack_k4_scales(out, o, ls, lm):
    """Pack 8 6-bit scales ls and mins lm into out[o:o+12] (Q4_K/Q5_K layout)."""
    for j in range(12):
        out[o + j] = 0
    for j in range(8):
        if j < 4:
            out[o + j] = ls[j]
            out[o + j + 4] = lm[j]
        else:
            out[o + j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4)
            out[o + j - 4] |= (ls[j] >> 4) << 6
            out[o + j] |= (lm[j] >> 4) << 6


@numba.njit(cache=True)
def _k4_sm(out, o, j):
    if j < 4:
        return out[o + j] & 63, out[o + j + 4] & 63
    return (out[o + j + 4] & 0xF) | ((out[o + j - 4] >> 6) << 4), (out[o + j + 4] >> 4) | ((out[o + j] >> 6) << 4)


@numba.njit(cache=True)
def _q45k_block(x, out, five):
    """Quantize float32 x (256,) into out uint8 (144,) Q4_K or (176,) Q5_K."""
    nmax = 31 if five else 15
    L = np.zeros(256, dtype=np.int64)
    laux = np.zeros(32, dtype=np.int64)
    w = np.zeros(32, dtype=np.float32)
    scales = np.zeros(8, dtype=np.float32)
    mins = np.zeros(8, dtype=np.float32)
    max_scale = np.float32(0)
    max_min = np.float32(0)
    for j in range(8):
        xs = x[32 * j : 32 * j + 32]
        s2 = np.float32(0)
        for v in xs:
            s2 += v * v
        av = np.sqrt(s2 / np.float32(32))
        for i in range(32):
            w[i] = av + abs(xs[i])
        if five:
            sc, m = _make_qkx2_quants(32, nmax, xs, w, L[32 * j : 32 * j + 32], laux, -0.5, 0.1, 15, False)
        else:
            sc, m = _make_qkx2_quants(32, nmax, xs, w, L[32 * j : 32 * j + 32], laux, -1.0, 0.1, 20, False)
        scales[j] = sc
        mins[j] = m
        if sc > max_scale:
            max_scale = sc
        if m > max_min:
            max_min = m
    inv_s = np.float32(63) / max_scale if max_scale > 0 else np.float32(0)
    inv_m = np.float32(63) / max_min if max_min > 0 else np.float32(0)
    ls = np.zeros(8, dtype=np.int64)
    lm = np.zeros(8, dtype=np.int64)
    for j in range(8):
        ls[j] = min(63, _nint(inv_s * scales[j]))
        lm[j] = min(63, _nint(inv_m * mins[j]))
    _pack_k4_scales(out, 4, ls, lm)
    d = _put_f16(out, 0, max_scale / np.float32(63))
    dmin = _put_f16(out, 2, max_min / np.float32(63))
    for j in range(8):
        sc, m = _k4_sm(out, 4, j)
        dl = d * np.float32(sc)
        if dl == 0:
            continue
        dm = dmin * np.float32(m)
        for i in range(32):
            L[32 * j + i] = max(0, min(nmax, _nint((x[32 * j + i] + dm) / dl)))
    if five:
        for i in range(32):
            out[16 + i] = 0
        m1 = 1
        m2 = 2
        for nn in range(0, 256, 64):
            for j in range(32):
                l1 = L[nn + j]
                if l1 > 15:
                    l1 -= 16
                    out[16 + j] |= m1
                l2 = L[nn + j + 32]
                if l2 > 15:
                    l2 -= 16
                    out[16 + j] |= m2
                out[48 + nn // 2 + j] = l1 | (l2 << 4)
            m1 <<= 2
            m2 <<= 2
    else:
        for nn in range(0, 256, 64):
            for j in range(32):
                out[16 + nn // 2 + j] = L[nn + j] | (L[nn + j + 32] << 4)


@numba.njit(cache=True)
def _q2k_block(x, out):
    L = np.zeros(256, dtype=np.int64)
    laux = np.zeros(16, dtype=np.int64)
    w = np.zeros(16, dtype=np.float32)
    scales = np.zeros(16, dtype=np.float32)
    mins = np.zeros(16, dtype=np.float32)
    max_scale = np.float32(0)
    max_min = np.float32(0)
    for j in range(16):
        for i in range(16):
            w[i] = abs(x[16 * j + i])
        sc, m = _make_qkx2_quants(16, 3, x[16 * j : 16 * j + 16], w, L[16 * j : 16 * j + 16], laux,
                                  -0.5, 0.1, 15, True)
        scales[j] = sc
        mins[j] = m
        if sc > max_scale:
            max_scale = sc
        if m > max_min:
            max_min = m
    for j in range(16):
        out[j] = 0
    q4 = np.float32(15)
    if max_scale > 0:
        isc = q4 / max_scale
        for j in range(16):
            out[j] = _nint(isc * scales[j])
        d = _put_f16(out, 80, max_scale / q4)
    else:
        d = _put_f16(out, 80, np.float32(0))
    if max_min > 0:
        isc = q4 / max_min
        for j in range(16):
            out[j] |= _nint(isc * mins[j]) << 4
        dmin = _put_f16(out, 82, max_min / q4)
    else:
        dmin = _put_f16(out, 82, np.float32(0))
    for j in range(16):
        dl = d * np.float32(out[j] & 0xF)
        if dl == 0:
            continue
        dm = dmin * np.float32(out[j] >> 4)
        for i in range(16):
            L[16 * j + i] = max(0, min(3, _nint((x[16 * j + i] + dm) / dl)))
    for j in range(0, 256, 128):
        for i in range(32):
            out[16 + j // 4 + i] = L[j + i] | (L[j + i + 32] << 2) | (L[j + i + 64] << 4) | (L[j + i + 96] << 6)


@numba.njit(cache=True)
def _q3k_block(x, out):
    L = np.zeros(256, dtype=np.int64)
    scales = np.zeros(16, dtype=np.float32)
    max_scale = np.float32(0)
    amax = np.float32(0)
    for j in range(16):
        scales[j] = _make_q3_quants(16, 4, x[16 * j : 16 * j + 16], L[16 * j : 16 * j + 16])
        a = abs(scales[j])
        if a > amax:
            amax = a
            max_scale = scales[j]
    for j in range(12):
        out[96 + j] = 0
    if max_scale != 0:
        isc = np.float32(-32) / max_scale
        for j in range(16):
            li = max(-32, min(31, _nint(isc * scales[j]))) + 32
            if j < 8:
                out[96 + j] = li & 0xF
            else:
                out[96 + j - 8] |= (li & 0xF) << 4
            out[96 + 8 + j % 4] |= (li >> 4) << (2 * (j // 4))
        d = _put_f16(out, 108, np.float32(1) / isc)
    else:
        d = _put_f16(out, 108, np.float32(0))
    for j in range(16):
        sc = (out[96 + j] & 0xF) if j < 8 else (out[96 + j - 8] >> 4)
        sc = (np.int64(sc) | (((np.int64(out[96 + 8 + j % 4]) >> (2 * (j // 4))) & 3) << 4)) - 32
        dl = d * np.float32(sc)
        if dl == 0:
            continue
        for i in range(16):
            L[16 * j + i] = max(-4, min(3, _nint(x[16 * j + i] / dl))) + 4
    for j in range(32):
        out[j] = 0
    m = 0
    hm = 1
    for j in range(256):
        if L[j] > 3:
            out[m] |= hm
            L[j] -= 4
        m += 1
        if m == 32:
            m = 0
            hm <<= 1
    for j in range(0, 256, 128):
        for i in range(32):
            out[32 + j // 4 + i] = L[j + i] | (L[j + i + 32] << 2) | (L[j + i + 64] << 4) | (L[j + i + 96] << 6)


@numba.njit(cache=True)
def _q6k_block(x, out):
    L = np.zeros(256, dtype=np.int64)
    scales = np.zeros(16, dtype=np.float32)
    max_scale = np.float32(0)
    max_abs = np.float32(0)
    for ib in range(16):
        s = _make_qx_quants(16, 32, x[16 * ib : 16 * ib + 16], L[16 * ib : 16 * ib + 16], 1)
        scales[ib] = s
        if abs(s) > max_abs:
            max_abs = abs(s)
            max_scale = s
    for i in range(210):
        out[i] = 0
    if max_abs < _GROUP_MAX_EPS:
        return
    isc = np.float32(-128) / max_scale
    d = _put_f16(out, 208, np.float32(1) / isc)
    for ib in range(16):
        v = min(127, _nint(isc * scales[ib]))
        out[192 + ib] = v & 0xFF
    for j in range(16):
        sv = np.int64(out[192 + j])
        dl = d * np.float32(sv - 256 if sv > 127 else sv)
        if dl == 0:
            continue
        for i in range(16):
            L[16 * j + i] = max(-32, min(31, _nint(x[16 * j + i] / dl))) + 32
    for j in range(0, 256, 128):
        for i in range(32):
            q1 = L[j + i] & 0xF
            q2 = L[j + i + 32] & 0xF
            q3 = L[j + i + 64] & 0xF
            q4 = L[j + i + 96] & 0xF
            out[j // 2 + i] = q1 | (q3 << 4)
            out[j // 2 + i + 32] = q2 | (q4 << 4)
            out[128 + j // 4 + i] = ((L[j + i] >> 4) | ((L[j + i + 32] >> 4) << 2) | ((L[j + i + 64] >> 4) << 4)
                                     | ((L[j + i + 96] >> 4) << 6))


@numba.njit(cache=True, parallel=True)
def quantize_k_blocks(code, x, out):
    """Quantize float32 x (n_blocks, 256) into uint8 out (n_blocks, type_size) for K-quant ``code``."""
    for b in numba.prange(x.shape[0]):
        if code == Q2_K:
            _q2k_block(x[b], out[b])
        elif code == Q3_K:
            _q3k_block(x[b], out[b])
        elif code == Q4_K:
            _q45k_block(x[b], out[b], False)
        elif code == Q5_K:
            _q45k_block(x[b], out[b], True)
        else:
            _q6k_block(x[b], out[b])


def k_quantizer(t: GGMLType) -> Callable[[np.ndarray], np.ndarray]:
    """The block quantizer of K-quant ``t``: float32 (n_blocks, 256) -> uint8 (n_blocks, type_size)."""
    code, type_size = int(t), LAYOUTS[t].type_size

    def quantize_blocks(x: np.ndarray) -> np.ndarray:
        out = np.empty((x.shape[0], type_size), dtype=np.uint8)  # uint8 (n_blocks, type_size)
        if x.shape[0]:
            quantize_k_blocks(code, np.ascontiguousarray(x, dtype=np.float32), out)
        return out

    quantize_blocks.__name__ = f"q_{t.name.lower()}"
    return quantize_blocks


def q_f32(x: np.ndarray) -> np.ndarray:
    """F32: float32 (n, 1) -> uint8 (n, 4), a copy of the bytes."""
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint8).copy()


def q_f16(x: np.ndarray) -> np.ndarray:
    """F16: float32 (n, 1) -> uint8 (n, 2), rounded to nearest even half."""
    return np.ascontiguousarray(x, dtype=np.float32).astype(np.float16).view(np.uint8)
