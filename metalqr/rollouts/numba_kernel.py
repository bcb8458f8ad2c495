"""Compiled rollout kernel (Numba, parallel over rollouts). Same maths and the same
counter-based noise as :mod:`metalqr.rollouts.array_kernel`.

Each rollout first generates its whole noise block (vectorised AS241), then runs
``x <- A_K x + L_Psi z`` (in the noise coordinates ``L_Psi^{-1} x`` when ``Psi`` is well
conditioned, which drops the per-step product with ``L_Psi``) and accumulates
``x'(Q + K'RK)x`` from its upper triangle with contiguous dot products (``fastmath`` lets
LLVM vectorise the reductions; results match the NumPy kernel to rounding).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .counter_rng import AS241, GAMMA, M1, M2, block_stride

__all__ = ["simulate_costs_numba"]

_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_ONE = np.uint64(1)
_A, _B, _C, _D, _E, _F = (AS241[x] for x in "abcdef")


@nb.njit(inline="always", cache=True)
def _uniform(key, i):
    x = key + (i + _ONE) * GAMMA
    x = (x ^ (x >> _S30)) * M1
    x = (x ^ (x >> _S27)) * M2
    x = x ^ (x >> _S31)
    return (np.float64(x >> _S11) + 0.5) * (1.0 / 9007199254740992.0)


@nb.njit(inline="always", cache=True)
def _ndtri(p):
    q = p - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        num = ((((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * r
               + _A[6]) * r + _A[7]
        den = ((((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + _B[5]) * r
               + _B[6]) * r + _B[7]
        return q * num / den
    r = math.sqrt(-math.log(min(p, 1.0 - p)))
    if r <= 5.0:
        r -= 1.6
        num = ((((((_C[0] * r + _C[1]) * r + _C[2]) * r + _C[3]) * r + _C[4]) * r + _C[5]) * r
               + _C[6]) * r + _C[7]
        den = ((((((_D[0] * r + _D[1]) * r + _D[2]) * r + _D[3]) * r + _D[4]) * r + _D[5]) * r
               + _D[6]) * r + _D[7]
    else:
        r -= 5.0
        num = ((((((_E[0] * r + _E[1]) * r + _E[2]) * r + _E[3]) * r + _E[4]) * r + _E[5]) * r
               + _E[6]) * r + _E[7]
        den = ((((((_F[0] * r + _F[1]) * r + _F[2]) * r + _F[3]) * r + _F[4]) * r + _F[5]) * r
               + _F[6]) * r + _F[7]
    v = num / den
    return -v if q < 0 else v


@nb.njit(cache=True)
def ndtri_numba(p):
    """Vector version of the compiled AS241 (for tests)."""
    out = np.empty_like(p)
    for i in range(p.shape[0]):
        out[i] = _ndtri(p[i])
    return out


@nb.njit(inline="always", fastmath=True, cache=True)
def _fill_normals(key, base, buf, m):
    """``buf[m:2m] = z_{base}, ..., z_{base+m-1}`` (``buf[:m]`` holds the uniforms).

    The central AS241 branch (85% of draws) runs branch-free so that it vectorises; the
    tails are fixed up afterwards with the scalar formula."""
    for j in range(m):
        buf[j] = _uniform(key, base + np.uint64(j))
    for j in range(m):
        q = buf[j] - 0.5
        r = 0.180625 - q * q
        num = ((((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * r
               + _A[6]) * r + _A[7]
        den = ((((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + _B[5]) * r
               + _B[6]) * r + _B[7]
        buf[m + j] = q * num / den
    for j in range(m):
        if abs(buf[j] - 0.5) > 0.425:
            buf[m + j] = _ndtri(buf[j])


@nb.njit(parallel=True, fastmath=True, cache=True)
def _kernel(A, B, Q, R, L0, Lpsi, white, task_index, K, noise_index, length, key, S, out):
    """Roll-outs of ``x <- A_K x + L_Psi z``. With ``white`` the inputs are in the noise
    coordinates ``y = L_Psi^{-1} x`` (``A~ = L^{-1} A L``, ``B~ = L^{-1} B``, ``Q~ = L'QL``,
    ``L0~ = L^{-1} L0``) and the gain becomes ``K~ = K L``: the step is ``y <- A~_K y + z`` and the
    stage cost ``y'(Q~ + K~'R K~)y`` equals ``x'(Q + K'RK)x``, saving the per-step product with
    ``L_Psi``. The quadratic form uses its upper triangle."""
    N = K.shape[0]
    k, d = K.shape[1], K.shape[2]
    key = np.uint64(key)
    for n in nb.prange(N):
        ti = task_index[n]
        Kn = np.empty((k, d))
        if white:                       # K~ = K L_Psi (L_Psi lower triangular)
            for a in range(k):
                for j in range(d):
                    s = 0.0
                    for i in range(j, d):
                        s += K[n, a, i] * Lpsi[ti, i, j]
                    Kn[a, j] = s
        else:
            for a in range(k):
                for j in range(d):
                    Kn[a, j] = K[n, a, j]
        AK = np.empty((d, d))
        for i in range(d):
            for j in range(d):
                s = A[ti, i, j]
                for a in range(k):
                    s -= B[ti, i, a] * Kn[a, j]
                AK[i, j] = s
        RK = np.zeros((k, d))
        for a in range(k):
            for b in range(k):
                rab = R[ti, a, b]
                for j in range(d):
                    RK[a, j] += rab * Kn[b, j]
        Mc = np.empty((d, d))           # diagonal, and twice the strict upper triangle
        for i in range(d):
            for j in range(i, d):
                m = Q[ti, i, j]
                for a in range(k):
                    m += Kn[a, i] * RK[a, j]
                Mc[i, j] = m if j == i else 2.0 * m
        # All noise of this rollout at once: z[t * d + j], t = 0 (x_0) .. length.
        buf = np.empty(2 * S)
        _fill_normals(key, np.uint64(noise_index[n]) * np.uint64(S), buf, S)
        z = buf[S:]
        x = np.empty(d)
        xn = np.empty(d)
        for i in range(d):              # L0 is lower triangular unless white
            s = 0.0
            for j in range(d if white else i + 1):
                s += L0[ti, i, j] * z[j]
            x[i] = s
        total = 0.0
        for t in range(1, length + 1):
            off = t * d
            for i in range(d):          # xn = A_K x + L_Psi z_t  (or + z_t when white)
                s = 0.0
                for j in range(d):
                    s += AK[i, j] * x[j]
                if white:
                    s += z[off + i]
                else:
                    for j in range(i + 1):
                        s += Lpsi[ti, i, j] * z[off + j]
                xn[i] = s
            q = 0.0
            for i in range(d):          # xn' M xn from the upper triangle
                s = 0.0
                for j in range(i, d):
                    s += Mc[i, j] * xn[j]
                q += xn[i] * s
            total += q
            for i in range(d):
                x[i] = xn[i]
        out[n] = total / length


@nb.njit(parallel=True, fastmath=True, cache=True)
def _fill_normals_parallel(key, out):
    """out[c] = z_c for c = 0 .. len(out)-1, in parallel blocks of 1024."""
    n = out.shape[0]
    nblocks = (n + 1023) // 1024
    key = np.uint64(key)
    for b in nb.prange(nblocks):
        s = b * 1024
        m = min(1024, n - s)
        buf = np.empty(2 * m)
        _fill_normals(key, np.uint64(s), buf, m)
        out[s:s + m] = buf[m:]


def normals_numba(key: int, n: int) -> np.ndarray:
    """``z_0 .. z_{n-1}`` of the counter-based generator (compiled, parallel)."""
    out = np.empty(n)
    _fill_normals_parallel(np.uint64(key), out)
    return out


def _whiten(A, B, Q, L0, Lpsi):
    """Inputs in the noise coordinates ``y = L_Psi^{-1} x`` (see :func:`_kernel`), or ``None``
    when some ``L_Psi`` is too ill-conditioned (e.g. singular ``Psi``) for that to be accurate."""
    diag = np.abs(np.diagonal(Lpsi, axis1=-2, axis2=-1))
    if np.any(diag.min(axis=-1) <= 1e-6 * diag.max(axis=-1)):
        return None
    Linv = np.linalg.inv(Lpsi)
    LT = np.swapaxes(Lpsi, -1, -2)
    return Linv @ A @ Lpsi, Linv @ B, LT @ Q @ Lpsi, Linv @ L0


def simulate_costs_numba(A, B, Q, R, L0, Lpsi, task_index, K, noise_index, length: int,
                         key: int) -> np.ndarray:
    """Numba implementation of :func:`~metalqr.rollouts.array_kernel.simulate_costs_array`
    (``L0``, ``Lpsi`` must be lower triangular)."""
    out = np.empty(K.shape[0])
    white = _whiten(A, B, Q, L0, Lpsi)
    if white is not None:
        A, B, Q, L0 = white
    c = np.ascontiguousarray
    _kernel(c(A), c(B), c(Q), R, c(L0), c(Lpsi), white is not None, task_index.astype(np.int64),
            c(K), noise_index.astype(np.int64), int(length), np.uint64(key),
            block_stride(length, A.shape[-1]), out)
    return out
