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


def _step(z: np.ndarray, h: float | None) -> np.ndarray:
    return (np.finfo(float).eps ** (1 / 3) if h is None else h) * np.maximum(1.0, np.abs(z))


def fd_dynamics_jacobians(dynamics: Callable, X: np.ndarray, U: np.ndarray, *,
                          vectorized: bool = False, step: float | None = None):
    """Central-difference ``f_x`` (T, D, D) and ``f_u`` (T, D, M) along (X, U)."""
    T, M = U.shape
    D = X.shape[1]
    n = D + M
    Z = np.concatenate([X[:-1], U], axis=1)
    h1 = _step(Z, step)
    pts = Z[:, None, None, :] + np.array([1.0, -1.0])[None, :, None, None] * (h1[:, None, :, None] * np.eye(n))
    flat = pts.reshape(-1, n)
    t_flat = np.repeat(np.arange(T), 2 * n)
    if vectorized:
        F = np.asarray(dynamics(flat[:, :D], flat[:, D:], t_flat))
    else:
        F = np.array([dynamics(z[:D], z[D:], int(t)) for z, t in zip(flat, t_flat)])
    F = F.reshape(T, 2, n, D)
    J = (F[:, 0] - F[:, 1]) / (2 * h1[:, :, None])                # J[t, i] = df/dz_i
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
    T, M = U.shape
    D = X.shape[1]
    n = D + M
    Z = np.concatenate([X[:-1], U], axis=1)                       # (T, n)
    ts = np.arange(T)
    h1 = _step(Z, step)                                           # (T, n)
    eye = np.eye(n)
    f_x, f_u = fd_dynamics_jacobians(dynamics, X, U, vectorized=vectorized, step=step)
    # --- cost gradient and Hessian via second differences
    h2 = (np.finfo(float).eps ** 0.25 if step is None else step ** 0.75) * np.maximum(1.0, np.abs(Z))
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=float)
    Ei = h2[:, :, None] * eye                                      # (T, n, n): row i = h_i e_i
    pts2 = (Z[:, None, None, None, :] + signs[None, :, 0, None, None, None] * Ei[:, None, :, None, :]
            + signs[None, :, 1, None, None, None] * Ei[:, None, None, :, :])   # (T, 4, n, n, n)
    flat2 = pts2.reshape(-1, n)
    t2 = np.repeat(ts, 4 * n * n)
    if vectorized:
        C = np.asarray(cost(flat2[:, :D], flat2[:, D:], t2))
    else:
        C = np.array([cost(z[:D], z[D:], int(t)) for z, t in zip(flat2, t2)])
    C = C.reshape(T, 4, n, n)
    H = (C[:, 0] - C[:, 1] - C[:, 2] + C[:, 3]) / (4 * h2[:, :, None] * h2[:, None, :])
    H = 0.5 * (H + np.swapaxes(H, 1, 2))
    pts1 = Z[:, None, None, :] + np.array([1.0, -1.0])[None, :, None, None] * (h1[:, None, :, None] * eye)
    f1 = pts1.reshape(-1, n)
    if vectorized:
        C1 = np.asarray(cost(f1[:, :D], f1[:, D:], np.repeat(ts, 2 * n)))
    else:
        C1 = np.array([cost(z[:D], z[D:], int(t)) for z, t in zip(f1, np.repeat(ts, 2 * n))])
    C1 = C1.reshape(T, 2, n)
    g = (C1[:, 0] - C1[:, 1]) / (2 * h1)
    # --- terminal cost
    xT = X[-1]
    hT1 = _step(xT, step)
    hT2 = (np.finfo(float).eps ** 0.25 if step is None else step ** 0.75) * np.maximum(1.0, np.abs(xT))
    eD = np.eye(D)
    ptsT = np.concatenate([xT + hT1[:, None] * eD, xT - hT1[:, None] * eD])
    ptsTT = np.stack([xT + s0 * hT2[:, None, None] * eD[:, None, :] + s1 * hT2[None, :, None] * eD[None, :, :]
                      for s0, s1 in signs])                        # (4, D, D, D)
    if vectorized:
        cT1 = np.asarray(terminal_cost(ptsT))
        cT2 = np.asarray(terminal_cost(ptsTT.reshape(-1, D))).reshape(4, D, D)
    else:
        cT1 = np.array([terminal_cost(z) for z in ptsT])
        cT2 = np.array([terminal_cost(z) for z in ptsTT.reshape(-1, D)]).reshape(4, D, D)
    cT_x = (cT1[:D] - cT1[D:]) / (2 * hT1)
    cT_xx = (cT2[0] - cT2[1] - cT2[2] + cT2[3]) / (4 * hT2[:, None] * hT2[None, :])
    return Derivatives(f_x=f_x, f_u=f_u, c_x=g[:, :D], c_u=g[:, D:], c_xx=H[:, :D, :D],
                       c_uu=H[:, D:, D:], c_ux=H[:, D:, :D], cT_x=cT_x,
                       cT_xx=0.5 * (cT_xx + cT_xx.T))
