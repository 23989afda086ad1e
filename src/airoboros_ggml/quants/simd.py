"""Small LLVM IR building blocks for numba ``@intrinsic`` kernels: vector loads and x86 integer dot products.

numba cannot express 8-bit SIMD (its integer typing widens byte arithmetic to 64-bit lanes), so the integer
dot-product kernels of :mod:`.int_dot` emit vector IR directly with these helpers. They use the AVX2
instructions ``vpmaddubsw`` (u8 x i8 products, adjacent pairs summed to i16) and ``vpmaddwd`` (i16 x i16,
pairs summed to i32), present on every x86-64 CPU since 2013; LLVM keeps them on AVX-512 machines (Zen 4
executes 512-bit integer ops as two 256-bit halves anyway). :data:`HAVE_AVX2` says whether numba compiles
for a CPU that has them; without it callers must use the exact float32 kernels (an AVX2 intrinsic on a
target without AVX2 would abort LLVM, so this check is not optional).
"""

from __future__ import annotations

import llvmlite.binding as llvm
from llvmlite import ir
from numba.core import cgutils, config

I8, I16, I32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)
F32 = ir.FloatType()
V8F32 = ir.VectorType(F32, 8)
V32I8 = ir.VectorType(I8, 32)  # one 256-bit register of bytes
V16I8 = ir.VectorType(I8, 16)
V16I16 = ir.VectorType(I16, 16)
V8I32 = ir.VectorType(I32, 8)


def _numba_target_has_avx2() -> bool:
    """Whether numba generates code for a CPU with AVX2 (host CPU, or ``NUMBA_CPU_NAME``/``_FEATURES``)."""
    if config.CPU_NAME and config.CPU_NAME != "host":
        return "+avx2" in (config.CPU_FEATURES or "").split(",")
    try:
        return bool(llvm.get_host_cpu_features().get("avx2", False))
    except RuntimeError:  # LLVM cannot tell (non-x86 host)
        return False


HAVE_AVX2: bool = _numba_target_has_avx2()
"""True when the integer dot-product kernels can be compiled for this machine."""


STRICT = ("nsz",)
"""Fast-math flags for float instructions that must run exactly as written: numba's ``fastmath`` pass adds
``fast`` (reassociation, contraction into FMAs) only to instructions without flags, and ``nsz`` (ignore the
sign of a zero) changes no nonzero result. Kernels that must agree bit for bit (the row kernels and the tiled
kernels of :mod:`.int_gemm`) build their per-block float arithmetic with it."""


def const(value: int, ty: ir.Type = I32) -> ir.Constant:
    """An integer constant (a splat when ``ty`` is a vector type)."""
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [value] * ty.count)
    return ir.Constant(ty, value)


def array_ptr(context, builder, array_type, array, offset) -> ir.Value:
    """Pointer to ``array[offset]`` (element pointer of a contiguous numba array argument)."""
    ary = context.make_array(array_type)(context, builder, array)
    return builder.gep(ary.data, [offset])


def item_ptr(context, builder, array_type, array, indices: list) -> ir.Value:
    """Pointer to ``array[indices]`` of a numba array argument (intp index values; no bounds check)."""
    ary = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, ary, indices)


def byte_ptr(builder, ptr, offset: int) -> ir.Value:
    """``ptr + offset`` elements (constant offset)."""
    return builder.gep(ptr, [const(offset)])


def load(builder, ptr, ty: ir.Type) -> ir.Value:
    """Unaligned load of a value of type ``ty`` (scalar or vector) at ``ptr``."""
    return builder.load(builder.bitcast(ptr, ty.as_pointer()), align=1)


def load_f16(builder, ptr) -> ir.Value:
    """float32 value of the IEEE half at ``ptr`` (``vcvtph2ps``)."""
    return builder.fpext(builder.bitcast(load(builder, ptr, I16), ir.HalfType()), F32)


def load_f16x2(builder, ptr) -> ir.Value:
    """float32 (2,) values of the two IEEE halves at ``ptr`` (one load, one ``vcvtph2ps``)."""
    halves = builder.bitcast(load(builder, ptr, ir.VectorType(I16, 2)), ir.VectorType(ir.HalfType(), 2))
    return builder.fpext(halves, ir.VectorType(F32, 2))


def pick(builder, vec, lanes: list[int]) -> ir.Value:
    """Vector of ``vec[lanes[i]]`` (a shuffle; e.g. a broadcast of one lane)."""
    return builder.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(I32, len(lanes)), lanes))


def call_intrinsic(builder, name: str, ret: ir.Type, args: list) -> ir.Value:
    """Call the LLVM intrinsic ``name`` (declared on first use) with ``args``, returning type ``ret``."""
    fnty = ir.FunctionType(ret, [a.type for a in args])
    return builder.call(cgutils.get_or_insert_function(builder.module, fnty, name), args)


def maddubs(builder, u8, s8) -> ir.Value:
    """``vpmaddubsw``: u8 (32,) x i8 (32,) -> i16 (16,), lane i = u[2i]*s[2i] + u[2i+1]*s[2i+1] (saturating)."""
    return call_intrinsic(builder, "llvm.x86.avx2.pmadd.ub.sw", V16I16, [u8, s8])


def maddwd(builder, a, b) -> ir.Value:
    """``vpmaddwd``: i16 (16,) x i16 (16,) -> i32 (8,), lane i = a[2i]*b[2i] + a[2i+1]*b[2i+1]."""
    return call_intrinsic(builder, "llvm.x86.avx2.pmadd.wd", V8I32, [a, b])


def pshufb(builder, v32, mask: list[int]) -> ir.Value:
    """``vpshufb``: byte i of each 128-bit half = that half's byte ``mask[i] % 16``, or 0 where ``mask[i]`` < 0.

    v32: (32,) bytes; mask: 32 indices 0..15 (or -1 for a zero byte). One instruction, unlike most
    lane-crossing :func:`pick` broadcasts.
    """
    m = ir.Constant(V32I8, [0x80 if k < 0 else k for k in mask])
    return call_intrinsic(builder, "llvm.x86.avx2.pshuf.b", V32I8, [builder.bitcast(v32, V32I8), m])


def hsum(builder, v) -> ir.Value:
    """Sum of the lanes of an i32 (8,) vector."""
    return call_intrinsic(builder, "llvm.vector.reduce.add.v8i32", I32, [v])


def hsum2(builder, a, b) -> ir.Value:
    """i32 (2,): the sums of the lanes of ``a`` and of ``b`` (i32 (8,) each; one ``vphaddd``, two adds)."""
    h = call_intrinsic(builder, "llvm.x86.avx2.phadd.d", V8I32, [a, b])  # per half: a pairs, b pairs
    q = builder.add(pick(builder, h, [0, 1, 2, 3]), pick(builder, h, [4, 5, 6, 7]))
    return builder.add(pick(builder, q, [0, 2]), pick(builder, q, [1, 3]))


def prefetch(builder, ptr) -> None:
    """Software prefetch (``llvm.prefetch``: read, keep in all cache levels) of the cache line at ``ptr``."""
    i8p = builder.bitcast(ptr, I8.as_pointer())
    fnty = ir.FunctionType(ir.VoidType(), [i8p.type, I32, I32, I32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
    builder.call(fn, [i8p, const(0), const(3), const(1)])


def fma(builder, a, b, c) -> ir.Value:
    """``a * b + c`` rounded once (``llvm.fma``: the same bits on every target), float32 (8,) vectors."""
    return call_intrinsic(builder, "llvm.fma.v8f32", V8F32, [a, b, c])


def fold_lanes(builder, v) -> ir.Value:
    """float32 sum of the 8 lanes of ``v`` in a fixed order: ``((v0+v4) + (v2+v6)) + ((v1+v5) + (v3+v7))``."""
    h = builder.fadd(pick(builder, v, [0, 1, 2, 3]), pick(builder, v, [4, 5, 6, 7]), flags=STRICT)
    q = builder.fadd(pick(builder, h, [0, 1]), pick(builder, h, [2, 3]), flags=STRICT)
    return builder.fadd(builder.extract_element(q, const(0)), builder.extract_element(q, const(1)), flags=STRICT)


def splat(builder, scalar, n: int) -> ir.Value:
    """Vector of ``n`` copies of ``scalar``."""
    vec = builder.insert_element(ir.Constant(ir.VectorType(scalar.type, 1), ir.Undefined), scalar, const(0))
    return builder.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(I32, n), [0] * n))


def hsum8(builder, vecs: list) -> ir.Value:
    """i32 (8,) vector whose lane p is the sum of the lanes of ``vecs[p]`` (8 vectors i32 (8,)).

    A ``vphaddd`` tree (6 instructions) leaves the sums of the 128-bit halves; one shuffle pair adds them.
    """
    while len(vecs) > 2:
        pairs = [vecs[i : i + 2] for i in range(0, len(vecs), 2)]
        vecs = [call_intrinsic(builder, "llvm.x86.avx2.phadd.d", V8I32, pair) for pair in pairs]
    h0, h1 = vecs  # lanes: vectors 0-3 low half, 0-3 high half / vectors 4-7 likewise
    lanes = ir.VectorType(I32, 8)
    lows = builder.shuffle_vector(h0, h1, ir.Constant(lanes, [0, 1, 2, 3, 8, 9, 10, 11]))
    return builder.add(lows, builder.shuffle_vector(h0, h1, ir.Constant(lanes, [4, 5, 6, 7, 12, 13, 14, 15])))
