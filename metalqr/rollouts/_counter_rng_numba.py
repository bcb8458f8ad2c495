"""Numba twin of :mod:`metalqr.rollouts.counter_rng`: the same counter-based normals ``z_c``, compiled.

Every bit-layout constant (SplitMix64 increment, multipliers and shifts, layer mask, sign and
integer bits, uniform shift, ziggurat tables) is read from :mod:`~metalqr.rollouts.counter_rng`, so
the two cannot drift apart; the tests check that they give the same bits.

The fast path is branch-free (:func:`fast_normal` marks the ~0.4% of draws beyond the
ziggurat's one-multiplication test with :data:`PENDING`, and :func:`repair` fills them in a
second pass): calling the slow path from the hot loop made it three times slower.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.core.extending import intrinsic

from . import _pool

from .counter_rng import (GAMMA, INT_SHIFT, INV_2_53, LAYER_MASK, LAYER_SIGN_MASK, M1, M2,
                          MIX_SHIFTS, SIGN_SHIFT, UNIFORM_SHIFT, ZIG_F, ZIG_INV_R, ZIG_KI, ZIG_R,
                          ZIG_W, ZIG_W_SIGNED)

__all__ = ["normals_numba", "sphere_numba", "fast_normal", "repair", "lane_normals",
           "lane_normals_into", "PENDING"]

_S30, _S27, _S31 = MIX_SHIFTS
_S10, _S12, _S11 = SIGN_SHIFT, INT_SHIFT, UNIFORM_SHIFT
_ONE, _LAYER = np.uint64(1), LAYER_MASK
_JIT = dict(fastmath=True, error_model="numpy", cache=True)
#: Marks a draw left to the ziggurat's slow path (finite: ``fastmath`` folds NaN tests away).
PENDING = 1e300
_PENDING = PENDING
_SIGNED_W = ZIG_W_SIGNED             # (-1)^s W[i] at i + 1024 s (see counter_rng)
_LAYER_SIGN = LAYER_SIGN_MASK


@nb.njit(inline="always", error_model="numpy", cache=True)
def _mix(x):
    """SplitMix64 output function."""
    x = (x ^ (x >> _S30)) * M1
    x = (x ^ (x >> _S27)) * M2
    return x ^ (x >> _S31)


#: Words hashed per vector by :func:`_mix_lanes` (eight 64-bit lanes of an AVX-512 register).
_HW = 8


@intrinsic
def _mix_lanes(typingctx, x0, step, H, r):
    """``H[r:r+8] = mix(x0[r:r+8] + step)``: :func:`_mix` on eight words, emitted directly.

    LLVM vectorised the hash loop of :func:`lane_normals_into` only behind a run-time check
    that ``H`` and ``x0`` do not overlap, whose set-up cost as much as a short row; integer
    operations (wrapping add and multiply, shifts, xor), so the words are the same.
    """
    if not (isinstance(x0, types.Array) and isinstance(H, types.Array)):
        return None
    sig = types.void(x0, step, H, r)

    def codegen(context, builder, signature, args):
        x_v, s_v, h_v, r_v = args
        i64 = ir.IntType(64)
        vty = ir.VectorType(i64, _HW)

        def ptr(arrty, arrval):
            ary = context.make_array(arrty)(context, builder, arrval)
            return builder.bitcast(builder.gep(ary.data, [r_v]), vty.as_pointer())

        def splat(c):
            return ir.Constant(vty, [c] * _HW)

        sv = builder.insert_element(ir.Constant(vty, ir.Undefined), s_v,
                                    ir.Constant(ir.IntType(32), 0))
        sv = builder.shuffle_vector(sv, ir.Constant(vty, ir.Undefined),
                                    ir.Constant(ir.VectorType(ir.IntType(32), _HW), [0] * _HW))
        x = builder.add(builder.load(ptr(x0, x_v), align=8), sv)
        x = builder.mul(builder.xor(x, builder.lshr(x, splat(int(_S30)))), splat(int(M1)))
        x = builder.mul(builder.xor(x, builder.lshr(x, splat(int(_S27)))), splat(int(M2)))
        x = builder.xor(x, builder.lshr(x, splat(int(_S31))))
        builder.store(x, ptr(H, h_v), align=8)
        return context.get_dummy_value()

    return sig, codegen


@nb.njit(error_model="numpy", cache=True)
def _uniform(w):
    return (np.float64(np.int64(w >> _S11)) + 0.5) * INV_2_53


@nb.njit(error_model="numpy", cache=True)
def _slow_normal(h):
    """Run the ziggurat beyond its one-multiplication test.

    The ziggurat beyond its one-multiplication test, for first word ``h``: the wedge test,
    Marsaglia's tail and fresh tries, with further words from the SplitMix64 stream seeded at
    ``h``. Same algorithm as ``_slow_path`` in :mod:`metalqr.rollouts.counter_rng`; no
    ``fastmath``, so that the arithmetic is NumPy's.
    """
    s = h
    while True:
        i = np.int64(h & _LAYER)
        a = h >> _S12
        x = np.float64(np.int64(a)) * ZIG_W[i]
        accept = a < ZIG_KI[i]
        if not accept and i > 0:
            s += GAMMA
            y = ZIG_F[i] + (ZIG_F[i - 1] - ZIG_F[i]) * _uniform(_mix(s))
            accept = y < math.exp(-0.5 * x * x)
        elif not accept:
            while True:
                s += GAMMA
                xx = -math.log(_uniform(_mix(s))) * ZIG_INV_R
                s += GAMMA
                yy = -math.log(_uniform(_mix(s)))
                if yy + yy > xx * xx:
                    break
            x = ZIG_R + xx
            accept = True
        if accept:
            return -x if (h >> _S10) & _ONE else x
        s += GAMMA
        h = _mix(s)


@nb.njit(inline="always", error_model="numpy", cache=True)
def fast_normal(x):
    """Return the normal of a state when the ziggurat's fast test accepts.

    Normal number of the SplitMix64 state ``x = key + (c + 1) GAMMA`` when the ziggurat's
    one-multiplication test accepts (about 99.6% of draws; then ``|z| < R``), else
    :data:`_PENDING` (see :func:`repair`). Branch-free: calling the slow path from this loop
    made it three times slower.
    """
    h = _mix(x)
    i = np.int64(h & _LAYER)
    a = h >> _S12
    z = np.float64(np.int64(a)) * ZIG_W[i]
    z = -z if (h >> _S10) & _ONE else z
    return z if a < ZIG_KI[i] else _PENDING


@nb.njit(error_model="numpy", cache=True)
def repair(x):
    """Return the normal number of state ``x`` that :func:`fast_normal` left :data:`_PENDING`."""
    return _slow_normal(_mix(x))


@nb.njit(inline="always", **_JIT)
def _ziggurat_lookups(H, out, n):
    """``out[j]`` = the normal of first word ``H[j]``, ``j < n`` (the ziggurat's look-ups).

    Scalar loads (a vectorised look-up compiles to gathers, slower on AMD Zen 5), four words a
    pass: the four one-multiplication values are stored, then one test for the rare draw
    beyond the fast test, whose value the slow path overwrites (0.73 -> 0.66 ns a number at
    104 lanes against one word a pass with a branch each; the same bits).
    """
    j = 0
    while j + 4 <= n:                   # while loops: LLVM does not vectorise them (gathers)
        h0, h1, h2, h3 = H[j], H[j + 1], H[j + 2], H[j + 3]
        a0, a1, a2, a3 = h0 >> _S12, h1 >> _S12, h2 >> _S12, h3 >> _S12
        out[j] = np.float64(np.int64(a0)) * _SIGNED_W[np.int64(h0 & _LAYER_SIGN)]
        out[j + 1] = np.float64(np.int64(a1)) * _SIGNED_W[np.int64(h1 & _LAYER_SIGN)]
        out[j + 2] = np.float64(np.int64(a2)) * _SIGNED_W[np.int64(h2 & _LAYER_SIGN)]
        out[j + 3] = np.float64(np.int64(a3)) * _SIGNED_W[np.int64(h3 & _LAYER_SIGN)]
        if ((a0 >= ZIG_KI[np.int64(h0 & _LAYER)]) | (a1 >= ZIG_KI[np.int64(h1 & _LAYER)])
                | (a2 >= ZIG_KI[np.int64(h2 & _LAYER)]) | (a3 >= ZIG_KI[np.int64(h3 & _LAYER)])):
            for q in range(4):
                h = H[j + q]
                if (h >> _S12) >= ZIG_KI[np.int64(h & _LAYER)]:
                    out[j + q] = _slow_normal(h)
        j += 4
    while j < n:
        h = H[j]
        a = h >> _S12
        if a < ZIG_KI[np.int64(h & _LAYER)]:
            out[j] = np.float64(np.int64(a)) * _SIGNED_W[np.int64(h & _LAYER_SIGN)]
        else:
            out[j] = _slow_normal(h)
        j += 1


@nb.njit(**_JIT)
def lane_normals_into(x0, off, Z, H):
    """Fill one step's noise for a block of roll-outs.

    ``Z[i, r] = z_{c_r + off + i}`` for the SplitMix64 states ``x0[r] = key + (c_r + 1) GAMMA``
    of a block of rollouts (one step's noise), row by row, with ``H`` (uint64, ``L``) as work
    space. Two passes a row: the hash of every lane (:func:`_mix_lanes`, eight at a time:
    AVX-512 multiplies 64-bit words natively), then the ziggurat's table look-ups with scalar loads (the vectorised look-up
    compiles to gathers, slower than scalar loads on AMD Zen 5: 1.0 -> 1.2 G normals/s a core),
    :func:`_ziggurat_lookups`. The 0.4% of draws beyond the fast test take the slow path in
    line (predicted branch; it no longer blocks vectorisation, the hash pass is separate).
    """
    d, L = Z.shape
    Lv = L - L % _HW
    for i in range(d):
        Zi = Z[i]
        step = np.uint64(off + i) * GAMMA
        for r in range(0, Lv, _HW):
            _mix_lanes(x0, step, H, r)
        for r in range(Lv, L):
            H[r] = _mix(x0[r] + step)
        _ziggurat_lookups(H, Zi, L)


@nb.njit(**_JIT)
def lane_normals(x0, off, Z):
    """:func:`lane_normals_into` with its own work space."""
    lane_normals_into(x0, off, Z, np.empty(Z.shape[1], dtype=np.uint64))


@nb.njit(**_JIT)
def _consecutive_normals(key, c0, out, H):
    """``out[j] = z_{c0 + j}``, with ``H`` (uint64, at least ``len(out)``) as work space.

    The layout of :func:`lane_normals_into`: the hash of every counter in a vectorised pass,
    then the ziggurat's look-ups one number at a time with the slow path in line (the same
    bits as :func:`fast_normal` with a repair pass, which took 1.07 ns a number).
    """
    n = out.shape[0]
    x0 = key + np.uint64(c0 + 1) * GAMMA
    for j in range(n):
        H[j] = _mix(x0 + np.uint64(j) * GAMMA)
    _ziggurat_lookups(H, out, n)


@nb.njit(error_model="numpy", cache=True)
def _sum_squares(x):
    """Return ``sum_j x_j^2`` in a fixed order.

    ``sum_j x_j^2`` in a fixed order (eight interleaved partial sums, no ``fastmath``): the same
    bits whether the caller was compiled serial or parallel.
    """
    n = x.shape[0]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    j = 0
    while j + 8 <= n:
        s0 += x[j] * x[j]
        s1 += x[j + 1] * x[j + 1]
        s2 += x[j + 2] * x[j + 2]
        s3 += x[j + 3] * x[j + 3]
        s4 += x[j + 4] * x[j + 4]
        s5 += x[j + 5] * x[j + 5]
        s6 += x[j + 6] * x[j + 6]
        s7 += x[j + 7] * x[j + 7]
        j += 8
    while j < n:
        s0 += x[j] * x[j]
        j += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@nb.njit(error_model="numpy", cache=True)
def _to_sphere(x, radius):
    """Scale ``x`` to norm ``radius`` with the same bits serial or parallel.

    ``x <- x radius / ||x||`` without ``fastmath`` (under which the serial and the parallel
    compilation rounded differently): the same bits in both.
    """
    scale = radius / math.sqrt(_sum_squares(x))
    for j in range(x.shape[0]):
        x[j] *= scale


@nb.njit(parallel=True, **_JIT)
def _fill_normals_parallel(key, out):
    """out[c] = z_c for c = 0 .. len(out)-1, in parallel blocks of 8192."""
    n = out.shape[0]
    for b in nb.prange((n + 8191) // 8192):
        H = np.empty(8192, dtype=np.uint64)
        _consecutive_normals(key, b * 8192, out[b * 8192:min(b * 8192 + 8192, n)], H)


@nb.njit(parallel=True, **_JIT)
def _fill_sphere_parallel(key, radius, out):
    """Fill each row of ``out`` with normals scaled to norm ``radius``.

    Row ``m`` of ``out`` (``n`` columns): the normals ``z_{m n} .. z_{m n + n - 1}`` scaled to
    Euclidean norm ``radius``.
    """
    rows, n = out.shape
    for m in nb.prange(rows):
        row = out[m]
        _consecutive_normals(key, m * n, row, np.empty(n, dtype=np.uint64))
        _to_sphere(row, radius)


@nb.njit(**_JIT)
def _fill_normals_serial(key, out):
    """out[c] = z_c for c = 0 .. len(out)-1, in blocks of 8192 (serial twin)."""
    n = out.shape[0]
    H = np.empty(8192, dtype=np.uint64)
    for b in range((n + 8191) // 8192):
        _consecutive_normals(key, b * 8192, out[b * 8192:min(b * 8192 + 8192, n)], H)


@nb.njit(**_JIT)
def _fill_sphere_serial(key, radius, out):
    """Fill each row of ``out`` with normals scaled to norm ``radius`` (serial twin).

    Row ``m`` of ``out`` (``n`` columns): the normals ``z_{m n} .. z_{m n + n - 1}`` scaled to
    Euclidean norm ``radius`` (serial twin).
    """
    rows, n = out.shape
    H = np.empty(n, dtype=np.uint64)
    for m in range(rows):
        row = out[m]
        _consecutive_normals(key, m * n, row, H)
        _to_sphere(row, radius)


#: Below this many normals the fills run on the calling thread: a parallel region costs more
#: than it saves for small requests, and on a loaded machine each one waits for its threads
#: to be scheduled (the 20,000 and 220,000 perturbation entries of a (20, 10) meta-gradient).
PARALLEL_MIN = 1 << 20


def sphere_numba(key: int, rows: int, n: int, radius: float) -> np.ndarray:
    """Return ``(rows, n)`` points uniform on a sphere (compiled).

    ``(rows, n)`` points uniform on the sphere of radius ``radius`` in ``R^n``: row ``m`` is the
    normals ``z_{m n} ..`` of the counter-based generator, normalised (compiled; the array may
    be a reused buffer of :mod:`~metalqr.rollouts._pool`).
    """
    out = _pool.empty((rows, n))
    fill = _fill_sphere_parallel if rows * n >= PARALLEL_MIN else _fill_sphere_serial
    fill(np.uint64(key), float(radius), out)
    return out


def normals_numba(key: int, n: int) -> np.ndarray:
    """``z_0 .. z_{n-1}`` of the counter-based generator (compiled, parallel)."""
    out = np.empty(n)
    fill = _fill_normals_parallel if n >= PARALLEL_MIN else _fill_normals_serial
    fill(np.uint64(key), out)
    return out


