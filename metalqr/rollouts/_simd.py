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
code of the same order. Where the sum over the input rows is kept in a register
(:func:`matvec_rows`, :func:`gains_chunk`, :func:`weighted_squares_rows`) the chain is the one
the row-by-row updates of memory gave, so these too are the same bits.

Numba caches the compiled kernels keyed by the source of *their* module
(:mod:`metalqr._numba_cache`), not of this one: after changing this file, clear metalqr's
kernel cache (``$XDG_CACHE_HOME/metalqr``) or change the modules that use it.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.core.extending import intrinsic

__all__ = ["fma_rows", "matvec_rows", "gains_chunk", "weighted_squares_rows", "WIDTH"]

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
def weighted_squares_rows(typingctx, M, X, total, r):
    """``total[r:r+8] += sum_i M[i, i] X[i, r:r+8]^2``, the sum kept in a register.

    The chain ``t <- fma(M_ii, x_i * x_i, t)`` over ``i`` in order (the form LLVM gave the
    scalar ``total[r] += M[i, i] * x_i * x_i`` under ``fastmath``, one row at a time).
    """
    if not (isinstance(M, types.Array) and M.ndim == 2 and isinstance(X, types.Array)
            and X.ndim == 2 and isinstance(total, types.Array) and total.ndim == 1):
        return None
    sig = types.void(M, X, total, r)

    def codegen(context, builder, signature, args):
        M_v, X_v, t_v, r_v = args
        fma = _fma(builder)
        xary = context.make_array(X)(context, builder, X_v)
        mary = context.make_array(M)(context, builder, M_v)
        n = builder.extract_value(xary.shape, 0)
        m0 = builder.extract_value(mary.strides, 0)
        m1 = builder.extract_value(mary.strides, 1)
        mbase = builder.ptrtoint(mary.data, m0.type)
        tp = _row_pointer(context, builder, total, t_v, r_v)
        acc = cgutils.alloca_once(builder, _VTY)
        builder.store(builder.load(tp, align=8), acc)
        with cgutils.for_range(builder, n) as loop:
            i = loop.index
            x = builder.load(_element_pointer(context, builder, X, X_v, i, r_v), align=8)
            mp = builder.inttoptr(builder.add(mbase, builder.mul(i, builder.add(m0, m1))),
                                  ir.DoubleType().as_pointer())
            m = _splat(builder, builder.load(mp))
            builder.store(builder.call(fma, [m, builder.fmul(x, x), builder.load(acc)]), acc)
        builder.store(builder.load(acc), tp, align=8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def matvec_rows(typingctx, outs, M, i0, X, r):
    """``outs[i][r:r+8] += sum_j M[i0 + i, j] X[j, r:r+8]``, each sum kept in a register.

    The chain ``o <- fma(M[i0 + i, j], x_j, o)`` over all ``j`` in order, from the value of the
    output row (the chain of :func:`fma_rows` over successive blocks of ``X``), stored once:
    for few roll-outs a block, where storing and reloading the partial sums every four ``j``
    made the product latency-bound.
    """
    if not (isinstance(outs, types.UniTuple) and isinstance(outs.dtype, types.Array)
            and isinstance(M, types.Array) and M.ndim == 2 and isinstance(X, types.Array)
            and X.ndim == 2):
        return None
    no = outs.count
    sig = types.void(outs, M, i0, X, r)

    def codegen(context, builder, signature, args):
        outs_v, M_v, i0_v, X_v, r_v = args
        fma = _fma(builder)
        xary = context.make_array(X)(context, builder, X_v)
        mary = context.make_array(M)(context, builder, M_v)
        m = builder.extract_value(xary.shape, 0)
        m0 = builder.extract_value(mary.strides, 0)
        m1 = builder.extract_value(mary.strides, 1)
        mbase = builder.ptrtoint(mary.data, m0.type)
        ops, accs, rowbase = [], [], []
        for i in range(no):
            op = _row_pointer(context, builder, outs.dtype, builder.extract_value(outs_v, i), r_v)
            acc = cgutils.alloca_once(builder, _VTY)
            builder.store(builder.load(op, align=8), acc)
            ops.append(op)
            accs.append(acc)
            row = builder.add(i0_v, ir.Constant(i0_v.type, i))
            rowbase.append(builder.add(mbase, builder.mul(row, m0)))
        with cgutils.for_range(builder, m) as loop:
            j = loop.index
            x = builder.load(_element_pointer(context, builder, X, X_v, j, r_v), align=8)
            for i in range(no):
                cp = builder.inttoptr(builder.add(rowbase[i], builder.mul(j, m1)),
                                      ir.DoubleType().as_pointer())
                c = _splat(builder, builder.load(cp))
                builder.store(builder.call(fma, [c, x, builder.load(accs[i])]), accs[i])
        for i in range(no):
            builder.store(builder.load(accs[i]), ops[i], align=8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def gains_chunk(typingctx, outs, coefs, Y, r):
    """``outs[i][r:r+8] = sum_j coefs[i][j] Y[j, r:r+8]``, each sum kept in a register.

    ``coefs[i]`` is a contiguous ``(d, 8)`` block, row ``j`` the eight roll-outs'
    coefficients of input row ``j``, so the loop over ``j`` reads it as one sequential stream.
    For each output the chain ``u <- fma(c_0, y_0, +0)``, ``u <- fma(c_1, y_1, u)``, ... over
    all ``d`` rows in order (the chain of a zeroed row updated one ``j`` at a time), stored
    once; each row of ``Y`` is loaded once for all outputs.
    """
    if not (isinstance(outs, types.UniTuple) and isinstance(coefs, types.UniTuple)
            and outs.count == coefs.count and isinstance(coefs.dtype, types.Array)
            and coefs.dtype.ndim == 2 and isinstance(Y, types.Array) and Y.ndim == 2):
        return None
    no = outs.count
    sig = types.void(outs, coefs, Y, r)

    def codegen(context, builder, signature, args):
        outs_v, coefs_v, Y_v, r_v = args
        fma = _fma(builder)
        yary = context.make_array(Y)(context, builder, Y_v)
        d = builder.extract_value(yary.shape, 0)
        zero = ir.Constant(d.type, 0)
        accs = [cgutils.alloca_once_value(builder, ir.Constant(_VTY, [0.0] * WIDTH))
                for _ in range(no)]
        cvals = [builder.extract_value(coefs_v, i) for i in range(no)]
        with cgutils.for_range(builder, d) as loop:
            j = loop.index
            y = builder.load(_element_pointer(context, builder, Y, Y_v, j, r_v), align=8)
            for i in range(no):
                c = builder.load(_element_pointer(context, builder, coefs.dtype, cvals[i], j,
                                                  zero), align=8)
                builder.store(builder.call(fma, [c, y, builder.load(accs[i])]), accs[i])
        for i in range(no):
            op = _row_pointer(context, builder, outs.dtype, builder.extract_value(outs_v, i), r_v)
            builder.store(builder.load(accs[i]), op, align=8)
        return context.get_dummy_value()

    return sig, codegen
