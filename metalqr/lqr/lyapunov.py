"""Batched discrete Lyapunov solver ``X = A X A' + W`` (Eq. (1) of the ZO-MAML paper).

Two pure-NumPy kernels, both batched over any leading axes:

* Kronecker solve of ``(I - A (x) A) vec(X) = vec(W)`` for ``d <= KRON_MAX_D``
  (exact up to the conditioning of the linear system);
* squared Smith ("doubling") iteration ``X <- X + A_j X A_j'``, ``A_{j+1} = A_j^2`` for
  larger ``d``, followed by one step of iterative refinement that re-uses the stored powers.
  It needs ``log2(log(eps)/log(rho))`` matrix products (16 at ``rho = 0.999``).

Both are verified against :func:`scipy.linalg.solve_discrete_lyapunov` in the tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._parallel import map_chunks
from .._validation import as_float_array
from ..exceptions import UnstablePolicyError, ValidationError

__all__ = ["dlyap", "spectral_radius_of", "lyapunov_pair"]

#: Largest state dimension handled by the Kronecker kernel.
KRON_MAX_D = 6
#: Maximum number of doubling steps (2**64 terms of the series).
MAX_DOUBLINGS = 64


def spectral_radius_of(A: np.ndarray) -> np.ndarray:
    """Spectral radius of each matrix in the trailing two axes of ``A``; ``inf`` for a
    matrix with non-finite entries (e.g. ``A - B K`` overflowed for a huge finite ``K``)."""
    finite = np.all(np.isfinite(A), axis=(-2, -1))
    if not np.all(finite):
        safe = np.where(finite[..., None, None], A, 0.0)
        return np.where(finite, spectral_radius_of(safe), np.inf)
    if A.shape[-1] == 1:
        return np.abs(A[..., 0, 0])
    return np.max(np.abs(np.linalg.eigvals(A)), axis=-1)


def _sym(X: np.ndarray) -> np.ndarray:
    return 0.5 * (X + np.swapaxes(X, -1, -2))


def _dlyap_kron(A: np.ndarray, W: np.ndarray) -> np.ndarray:
    d = A.shape[-1]
    # Row-major vec: vec(A X A') = (A kron A) vec(X).
    AA = np.einsum("...ij,...kl->...ikjl", A, A).reshape(A.shape[:-2] + (d * d, d * d))
    lhs = np.eye(d * d) - AA
    x = np.linalg.solve(lhs, W.reshape(W.shape[:-2] + (d * d, 1)))
    return x.reshape(W.shape)


def _doubling_powers(A: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Powers ``A, A^2, A^4, ...`` until each is negligible (``||A_j||_F^2 < 1e-18``).

    Returns the powers and a boolean mask over the batch: ``True`` where the powers
    vanished (``rho(A) < 1``), ``False`` where they did not within ``MAX_DOUBLINGS``
    squarings or overflowed (``rho(A) >= 1``, to working precision). Powers of
    non-converging members are zeroed so that they cannot poison the others with inf/NaN.
    """
    powers = [A]
    batch = A.shape[:-2]
    done = np.zeros(batch, dtype=bool)
    bad = np.zeros(batch, dtype=bool)
    for _ in range(MAX_DOUBLINGS):
        Aj = powers[-1]
        with np.errstate(over="ignore", invalid="ignore"):
            size = np.sum(Aj * Aj, axis=(-1, -2))
        bad |= ~np.isfinite(size) | (size > 1e200)
        done |= size < 1e-18
        if np.all(done | bad):
            break
        if np.any(bad):
            Aj = np.where(bad[..., None, None], 0.0, Aj)
            powers[-1] = Aj
        powers.append(Aj @ Aj)
    stable = done & ~bad
    if not np.all(stable):
        powers = [np.where(stable[..., None, None], P, 0.0) for P in powers]
    return powers, stable


def _apply_powers(powers: list[np.ndarray], W: np.ndarray, transpose: bool) -> np.ndarray:
    """Squared Smith iteration with given powers: ``sum_t A^t W A'^t`` (or with A')."""
    X = W
    for Aj in powers[:-1]:
        AjT = np.swapaxes(Aj, -1, -2)
        X = X + (AjT @ X @ Aj if transpose else Aj @ X @ AjT)
    return X


def _refined(powers: list[np.ndarray], A: np.ndarray, W: np.ndarray, transpose: bool) -> np.ndarray:
    """Doubling solve plus one refinement step where the relative residual exceeds 1e-12."""
    X = _apply_powers(powers, W, transpose)
    At = np.swapaxes(A, -1, -2)
    residual = W + (At @ X @ A if transpose else A @ X @ At) - X
    scale = np.linalg.norm(X, axis=(-2, -1))
    if np.any(np.linalg.norm(residual, axis=(-2, -1)) > 1e-12 * scale):
        X = X + _apply_powers(powers, residual, transpose)
    return X


def _symmetrise_if(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        asym = np.max(np.abs(W - np.swapaxes(W, -1, -2)), initial=0.0)
    return _sym(X) if asym <= 1e-12 * max(np.max(np.abs(W), initial=0.0), 1e-300) else X


def lyapunov_pair(A: np.ndarray, W_T: np.ndarray, W: np.ndarray | None = None):
    """Both Lyapunov equations of a closed loop, sharing the work (internal kernel).

    Solves ``X_T = A' X_T A + W_T`` and, if ``W`` is given, ``X = A X A' + W`` for a
    batch of matrices ``A`` (shape (n, d, d)). Unstable members (``rho(A) >= 1``) are
    flagged, not solved.

    Returns
    -------
    stable : ndarray of bool, shape (n,)
    X_T, X : ndarray, shape (n, d, d)
        Solutions (zeros where unstable); ``X`` is ``None`` when ``W`` is ``None``.
    """
    n, d = A.shape[0], A.shape[-1]
    arrays = [A, np.broadcast_to(W_T, A.shape)] + ([] if W is None else [np.broadcast_to(W, A.shape)])
    work = n * (d ** 6 if d <= KRON_MAX_D else 40.0 * d ** 3)
    return map_chunks(_lyapunov_pair_serial, arrays, n, work)


def _lyapunov_pair_serial(A: np.ndarray, W_T: np.ndarray, W: np.ndarray | None = None):
    n, d = A.shape[0], A.shape[-1]
    if d <= KRON_MAX_D:
        stable = spectral_radius_of(A) < 1.0
        As = np.where(stable[:, None, None], A, 0.0)
        if W is None:
            X_T = _dlyap_kron(np.swapaxes(As, -1, -2), W_T)
            X = None
        else:
            both = _dlyap_kron(np.concatenate([np.swapaxes(As, -1, -2), As]),
                               np.concatenate([np.broadcast_to(W_T, A.shape), np.broadcast_to(W, A.shape)]))
            X_T, X = both[:n], both[n:]
    else:
        powers, stable = _doubling_powers(A)
        As = np.where(stable[:, None, None], A, 0.0)
        X_T = _refined(powers, As, np.broadcast_to(W_T, A.shape), transpose=True)
        X = None if W is None else _refined(powers, As, np.broadcast_to(W, A.shape), transpose=False)
    X_T = np.where(stable[:, None, None], _symmetrise_if(X_T, W_T), 0.0)
    if X is not None:
        X = np.where(stable[:, None, None], _symmetrise_if(X, W), 0.0)
    return stable, X_T, X


def dlyap_unchecked(A: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Kernel of :func:`dlyap` without validation (``rho(A) < 1`` assumed).

    ``A`` and ``W`` must already broadcast to a common batch shape.
    """
    A, W = np.broadcast_arrays(A, W)
    if A.shape[-1] <= KRON_MAX_D:
        X = _dlyap_kron(A, W)
    else:
        X = _refined(_doubling_powers(A)[0], A, W, transpose=False)
    return _symmetrise_if(X, W)


def dlyap(A: Any, W: Any) -> np.ndarray:
    """Solve the discrete Lyapunov equation ``X = A X A' + W``.

    Parameters
    ----------
    A : array_like, shape (..., d, d)
        Matrices with spectral radius < 1 (batched over leading axes).
    W : array_like, shape (..., d, d)
        Right-hand sides, broadcast against ``A``.

    Returns
    -------
    X : ndarray, shape broadcast(A, W)
        The unique solution ``X = sum_t A^t W (A')^t``. Symmetric whenever ``W`` is.

    Raises
    ------
    ValidationError
        On wrong shapes or non-finite input.
    UnstablePolicyError
        If some ``A`` has spectral radius >= 1 (the series diverges; no solution is
        returned). The message names the batch index and the spectral radius.

    Notes
    -----
    With ``A = (A_i - B_i K)'`` and ``W = Q_i + K'R_i K`` this gives ``P_K`` of
    Proposition 1; with ``A = A_i - B_i K`` and ``W = Psi`` the state covariance
    ``Sigma_K`` of Eq. (1) of the ZO-MAML paper.

    Examples
    --------
    >>> import numpy as np, metalqr
    >>> X = metalqr.dlyap(np.array([[0.5]]), np.array([[1.0]]))
    >>> float(X[0, 0])  # 1 / (1 - 0.25)
    1.3333333333333333
    """
    A = as_float_array(A, "A")
    W = as_float_array(W, "W")
    for name, M in (("A", A), ("W", W)):
        if M.ndim < 2 or M.shape[-1] != M.shape[-2] or M.shape[-1] == 0:
            raise ValidationError(f"{name} must have shape (..., d, d) with square trailing axes; "
                                  f"got {M.shape}.")
    if A.shape[-1] != W.shape[-1]:
        raise ValidationError(f"A and W must have the same d; got A {A.shape} and W {W.shape}.")
    try:
        batch = np.broadcast_shapes(A.shape[:-2], W.shape[:-2])
    except ValueError:
        raise ValidationError(f"the leading (batch) axes of A {A.shape[:-2]} and W {W.shape[:-2]} "
                              f"do not broadcast.") from None
    rho = spectral_radius_of(A)
    if np.any(rho >= 1.0):
        idx = np.unravel_index(int(np.argmax(rho)), rho.shape) if rho.ndim else ()
        where = f"A[{', '.join(map(str, idx))}]" if idx else "A"
        raise UnstablePolicyError(
            f"dlyap needs spectral radius < 1; {where} has spectral radius {float(np.max(rho)):.6g}, "
            f"so X = A X A' + W has no convergent solution.",
            task_index=int(np.ravel_multi_index(idx, rho.shape)) if idx else None,
            spectral_radius=float(np.max(rho)))
    d = A.shape[-1]
    return dlyap_unchecked(np.broadcast_to(A, batch + (d, d)), np.broadcast_to(W, batch + (d, d)))
