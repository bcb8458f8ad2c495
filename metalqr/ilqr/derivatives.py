"""Derivatives of the dynamics and cost along a trajectory, from the user or by finite
differences (vectorised over the horizon when the callables accept batches)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

__all__ = ["Derivatives", "finite_difference_derivatives", "fd_dynamics_jacobians", "quadratic_cost_derivatives"]


@dataclass
class Derivatives:
    """First derivatives of the dynamics and second-order expansion of the cost along a
    trajectory ``X`` (T+1, D), ``U`` (T, M).

    Attributes
    ----------
    f_x : (T, D, D) dense or (T, D) diagonal
    f_u : (T, D, M)
    c_x : (T, D)
    c_u : (T, M)
    c_xx : (T, D, D) dense or (T, D) diagonal
    c_uu : (T, M, M)
    c_ux : (T, M, D) or None (zero)
    cT_x : (D,)
    cT_xx : (D, D) dense or (D,) diagonal
    """

    f_x: np.ndarray
    f_u: np.ndarray
    c_x: np.ndarray
    c_u: np.ndarray
    c_xx: np.ndarray
    c_uu: np.ndarray
    c_ux: Optional[np.ndarray]
    cT_x: np.ndarray
    cT_xx: np.ndarray


def _steps(z: np.ndarray, h: float | None, order: int) -> np.ndarray:
    """Relative step ``h * max(1, |z|)``: ``h = eps^(1/3)`` for first, ``eps^(1/4)`` for
    second derivatives (or the user's ``h``, ``h^(3/4)``)."""
    eps = np.finfo(float).eps
    base = (eps ** (1 / 3) if h is None else h) if order == 1 else (eps ** 0.25 if h is None else h ** 0.75)
    return base * np.maximum(1.0, np.abs(z))


def _batched(fn: Callable, vectorized: bool, D: int | None) -> Callable:
    """``f(points (N, n), t (N,)) -> (N, ...)`` from a user callable: ``fn(x, u, t)`` when ``D``
    splits the points into (x, u), ``fn(x)`` (terminal cost) when ``D`` is None."""
    if D is None:
        if vectorized:
            return lambda P, t: np.asarray(fn(P))
        return lambda P, t: np.array([fn(p) for p in P])
    if vectorized:
        return lambda P, t: np.asarray(fn(P[:, :D], P[:, D:], t))
    return lambda P, t: np.array([fn(p[:D], p[D:], int(ti)) for p, ti in zip(P, t)])


def _central_gradient(f: Callable, Z: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``df/dz_i`` at each row of ``Z`` (T, n): central differences, result (T, n, ...)."""
    T, n = Z.shape
    pts = Z[:, None, None, :] + np.array([1.0, -1.0])[None, :, None, None] * (h[:, None, :, None] * np.eye(n))
    V = f(pts.reshape(-1, n), np.repeat(np.arange(T), 2 * n))
    V = V.reshape((T, 2, n) + V.shape[1:])
    return (V[:, 0] - V[:, 1]) / (2 * h).reshape((T, n) + (1,) * (V.ndim - 3))


def _central_hessian(f: Callable, Z: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Second differences ``(f(++) - f(+-) - f(-+) + f(--)) / (4 h_i h_j)`` of a scalar ``f``
    at each row of ``Z`` (T, n); symmetrised, result (T, n, n)."""
    T, n = Z.shape
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=float)
    E = h[:, :, None] * np.eye(n)                                   # row i = h_i e_i
    pts = (Z[:, None, None, None, :] + signs[None, :, 0, None, None, None] * E[:, None, :, None, :]
           + signs[None, :, 1, None, None, None] * E[:, None, None, :, :])   # (T, 4, n, n, n)
    C = f(pts.reshape(-1, n), np.repeat(np.arange(T), 4 * n * n)).reshape(T, 4, n, n)
    H = (C[:, 0] - C[:, 1] - C[:, 2] + C[:, 3]) / (4 * h[:, :, None] * h[:, None, :])
    return 0.5 * (H + np.swapaxes(H, 1, 2))


def fd_dynamics_jacobians(dynamics: Callable, X: np.ndarray, U: np.ndarray, *,
                          vectorized: bool = False, step: float | None = None):
    """Central-difference ``f_x`` (T, D, D) and ``f_u`` (T, D, M) along (X, U)."""
    D = X.shape[1]
    Z = np.concatenate([X[:-1], U], axis=1)
    J = _central_gradient(_batched(dynamics, vectorized, D), Z, _steps(Z, step, 1))  # (T, n, D)
    return np.swapaxes(J[:, :D], 1, 2), np.swapaxes(J[:, D:], 1, 2)


def quadratic_cost_derivatives(X: np.ndarray, U: np.ndarray, goal: np.ndarray, q: float, r: float,
                               q_final: float) -> dict:
    """Exact derivatives of ``q |x - goal|^2 + r |u|^2`` (stage) and ``q_final |x_T - goal|^2``
    (terminal), for :class:`Derivatives` (diagonal Hessians)."""
    T, M = U.shape
    D = X.shape[1]
    return dict(c_x=2 * q * (X[:-1] - goal), c_u=2 * r * U, c_xx=np.full((T, D), 2 * q),
                c_uu=np.broadcast_to(2 * r * np.eye(M), (T, M, M)).copy(), c_ux=None,
                cT_x=2 * q_final * (X[-1] - goal), cT_xx=np.full(D, 2 * q_final))


def finite_difference_derivatives(dynamics: Callable, cost: Callable, terminal_cost: Callable,
                                  X: np.ndarray, U: np.ndarray, *, vectorized: bool = False,
                                  step: float | None = None) -> Derivatives:
    """Central finite differences of ``dynamics``, ``cost`` and ``terminal_cost``.

    Jacobians use ``2 (D + M)`` evaluations per time step; the cost Hessian uses the
    central second-difference formula on ``z = (x, u)`` with ``4 (D + M)^2`` evaluations.
    With ``vectorized=True`` the callables take batches (``x`` (N, D), ``u`` (N, M),
    ``t`` (N,)) and every time step is differenced in one call. Step ``h * max(1, |z|)``
    with ``h = eps^(1/3)`` for first and ``eps^(1/4)`` for second derivatives.
    """
    D = X.shape[1]
    Z = np.concatenate([X[:-1], U], axis=1)                       # (T, D + M)
    f_x, f_u = fd_dynamics_jacobians(dynamics, X, U, vectorized=vectorized, step=step)
    stage = _batched(cost, vectorized, D)
    g = _central_gradient(stage, Z, _steps(Z, step, 1))
    H = _central_hessian(stage, Z, _steps(Z, step, 2))
    terminal = _batched(terminal_cost, vectorized, None)
    xT = X[-1:]
    gT = _central_gradient(terminal, xT, _steps(xT, step, 1))[0]
    HT = _central_hessian(terminal, xT, _steps(xT, step, 2))[0]
    return Derivatives(f_x=f_x, f_u=f_u, c_x=g[:, :D], c_u=g[:, D:], c_xx=H[:, :D, :D],
                       c_uu=H[:, D:, D:], c_ux=H[:, D:, :D], cT_x=gT, cT_xx=HT)
