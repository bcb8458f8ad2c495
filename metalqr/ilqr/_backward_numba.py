"""Compiled dense backward pass for unconstrained problems.

Same maths as :func:`metalqr.ilqr.backward.backward_pass` with ``value_model="full"`` and no bounds.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["backward_dense"]

from .._validation import check_real  # noqa: E402
from ..exceptions import ValidationError  # noqa: E402


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
    """Return ``A @ B`` computed with explicit loops (small matrices: no BLAS call overhead)."""
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
def _backward_dense_kernel(f_x, f_u, c_x, c_u, c_xx, c_uu, c_ux, cT_x, cT_xx, mu_state, mu_control):
    """Return (K, k, dV1, dV2, failed_at, |Q_u|) with failed_at = -1 on success.

    No bounds checks: call :func:`backward_dense`, which checks every shape first (or pass
    arguments already checked, as ``metalqr.ilqr.backward`` does).
    """
    T, D, M = f_u.shape
    K = np.zeros((T, M, D))
    k = np.zeros((T, M))
    V = cT_xx.copy()
    v = cT_x.copy()
    dV1 = 0.0
    dV2 = 0.0
    qn = 0.0
    smu = mu_state
    cmu = mu_control
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
        qn += np.dot(Qu, Qu)
        Qux_r = Qux + smu * _tm(fu, fx)
        Quu_r = Quu + smu * _tm(fu, fu)
        for i in range(M):
            Quu_r[i, i] += cmu
        rhs = np.empty((M, D + 1))
        rhs[:, 0] = Qu
        rhs[:, 1:] = Qux_r
        sol, ok = _chol_solve(Quu_r, rhs)
        if not ok:
            return K, k, 0.0, 0.0, t, np.sqrt(qn)
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
    return K, k, dV1, dV2, -1, np.sqrt(qn)


def backward_dense(f_x, f_u, c_x, c_u, c_xx, c_uu, c_ux, cT_x, cT_xx, mu_state, mu_control):
    """Run the compiled dense backward pass after checking every shape.

    Compiled dense backward pass (TOW paper Algorithm 2, corrected as in
    :mod:`metalqr.ilqr.backward`), after checking every shape: the kernel itself does no bounds
    checks, so nothing reaches it unchecked.

    Parameters
    ----------
    f_x : (T, D, D); f_u : (T, D, M); c_x : (T, D); c_u : (T, M); c_xx : (T, D, D);
    c_uu : (T, M, M); c_ux : (T, M, D); cT_x : (D,); cT_xx : (D, D)
        C-contiguous float64 arrays, finite.
    mu_state, mu_control : float >= 0
        Regularisation ``mu_state F_u'F_u + mu_control I`` of ``Q_uu`` (and
        ``mu_state F_u'F_x`` of ``Q_ux``).

    Returns
    -------
    K (T, M, D), k (T, M), dV1, dV2, failed_at (-1 on success, else the step whose
    regularised ``Q_uu`` is not positive definite), and ``(sum_t |Q_u,t|^2)^(1/2)``.

    Raises
    ------
    ValidationError
        A wrong shape, dtype, layout or a non-finite entry.
    """
    arrays = dict(f_x=f_x, f_u=f_u, c_x=c_x, c_u=c_u, c_xx=c_xx, c_uu=c_uu, c_ux=c_ux, cT_x=cT_x,
                  cT_xx=cT_xx)
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype != np.float64 or not a.flags.c_contiguous:
            raise ValidationError(f"{name} must be a C-contiguous float64 array.")
    if f_u.ndim != 3 or min(f_u.shape) < 1:
        raise ValidationError(f"f_u must have shape (T, D, M) with T, D, M >= 1; got {f_u.shape}.")
    T, D, M = f_u.shape
    want = dict(f_x=(T, D, D), c_x=(T, D), c_u=(T, M), c_xx=(T, D, D), c_uu=(T, M, M),
                c_ux=(T, M, D), cT_x=(D,), cT_xx=(D, D))
    for name, shape in want.items():
        if arrays[name].shape != shape:
            raise ValidationError(f"{name} must have shape {shape} (from f_u {f_u.shape}); got "
                                  f"{arrays[name].shape}.")
        if not np.all(np.isfinite(arrays[name])):
            raise ValidationError(f"{name} contains non-finite values.")
    if not np.all(np.isfinite(f_u)):
        raise ValidationError("f_u contains non-finite values.")
    mu_state = check_real(mu_state, "mu_state", minimum=0.0)
    mu_control = check_real(mu_control, "mu_control", minimum=0.0)
    return _backward_dense_kernel(f_x, f_u, c_x, c_u, c_xx, c_uu, c_ux, cT_x, cT_xx, mu_state,
                                  mu_control)
