"""Standard trajectory-optimisation problems for tests and benchmarks.

Each function returns a :class:`Problem` with vectorised dynamics/cost callables (batch
first) and, where given, analytic derivatives. Reference values:

* ``acrobot()``: the acrobot of trajax's test suite (Gym-style dynamics, explicit Euler,
  ``dt = 0.1``, ``T = 50``, ``x0 = 0``, goal ``[pi, 0, 0, 0]``, stage
  ``0.5 * 0.1 |x - goal|^2 + 0.5 * 0.01 |u|^2``, terminal ``0.5 * 1000 |x_T - goal|^2``):
  objective 4959.476212 at ``U = 0``; a good solver reaches below 51.
* ``pendulum()``: torque-driven pendulum swing-up (``m = l = 1``, ``g = 9.81``, RK4,
  ``dt = 0.01``, ``T = 300``), stage ``(theta - pi)^2 + theta_dot^2 + 0.01 u^2`` (times dt),
  terminal ``10 ((theta - pi)^2 + theta_dot^2)``.
* ``cartpole()``: cart-pole swing-up of trajax's benchmark (cart 10 kg, pole 1 kg,
  0.5 m, ``dt = 0.1``, ``T = 50``, force ``5 tanh(u)``), stage ``0.1 |x - x*|^2 + 0.01 u^2``,
  terminal ``1000 |x_T - x*|^2`` with ``x* = [0, pi, 0, 0]`` (no angle wrapping: the
  benchmark's modulo wrap is discontinuous).
* ``linear_quadratic(...)``: random time-varying LQ problem, with the exact finite-horizon
  Riccati solution for comparison.
* ``diagonal_quadratic(D, M, T)``: a TOW-like problem with D-dimensional state, diagonal
  ``f_x`` and ``c_xx``: ``x_{t+1} = x_t - lr * sum_j u_j a_j * (x_t - c_j)`` (one gradient
  step on ``M`` weighted quadratic losses), cost ``sum_j loss_j(x) + beta/2 |u - mu|^2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import math

import numba as nb
import numpy as np

from .._validation import (as_rng, check_bool, check_callable, check_int, check_psd, check_real,
                           check_size, check_symmetric)
from ..exceptions import ValidationError, ValidationTypeError
from ._checks import real_array
from .derivatives import Derivatives, fd_dynamics_jacobians, quadratic_cost_derivatives

__all__ = ["Problem", "acrobot", "pendulum", "cartpole", "linear_quadratic", "diagonal_quadratic",
           "finite_horizon_lqr"]


@dataclass
class Problem:
    """A trajectory-optimisation problem in the form :func:`metalqr.ilqr.ilqr` takes.

    Attributes
    ----------
    name : str
    dynamics, cost : callables ``(x, u, t)``; terminal_cost : callable ``(x)``
        Batch-first when ``vectorized`` (see :func:`metalqr.ilqr.ilqr`).
    x0 : (D,) array; U0 : (T, M) array
        Initial state and nominal controls (finite, real).
    derivatives : callable ``(X, U) -> Derivatives`` or None
    vectorized : bool
    reference : float
        A cost that a good solver reaches (NaN if none).
    compiled_step : Numba-jitted ``(x, u, t) -> x_next`` or None

    Raises
    ------
    ValidationError
        A malformed field (checked at construction).
    """

    name: str
    dynamics: Callable
    cost: Callable
    terminal_cost: Callable
    x0: np.ndarray
    U0: np.ndarray
    derivatives: Optional[Callable] = None
    vectorized: bool = True
    reference: float = float("nan")   # a cost that a good solver reaches (see module doc)
    compiled_step: Optional[Callable] = None   # Numba one-step dynamics, if available

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ValidationTypeError(f"name must be a str; got {type(self.name).__name__}.")
        check_callable(self.dynamics, "dynamics")
        check_callable(self.cost, "cost")
        check_callable(self.terminal_cost, "terminal_cost")
        check_callable(self.derivatives, "derivatives", allow_none=True)
        self.x0 = real_array(self.x0, "x0", ndim=1, allow_empty=False)
        self.U0 = real_array(self.U0, "U0", ndim=2)
        if min(self.U0.shape) < 1:
            raise ValidationError(f"U0 must have shape (T, M) with T, M >= 1; got {self.U0.shape}.")
        self.vectorized = check_bool(self.vectorized, "vectorized")
        if isinstance(self.reference, (bool, np.bool_, str, bytes, complex)) or not isinstance(
                self.reference, (int, float, np.integer, np.floating)):
            raise ValidationTypeError(f"reference must be a real number (NaN for none); got "
                                      f"{self.reference!r}.")
        self.reference = float(self.reference)
        if self.compiled_step is not None and not hasattr(self.compiled_step, "py_func"):
            raise ValidationTypeError("compiled_step must be a Numba-jitted function or None; got "
                                      f"{type(self.compiled_step).__name__}.")

    def kwargs(self, compiled: bool = True) -> dict:
        """Keyword arguments for :func:`ilqr` (besides solver options).

        Parameters
        ----------
        compiled : bool
            ``False`` leaves out the compiled one-step dynamics (pure-Python forward passes).

        Returns
        -------
        dict

        Raises
        ------
        ValidationError
            ``compiled`` not a bool.
        """
        compiled = check_bool(compiled, "compiled")
        return dict(dynamics=self.dynamics, cost=self.cost, x0=self.x0, U0=self.U0,
                    terminal_cost=self.terminal_cost, derivatives=self.derivatives,
                    vectorized=self.vectorized,
                    compiled_step=self.compiled_step if compiled else None)


def _fd_dynamics_analytic_cost(dynamics, goal, q, r, q_final):
    """Derivatives: central differences of the dynamics (vectorised), exact quadratic cost."""
    def derivatives(X, U):
        f_x, f_u = fd_dynamics_jacobians(dynamics, X, U, vectorized=True)
        return Derivatives(f_x=f_x, f_u=f_u, **quadratic_cost_derivatives(X, U, goal, q, r, q_final))
    return derivatives


@nb.njit(cache=True)
def _acrobot_step(x, u, dt):
    """Explicit Euler step of the Gym-style acrobot, batched over rows (compiled: the
    forward pass calls it one step at a time)."""
    m1, m2, l1, lc1, lc2, I1, I2 = 1.0, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0
    g = 9.8
    out = np.empty_like(x)
    for n in range(x.shape[0]):
        th1, th2, dth1, dth2 = x[n, 0], x[n, 1], x[n, 2], x[n, 3]
        a = u[n, 0]
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * math.cos(th2)) + I1 + I2
        d2 = m2 * (lc2**2 + l1 * lc2 * math.cos(th2)) + I2
        phi2 = m2 * lc2 * g * math.cos(th1 + th2 - math.pi / 2)
        phi1 = (-m2 * l1 * lc2 * dth2**2 * math.sin(th2)
                - 2 * m2 * l1 * lc2 * dth2 * dth1 * math.sin(th2)
                + (m1 * lc1 + m2 * l1) * g * math.cos(th1 - math.pi / 2) + phi2)
        ddth2 = ((a + d2 / d1 * phi1 - m2 * l1 * lc2 * dth1**2 * math.sin(th2) - phi2)
                 / (m2 * lc2**2 + I2 - d2**2 / d1))
        ddth1 = -(d2 * ddth2 + phi1) / d1
        out[n, 0] = th1 + dt * dth1
        out[n, 1] = th2 + dt * dth2
        out[n, 2] = dth1 + dt * ddth1
        out[n, 3] = dth2 + dt * ddth2
    return out


@nb.njit(cache=True)
def _acrobot_single(x, u, t):
    return _acrobot_step(x.reshape(1, -1), u.reshape(1, -1), 0.1)[0]


def acrobot() -> Problem:
    """The trajax acrobot (see module docstring); reference optimum below 51.

    Returns
    -------
    Problem
    """
    dt, T = 0.1, 50
    goal = np.array([np.pi, 0.0, 0.0, 0.0])

    def dynamics(x, u, t):
        return _acrobot_step(np.ascontiguousarray(x, dtype=float), np.ascontiguousarray(u, dtype=float), dt)

    def cost(x, u, t):
        e = x - goal
        return 0.5 * 0.1 * np.sum(e * e, axis=1) + 0.5 * 0.01 * np.sum(u * u, axis=1)

    def terminal(x):
        e = x - goal
        return 0.5 * 1000.0 * np.sum(e * e, axis=1)

    return Problem("acrobot", dynamics, cost, terminal, np.zeros(4), np.zeros((T, 1)),
                   _fd_dynamics_analytic_cost(dynamics, goal, 0.05, 0.005, 500.0), reference=51.0,
                   compiled_step=_acrobot_single)


@nb.njit(cache=True)
def _pendulum_rk4(x, u, dt):
    out = np.empty_like(x)
    for n in range(x.shape[0]):
        th, om, a = x[n, 0], x[n, 1], u[n, 0]
        k1t, k1o = om, a - 9.81 * math.sin(th)
        k2t, k2o = om + 0.5 * dt * k1o, a - 9.81 * math.sin(th + 0.5 * dt * k1t)
        k3t, k3o = om + 0.5 * dt * k2o, a - 9.81 * math.sin(th + 0.5 * dt * k2t)
        k4t, k4o = om + dt * k3o, a - 9.81 * math.sin(th + dt * k3t)
        out[n, 0] = th + dt / 6.0 * (k1t + 2 * k2t + 2 * k3t + k4t)
        out[n, 1] = om + dt / 6.0 * (k1o + 2 * k2o + 2 * k3o + k4o)
    return out


@nb.njit(cache=True)
def _pendulum_single_001(x, u, t):
    return _pendulum_rk4(x.reshape(1, -1), u.reshape(1, -1), 0.01)[0]


def _horizon_step(T, dt):
    return (check_int(T, "T", minimum=1, maximum=10 ** 7),
            check_real(dt, "dt", minimum=0.0, maximum=1.0, min_inclusive=False))


def pendulum(T: int = 300, dt: float = 0.01) -> Problem:
    """Pendulum swing-up with RK4 (see module docstring).

    Parameters
    ----------
    T : int in [1, 1e7]
        Horizon.
    dt : float in (0, 1]
        Time step (s).

    Returns
    -------
    Problem

    Raises
    ------
    ValidationError
        ``T`` or ``dt`` out of range or of the wrong type.
    """
    T, dt = _horizon_step(T, dt)
    goal = np.array([np.pi, 0.0])

    def dynamics(x, u, t):
        return _pendulum_rk4(np.ascontiguousarray(x, dtype=float), np.ascontiguousarray(u, dtype=float), dt)

    def cost(x, u, t):
        e = x - goal
        return dt * (np.sum(e * e, axis=1) + 0.01 * np.sum(u * u, axis=1))

    def terminal(x):
        e = x - goal
        return 10.0 * np.sum(e * e, axis=1)

    return Problem("pendulum", dynamics, cost, terminal, np.zeros(2), np.zeros((T, 1)),
                   _fd_dynamics_analytic_cost(dynamics, goal, dt, 0.01 * dt, 10.0),
                   compiled_step=_pendulum_single_001 if dt == 0.01 else None)


@nb.njit(cache=True)
def _cartpole_step(x, u, dt):
    """Euler step; M(q) qdd = [F + mp l thd^2 sin th, -mp g l sin th],
    M = [[mc + mp, mp l cos th], [mp l cos th, mp l^2]], F = 5 tanh(u)."""
    mc, mp, l, g = 10.0, 1.0, 0.5, 9.81
    out = np.empty_like(x)
    for n in range(x.shape[0]):
        th, dx, dth = x[n, 1], x[n, 2], x[n, 3]
        force = 5.0 * math.tanh(u[n, 0])
        s, c = math.sin(th), math.cos(th)
        m11, m12, m22 = mc + mp, mp * l * c, mp * l * l
        r1 = force + mp * l * dth * dth * s
        r2 = -mp * g * l * s
        det = m11 * m22 - m12 * m12
        out[n, 0] = x[n, 0] + dt * dx
        out[n, 1] = th + dt * dth
        out[n, 2] = dx + dt * (m22 * r1 - m12 * r2) / det
        out[n, 3] = dth + dt * (-m12 * r1 + m11 * r2) / det
    return out


@nb.njit(cache=True)
def _cartpole_single_01(x, u, t):
    return _cartpole_step(x.reshape(1, -1), u.reshape(1, -1), 0.1)[0]


def cartpole(T: int = 50, dt: float = 0.1) -> Problem:
    """Cart-pole swing-up (see module docstring).

    Parameters
    ----------
    T : int in [1, 1e7]
        Horizon.
    dt : float in (0, 1]
        Time step (s).

    Returns
    -------
    Problem

    Raises
    ------
    ValidationError
        ``T`` or ``dt`` out of range or of the wrong type.
    """
    T, dt = _horizon_step(T, dt)
    goal = np.array([0.0, np.pi, 0.0, 0.0])

    def dynamics(x, u, t):
        return _cartpole_step(np.ascontiguousarray(x, dtype=float), np.ascontiguousarray(u, dtype=float), dt)

    def cost(x, u, t):
        e = x - goal
        return 0.1 * np.sum(e * e, axis=1) + 0.01 * np.sum(u * u, axis=1)

    def terminal(x):
        e = x - goal
        return 1000.0 * np.sum(e * e, axis=1)

    return Problem("cartpole", dynamics, cost, terminal, np.array([0.0, 0.2, 0.0, -0.1]), np.zeros((T, 1)),
                   _fd_dynamics_analytic_cost(dynamics, goal, 0.1, 0.01, 1000.0),
                   compiled_step=_cartpole_single_01 if dt == 0.1 else None)


def linear_quadratic(D: int, M: int, T: int, rng, diagonal: bool = False) -> tuple[Problem, dict]:
    """Random time-varying LQ problem ``x' = A_t x + B_t u + c_t``, cost
    ``0.5 x'Q_t x + 0.5 u'R_t u + q_t'x``, terminal ``0.5 x'Q_T x``; returns the problem
    (analytic derivatives) and its matrices. ``diagonal=True`` makes everything diagonal
    (requires ``D == M``), i.e. D decoupled scalar problems.

    Parameters
    ----------
    D, M, T : int >= 1
        State size, control size, horizon.
    rng : numpy Generator, int seed >= 0 or None
    diagonal : bool

    Returns
    -------
    (Problem, dict)
        The dict holds ``A`` (T, D, D), ``B`` (T, D, M), ``c`` (T, D), ``Q`` (T+1, D, D),
        ``R`` (T, M, M), ``q`` (T, D), ``x0`` (D,), ``ts`` (T,).

    Raises
    ------
    ValidationError
        Malformed sizes, ``diagonal=True`` with ``D != M``, or matrices beyond the memory
        limit.
    """
    D = check_int(D, "D", minimum=1)
    M = check_int(M, "M", minimum=1)
    T = check_int(T, "T", minimum=1)
    rng = as_rng(rng)
    diagonal = check_bool(diagonal, "diagonal")
    check_size(float(T + 1) * (2 * D * D + D * M + M * M), "linear_quadratic",
               what="float64 entries", alternative="Use a smaller D, M or T.")
    if diagonal:
        if D != M:
            raise ValidationError(f"diagonal=True (decoupled LQ problems) needs D == M; got "
                                  f"D={D}, M={M}.")
        A = np.stack([np.diag(rng.uniform(0.5, 1.2, D)) for _ in range(T)])
        B = np.stack([np.diag(rng.uniform(0.5, 1.5, D)) for _ in range(T)])
        Q = np.stack([np.diag(rng.uniform(0.5, 2.0, D)) for _ in range(T + 1)])
        R = np.stack([np.diag(rng.uniform(0.5, 2.0, M)) for _ in range(T)])
    else:
        A = rng.standard_normal((T, D, D)) * 0.4 + np.eye(D)
        B = rng.standard_normal((T, D, M))
        G = rng.standard_normal((T + 1, D, D))
        Q = G @ np.swapaxes(G, 1, 2) / D + 0.1 * np.eye(D)
        H = rng.standard_normal((T, M, M))
        R = H @ np.swapaxes(H, 1, 2) / M + 0.5 * np.eye(M)
    c = rng.standard_normal((T, D)) * 0.1
    q = rng.standard_normal((T, D))
    x0 = rng.standard_normal(D)
    ts = np.arange(T)

    def dynamics(x, u, t):
        return np.einsum("nij,nj->ni", A[t], x) + np.einsum("nij,nj->ni", B[t], u) + c[t]

    def cost(x, u, t):
        return (0.5 * np.einsum("ni,nij,nj->n", x, Q[t], x) + 0.5 * np.einsum("ni,nij,nj->n", u, R[t], u)
                + np.einsum("ni,ni->n", q[t], x))

    def terminal(x):
        return 0.5 * np.einsum("ni,ij,nj->n", x, Q[T], x)

    def derivatives(X, U):
        xs = X[:-1]
        if diagonal:
            fx = np.diagonal(A, axis1=1, axis2=2).copy()
            cxx = np.diagonal(Q[:T], axis1=1, axis2=2).copy()
            cTxx = np.diagonal(Q[T]).copy()
        else:
            fx, cxx, cTxx = A, Q[:T], Q[T]
        return Derivatives(f_x=fx, f_u=B, c_x=np.einsum("nij,nj->ni", Q[:T], xs) + q,
                           c_u=np.einsum("nij,nj->ni", R, U), c_xx=cxx, c_uu=R, c_ux=None,
                           cT_x=Q[T] @ X[-1], cT_xx=cTxx)

    mats = dict(A=A, B=B, c=c, Q=Q, R=R, q=q, x0=x0, ts=ts)
    return Problem("linear_quadratic", dynamics, cost, terminal, x0, np.zeros((T, M)), derivatives), mats


def finite_horizon_lqr(mats: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact solution of the LQ problem of :func:`linear_quadratic` by the Riccati recursion
    with affine terms: returns the optimal controls (T, M), feedback (T, M, D) and feed-forward
    (T, M) gains (``u_t = K_t x_t + k_t``).

    Parameters
    ----------
    mats : dict
        ``A`` (T, D, D), ``B`` (T, D, M), ``c`` (T, D), ``Q`` (T+1, D, D) symmetric PSD,
        ``R`` (T, M, M) symmetric positive definite, ``q`` (T, D), ``x0`` (D,).

    Returns
    -------
    U (T, M), K (T, M, D), k (T, M)

    Raises
    ------
    ValidationError
        A missing key, a malformed or inconsistent matrix, or an ``R`` that is not positive
        definite.
    """
    if not isinstance(mats, dict):
        raise ValidationTypeError(f"mats must be a dict as returned by linear_quadratic; got "
                                  f"{type(mats).__name__}.")
    missing = [n for n in ("A", "B", "c", "Q", "R", "q", "x0") if n not in mats]
    if missing:
        raise ValidationError(f"mats is missing the key(s) {missing}; pass the dict returned by "
                              f"linear_quadratic.")
    B = real_array(mats["B"], "mats['B']", ndim=3)
    T, D, M = B.shape
    if min(T, D, M) < 1:
        raise ValidationError(f"mats['B'] must have shape (T, D, M) with T, D, M >= 1; got {B.shape}.")
    A = real_array(mats["A"], "mats['A']", shape=(T, D, D))
    c = real_array(mats["c"], "mats['c']", shape=(T, D))
    Q = check_symmetric(real_array(mats["Q"], "mats['Q']", shape=(T + 1, D, D)), "mats['Q']")
    R = check_symmetric(real_array(mats["R"], "mats['R']", shape=(T, M, M)), "mats['R']")
    check_psd(Q, "mats['Q']", strict=False)
    check_psd(R, "mats['R']", strict=True)
    q = real_array(mats["q"], "mats['q']", shape=(T, D))
    x0 = real_array(mats["x0"], "mats['x0']", shape=(D,))
    P, p = Q[T].copy(), np.zeros(D)
    Ks, ks = np.zeros((T, M, D)), np.zeros((T, M))
    for t in range(T - 1, -1, -1):
        H = R[t] + B[t].T @ P @ B[t]
        Ks[t] = -np.linalg.solve(H, B[t].T @ P @ A[t])
        ks[t] = -np.linalg.solve(H, B[t].T @ (P @ c[t] + p))
        Acl = A[t] + B[t] @ Ks[t]
        # linear term of the value: q + K'Rk + (A + BK)'(P (B k + c) + p)
        p = q[t] + Ks[t].T @ R[t] @ ks[t] + Acl.T @ (P @ (B[t] @ ks[t] + c[t]) + p)
        P = Q[t] + A[t].T @ P @ Acl
        P = 0.5 * (P + P.T)
    x, U = x0.copy(), np.zeros((T, M))
    for t in range(T):
        U[t] = Ks[t] @ x + ks[t]
        x = A[t] @ x + B[t] @ U[t] + c[t]
    return U, Ks, ks


def diagonal_quadratic(D: int, M: int, T: int, rng=0, lr: float = 0.5, beta: float = 1.0) -> Problem:
    """TOW-like problem (see module docstring) with analytic diagonal derivatives.

    State ``x`` (D,) are "meta-parameters", control ``u`` (M,) the task weights; each task
    loss is ``l_j(x) = 0.5 sum_i a_ji (x_i - c_ji)^2``; one weighted gradient step per time
    step; cost ``sum_j l_j(x_t) + beta/2 |u_t - 1/M|^2`` and terminal ``sum_j l_j(x_T)``.
    ``f_x = 1 - lr sum_j u_j a_j`` and ``c_xx = sum_j a_j`` are diagonal, so the diagonal
    value model never forms a D x D matrix.

    Parameters
    ----------
    D, M, T : int >= 1
        State size, number of tasks (controls), horizon.
    rng : numpy Generator, int seed >= 0 or None
    lr : float > 0
        Step size of the inner gradient step.
    beta : float >= 0
        Weight of the control cost.

    Returns
    -------
    Problem

    Raises
    ------
    ValidationError
        Malformed arguments, or more than metalqr's limit of float64 entries
        (``~ 4 M D`` plus ``O(T D M)`` per iteration).
    """
    D = check_int(D, "D", minimum=1)
    M = check_int(M, "M", minimum=1)
    T = check_int(T, "T", minimum=1)
    rng = as_rng(rng)
    lr = check_real(lr, "lr", minimum=0.0, min_inclusive=False)
    beta = check_real(beta, "beta", minimum=0.0)
    check_size(4.0 * M * D + 4.0 * T * D * M, "diagonal_quadratic", what="float64 entries",
               alternative="Use a smaller D, M or T.")
    a = rng.uniform(0.2, 1.0, (M, D)) / M
    c = rng.standard_normal((M, D))
    ac = a * c
    mu = 1.0 / M
    asum = a.sum(axis=0)

    def dynamics(x, u, t):
        return x - lr * (x * (u @ a) - u @ ac)

    def task_losses(x):
        return 0.5 * np.einsum("md,nmd->nm", a, (x[:, None, :] - c[None]) ** 2)

    def cost(x, u, t):
        return task_losses(x).sum(axis=1) + 0.5 * beta * np.sum((u - mu) ** 2, axis=1)

    def terminal(x):
        return task_losses(x).sum(axis=1)

    def derivatives(X, U):
        xs = X[:-1]                                                     # (T, D)
        f_x = 1.0 - lr * (U @ a)                                        # (T, D) diagonal
        f_u = -lr * np.swapaxes(a[None] * (xs[:, None, :] - c[None]), 1, 2)   # (T, D, M)
        c_x = xs * asum - ac.sum(axis=0)
        return Derivatives(f_x=f_x, f_u=f_u, c_x=c_x, c_u=beta * (U - mu),
                           c_xx=np.broadcast_to(asum, xs.shape).copy(),
                           c_uu=np.broadcast_to(beta * np.eye(M), (U.shape[0], M, M)).copy(),
                           c_ux=None, cT_x=X[-1] * asum - ac.sum(axis=0), cT_xx=asum.copy())

    return Problem("diagonal_quadratic", dynamics, cost, terminal, np.zeros(D),
                   np.full((T, M), mu), derivatives)
