"""Explicit 8-wide fused multiply-add blocks for the Numba roll-out kernel.

LLVM vectorises the kernel's ``for r in range(L)`` row loops only behind run-time checks that
the output rows do not overlap the input rows (Numba cannot tell it that they are distinct
arrays), and the set-up of those checks, with the spills of the sixteen coefficients of a
4 x 4 block around them, cost about 55 cycles per loop entry: a third of a ``(20, 30)``
product at 104 roll-outs, and most of it at 24 (the adapted roll-outs of a meta-gradient).
These intrinsics emit the vector code directly, eight roll-outs (one AVX-512 register) at a
time, with ``llvm.fma`` in the same order as the fused chain LLVM built for the scalar
expressions (``o + a0 v0 + a1 v1 + ...``, one rounding per term), so the results are the same
bits as the compiled loops they replace.

Each block reads ``8`` consecutive doubles at ``r`` of every row it is given; the caller
runs them for ``r = 0, 8, .., L - L % 8 - 8`` and finishes the last ``L % 8`` with scalar
code of the same order.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.core.extending import intrinsic

__all__ = ["fma_rows", "fma_rows_lanes", "WIDTH"]

#: Roll-outs per vector (doubles in a 512-bit register).
WIDTH = 8

_VTY = ir.VectorType(ir.DoubleType(), WIDTH)


def _row_pointer(context, builder, arrty, arrval, r):
    """``&row[r]`` as a pointer to an 8-double vector."""
    ary = context.make_array(arrty)(context, builder, arrval)
    return builder.bitcast(builder.gep(ary.data, [r]), _VTY.as_pointer())


def _splat(builder, x):
    """``x`` in all eight lanes."""
    v = builder.insert_element(ir.Constant(_VTY, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), WIDTH), [0] * WIDTH)
    return builder.shuffle_vector(v, ir.Constant(_VTY, ir.Undefined), mask)


def _fma(builder):
    """The ``llvm.fma.v8f64`` intrinsic (one rounding per lane)."""
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VTY, [_VTY] * 3),
                                          "llvm.fma.v8f64")


def _check(outs, xs, coefs):
    ok = (isinstance(outs, types.UniTuple) and isinstance(xs, types.UniTuple)
          and isinstance(coefs, types.UniTuple) and coefs.count == outs.count * xs.count)
    return ok


@intrinsic
def fma_rows(typingctx, outs, xs, coefs, r):
    """``outs[i][r:r+8] += sum_j coefs[i n + j] xs[j][r:r+8]`` (task-wide coefficients).

    For each output row ``i`` the chain ``o <- fma(c_i0, x_0, o)``, ``o <- fma(c_i1, x_1, o)``,
    ... in the order of ``xs``; every input row is loaded once for all outputs.
    """
    if not (_check(outs, xs, coefs) and isinstance(coefs.dtype, types.Float)):
        return None
    no, ni = outs.count, xs.count
    sig = types.void(outs, xs, coefs, r)

    def codegen(context, builder, signature, args):
        outs_v, xs_v, coefs_v, r_v = args
        fma = _fma(builder)
        xv = [builder.load(_row_pointer(context, builder, xs.dtype,
                                        builder.extract_value(xs_v, j), r_v), align=8)
              for j in range(ni)]
        for i in range(no):
            op = _row_pointer(context, builder, outs.dtype, builder.extract_value(outs_v, i), r_v)
            acc = builder.load(op, align=8)
            for j in range(ni):
                c = _splat(builder, builder.extract_value(coefs_v, i * ni + j))
                acc = builder.call(fma, [c, xv[j], acc])
            builder.store(acc, op, align=8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def fma_rows_lanes(typingctx, outs, xs, coefs, r):
    """``outs[i][r:r+8] += sum_j coefs[i n + j][r:r+8] xs[j][r:r+8]`` (per-roll-out coefficients).

    The same chain as :func:`fma_rows` with a coefficient row per (output, input) pair.
    """
    if not (_check(outs, xs, coefs) and isinstance(coefs.dtype, types.Array)):
        return None
    no, ni = outs.count, xs.count
    sig = types.void(outs, xs, coefs, r)

    def codegen(context, builder, signature, args):
        outs_v, xs_v, coefs_v, r_v = args
        fma = _fma(builder)
        xv = [builder.load(_row_pointer(context, builder, xs.dtype,
                                        builder.extract_value(xs_v, j), r_v), align=8)
              for j in range(ni)]
        for i in range(no):
            op = _row_pointer(context, builder, outs.dtype, builder.extract_value(outs_v, i), r_v)
            acc = builder.load(op, align=8)
            for j in range(ni):
                c = builder.load(_row_pointer(context, builder, coefs.dtype,
                                              builder.extract_value(coefs_v, i * ni + j), r_v),
                                 align=8)
                acc = builder.call(fma, [c, xv[j], acc])
            builder.store(acc, op, align=8)
        return context.get_dummy_value()

    return sig, codegen

