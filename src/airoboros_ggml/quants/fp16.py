"""Half-precision helpers usable inside numba kernels (numba has no float16 scalar type).

* :data:`F16_TABLE` — float32 (65536,) table: bit pattern -> value (exactly numpy's conversion).
* :func:`f32_to_f16_bits` — round-to-nearest-even float32 -> IEEE half bit pattern (like ggml's
  ``GGML_FP32_TO_FP16`` and numpy's ``astype(np.float16)``).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

F16_TABLE: np.ndarray = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
"""float32 (65536,): value of every half-precision bit pattern."""


@numba.njit(cache=True, inline="always")
def f16_at(raw, off):
    """Value of the little-endian half stored at ``raw[off:off+2]`` (uint8 array), as float32."""
    return F16_TABLE[np.int64(raw[off]) | (np.int64(raw[off + 1]) << 8)]


@intrinsic
def f32_bits(typingctx, f):
    """The IEEE bit pattern of float32 ``f`` as uint32 (a register bitcast: no array, no exception path)."""
    if f != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(f), codegen


@intrinsic
def f32_at(typingctx, raw, off):
    """The little-endian float32 stored at ``raw[off:off+4]`` of a contiguous uint8 array."""
    if not isinstance(raw, types.Array) or raw.dtype != types.uint8:
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.FloatType().as_pointer())
        return builder.load(ptr, align=1)

    return types.float32(raw, off), codegen


@numba.njit(cache=True)
def f32_to_f16_bits(f):
    """IEEE half bit pattern (int) of float32 ``f``, rounding to nearest even; overflow -> inf."""
    b = np.int64(f32_bits(np.float32(f)))
    sign = (b >> 16) & 0x8000
    exp = (b >> 23) & 0xFF
    mant = b & 0x7FFFFF
    if exp == 0xFF:  # inf / nan
        return sign | 0x7C00 | (0x200 if mant else 0)
    e = exp - 127 + 15
    if e >= 31:
        return sign | 0x7C00
    if e <= 0:  # subnormal half (or zero)
        if e < -10:
            return sign
        mant = mant | 0x800000
        shift = 14 - e
        half = mant >> shift
        rem = mant & ((1 << shift) - 1)
        mid = 1 << (shift - 1)
        if rem > mid or (rem == mid and (half & 1)):
            half += 1
        return sign | half
    half = (e << 10) | (mant >> 13)
    rem = mant & 0x1FFF
    if rem > 0x1000 or (rem == 0x1000 and (half & 1)):
        half += 1  # may carry into the exponent, which is correct (up to inf)
    return sign | half


@numba.njit(cache=True)
def f32_round_f16(f):
    """``f`` rounded to half precision and back to float32 (what ggml stores for a scale)."""
    return F16_TABLE[f32_to_f16_bits(f)]
