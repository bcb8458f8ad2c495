"""Compiled kernels of the batched Lyapunov solves for small ``d`` (issue 15: 1000 small tasks).

Imported lazily (so ``import metalqr`` does not import Numba) and only for batches of at
least ``NUMBA_MIN_BATCH`` (:mod:`metalqr.lqr.lyapunov`) or ``COMPILED_MIN_BATCH``
(:mod:`metalqr.lqr.policy`) tasks:

* :func:`pair_2x2` - ``d = 2``: the Schur-Cohn stability test, the 4 x 4 Kronecker matrix
  ``L = I - A (x) A``, ONE LU factorisation with partial pivoting (LAPACK's ``getrf``
  pivoting rule) and two triangular solves, ``L' x_T = vec(W_T)`` and ``L x = vec(W)``;
* :func:`evaluate_2x2` - ``d = 2``: :func:`pair_2x2` plus ``A - BK``, ``Q + K'RK``,
  ``R + B'PB`` and ``E_K`` in the same compiled pass (cost and gradient of Proposition 1);
* :func:`evaluate_small` - ``d <= 6``: the same quantities from the Lyapunov operator on
  symmetric matrices (``d (d + 1) / 2`` unknowns, one LU per task shared by ``P_K`` and
  ``Sigma_K`` through the adjoint, one refinement step), stability certified by
  ``X_I > 0``; tasks it cannot certify are left to the NumPy kernel;
* :func:`sda_small` - ``d <= 6``: the structure-preserving doubling iteration of
  :func:`metalqr.lqr._doubling.sda`, task by task.

All are checked against SciPy's solvers and the NumPy kernels in the tests.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["pair_2x2", "evaluate_small", "evaluate_2x2", "sda_small"]


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


#: ``max |X_I|`` (``X_I = sum_t A^t A'^t``) up to which :func:`evaluate_small` certifies
#: ``rho(A) < 1`` itself; beyond (``rho`` within about ``1e-6`` of 1) it leaves the task to
#: the NumPy kernel (eigenvalues), as it does any task it cannot certify.
CERTIFY_MAX = 1e6


@nb.njit(cache=True, error_model="numpy")
def _lu(L, piv, dd):
    """In-place LU with partial pivoting (LAPACK ``getrf``'s rule); False on a zero pivot."""
    for k in range(dd):
        m = k
        big = abs(L[k, k])
        for r in range(k + 1, dd):
            if abs(L[r, k]) > big:
                big, m = abs(L[r, k]), r
        piv[k] = m
        if big == 0.0:
            return False
        if m != k:
            for c in range(dd):
                L[k, c], L[m, c] = L[m, c], L[k, c]
        inv = 1.0 / L[k, k]
        for r in range(k + 1, dd):
            f = L[r, k] * inv
            L[r, k] = f
            if f != 0.0:
                for c in range(k + 1, dd):
                    L[r, c] -= f * L[k, c]
    return True


@nb.njit(cache=True, error_model="numpy")
def _solve_lu(L, piv, b, dd):
    """``L x = b`` in place from :func:`_lu`'s factors."""
    for k in range(dd):
        m = piv[k]
        if m != k:
            b[k], b[m] = b[m], b[k]
    for r in range(dd):
        s = b[r]
        for c in range(r):
            s -= L[r, c] * b[c]
        b[r] = s
    for r in range(dd - 1, -1, -1):
        s = b[r]
        for c in range(r + 1, dd):
            s -= L[r, c] * b[c]
        b[r] = s / L[r, r]


@nb.njit(cache=True, error_model="numpy")
def _solve_lu_t(L, piv, b, dd):
    """Solve ``L' x = b`` in place from :func:`_lu`'s factors.

    ``L' x = b`` in place from :func:`_lu`'s factors (``P L = LU``: ``U' y = b``, ``L_unit' z =
    y``, ``x = P' z``).
    """
    for r in range(dd):
        s = b[r]
        for c in range(r):
            s -= L[c, r] * b[c]
        b[r] = s / L[r, r]
    for r in range(dd - 1, -1, -1):
        s = b[r]
        for c in range(r + 1, dd):
            s -= L[c, r] * b[c]
        b[r] = s
    for k in range(dd - 1, -1, -1):
        m = piv[k]
        if m != k:
            b[k], b[m] = b[m], b[k]


@nb.njit(cache=True, error_model="numpy")
def _symmetric_enough(W, d):
    big, asym = 0.0, 0.0
    for r in range(d):
        for c in range(d):
            big = max(big, abs(W[r, c]))
            asym = max(asym, abs(W[r, c] - W[c, r]))
    return asym <= 1e-12 * max(big, 1e-300)


@nb.njit(cache=True, error_model="numpy")
def _residual(AK, transpose, W, X, T, Rm, d):
    """Return the Lyapunov residual ``sym(W) - (X - A X A')``.

    ``Rm = sym(W) - (X - A X A')`` with ``A = AK`` (or ``AK'`` if ``transpose``); ``T`` is work
    space (d, d).
    """
    for r in range(d):                        # T = A X
        for c in range(d):
            s = 0.0
            for l in range(d):
                s += (AK[l, r] if transpose else AK[r, l]) * X[l, c]
            T[r, c] = s
    for r in range(d):                        # Rm = sym(W) - X + T A'
        for c in range(d):
            s = 0.0
            for l in range(d):
                s += T[r, l] * (AK[l, c] if transpose else AK[c, l])
            Rm[r, c] = 0.5 * (W[r, c] + W[c, r]) - X[r, c] + s


@nb.njit(cache=True, error_model="numpy")
def _build_sym(AK, transpose, iu, ju, L, m):
    """Return the Lyapunov operator restricted to symmetric matrices.

    Return the Lyapunov operator ``X -> X - A X A'`` (``A = AK``, or ``AK'`` if ``transpose``)
    restricted to symmetric ``X`` in the basis ``X[s, u] = X[u, s] = x_(s,u)``, ``s <= u`` (``m
    = d (d + 1) / 2`` unknowns): row ``(p, q)``, column ``(s, u)`` holds ``delta - (A[p, s] A[q,
    u] + [s != u] A[p, u] A[q, s])``.
    """
    for r in range(m):
        p, q = iu[r], ju[r]
        for c in range(m):
            s_, u = iu[c], ju[c]
            if transpose:
                v = AK[s_, p] * AK[u, q]
                if s_ != u:
                    v += AK[u, p] * AK[s_, q]
            else:
                v = AK[p, s_] * AK[q, u]
                if s_ != u:
                    v += AK[p, u] * AK[q, s_]
            L[r, c] = (1.0 if r == c else 0.0) - v


@nb.njit(cache=True, error_model="numpy")
def evaluate_small(A, B, Q, R, Psi, K, want_sigma, AK, P, S, E, RBPB, certified, dims):
    """Proposition 1 for a batch of small tasks (``d <= 6``) in one compiled loop.

    Per task: ``A_K = A - B K``, ``M = Q + K'RK`` and the Lyapunov operator
    ``X -> X - A_K X A_K'`` restricted to symmetric matrices (``d (d + 1) / 2`` unknowns, a
    fifth of the Kronecker system's LU work at ``d = 6``), factorised ONCE (LU, partial
    pivoting); its adjoint ``X -> X - A_K' X A_K`` (for ``P_K``) is solved with the
    transposed factors (its matrix is ``D^-1 L' D``, ``D`` the trace inner product's weights
    1 and 2 in this basis); each solution gets one step of iterative refinement with the
    same factors. ``X_I`` from the first with right-hand side
    ``I`` certifies ``rho(A_K) < 1`` when it is finite, ``max |X_I| <= CERTIFY_MAX`` and
    positive definite (Cholesky; Lyapunov's theorem: ``X_I - A_K X_I A_K' = I`` with
    ``X_I > 0`` holds iff ``rho(A_K) < 1``). For a certified task: ``Sigma_K`` (first
    operator, right-hand side ``Psi``; if ``want_sigma``) and ``P_K`` (second, ``M``), from
    the symmetric parts of the right-hand sides, ``R + B'PB`` and
    ``E_K = (R + B'PB) K - B'PA``. ``certified[i]`` is False for every task it could not
    certify (unstable, near the stability boundary, non-finite, a zero pivot, or a
    right-hand side that is not symmetric to 1e-12 relative): the caller solves those with the NumPy kernel.
    Outputs are written in place. ``dims`` is a tuple of ``d`` zeros (its length types the
    compiled specialisation).
    """
    n, k = A.shape[0], B.shape[2]
    d = len(dims)            # a compile-time constant: one specialisation per d, loops unrolled
    m = d * (d + 1) // 2
    iu = np.empty(m, dtype=np.int64)
    ju = np.empty(m, dtype=np.int64)
    r = 0
    for p in range(d):
        for q in range(p, d):
            iu[r], ju[r] = p, q
            r += 1
    L = np.empty((m, m))
    piv = np.empty(m, dtype=np.int64)
    b = np.empty(m)
    M = np.empty((d, d))
    X = np.empty((d, d))
    Rm = np.empty((d, d))
    AKi = np.empty((d, d))
    BtP = np.empty((k, d))
    for i in range(n):
        certified[i] = False
        finite = True
        for r in range(d):
            for c in range(d):
                s = A[i, r, c]
                for j in range(k):
                    s -= B[i, r, j] * K[i, j, c]
                AK[i, r, c] = s
                AKi[r, c] = s
                finite = finite and np.isfinite(s)
        if not finite:
            continue
        for r in range(d):
            for c in range(d):
                s = Q[i, r, c]
                for j in range(k):
                    t = 0.0
                    for l in range(k):
                        t += R[i, j, l] * K[i, l, c]
                    s += K[i, j, r] * t
                M[r, c] = s
        if not _symmetric_enough(M, d) or (want_sigma and not _symmetric_enough(Psi[i], d)):
            continue
        _build_sym(AKi, False, iu, ju, L, m)
        if not _lu(L, piv, m):
            continue
        for r in range(m):
            b[r] = 1.0 if iu[r] == ju[r] else 0.0
        _solve_lu(L, piv, b, m)
        ok = True
        for r in range(m):
            if not (abs(b[r]) <= CERTIFY_MAX):       # also False for NaN
                ok = False
        if not ok:
            continue
        for r in range(m):                            # Cholesky of X_I: positive definite?
            X[iu[r], ju[r]] = b[r]
            X[ju[r], iu[r]] = b[r]
        for j in range(d):
            s = X[j, j]
            for l in range(j):
                s -= X[j, l] * X[j, l]
            if not (s > 0.0):
                ok = False
                break
            X[j, j] = np.sqrt(s)
            for r in range(j + 1, d):
                t = X[r, j]
                for l in range(j):
                    t -= X[r, l] * X[j, l]
                X[r, j] = t / X[j, j]
        if not ok:
            continue
        if want_sigma:
            for r in range(m):
                b[r] = 0.5 * (Psi[i, iu[r], ju[r]] + Psi[i, ju[r], iu[r]])
            _solve_lu(L, piv, b, m)
            for r in range(m):
                S[i, iu[r], ju[r]] = b[r]
                S[i, ju[r], iu[r]] = b[r]
            # one step of iterative refinement (residual in working precision)
            _residual(AKi, False, Psi[i], S[i], X, Rm, d)
            for r in range(m):
                b[r] = Rm[iu[r], ju[r]]
            _solve_lu(L, piv, b, m)
            for r in range(m):
                v = S[i, iu[r], ju[r]] + b[r]
                S[i, iu[r], ju[r]] = v
                S[i, ju[r], iu[r]] = v
        # P_K: X -> X - A_K' X A_K is the adjoint of the first operator in the trace inner
        # product, whose weights in this basis are D = diag(1 on the diagonal, 2 off it):
        # its matrix is D^-1 L' D, so L' (D p) = D m reuses the same LU.
        certified[i] = True
        for r in range(m):
            w = 1.0 if iu[r] == ju[r] else 2.0
            b[r] = w * 0.5 * (M[iu[r], ju[r]] + M[ju[r], iu[r]])
        _solve_lu_t(L, piv, b, m)
        for r in range(m):
            v = b[r] if iu[r] == ju[r] else 0.5 * b[r]
            P[i, iu[r], ju[r]] = v
            P[i, ju[r], iu[r]] = v
        _residual(AKi, True, M, P[i], X, Rm, d)
        for r in range(m):
            b[r] = Rm[iu[r], ju[r]] if iu[r] == ju[r] else 2.0 * Rm[iu[r], ju[r]]
        _solve_lu_t(L, piv, b, m)
        for r in range(m):
            v = P[i, iu[r], ju[r]] + (b[r] if iu[r] == ju[r] else 0.5 * b[r])
            P[i, iu[r], ju[r]] = v
            P[i, ju[r], iu[r]] = v
        if want_sigma:
            for j in range(k):
                for c in range(d):
                    s = 0.0
                    for l in range(d):
                        s += B[i, l, j] * P[i, l, c]
                    BtP[j, c] = s
            for j in range(k):
                for c in range(k):
                    s = R[i, j, c]
                    for l in range(d):
                        s += BtP[j, l] * B[i, l, c]
                    RBPB[i, j, c] = s
            for j in range(k):
                for c in range(d):
                    s = 0.0
                    for l in range(k):
                        s += RBPB[i, j, l] * K[i, l, c]
                    for l in range(d):
                        s -= BtP[j, l] * A[i, l, c]
                    E[i, j, c] = s


@nb.njit(cache=True, error_model="numpy")
def evaluate_2x2(A, B, Q, R, Psi, K, want_sigma, AK, P, S, E, RBPB, certified):
    """Evaluate ``d = 2`` tasks (:func:`evaluate_small` for 2 x 2).

    :func:`evaluate_small` for ``d = 2`` (same arguments and contract, no ``dims``): the
    Schur-Cohn test decides ``rho(A_K) < 1`` exactly, and :func:`pair_2x2` solves both Lyapunov
    equations with one LU of the 4 x 4 Kronecker matrix (SciPy's 'direct' method for small
    matrices), then once more for one step of iterative refinement; symmetrised when the
    right-hand side is symmetric to 1e-12.
    """
    n, k = A.shape[0], B.shape[2]
    M = np.empty((n, 2, 2))
    for i in range(n):
        finite = True
        for r in range(2):
            for c in range(2):
                s = A[i, r, c]
                for j in range(k):
                    s -= B[i, r, j] * K[i, j, c]
                AK[i, r, c] = s
                finite = finite and np.isfinite(s)
                t = Q[i, r, c]
                for j in range(k):
                    u = 0.0
                    for l in range(k):
                        u += R[i, j, l] * K[i, l, c]
                    t += K[i, j, r] * u
                M[i, r, c] = t
        if not finite:                      # pair_2x2 then reports it unstable
            for r in range(2):
                for c in range(2):
                    AK[i, r, c] = np.nan
    pair_2x2(AK, M, Psi, P, S, certified)
    # one step of iterative refinement: residuals in working precision, corrections from a
    # second solve (the Kronecker solve alone is not backward stable for the Lyapunov
    # structure: on a non-normal A_K it lost three digits against SciPy's refined answer)
    RP = np.zeros((n, 2, 2))
    RS = np.zeros((n, 2, 2))
    T = np.empty((2, 2))
    for i in range(n):
        if certified[i]:
            _residual(AK[i], True, M[i], P[i], T, RP[i], 2)
            if want_sigma:
                _residual(AK[i], False, Psi[i], S[i], T, RS[i], 2)
    dP = np.empty((n, 2, 2))
    dS = np.empty((n, 2, 2))
    again = np.empty(n, dtype=np.bool_)
    pair_2x2(AK, RP, RS, dP, dS, again)
    for i in range(n):
        if certified[i]:
            for r in range(2):
                for c in range(2):
                    P[i, r, c] += dP[i, r, c]
                    S[i, r, c] += dS[i, r, c]
    BtP = np.empty((k, 2))
    for i in range(n):
        if not certified[i]:
            continue
        if _symmetric_enough(M[i], 2):
            v = 0.5 * (P[i, 0, 1] + P[i, 1, 0])
            P[i, 0, 1], P[i, 1, 0] = v, v
        if not want_sigma:
            continue
        if _symmetric_enough(Psi[i], 2):
            v = 0.5 * (S[i, 0, 1] + S[i, 1, 0])
            S[i, 0, 1], S[i, 1, 0] = v, v
        for j in range(k):
            for c in range(2):
                BtP[j, c] = B[i, 0, j] * P[i, 0, c] + B[i, 1, j] * P[i, 1, c]
        for j in range(k):
            for c in range(k):
                RBPB[i, j, c] = R[i, j, c] + BtP[j, 0] * B[i, 0, c] + BtP[j, 1] * B[i, 1, c]
        for j in range(k):
            for c in range(2):
                s = -(BtP[j, 0] * A[i, 0, c] + BtP[j, 1] * A[i, 1, c])
                for l in range(k):
                    s += RBPB[i, j, l] * K[i, l, c]
                E[i, j, c] = s


@nb.njit(cache=True, error_model="numpy")
def sda_small(A, G, H, rtol, early, max_iterations, out, converged, iterations, dims):
    """Run the structure-preserving doubling iteration task by task (compiled).

    Return the structure-preserving doubling iteration of :func:`metalqr.lqr._doubling.sda` task
    by task (same updates, symmetrisation, stopping rules and outputs), for ``d <= 6``
    (``dims``: a tuple of ``d`` zeros). ``W_j = I + G_j H_j`` is solved by LU with partial
    pivoting; a zero pivot or a non-finite increment ends the task unconverged.
    """
    n = A.shape[0]
    d = len(dims)
    Aj = np.empty((d, d))
    Gj = np.empty((d, d))
    Hj = np.empty((d, d))
    W = np.empty((d, d))
    X = np.empty((d, 2 * d))
    inc = np.empty((d, d))
    T = np.empty((d, d))
    piv = np.empty(d, dtype=np.int64)
    col = np.empty(d)
    for i in range(n):
        for r in range(d):
            for c in range(d):
                Aj[r, c] = A[i, r, c]
                Gj[r, c] = 0.5 * (G[i, r, c] + G[i, c, r])
                Hj[r, c] = 0.5 * (H[i, r, c] + H[i, c, r])
        converged[i] = False
        prev = np.inf
        for r in range(d):
            for c in range(d):
                out[i, r, c] = 0.0
        for it in range(1, max_iterations + 1):
            iterations[i] = it
            for r in range(d):                       # W = I + G H
                for c in range(d):
                    s = 1.0 if r == c else 0.0
                    for l in range(d):
                        s += Gj[r, l] * Hj[l, c]
                    W[r, c] = s
            if not _lu(W, piv, d):
                break
            for c in range(2 * d):                   # X = W^-1 [A | G]
                for r in range(d):
                    col[r] = Aj[r, c] if c < d else Gj[r, c - d]
                _solve_lu(W, piv, col, d)
                for r in range(d):
                    X[r, c] = col[r]
            for r in range(d):                       # T = H X_A
                for c in range(d):
                    s = 0.0
                    for l in range(d):
                        s += Hj[r, l] * X[l, c]
                    T[r, c] = s
            for r in range(d):                       # inc = A' T
                for c in range(d):
                    s = 0.0
                    for l in range(d):
                        s += Aj[l, r] * T[l, c]
                    inc[r, c] = s
            size_inc, size_H = 0.0, 0.0
            for r in range(d):
                for c in range(r, d):
                    v = 0.5 * (inc[r, c] + inc[c, r])
                    inc[r, c] = v
                    inc[c, r] = v
            for r in range(d):                       # G += (A X_G) A'  (T = A X_G)
                for c in range(d):
                    s = 0.0
                    for l in range(d):
                        s += Aj[r, l] * X[l, d + c]
                    T[r, c] = s
            for r in range(d):
                for c in range(d):
                    s = 0.0
                    for l in range(d):
                        s += T[r, l] * Aj[c, l]
                    W[r, c] = s                      # W is free now: G increment
            for r in range(d):
                for c in range(d):
                    Hj[r, c] += inc[r, c]
                    size_inc += inc[r, c] * inc[r, c]
            for r in range(d):
                for c in range(d):
                    size_H += Hj[r, c] * Hj[r, c]
            for r in range(d):
                for c in range(r, d):
                    v = 0.5 * ((Gj[r, c] + W[r, c]) + (Gj[c, r] + W[c, r]))
                    Gj[r, c] = v
                    Gj[c, r] = v
            for r in range(d):                       # A <- A X_A
                for c in range(d):
                    s = 0.0
                    for l in range(d):
                        s += Aj[r, l] * X[l, c]
                    T[r, c] = s
            for r in range(d):
                for c in range(d):
                    Aj[r, c] = T[r, c]
            size_inc = np.sqrt(size_inc)
            size_H = np.sqrt(size_H)
            if not (np.isfinite(size_inc) and np.isfinite(size_H)):
                break
            ratio = size_inc / (size_H if size_H > 0 else 1.0)
            if ratio <= rtol or (ratio <= early and ratio <= 1e2 * prev * prev):
                converged[i] = True
                for r in range(d):
                    for c in range(d):
                        out[i, r, c] = Hj[r, c]
                break
            prev = ratio
