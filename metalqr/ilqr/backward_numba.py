"""Compiled dense backward pass for unconstrained problems (same maths as
:func:`metalqr.ilqr.backward.backward_pass` with ``value_model="full"`` and no bounds)."""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["backward_dense"]


@nb.njit(cache=True)
def _chol_solve(H, rhs):
    """Solve H X = rhs by Cholesky; returns (X, ok) with ok False if H is not PD."""
    m = H.shape[0]
    L = np.zeros((m, m))
    for i in range(m):
        for j in range(i + 1):
            s = H[i, j]
            for p in range(j):
                s -= L[i, p] * L[j, p]
            if i == j:
                if not s > 0.0:
                    return rhs, False
                L[i, i] = np.sqrt(s)
            else:
                L[i, j] = s / L[j, j]
    X = rhs.copy()
    n = rhs.shape[1]
    for c in range(n):
        for i in range(m):                       # forward: L y = b
            s = X[i, c]
            for p in range(i):
                s -= L[i, p] * X[p, c]
            X[i, c] = s / L[i, i]
        for i in range(m - 1, -1, -1):           # backward: L' x = y
            s = X[i, c]
            for p in range(i + 1, m):
                s -= L[p, i] * X[p, c]
            X[i, c] = s / L[i, i]
    return X, True


@nb.njit(inline="always", cache=True)
def _mm(A, B):
    """A @ B with explicit loops (small matrices: no BLAS call overhead)."""
    n, m = A.shape
    p = B.shape[1]
    C = np.zeros((n, p))
    for i in range(n):
        for k in range(m):
            a = A[i, k]
            for j in range(p):
                C[i, j] += a * B[k, j]
    return C


@nb.njit(inline="always", cache=True)
def _tm(A, B):
    """A.T @ B with explicit loops."""
    m, n = A.shape
    p = B.shape[1]
    C = np.zeros((n, p))
    for k in range(m):
        for i in range(n):
            a = A[k, i]
            for j in range(p):
                C[i, j] += a * B[k, j]
    return C


@nb.njit(inline="always", cache=True)
def _tv(A, v):
    """A.T @ v."""
    m, n = A.shape
    out = np.zeros(n)
    for k in range(m):
        vk = v[k]
        for i in range(n):
            out[i] += A[k, i] * vk
    return out


@nb.njit(inline="always", cache=True)
def _mv(A, v):
    n, m = A.shape
    out = np.zeros(n)
    for i in range(n):
        s = 0.0
        for k in range(m):
            s += A[i, k] * v[k]
        out[i] = s
    return out


@nb.njit(cache=True)
def backward_dense(f_x, f_u, c_x, c_u, c_xx, c_uu, c_ux, cT_x, cT_xx, mu, state_reg):
    """Returns (K, k, dV1, dV2, failed_at) with failed_at = -1 on success."""
    T, D, M = f_u.shape
    K = np.zeros((T, M, D))
    k = np.zeros((T, M))
    V = cT_xx.copy()
    v = cT_x.copy()
    dV1 = 0.0
    dV2 = 0.0
    smu = mu if state_reg else 0.0
    cmu = 0.0 if state_reg else mu
    for t in range(T - 1, -1, -1):
        fx = f_x[t]
        fu = f_u[t]
        VFx = _mm(V, fx)
        VFu = _mm(V, fu)
        Qx = c_x[t] + _tv(fx, v)
        Qu = c_u[t] + _tv(fu, v)
        Qxx = c_xx[t] + _tm(fx, VFx)
        Qux = c_ux[t] + _tm(fu, VFx)
        Quu = c_uu[t] + _tm(fu, VFu)
        Quu = 0.5 * (Quu + Quu.T)
        Qux_r = Qux + smu * _tm(fu, fx)
        Quu_r = Quu + smu * _tm(fu, fu)
        for i in range(M):
            Quu_r[i, i] += cmu
        rhs = np.empty((M, D + 1))
        rhs[:, 0] = Qu
        rhs[:, 1:] = Qux_r
        sol, ok = _chol_solve(Quu_r, rhs)
        if not ok:
            return K, k, 0.0, 0.0, t
        kt = -sol[:, 0]
        Kt = -sol[:, 1:]
        k[t] = kt
        K[t] = Kt
        Quu_k = _mv(Quu, kt)
        dV1 += np.dot(kt, Qu)
        dV2 += 0.5 * np.dot(kt, Quu_k)
        v = Qx + _tv(Kt, Quu_k) + _tv(Kt, Qu) + _tv(Qux, kt)
        KtQux = _tm(Kt, Qux)
        V = Qxx + _tm(Kt, _mm(Quu, Kt)) + KtQux + KtQux.T
        V = 0.5 * (V + V.T)
    return K, k, dV1, dV2, -1
