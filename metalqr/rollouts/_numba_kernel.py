"""Compiled rollout kernel (Numba, parallel over blocks of rollouts).

Same maths and the same counter-based noise as :mod:`metalqr.rollouts._array_kernel`.

Layout: the rollouts of one task are simulated ``LANES`` at a time as a structure of arrays:
the state is a ``(d, LANES)`` block whose rows are contiguous over rollouts, so every
operation of a step is a sum of scaled rows, ``out[:] += c0 X[j] + c1 X[j+1] + ...``, that
LLVM vectorises over rollouts with no horizontal reductions. A step is

* ``u = K~ y`` (per-rollout coefficients),
* ``cost += y'Q~y + u'Ru`` (``Q~`` diagonal: a weighted sum of squares; ``R`` from its upper
  triangle with doubled off-diagonal entries),
* ``y <- A~ y - B~ u + z`` (task-wide coefficients),

in the noise coordinates ``y = G^{-1} x`` when ``Psi`` is well conditioned (then
``A~ = G^{-1} A G``, ``B~ = G^{-1} B``, ``Q~ = G'QG``, ``K~ = K G`` and the noise enters as ``z``;
``G`` from :func:`~metalqr.rollouts.engine.noise_factors` makes ``Q~`` diagonal) and in the
original coordinates otherwise (``+ G z``, full quadratic form).

Numba specifics that matter for speed (measured on 2-core AMD EPYC machines, Zen 1 and
Zen 5, see ``docs/meta_learning.md``): ``error_model="numpy"`` (the default ``"python"``
error model checks every float division for zero, which blocks vectorisation);
one-dimensional row views with ``range`` loops (two-dimensional indexing is compiled with
negative-index wrap-around and is not vectorised); each product of a step in one function
(:func:`_matvec_add`, :func:`_gains_times`, :func:`_add_squares`), since a helper call per
row pair cost as much as a short row (110 -> 75 ns a roll-out step on Zen 5); the noise
hashed lane-wise in a vectorised pass, with the ziggurat's table look-ups scalar (see
:func:`~metalqr.rollouts._counter_rng_numba.lane_normals_into`).

The products run eight roll-outs (one AVX-512 register) at a time through Numba intrinsics
that emit the vector code directly (:func:`_fma_rows`, :func:`_matvec_rows`,
:func:`_gains_chunk`, :func:`_weighted_squares_rows`): LLVM vectorised each row loop only
behind run-time checks that the rows do not overlap, about 55 cycles a loop entry, a third of
a product at 104 roll-outs. They issue ``llvm.fma`` in the order of the fused chain LLVM
built for the scalar code (``o + a0 v0 + a1 v1 + ...``), so the costs are the same bits as
before them; the last ``L % 8`` roll-outs run the scalar code. :func:`_gains_times` reads the
per-roll-out gains from a copy in contiguous ``(d, 8)`` blocks (:func:`_chunk_gains`), one
stream per gain row, with each sum in a register: at 104 roll-outs the block's 166 KB of
gains come from L2 at every step. Blocks under :data:`REGISTER_LANES` roll-outs keep each sum
of :func:`_matvec_add` in a register too (with two or three vectors a row the 4 x 4 blocks
waited on their own stores). The quadratic forms (:func:`_add_quadratic_flat`,
:func:`_quadratic_rows`) follow the order LLVM had chosen, which for a single term was
``fma(x_j, a x_i, t)`` (``fastmath`` had reassociated ``x_i (a x_j)``).

The divergence reference ``tr(Q V) + lambda_max(R) tr(K V K')`` is finished here when the
backend passes a :class:`KernelReference` (``tr(K V K')`` from the gain rows the block set-up
transposes anyway).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.core.extending import intrinsic

from . import _pool
from ._blocks import fitted_lanes, task_blocks
from ._counter_rng_numba import lane_normals_into as _lane_normals
from ._counter_rng_numba import PARALLEL_MIN, normals_numba, sphere_numba
from ._factors import equilibrated_factor, memo_by_value, well_conditioned
from .counter_rng import GAMMA, block_stride

__all__ = ["simulate_costs_numba", "normals_numba", "sphere_numba", "perturbed_numba",
           "KernelReference", "kernel_reference", "LANES"]

#: Rollouts simulated together as one structure-of-arrays block (128 x 8 bytes per state row;
#: the per-rollout gains of a block, 8 k d LANES bytes, stay in a 512 KiB L2 cache at
#: (d, k) = (20, 10)).
LANES = 128

#: Blocks narrower than this many roll-outs use the register-accumulating form of
#: :func:`_matvec_add` (the 4 x 4 blocks reach 50+ GFMA/s only over about 100 roll-outs).
REGISTER_LANES = 48

_ONE = np.uint64(1)
_JIT = dict(fastmath=True, error_model="numpy", cache=True)


# --- Explicit 8-wide vector blocks (Numba intrinsics) ------------------------------------
#
# Explicit 8-wide fused multiply-add blocks for the Numba roll-out kernel.
#
# LLVM vectorises the kernel's ``for r in range(L)`` row loops only behind run-time checks that
# the output rows do not overlap the input rows (Numba cannot tell it that they are distinct
# arrays), and the set-up of those checks, with the spills of the sixteen coefficients of a
# 4 x 4 block around them, cost about 55 cycles per loop entry: a third of a ``(20, 30)``
# product at 104 roll-outs, and most of it at 24 (the adapted roll-outs of a meta-gradient).
# These intrinsics emit the vector code directly, eight roll-outs (one AVX-512 register) at a
# time, with ``llvm.fma`` in the same order as the fused chain LLVM built for the scalar
# expressions (``o + a0 v0 + a1 v1 + ...``, one rounding per term), so the results are the same
# bits as the compiled loops they replace.
#
# Each block reads ``8`` consecutive doubles at ``r`` of every row it is given; the caller
# runs them for ``r = 0, 8, .., L - L % 8 - 8`` and finishes the last ``L % 8`` with scalar
# code of the same order. Where the sum over the input rows is kept in a register
# (:func:`_matvec_rows`, :func:`_gains_chunk`, :func:`_weighted_squares_rows`) the chain is the one
# the row-by-row updates of memory gave, so these too are the same bits. They live in this
# module because Numba's cache of a kernel is keyed by the source of its own module only.

#: Roll-outs per vector (doubles in a 512-bit register).
_W = 8

_VTY = ir.VectorType(ir.DoubleType(), _W)


def _row_pointer(context, builder, arrty, arrval, r):
    """``&row[r]`` as a pointer to an 8-double vector."""
    ary = context.make_array(arrty)(context, builder, arrval)
    return builder.bitcast(builder.gep(ary.data, [r]), _VTY.as_pointer())


def _splat(builder, x):
    """``x`` in all eight lanes."""
    v = builder.insert_element(ir.Constant(_VTY, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), _W), [0] * _W)
    return builder.shuffle_vector(v, ir.Constant(_VTY, ir.Undefined), mask)


def _element_pointer(context, builder, arrty, arrval, j, r):
    """``&a[j, r]`` of a 2-D array as a pointer to an 8-double vector (byte strides)."""
    ary = context.make_array(arrty)(context, builder, arrval)
    s0 = builder.extract_value(ary.strides, 0)
    base = builder.ptrtoint(ary.data, s0.type)
    off = builder.add(builder.mul(j, s0), builder.mul(r, ir.Constant(s0.type, 8)))
    return builder.inttoptr(builder.add(base, off), _VTY.as_pointer())


def _fma(builder):
    """Return the ``llvm.fma.v8f64`` intrinsic (one rounding per lane)."""
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VTY, [_VTY] * 3),
                                          "llvm.fma.v8f64")


def _rows(tup):
    """Whether ``tup`` is a tuple of contiguous 1-D float64 arrays (rows read with ``gep``)."""
    return (isinstance(tup, types.UniTuple) and isinstance(tup.dtype, types.Array)
            and tup.dtype.ndim == 1 and tup.dtype.layout == "C"
            and tup.dtype.dtype == types.float64)


def _row(ty):
    """Whether ``ty`` is a contiguous 1-D float64 array."""
    return (isinstance(ty, types.Array) and ty.ndim == 1 and ty.layout == "C"
            and ty.dtype == types.float64)


def _check(outs, xs, coefs):
    ok = (_rows(outs) and _rows(xs) and isinstance(coefs, types.UniTuple)
          and coefs.count == outs.count * xs.count)
    return ok


@intrinsic
def _fma_rows(typingctx, outs, xs, coefs, r):
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
def _weighted_squares_rows(typingctx, M, X, total, r):
    """``total[r:r+8] += sum_i M[i, i] X[i, r:r+8]^2``, the sum kept in a register.

    The chain ``t <- fma(M_ii, x_i * x_i, t)`` over ``i`` in order (the form LLVM gave the
    scalar ``total[r] += M[i, i] * x_i * x_i`` under ``fastmath``, one row at a time).
    """
    if not (isinstance(M, types.Array) and M.ndim == 2 and isinstance(X, types.Array)
            and X.ndim == 2 and _row(total)):
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
def _matvec_rows(typingctx, outs, M, i0, X, r):
    """``outs[i][r:r+8] += sum_j M[i0 + i, j] X[j, r:r+8]``, each sum kept in a register.

    The chain ``o <- fma(M[i0 + i, j], x_j, o)`` over all ``j`` in order, from the value of the
    output row (the chain of :func:`_fma_rows` over successive blocks of ``X``), stored once:
    for few roll-outs a block, where storing and reloading the partial sums every four ``j``
    made the product latency-bound.
    """
    if not (_rows(outs) and isinstance(M, types.Array) and M.ndim == 2
            and isinstance(X, types.Array) and X.ndim == 2):
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
def _gains_chunk(typingctx, outs, coefs, Y, r):
    """``outs[i][r:r+8] = sum_j coefs[i][j] Y[j, r:r+8]``, each sum kept in a register.

    ``coefs[i]`` is a contiguous ``(d, 8)`` block, row ``j`` the eight roll-outs'
    coefficients of input row ``j``, so the loop over ``j`` reads it as one sequential stream.
    For each output the chain ``u <- fma(c_0, y_0, +0)``, ``u <- fma(c_1, y_1, u)``, ... over
    all ``d`` rows in order (the chain of a zeroed row updated one ``j`` at a time), stored
    once; each row of ``Y`` is loaded once for all outputs.
    """
    if not (_rows(outs) and isinstance(coefs, types.UniTuple) and outs.count == coefs.count
            and isinstance(coefs.dtype, types.Array) and coefs.dtype.ndim == 2
            and coefs.dtype.layout == "C" and isinstance(Y, types.Array) and Y.ndim == 2):
        return None
    no = outs.count
    sig = types.void(outs, coefs, Y, r)

    def codegen(context, builder, signature, args):
        outs_v, coefs_v, Y_v, r_v = args
        fma = _fma(builder)
        yary = context.make_array(Y)(context, builder, Y_v)
        d = builder.extract_value(yary.shape, 0)
        zero = ir.Constant(d.type, 0)
        accs = [cgutils.alloca_once_value(builder, ir.Constant(_VTY, [0.0] * _W))
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

@intrinsic
def _quadratic_rows(typingctx, total, xi, xs, coefs, r):
    """``total[r:r+8] += xi[r:r+8] (sum_q coefs[q] xs[q][r:r+8])`` (task-wide coefficients).

    The order LLVM gave the scalar ``total[r] += xi[r] * (a0 * x0[r] + ...)`` under
    ``fastmath``: ``s = a0 x0``, ``s <- fma(a_q, x_q, s)`` for ``q = 1, 2, ..``, then
    ``total <- fma(xi, s, total)``; with one term ``total <- fma(x0, a0 xi, total)`` (it had
    reassociated ``xi (a0 x0)``). Checked bit for bit against the compiled loops.
    """
    if not (_rows(xs) and _row(total) and _row(xi) and isinstance(coefs, types.UniTuple)
            and xs.count == coefs.count and isinstance(coefs.dtype, types.Float)):
        return None
    nq = xs.count
    sig = types.void(total, xi, xs, coefs, r)

    def codegen(context, builder, signature, args):
        t_v, xi_v, xs_v, c_v, r_v = args
        fma = _fma(builder)
        tp = _row_pointer(context, builder, total, t_v, r_v)
        xiv = builder.load(_row_pointer(context, builder, xi, xi_v, r_v), align=8)
        xv = [builder.load(_row_pointer(context, builder, xs.dtype,
                                        builder.extract_value(xs_v, q), r_v), align=8)
              for q in range(nq)]
        cv = [_splat(builder, builder.extract_value(c_v, q)) for q in range(nq)]
        if nq == 1:
            res = builder.call(fma, [xv[0], builder.fmul(cv[0], xiv), builder.load(tp, align=8)])
        else:
            s = builder.fmul(cv[0], xv[0])
            for q in range(1, nq):
                s = builder.call(fma, [cv[q], xv[q], s])
            res = builder.call(fma, [xiv, s, builder.load(tp, align=8)])
        builder.store(res, tp, align=8)
        return context.get_dummy_value()

    return sig, codegen


# --- The kernel ---------------------------------------------------------------------------


@nb.njit(**_JIT)
def _add_squares(M, X, total):
    """``total += sum_i M[i, i] X[i]^2`` (``x'Mx`` for diagonal ``M``).

    Eight roll-outs at a time with the sum over ``i`` in a register
    (:func:`_weighted_squares_rows`), the last ``L % 8`` row by row.
    """
    L = total.shape[0]
    Lv = L - L % _W
    for r in range(0, Lv, _W):
        _weighted_squares_rows(M, X, total, r)
    for i in range(X.shape[0]):
        xi, mii = X[i], M[i, i]
        for r in range(Lv, L):
            total[r] += mii * xi[r] * xi[r]


@nb.njit(**_JIT)
def _matvec_add(M, X, OUT):
    """Add ``M X`` to ``OUT`` for a task-wide ``M``.

    ``OUT += M X`` for a task-wide ``M`` (n, m) and rows over roll-outs ``X`` (m, L), ``OUT``
    (n, L), in one function (no helper calls: a call costs as much as a short row): blocks of
    four output rows by four input rows, so each output row is loaded and stored once per
    sixteen multiply-adds; eight roll-outs at a time by :func:`_fma_rows`
    (no run-time overlap checks), the last ``L % 8`` by scalar code of the same order. Below
    :data:`REGISTER_LANES` roll-outs, four output rows at a time with each sum over ``j`` in a
    register (:func:`_matvec_rows`; the same chain, 21 -> 37 GFMA/s
    for a (20, 30) product at 24 roll-outs, where the 4 x 4 blocks are latency-bound).
    """
    n, m, L = OUT.shape[0], X.shape[0], OUT.shape[1]
    Lv = L - L % _W
    if L < REGISTER_LANES:              # few roll-outs: sums over j in registers
        i = 0
        while i < n:
            if i + 4 <= n:
                outs4 = (OUT[i], OUT[i + 1], OUT[i + 2], OUT[i + 3])
                for r in range(0, Lv, _W):
                    _matvec_rows(outs4, M, i, X, r)
                nr = 4
            else:
                outs1 = (OUT[i],)
                for r in range(0, Lv, _W):
                    _matvec_rows(outs1, M, i, X, r)
                nr = 1
            for q in range(i, i + nr):
                oq, mq = OUT[q], M[q]
                for j in range(m):
                    xj, a = X[j], mq[j]
                    for r in range(Lv, L):
                        oq[r] += a * xj[r]
            i += nr
        return
    i = 0
    while i + 4 <= n:
        o0, o1, o2, o3 = OUT[i], OUT[i + 1], OUT[i + 2], OUT[i + 3]
        m0, m1, m2, m3 = M[i], M[i + 1], M[i + 2], M[i + 3]
        outs = (o0, o1, o2, o3)
        j = 0
        while j + 4 <= m:
            x0, x1, x2, x3 = X[j], X[j + 1], X[j + 2], X[j + 3]
            a00, a01, a02, a03 = m0[j], m0[j + 1], m0[j + 2], m0[j + 3]
            a10, a11, a12, a13 = m1[j], m1[j + 1], m1[j + 2], m1[j + 3]
            a20, a21, a22, a23 = m2[j], m2[j + 1], m2[j + 2], m2[j + 3]
            a30, a31, a32, a33 = m3[j], m3[j + 1], m3[j + 2], m3[j + 3]
            xs = (x0, x1, x2, x3)
            cs = (a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23,
                  a30, a31, a32, a33)
            for r in range(0, Lv, _W):
                _fma_rows(outs, xs, cs, r)
            for r in range(Lv, L):
                v0, v1, v2, v3 = x0[r], x1[r], x2[r], x3[r]
                o0[r] += a00 * v0 + a01 * v1 + a02 * v2 + a03 * v3
                o1[r] += a10 * v0 + a11 * v1 + a12 * v2 + a13 * v3
                o2[r] += a20 * v0 + a21 * v1 + a22 * v2 + a23 * v3
                o3[r] += a30 * v0 + a31 * v1 + a32 * v2 + a33 * v3
            j += 4
        while j < m:
            xj = X[j]
            a0, a1, a2, a3 = m0[j], m1[j], m2[j], m3[j]
            xs1 = (xj,)
            cs1 = (a0, a1, a2, a3)
            for r in range(0, Lv, _W):
                _fma_rows(outs, xs1, cs1, r)
            for r in range(Lv, L):
                v = xj[r]
                o0[r] += a0 * v
                o1[r] += a1 * v
                o2[r] += a2 * v
                o3[r] += a3 * v
            j += 1
        i += 4
    while i < n:
        oi, mi = OUT[i], M[i]
        out1 = (oi,)
        j = 0
        while j + 4 <= m:
            x0, x1, x2, x3 = X[j], X[j + 1], X[j + 2], X[j + 3]
            a0, a1, a2, a3 = mi[j], mi[j + 1], mi[j + 2], mi[j + 3]
            xs = (x0, x1, x2, x3)
            cs1 = (a0, a1, a2, a3)
            for r in range(0, Lv, _W):
                _fma_rows(out1, xs, cs1, r)
            for r in range(Lv, L):
                oi[r] += a0 * x0[r] + a1 * x1[r] + a2 * x2[r] + a3 * x3[r]
            j += 4
        while j < m:
            xj, a = X[j], mi[j]
            xs1 = (xj,)
            c1 = (a,)
            for r in range(0, Lv, _W):
                _fma_rows(out1, xs1, c1, r)
            for r in range(Lv, L):
                oi[r] += a * xj[r]
            j += 1
        i += 1


@nb.njit(**_JIT)
def _chunk_gains(Kt, Kc):
    """Copy the first ``L - L % 8`` roll-outs of ``Kt`` (k, d, L) into ``Kc`` (k, L // 8, d, 8).

    ``Kc[a, c, j, q] = Kt[a, j, 8 c + q]``: the coefficients that :func:`_gains_times` reads
    for eight roll-outs, one contiguous ``(d, 8)`` block per gain row.
    """
    k, nc, d, W = Kc.shape
    for a in range(k):
        for c in range(nc):
            for j in range(d):
                src, dst = Kt[a, j], Kc[a, c, j]
                for q in range(W):
                    dst[q] = src[c * W + q]


@nb.njit(**_JIT)
def _gains_times(Kc, Kt, Y, U):
    """Return ``U[a] = sum_j Kt[a, j] * Y[j]`` for per-roll-out gains.

    ``U[a] = sum_j Kt[a, j] * Y[j]`` (per-roll-out coefficients ``Kt`` (k, d, L), and ``Kc``
    the same coefficients in blocks of eight roll-outs, :func:`_chunk_gains`): four output
    rows at a time, eight roll-outs at a time, each sum over ``j`` kept in a register and each
    coefficient block read as one sequential stream
    (:func:`_gains_chunk`; at 104 roll-outs the gains of a block, 166
    KB, come from L2 at every step: 8.6 GFMA/s with partial sums stored every four ``j`` and
    rows over all roll-outs, 16.5 with these blocks); the last ``L % 8`` roll-outs by scalar
    code of the same order (``0 + K[a, 0] y_0 + ...``).
    """
    k, d, L = Kt.shape
    nc = Kc.shape[1]
    Lv = nc * _W
    a = 0
    while a < k:
        if a + 4 <= k:
            outs4 = (U[a], U[a + 1], U[a + 2], U[a + 3])
            for c in range(nc):
                _gains_chunk(outs4, (Kc[a, c], Kc[a + 1, c], Kc[a + 2, c], Kc[a + 3, c]), Y,
                            c * _W)
            na = 4
        elif a + 2 <= k:
            outs2 = (U[a], U[a + 1])
            for c in range(nc):
                _gains_chunk(outs2, (Kc[a, c], Kc[a + 1, c]), Y, c * _W)
            na = 2
        else:
            outs1 = (U[a],)
            for c in range(nc):
                _gains_chunk(outs1, (Kc[a, c],), Y, c * _W)
            na = 1
        if Lv < L:
            for b in range(a, a + na):
                o, C = U[b], Kt[b]
                for r in range(Lv, L):
                    o[r] = 0.0
                for j in range(d):
                    cj, xj = C[j], Y[j]
                    for r in range(Lv, L):
                        o[r] += cj[r] * xj[r]
        a += na


@nb.njit(**_JIT)
def _add_quadratic_flat(Mu, X, total):
    """Add ``x'Mx`` per roll-out to ``total``.

    ``total += x'Mx`` per roll-out from ``Mu`` (upper triangle of ``M``, off-diagonal entries
    doubled): ``sum_i x_i (sum_{j >= i} Mu[i, j] x_j)``, in one function; eight roll-outs at a
    time by :func:`_quadratic_rows`, the last ``L % 8`` by scalar code.
    """
    n, L = X.shape
    Lv = L - L % _W
    for i in range(n):
        xi, mi = X[i], Mu[i]
        j = i
        while j + 4 <= n:
            x0, x1, x2, x3 = X[j], X[j + 1], X[j + 2], X[j + 3]
            a0, a1, a2, a3 = mi[j], mi[j + 1], mi[j + 2], mi[j + 3]
            xs = (x0, x1, x2, x3)
            cs = (a0, a1, a2, a3)
            for r in range(0, Lv, _W):
                _quadratic_rows(total, xi, xs, cs, r)
            for r in range(Lv, L):
                total[r] += xi[r] * (a0 * x0[r] + a1 * x1[r] + a2 * x2[r] + a3 * x3[r])
            j += 4
        while j < n:
            xj, a = X[j], mi[j]
            xs1 = (xj,)
            cs1 = (a,)
            for r in range(0, Lv, _W):
                _quadratic_rows(total, xi, xs1, cs1, r)
            for r in range(Lv, L):
                total[r] += xi[r] * (a * xj[r])
            j += 1


@nb.njit(parallel=True, **_JIT)
def _kernel(A, negB, Qu, Ru, L0, G, GT, white, qdiag, block_task, block_rows, K, noise_index,
            length, key, S, ref, factor, m, watch, Vu, qv, lam, own_ref, out, diverged):
    """Run the roll-outs of one block.

    Roll-outs of ``y <- A~ y - B~ u + z``, ``u = K~ y`` (``white``; ``K~ = K G``) or of ``x <- A
    x - B u + G z``, ``u = K x``. Block ``b`` holds the rollouts ``block_rows[b]`` (``-1``:
    padding) of task ``block_task[b]``. With ``qdiag`` the state cost matrix is diagonal and
    only the diagonal of ``Qu`` is used. With ``watch``, a roll-out whose stage cost at a step
    ``t > m`` exceeds ``factor (ref + max(c_1 .. c_m))`` is flagged in ``diverged`` and its
    state reset to zero (so that it cannot overflow). With ``own_ref`` the reference is
    computed here, ``qv[t] + lam[t] tr(K V_t K')`` per roll-out with ``tr(K V K')`` the sum over
    the rows ``a`` of the quadratic forms of ``Vu`` (upper triangle of ``V``, doubled
    off-diagonal) at ``K[a]`` (``ref`` unused).
    """
    nblocks, L = block_rows.shape
    k, d = K.shape[1], K.shape[2]
    key = np.uint64(key)
    for b in nb.prange(nblocks):
        ti = block_task[b]
        rows = block_rows[b]
        x0 = np.zeros(L, dtype=np.uint64)  # SplitMix64 state of each rollout's first number
        for r in range(L):
            if rows[r] >= 0:
                x0[r] = key + (np.uint64(noise_index[rows[r]]) * np.uint64(S) + _ONE) * GAMMA
        Kt = np.zeros((k, d, L))        # Kt[a, j, r] = K~[n_r, a, j]
        Ka = np.zeros((d, L))
        kvk = np.zeros(L)               # tr(K V K') (own_ref)
        for a in range(k):              # K~ = K G, i.e. K~[a] = G' K[a] on the rows (white)
            Kta = Kt[a] if not white else Ka
            for r in range(L):
                if rows[r] >= 0:
                    for j in range(d):
                        Kta[j, r] = K[rows[r], a, j]
            if own_ref:
                _add_quadratic_flat(Vu[ti], Kta, kvk)
            if white:
                _matvec_add(GT[ti], Ka, Kt[a])
        Kc = np.empty((k, L // _W, d, _W))  # Kt in blocks of eight roll-outs
        _chunk_gains(Kt, Kc)
        Y = np.zeros((d, L))
        Yn = np.empty((d, L))
        U = np.empty((k, L))
        Z = np.empty((d, L))
        total = np.zeros(L)
        cst = np.zeros(L)
        early = np.zeros(L)
        thr = np.zeros(L)
        flag = np.zeros(L, dtype=np.int64)
        for r in range(L):
            if rows[r] >= 0:
                thr[r] = qv[ti] + lam[ti] * kvk[r] if own_ref else ref[rows[r]]
        H = np.empty(L, dtype=np.uint64)
        _lane_normals(x0, 0, Z, H)
        _matvec_add(L0[ti], Z, Y)
        for t in range(length + 1):
            _gains_times(Kc, Kt, Y, U)
            if t > 0:                   # stage cost of x_t, t = 1 .. l
                cst[:] = 0.0
                if qdiag:
                    _add_squares(Qu[ti], Y, cst)
                else:
                    _add_quadratic_flat(Qu[ti], Y, cst)
                _add_quadratic_flat(Ru[ti], U, cst)
                for r in range(L):
                    total[r] += cst[r]
                if watch:
                    if t <= m:
                        for r in range(L):
                            early[r] = max(early[r], cst[r])
                        if t == m:
                            for r in range(L):
                                thr[r] = factor * (thr[r] + early[r])
                    else:
                        nflag = 0
                        for r in range(L):
                            flag[r] |= cst[r] > thr[r]
                            nflag += flag[r]
                        if nflag:               # reset diverging roll-outs (no overflow)
                            for r in range(L):
                                if flag[r]:
                                    for i in range(d):
                                        Y[i, r] = 0.0
                                    for a in range(k):
                                        U[a, r] = 0.0
            if t == length:
                break
            if white:                   # the noise is z itself: drawn straight into Yn
                _lane_normals(x0, (t + 1) * d, Yn, H)
            else:
                _lane_normals(x0, (t + 1) * d, Z, H)
                Yn[:, :] = 0.0
                _matvec_add(G[ti], Z, Yn)
            _matvec_add(A[ti], Y, Yn)
            _matvec_add(negB[ti], U, Yn)
            Y, Yn = Yn, Y
        for r in range(L):
            n = block_rows[b, r]
            if n >= 0:
                out[n] = total[r] / length
                diverged[n] = flag[r] != 0


@nb.njit(parallel=True, **_JIT)
def _fill_perturbed(C, V, out):
    """Fill ``out[p, q, 0] = C[p] + V[p, q]`` (and ``out[p, q, 1] = C[p] - V[p, q]``)."""
    P, Q, S, n = out.shape
    for p in nb.prange(P):
        c = C[p]
        for q in range(Q):
            v, o = V[p, q], out[p, q]
            for j in range(n):
                o[0, j] = c[j] + v[j]
            if S == 2:
                for j in range(n):
                    o[1, j] = c[j] - v[j]


@nb.njit(**_JIT)
def _fill_perturbed_serial(C, V, out):
    """Fill ``out`` with ``C[p] + V[p, q]`` (and ``C[p] - V[p, q]``), serial twin.

    ``out[p, q, 0] = C[p] + V[p, q]`` and, if ``out`` has two slots, ``out[p, q, 1] = C[p] -
    V[p, q]`` (serial twin).
    """
    P, Q, S, n = out.shape
    for p in range(P):
        c = C[p]
        for q in range(Q):
            v, o = V[p, q], out[p, q]
            for j in range(n):
                o[0, j] = c[j] + v[j]
            if S == 2:
                for j in range(n):
                    o[1, j] = c[j] - v[j]


def perturbed_numba(C: np.ndarray, V: np.ndarray, two_point: bool) -> np.ndarray:
    """Return the perturbed gains, compiled.

    Compiled :func:`~metalqr.rollouts.backends.perturbed_gains` (parallel above
    :data:`PARALLEL_MIN` entries; the array may be a reused buffer of
    :mod:`~metalqr.rollouts._pool`).
    """
    out = _pool.empty(V.shape[:2] + (2 if two_point else 1, V.shape[2]))
    fill = _fill_perturbed if out.size >= PARALLEL_MIN else _fill_perturbed_serial
    fill(np.ascontiguousarray(C), np.ascontiguousarray(V), out)
    return out


#: Roll-out calls with fewer than this many ``roll-outs x length x d (d + k)`` (about 2 ms of
#: one core) run on the calling thread: a parallel region costs a barrier, and on a loaded
#: machine Numba's OpenMP threads wait (spinning) for each other to be scheduled. The 100
#: adapted roll-outs of a (20, 10) meta-gradient (3e6) run serially, its 1,000 inner ones
#: (3e7) in parallel: 34 -> 17 ms median at load 8 on 2 cores. Same bits either way.
SERIAL_WORK = 10**7

#: Largest ``tr(G^-1 Sigma0 G^-T) / d`` for which the noise coordinates are used: an initial
#: state far larger than the noise (in the noise's own metric) would make the rounding
#: errors of ``y`` large relative to the directions of ``x`` that the noise excites.
WHITE_SIGMA0_MAX = 1e6


@memo_by_value
def _whiten(A, B, Q, L0, G):
    """Return the inputs in the noise coordinates, or None when inaccurate.

    Inputs in the noise coordinates ``y = G^{-1} x`` (see :func:`_kernel`), or ``None`` when
    that would not be accurate: some ``G`` is ill-conditioned after diagonal equilibration (e.g.
    singular ``Psi``), or ``Sigma0`` is far larger than ``Psi`` in the noise's metric
    (:data:`WHITE_SIGMA0_MAX`).

    ``G = diag(h) G_C`` (:func:`~metalqr.rollouts.engine.equilibrated_factor`) and every
    product is formed as ``G_C^{-1} (diag(h)^{-1} M diag(h)) G_C``, so a diagonal scaling of
    the state (``x' = S x``) leaves the whitened inputs unchanged up to rounding.
    """
    if not well_conditioned(G):
        return None
    h, GC = equilibrated_factor(G)
    hinv = 1.0 / h
    GCinv = np.linalg.inv(GC)
    L0w = GCinv @ (L0 * hinv[..., :, None])
    d = G.shape[-1]
    if np.any(np.einsum("nij,nij->n", L0w, L0w) > WHITE_SIGMA0_MAX * d):
        return None
    Aw = GCinv @ (hinv[..., :, None] * A * h[..., None, :]) @ GC
    Bw = GCinv @ (B * hinv[..., :, None])
    Qw = np.swapaxes(GC, -1, -2) @ (h[..., :, None] * Q * h[..., None, :]) @ GC
    return Aw, Bw, Qw, L0w


def _upper_doubled(M: np.ndarray) -> np.ndarray:
    """Upper triangle of each symmetric ``M`` with off-diagonal entries doubled."""
    Mu = 2.0 * np.triu(M)
    i = np.arange(M.shape[-1])
    Mu[..., i, i] = M[..., i, i]
    return Mu


@memo_by_value
def _kernel_inputs(A, B, Q, R, L0, G):
    """Return the task arrays of :func:`_kernel`, contiguous.

    ``(A~, -B~, Q~u, Ru, L0~, G, G', white, qdiag)`` in the noise coordinates where
    :func:`_whiten` allows, else the original ones; ``Q~u``, ``Ru`` are the doubled upper
    triangles; ``qdiag`` says whether ``Q~`` is diagonal (to 1e-13 of its largest entry). Cached
    by value: an estimator's calls on the same tasks prepare them once.
    """
    white = _whiten(A, B, Q, L0, G)
    if white is not None:
        A, B, Q, L0 = white
    off = Q - np.einsum("nij,ij->nij", Q, np.eye(Q.shape[-1]))
    qdiag = bool(np.all(np.abs(off) <= 1e-13 * np.abs(Q).max(axis=(1, 2), keepdims=True)))
    c = np.ascontiguousarray
    return (c(A), c(-B), _upper_doubled(Q), _upper_doubled(R), c(L0), c(G),
            c(np.swapaxes(G, -1, -2)), white is not None, qdiag)


class KernelReference:
    """The per-task parts of the divergence reference, for the kernel to finish.

    ``tr(Q V) + lambda_max(R) tr(K V K')`` (``V = Psi + Sigma0``, see
    :func:`~metalqr.rollouts.engine.divergence_reference`): ``qv = tr(Q V)`` and
    ``lam = lambda_max(R)`` per task, ``Vu`` the upper triangle of ``V`` with doubled
    off-diagonal entries; :func:`_kernel` forms ``tr(K V K')`` of each roll-out from the gain
    rows it transposes anyway (``k d (d + 1) / 2`` multiply-adds a roll-out, vectorised over
    roll-outs), which replaced a separate NumPy pass (0.5 of the 3.6 ms of a (20, 10)
    meta-gradient).
    """

    __slots__ = ("Vu", "qv", "lam")

    def __init__(self, Vu: np.ndarray, qv: np.ndarray, lam: np.ndarray) -> None:
        self.Vu, self.qv, self.lam = Vu, qv, lam


@memo_by_value
def _largest_eigenvalues(R):
    """``lambda_max`` of each ``R`` (cached by value: every call of an estimator repeats it)."""
    return np.linalg.eigvalsh(R)[:, -1]


def kernel_reference(Q, R, Psi, Sigma0, task_index) -> KernelReference | None:
    """Return the :class:`KernelReference` of the tasks, or ``None`` where it cannot be used.

    ``None`` (compute the reference with the NumPy formula instead) where a task used by
    ``task_index`` has ``tr(Q V) <= 0``: there the reference may fall back to
    ``||Q + K'RK||_F ||V||_F``, which the kernel does not compute. ``tr(Q V)`` and
    ``lambda_max(R)`` are computed as in the NumPy version.
    """
    V = Psi + Sigma0
    qv = np.einsum("nij,nij->n", Q, V)
    if not np.all(qv > 0.0):
        used = np.unique(np.asarray(task_index))
        if used.size and not np.all(qv[used] > 0.0):
            return None
    return KernelReference(_upper_doubled(V), qv, _largest_eigenvalues(R))


def simulate_costs_numba(A, B, Q, R, L0, G, task_index, K, noise_index, length: int,
                         key: int, ref=None, factor: float = math.inf,
                         lanes: int | None = None) -> np.ndarray:
    """Simulate roll-out costs with the compiled kernels.

    Numba implementation of :func:`~metalqr.rollouts._array_kernel.simulate_costs_array` (``L0
    L0' = Sigma0``, ``G G' = Psi``, see :func:`~metalqr.rollouts.engine.noise_factors`; ``ref``
    and ``factor``: the divergence test, ``inf`` for a diverging roll-out; ``ref`` may be a
    :class:`KernelReference`, then the kernel computes it). ``lanes`` rollouts
    of a task are simulated together (default: at most :data:`LANES`, as few more than the
    roll-outs of a task as :func:`~metalqr.rollouts._blocks.fitted_lanes` allows); the result
    does not depend on it (to rounding) and is a function of the inputs (same inputs, same
    bits).
    """
    N, k, d = K.shape
    out = np.empty(N)
    if N == 0:
        return out
    watch = bool(math.isfinite(factor))
    own = isinstance(ref, KernelReference)
    if own:
        kref = ref
        ref = np.zeros(N)              # unused by the kernel (own_ref), or no test at all
    else:
        kref = KernelReference(np.zeros((1, 1, 1)), np.zeros(1), np.zeros(1))
        ref = np.zeros(N) if ref is None else np.ascontiguousarray(ref, dtype=np.float64)
    diverged = np.zeros(N, dtype=np.bool_)
    task_index = np.asarray(task_index, dtype=np.int64)
    tasks = _kernel_inputs(A, B, Q, R, L0, G)
    width = fitted_lanes(task_index, LANES) if lanes is None else int(lanes)
    block_task, block_rows = task_blocks(task_index, width)
    threads = nb.get_num_threads()
    if N * length * d * (d + k) < SERIAL_WORK and threads > 1:
        nb.set_num_threads(1)           # this thread only (Numba's setting is per thread)
    try:
        _kernel(*tasks, block_task, block_rows, np.ascontiguousarray(K),
                noise_index.astype(np.int64), int(length), np.uint64(key),
                block_stride(length, A.shape[-1]), ref, float(factor) if watch else 0.0,
                min(int(length), A.shape[-1] + 1), watch, np.ascontiguousarray(kref.Vu),
                np.ascontiguousarray(kref.qv, dtype=np.float64),
                np.ascontiguousarray(kref.lam, dtype=np.float64), own and watch, out, diverged)
    finally:
        nb.set_num_threads(threads)
    out[diverged] = math.inf
    return out
