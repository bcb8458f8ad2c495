"""Compiled kernel of the batched Lyapunov pair for ``d = 2`` (issue 15: 1000 small tasks).

Imported lazily by :mod:`metalqr.lqr.lyapunov` (so ``import metalqr`` does not import Numba)
and only for batches of at least ``NUMBA_MIN_BATCH`` tasks. Per task: the Schur-Cohn
stability test, the 4 x 4 Kronecker matrix ``L = I - A (x) A``, ONE LU factorisation with
partial pivoting (LAPACK's ``getrf`` pivoting rule) and two triangular solves, ``L' x_T =
vec(W_T)`` and ``L x = vec(W)``: half the factorisations of the NumPy kernel, which solves
``L'`` and ``L`` separately.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["pair_2x2"]


@nb.njit(cache=True, error_model="numpy")
def pair_2x2(A, WT, W, XT, X, stable):
    """Solve the 2x2 Stein equations of a batch in closed form.

    Fill ``XT``, ``X`` (n, 2, 2) and ``stable`` (n,) for ``X_T = A' X_T A + W_T`` and ``X = A X
    A' + W``; zeros where not stable.
    """
    n = A.shape[0]
    L = np.empty((4, 4))
    piv = np.empty(4, dtype=np.int64)
    b = np.empty(4)
    for i in range(n):
        a00, a01, a10, a11 = A[i, 0, 0], A[i, 0, 1], A[i, 1, 0], A[i, 1, 1]
        t, det = a00 + a11, a00 * a11 - a01 * a10
        ok = abs(det) < 1.0 and abs(t) < 1.0 + det
        stable[i] = ok
        if not ok:
            for r in range(2):
                for c in range(2):
                    XT[i, r, c] = 0.0
                    X[i, r, c] = 0.0
            continue
        for r in range(4):                  # L[(p, q), (s, u)] = delta - A[p, s] A[q, u]
            p, q = r // 2, r % 2
            for c in range(4):
                s, u = c // 2, c % 2
                L[r, c] = (1.0 if r == c else 0.0) - A[i, p, s] * A[i, q, u]
        for k in range(4):                  # LU with partial pivoting, in place
            m = k
            big = abs(L[k, k])
            for r in range(k + 1, 4):
                if abs(L[r, k]) > big:
                    big, m = abs(L[r, k]), r
            piv[k] = m
            if m != k:
                for c in range(4):
                    L[k, c], L[m, c] = L[m, c], L[k, c]
            for r in range(k + 1, 4):
                L[r, k] /= L[k, k]
                f = L[r, k]
                for c in range(k + 1, 4):
                    L[r, c] -= f * L[k, c]
        # L x = w: apply the row swaps, then forward (unit lower) and back substitution
        for r in range(4):
            b[r] = W[i, r // 2, r % 2]
        for k in range(4):
            m = piv[k]
            if m != k:
                b[k], b[m] = b[m], b[k]
        for r in range(4):
            for c in range(r):
                b[r] -= L[r, c] * b[c]
        for r in range(3, -1, -1):
            for c in range(r + 1, 4):
                b[r] -= L[r, c] * b[c]
            b[r] /= L[r, r]
        for r in range(4):
            X[i, r // 2, r % 2] = b[r]
        # L' x = w_T, with P L = LU: U' y = w_T, then L_unit' z = y, then x = P' z
        for r in range(4):
            b[r] = WT[i, r // 2, r % 2]
        for r in range(4):
            for c in range(r):
                b[r] -= L[c, r] * b[c]
            b[r] /= L[r, r]
        for r in range(3, -1, -1):
            for c in range(r + 1, 4):
                b[r] -= L[c, r] * b[c]
        for k in range(3, -1, -1):
            m = piv[k]
            if m != k:
                b[k], b[m] = b[m], b[k]
        for r in range(4):
            XT[i, r // 2, r % 2] = b[r]
