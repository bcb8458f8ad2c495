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

Numba specifics that matter for speed (measured on a 2-core AMD EPYC, see
``docs/meta_learning.md``): ``error_model="numpy"`` (the default ``"python"`` error model
checks every float division for zero, which blocks vectorisation); one-dimensional row views
with ``range`` loops (two-dimensional indexing is compiled with negative-index wrap-around and
is not vectorised); four input rows and two output rows per pass, so that each output row is
loaded and stored once per four multiply-adds; plain ``njit`` helpers rather than
``inline="always"`` (same speed, a third of the compile time); a scalar loop for the 64-bit
hash of the noise (LLVM's AVX2 emulation of 64-bit multiplies is twice as slow as scalar
``imul`` on this machine), row by row, with the ziggurat's rare slow draws in a second pass.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from ._blocks import task_blocks
from .counter_rng import GAMMA, block_stride
from ._counter_rng_numba import lane_normals as _lane_normals
from ._counter_rng_numba import normals_numba, sphere_numba  # noqa: F401 (re-exported)
from ._factors import equilibrated_factor, well_conditioned

__all__ = ["simulate_costs_numba", "normals_numba", "sphere_numba", "perturbed_numba", "LANES"]

#: Rollouts simulated together as one structure-of-arrays block (128 x 8 bytes per state row;
#: the per-rollout gains of a block, 8 k d LANES bytes, stay in a 512 KiB L2 cache at
#: (d, k) = (20, 10)).
LANES = 128

_ONE = np.uint64(1)
_JIT = dict(fastmath=True, error_model="numpy", cache=True)


@nb.njit(**_JIT)
def _add_rows(c, X, j0, j1, out):
    """``out += sum_{j0 <= j < j1} c[j] X[j]`` (task-wide coefficients, rows over rollouts)."""
    j = j0
    while j + 4 <= j1:
        c0, c1, c2, c3 = c[j], c[j + 1], c[j + 2], c[j + 3]
        x0, x1, x2, x3 = X[j], X[j + 1], X[j + 2], X[j + 3]
        for r in range(out.shape[0]):
            out[r] += c0 * x0[r] + c1 * x1[r] + c2 * x2[r] + c3 * x3[r]
        j += 4
    while j < j1:
        cj, xj = c[j], X[j]
        for r in range(out.shape[0]):
            out[r] += cj * xj[r]
        j += 1


@nb.njit(**_JIT)
def _add_rows_lanewise(C, X, out):
    """``out += sum_j C[j] * X[j]`` (per-rollout coefficients ``C[j, r]``)."""
    n = X.shape[0]
    j = 0
    while j + 4 <= n:
        c0, c1, c2, c3 = C[j], C[j + 1], C[j + 2], C[j + 3]
        x0, x1, x2, x3 = X[j], X[j + 1], X[j + 2], X[j + 3]
        for r in range(out.shape[0]):
            out[r] += c0[r] * x0[r] + c1[r] * x1[r] + c2[r] * x2[r] + c3[r] * x3[r]
        j += 4
    while j < n:
        cj, xj = C[j], X[j]
        for r in range(out.shape[0]):
            out[r] += cj[r] * xj[r]
        j += 1


@nb.njit(**_JIT)
def _add_rows_lanewise_pair(C, E, X, o, p):
    """Accumulate two per-roll-out linear combinations of the rows of ``X``.

    ``o += sum_j C[j] * X[j]`` and ``p += sum_j E[j] * X[j]`` (per-rollout coefficients), two
    output rows per pass so that each row of ``X`` is loaded once for both.
    """
    n = X.shape[0]
    j = 0
    while j + 4 <= n:
        c0, c1, c2, c3 = C[j], C[j + 1], C[j + 2], C[j + 3]
        e0, e1, e2, e3 = E[j], E[j + 1], E[j + 2], E[j + 3]
        x0, x1, x2, x3 = X[j], X[j + 1], X[j + 2], X[j + 3]
        for r in range(o.shape[0]):
            v0, v1, v2, v3 = x0[r], x1[r], x2[r], x3[r]
            o[r] += c0[r] * v0 + c1[r] * v1 + c2[r] * v2 + c3[r] * v3
            p[r] += e0[r] * v0 + e1[r] * v1 + e2[r] * v2 + e3[r] * v3
        j += 4
    while j < n:
        cj, ej, xj = C[j], E[j], X[j]
        for r in range(o.shape[0]):
            o[r] += cj[r] * xj[r]
            p[r] += ej[r] * xj[r]
        j += 1


@nb.njit(**_JIT)
def _add_rows_pair(c, e, X, j0, j1, o, p):
    """Accumulate two linear combinations of the rows of ``X``.

    ``o += sum_j c[j] X[j]`` and ``p += sum_j e[j] X[j]`` over ``j0 <= j < j1``: two output rows
    per pass, so each row of ``X`` is loaded once for both.
    """
    j = j0
    while j + 4 <= j1:
        c0, c1, c2, c3 = c[j], c[j + 1], c[j + 2], c[j + 3]
        e0, e1, e2, e3 = e[j], e[j + 1], e[j + 2], e[j + 3]
        x0, x1, x2, x3 = X[j], X[j + 1], X[j + 2], X[j + 3]
        for r in range(o.shape[0]):
            v0, v1, v2, v3 = x0[r], x1[r], x2[r], x3[r]
            o[r] += c0 * v0 + c1 * v1 + c2 * v2 + c3 * v3
            p[r] += e0 * v0 + e1 * v1 + e2 * v2 + e3 * v3
        j += 4
    while j < j1:
        cj, ej, xj = c[j], e[j], X[j]
        for r in range(o.shape[0]):
            v = xj[r]
            o[r] += cj * v
            p[r] += ej * v
        j += 1


@nb.njit(**_JIT)
def _add_matvec(M, X, OUT):
    """``OUT[i] += sum_j M[i, j] X[j]`` for every row ``i`` (task-wide ``M``)."""
    n, m = OUT.shape[0], X.shape[0]
    i = 0
    while i + 2 <= n:
        _add_rows_pair(M[i], M[i + 1], X, 0, m, OUT[i], OUT[i + 1])
        i += 2
    if i < n:
        _add_rows(M[i], X, 0, m, OUT[i])


@nb.njit(**_JIT)
def _add_quadratic(Mu, X, s, s2, total):
    """Add ``x'Mx`` per roll-out to ``total``.

    ``total += x'Mx`` per rollout, from ``Mu``: the upper triangle of ``M`` with doubled
    off-diagonal entries (rows taken in pairs: ``s, s2`` are work rows).
    """
    n = X.shape[0]
    i = 0
    while i < n:
        xi, mii = X[i], Mu[i, i]
        for r in range(s.shape[0]):
            s[r] = mii * xi[r]
        if i + 1 < n:
            s2[:] = 0.0
            _add_rows_pair(Mu[i], Mu[i + 1], X, i + 1, n, s, s2)
            xj = X[i + 1]
            for r in range(s.shape[0]):
                total[r] += xi[r] * s[r] + xj[r] * s2[r]
        else:
            for r in range(s.shape[0]):
                total[r] += xi[r] * s[r]
        i += 2


@nb.njit(**_JIT)
def _add_squares(M, X, total):
    """``total += sum_i M[i, i] X[i]^2`` (``x'Mx`` for diagonal ``M``)."""
    for i in range(X.shape[0]):
        xi, mii = X[i], M[i, i]
        for r in range(total.shape[0]):
            total[r] += mii * xi[r] * xi[r]


@nb.njit(parallel=True, **_JIT)
def _kernel(A, negB, Qu, Ru, L0, G, GT, white, qdiag, block_task, block_rows, K, noise_index,
            length, key, S, ref, factor, m, watch, out, diverged):
    """Run the roll-outs of one block.

    Roll-outs of ``y <- A~ y - B~ u + z``, ``u = K~ y`` (``white``; ``K~ = K G``) or of ``x <- A
    x - B u + G z``, ``u = K x``. Block ``b`` holds the rollouts ``block_rows[b]`` (``-1``:
    padding) of task ``block_task[b]``. With ``qdiag`` the state cost matrix is diagonal and
    only the diagonal of ``Qu`` is used. With ``watch``, a roll-out whose stage cost at a step
    ``t > m`` exceeds ``factor (ref + max(c_1 .. c_m))`` is flagged in ``diverged`` and its
    state reset to zero (so that it cannot overflow).
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
        for a in range(k):              # K~ = K G, i.e. K~[a] = G' K[a] on the rows (white)
            Kta = Kt[a] if not white else Ka
            for r in range(L):
                if rows[r] >= 0:
                    for j in range(d):
                        Kta[j, r] = K[rows[r], a, j]
            if white:
                _add_matvec(GT[ti], Ka, Kt[a])
        Y = np.zeros((d, L))
        Yn = np.empty((d, L))
        U = np.empty((k, L))
        Z = np.empty((d, L))
        s = np.empty(L)
        s2 = np.empty(L)
        total = np.zeros(L)
        cst = np.zeros(L)
        early = np.zeros(L)
        thr = np.zeros(L)
        flag = np.zeros(L, dtype=np.int64)
        for r in range(L):
            if rows[r] >= 0:
                thr[r] = ref[rows[r]]
        _lane_normals(x0, 0, Z)
        _add_matvec(L0[ti], Z, Y)
        for t in range(length + 1):
            U[:, :] = 0.0
            a = 0
            while a + 2 <= k:
                _add_rows_lanewise_pair(Kt[a], Kt[a + 1], Y, U[a], U[a + 1])
                a += 2
            if a < k:
                _add_rows_lanewise(Kt[a], Y, U[a])
            if t > 0:                   # stage cost of x_t, t = 1 .. l
                cst[:] = 0.0
                if qdiag:
                    _add_squares(Qu[ti], Y, cst)
                else:
                    _add_quadratic(Qu[ti], Y, s, s2, cst)
                _add_quadratic(Ru[ti], U, s, s2, cst)
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
            _lane_normals(x0, (t + 1) * d, Z)
            if white:
                Yn[:, :] = Z
            else:
                Yn[:, :] = 0.0
                _add_matvec(G[ti], Z, Yn)
            _add_matvec(A[ti], Y, Yn)
            _add_matvec(negB[ti], U, Yn)
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


def perturbed_numba(C: np.ndarray, V: np.ndarray, two_point: bool) -> np.ndarray:
    """Compiled, parallel :func:`~metalqr.rollouts.backends.perturbed_gains`."""
    out = np.empty(V.shape[:2] + (2 if two_point else 1, V.shape[2]))
    _fill_perturbed(np.ascontiguousarray(C), np.ascontiguousarray(V), out)
    return out


#: Largest ``tr(G^-1 Sigma0 G^-T) / d`` for which the noise coordinates are used: an initial
#: state far larger than the noise (in the noise's own metric) would make the rounding
#: errors of ``y`` large relative to the directions of ``x`` that the noise excites.
WHITE_SIGMA0_MAX = 1e6


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


def simulate_costs_numba(A, B, Q, R, L0, G, task_index, K, noise_index, length: int,
                         key: int, ref=None, factor: float = math.inf,
                         lanes: int | None = None) -> np.ndarray:
    """Simulate roll-out costs with the compiled kernels.

    Numba implementation of :func:`~metalqr.rollouts._array_kernel.simulate_costs_array` (``L0
    L0' = Sigma0``, ``G G' = Psi``, see :func:`~metalqr.rollouts.engine.noise_factors`; ``ref``
    and ``factor``: the divergence test, ``inf`` for a diverging roll-out). ``lanes`` rollouts
    of a task (default :data:`LANES`) are simulated together; the result does not depend on it
    (to rounding).
    """
    N = K.shape[0]
    out = np.empty(N)
    if N == 0:
        return out
    ref = np.zeros(N) if ref is None else np.ascontiguousarray(ref, dtype=np.float64)
    watch = bool(math.isfinite(factor))
    diverged = np.zeros(N, dtype=np.bool_)
    task_index = np.asarray(task_index, dtype=np.int64)
    white = _whiten(A, B, Q, L0, G)
    if white is not None:
        A, B, Q, L0 = white
    off = Q - np.einsum("nij,ij->nij", Q, np.eye(Q.shape[-1]))
    qdiag = bool(np.all(np.abs(off) <= 1e-13 * np.abs(Q).max(axis=(1, 2), keepdims=True)))
    block_task, block_rows = task_blocks(task_index, int(LANES if lanes is None else lanes))
    c = np.ascontiguousarray
    _kernel(c(A), c(-B), _upper_doubled(Q), _upper_doubled(R), c(L0), c(G),
            c(np.swapaxes(G, -1, -2)), white is not None, qdiag, block_task, block_rows, c(K),
            noise_index.astype(np.int64), int(length), np.uint64(key),
            block_stride(length, A.shape[-1]), ref, float(factor) if watch else 0.0,
            min(int(length), A.shape[-1] + 1), watch, out, diverged)
    out[diverged] = math.inf
    return out
