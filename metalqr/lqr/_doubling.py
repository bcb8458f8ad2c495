"""Batched structure-preserving doubling algorithm (SDA) for the DARE (internal kernel).

For ``P = A'PA - A'PB (R + B'PB)^{-1} B'PA + Q`` set ``G = B R^{-1} B'`` and iterate
(B. D. O. Anderson, Int. J. Control 28 (1978); E. K.-W. Chu, H.-Y. Fan, W.-W. Lin and
C.-S. Wang, "Structure-preserving algorithms for periodic discrete-time algebraic Riccati
equations", Int. J. Control 77 (2004); review: F. Poloni, "Iterative and doubling algorithms
for Riccati-type matrix equations", arXiv:2005.08903)::

    W_j     = I + G_j H_j
    A_{j+1} = A_j W_j^{-1} A_j
    G_{j+1} = G_j + A_j W_j^{-1} G_j A_j'
    H_{j+1} = H_j + A_j' H_j W_j^{-1} A_j

from ``A_0 = A``, ``G_0 = G``, ``H_0 = Q``. When the DARE has a stabilising solution ``P``
(and its dual one exists) ``H_j -> P`` quadratically: ``||H_j - P|| = O(rho^(2^(j+1)))``
with ``rho = rho(A - B K*)``. ``W_j`` is always invertible for positive semidefinite
``G_j, H_j`` (its eigenvalues are ``1 + eig(G^1/2 H G^1/2) >= 1``), and ``W_j^{-1} G_j``
and ``H_j W_j^{-1}`` are symmetric, so both updates are symmetrised.

The iteration runs on a shrinking active set: tasks leave it as soon as their increment is
negligible (converged) or non-finite (failed), so that one hard task does not slow the
others and a diverging one cannot poison them. Nothing here is trusted: the caller checks
every answer (residual, closed-loop stability, cost identity).
"""

from __future__ import annotations

import numpy as np

__all__ = ["sda", "MAX_ITERATIONS"]

#: Doubling steps before a task is declared not converged (2**60 terms of the series).
MAX_ITERATIONS = 60
#: Relative increment below which a quadratically converging task may stop one step early.
EARLY = 1e-8


#: Batches of ``d <= COMPILED_MAX_D`` with at least ``COMPILED_MIN_BATCH`` tasks run the same
#: iteration compiled, task by task (:func:`metalqr.lqr._lyap_numba.sda_small`), when Numba
#: is installed.
COMPILED_MAX_D = 6
COMPILED_MIN_BATCH = 64
_KERNEL: list = []


def _compiled():
    """Return the compiled SDA kernel, or ``None`` without Numba (looked up once, lazily)."""
    if not _KERNEL:
        import importlib.util
        if importlib.util.find_spec("numba") is None:
            _KERNEL.append(None)
        else:
            from ._lyap_numba import sda_small
            _KERNEL.append(sda_small)
    return _KERNEL[0]


def _sym(X: np.ndarray) -> np.ndarray:
    return 0.5 * (X + np.swapaxes(X, -1, -2))


def sda(A: np.ndarray, G: np.ndarray, H: np.ndarray, *, rtol: float = 1e-15,
        max_iterations: int = MAX_ITERATIONS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the SDA on a batch ``A, G, H`` of shape (n, d, d).

    Returns
    -------
    H : ndarray, shape (n, d, d)
        Final iterate (the candidate solution; zeros where the iteration failed).
    converged : ndarray of bool, shape (n,)
        Whether the last increment ``||A_j' H_j W_j^{-1} A_j||_F`` fell below
        ``rtol * ||H_{j+1}||_F`` with every iterate finite.
    iterations : ndarray of int, shape (n,)
        Doubling steps taken per task.
    """
    n, d = A.shape[0], A.shape[-1]
    if d <= COMPILED_MAX_D and n >= COMPILED_MIN_BATCH:
        kernel = _compiled()
        if kernel is not None:
            out = np.zeros((n, d, d))
            converged = np.zeros(n, dtype=np.bool_)
            iterations = np.zeros(n, dtype=np.int64)
            c = np.ascontiguousarray
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                kernel(c(A, dtype=float), c(G, dtype=float), c(H, dtype=float), float(rtol),
                       EARLY, int(max_iterations), out, converged, iterations, (0,) * d)
            return out, converged, iterations.astype(int)
    out = np.zeros((n, d, d))
    converged = np.zeros(n, dtype=bool)
    iterations = np.zeros(n, dtype=int)
    active = np.arange(n)
    Aj, Gj, Hj = A.copy(), _sym(G), _sym(H)
    eye = np.eye(d)
    prev = np.full(n, np.inf)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for it in range(1, max_iterations + 1):
            W = eye + Gj @ Hj
            rhs = np.concatenate([Aj, Gj], axis=-1)
            try:
                X = np.linalg.solve(W, rhs)
            except np.linalg.LinAlgError:
                X = _solve_each(W, rhs)
            AjT = Aj.transpose(0, 2, 1)
            inc = AjT @ (Hj @ X[..., :d])                 # A_j' H_j W_j^{-1} A_j
            inc = 0.5 * (inc + inc.transpose(0, 2, 1))
            AX = Aj @ X                                   # [A_j W^-1 A_j | A_j W^-1 G_j]
            Gj = Gj + AX[..., d:] @ AjT
            Gj = 0.5 * (Gj + Gj.transpose(0, 2, 1))
            Hj = Hj + inc
            Aj = np.ascontiguousarray(AX[..., :d])
            size_inc = np.sqrt(np.einsum("nij,nij->n", inc, inc))
            size_H = np.sqrt(np.einsum("nij,nij->n", Hj, Hj))
            # A non-finite A_j or G_j makes the next increment non-finite.
            finite = np.isfinite(size_inc) & np.isfinite(size_H)
            ratio = size_inc / np.where(size_H > 0, size_H, 1.0)
            # Quadratic convergence: once the increment is below sqrt(rtol) and at most the
            # square of the previous one (times a margin), the next would be below rtol.
            done = finite & ((ratio <= rtol) | ((ratio <= EARLY) & (ratio <= 1e2 * prev * prev)))
            prev = ratio
            leave = done | ~finite
            iterations[active] = it
            if done.any():
                out[active[done]] = Hj[done]
                converged[active[done]] = True
            if leave.all():
                break
            if leave.any():
                keep = ~leave
                active, Aj, Gj, Hj = active[keep], Aj[keep], Gj[keep], Hj[keep]
                prev = prev[keep]
    return out, converged, iterations


def _solve_each(W: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Per-matrix solve that yields NaN for a singular member instead of failing the batch."""
    X = np.full(rhs.shape, np.nan)
    for i in range(W.shape[0]):
        try:
            X[i] = np.linalg.solve(W[i], rhs[i])
        except np.linalg.LinAlgError:
            pass
    return X
