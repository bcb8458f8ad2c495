"""The iLQR solver: backward pass, forward pass with backtracking line search,
Levenberg-Marquardt regularisation, box-constrained controls (TOW paper Algorithm 1 lines
9-19 and Appendix E, with the corrections of :mod:`metalqr.ilqr.backward`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np

from .._validation import as_float_array, check_positive
from ..exceptions import ValidationError
from .backward import backward_pass
from .derivatives import Derivatives, finite_difference_derivatives

__all__ = ["ilqr", "ILQRResult"]

#: Default step sizes of the line search (Tassa et al. 2012).
DEFAULT_LINE_SEARCH = tuple(10.0 ** np.linspace(0.0, -3.0, 11))
_MU_MIN, _MU_MAX, _DELTA0 = 1e-6, 1e10, 2.0


@dataclass
class ILQRResult:
    """Result of :func:`ilqr`.

    Attributes
    ----------
    X : (T+1, D) states; U : (T, M) controls.
    K : (T, M, D) feedback and k : (T, M) feed-forward gains of the last backward pass.
    cost : float, total cost of (X, U).
    costs : list of float, the total cost before the first iteration and after each accepted one.
    converged : bool; reason : str, why it stopped.
    n_iterations : int; regularization : float, the final mu.
    """

    X: np.ndarray
    U: np.ndarray
    K: np.ndarray
    k: np.ndarray
    cost: float
    costs: list = field(default_factory=list)
    converged: bool = False
    reason: str = ""
    n_iterations: int = 0
    regularization: float = 0.0


def _bounds(value: Any, name: str, M: int, default: float) -> np.ndarray:
    """Bounds as an (M,) array; ``default`` (+-inf) where none is given."""
    if value is None:
        return np.full(M, default)
    arr = np.broadcast_to(np.asarray(value, dtype=float), (M,)).copy()
    if np.any(np.isnan(arr)):
        raise ValidationError(f"{name} must not contain NaN.")
    return arr


def ilqr(dynamics: Callable, cost: Callable, x0: Any, U0: Any, *,
         terminal_cost: Callable | None = None,
         derivatives: Callable[[np.ndarray, np.ndarray], Derivatives] | None = None,
         vectorized: bool = False, max_iterations: int = 100, tol: float = 1e-8,
         value_model: Literal["full", "diagonal"] = "full", u_min: Any = None, u_max: Any = None,
         constraint: Literal["boxqp", "reject"] = "boxqp", regularization: float = 0.0,
         regularization_type: Literal["state", "control"] = "state",
         line_search: Any = None, accept_ratio: float = 0.1,
         callback: Callable[[int, np.ndarray, np.ndarray, float], Any] | None = None,
         fd_step: float | None = None, compiled_step: Any = None) -> ILQRResult:
    """Iterative LQR for ``min_U sum_t cost(x_t, u_t, t) + terminal_cost(x_T)``,
    ``x_{t+1} = dynamics(x_t, u_t, t)``, ``x_0 = x0``.

    Parameters
    ----------
    dynamics, cost : callables ``(x, u, t)``
        Plain Python callables on one step; with ``vectorized=True`` they take batches
        ``x`` (N, D), ``u`` (N, M), ``t`` (N,) and return (N, D) / (N,).
    x0 : (D,); U0 : (T, M)
        Initial state and nominal controls (clipped into the bounds in ``"boxqp"`` mode).
    terminal_cost : callable ``(x)``, optional
        Cost of ``x_T`` (default 0).
    derivatives : callable ``(X, U) -> Derivatives``, optional
        Analytic derivatives along the trajectory; default central finite differences.
        ``f_x``, ``c_xx`` and ``cT_xx`` may be diagonals (vectors), the TOW case.
    max_iterations : int
    tol : float
        Stop when the relative cost decrease of an accepted step, or the relative expected
        decrease, falls below ``tol``.
    value_model : {"full", "diagonal"}
        Dense ``V_t`` or its diagonal only (TOW Section 3.1; ``O(D M^2)`` per step).
    u_min, u_max : scalar or (M,), optional
        Box limits on the controls.
    constraint : {"boxqp", "reject"}
        ``"boxqp"``: limits enforced in the backward pass by a box QP (Tassa et al. 2014)
        and by clipping in the forward pass. ``"reject"``: the TOW paper's rule
        (Algorithm 1, line 17): unconstrained gains, and a line-search step is rejected
        while any control leaves the box.
    regularization : float
        Initial Levenberg-Marquardt ``mu``; it is raised when ``Q_uu`` is not positive
        definite or no step is accepted, and lowered after success (Tassa et al. 2012).
    regularization_type : {"state", "control"}
        ``"state"`` adds ``mu I`` to ``V_{t+1}`` inside ``Q_uu`` and ``Q_ux`` (the default,
        invariant to control scaling); ``"control"`` adds ``mu I`` to ``Q_uu``.
    line_search : sequence of float, optional
        Step sizes tried in order (default ``10**linspace(0, -3, 11)``).
    accept_ratio : float
        Accept a step when ``actual change <= accept_ratio * expected change``.
    callback : callable ``(iteration, X, U, cost)``, optional
        Called after each accepted iteration; a truthy value stops.
    compiled_step : Numba-jitted function ``(x, u, t) -> x_next``, optional
        The same one-step dynamics as ``dynamics``, compiled. When given, roll-outs and the
        forward passes of the line search run in one compiled loop
        (:mod:`metalqr.ilqr.forward_numba`); results are unchanged.

    Returns
    -------
    ILQRResult
    """
    x0 = as_float_array(x0, "x0", ndim=1)
    U = as_float_array(U0, "U0", ndim=2).copy()
    T, M = U.shape
    D = x0.shape[0]
    if T == 0 or M == 0:
        raise ValidationError(f"U0 must have shape (T, M) with T, M >= 1; got {U.shape}.")
    if value_model not in ("full", "diagonal"):
        raise ValidationError(f"value_model must be 'full' or 'diagonal'; got {value_model!r}.")
    if regularization_type not in ("state", "control"):
        raise ValidationError(f"regularization_type must be 'state' or 'control'; got {regularization_type!r}.")
    if constraint not in ("boxqp", "reject"):
        raise ValidationError(f"constraint must be 'boxqp' or 'reject'; got {constraint!r}.")
    max_iterations = check_positive(max_iterations, "max_iterations", allow_zero=True, integer=True)
    lo, hi = _bounds(u_min, "u_min", M, -np.inf), _bounds(u_max, "u_max", M, np.inf)
    if np.any(lo > hi):
        raise ValidationError("u_min must not exceed u_max.")
    bounded = bool(np.any(np.isfinite(lo)) or np.any(np.isfinite(hi)))
    clip = constraint == "boxqp" and bounded
    alphas = DEFAULT_LINE_SEARCH if line_search is None else tuple(float(a) for a in line_search)
    if terminal_cost is None:
        terminal_cost = (lambda x: np.zeros(x.shape[0])) if vectorized else (lambda x: 0.0)

    if clip:
        U = np.clip(U, lo, hi)
    elif constraint == "reject" and not _inside(U, lo, hi):
        raise ValidationError("with constraint='reject' the nominal controls U0 must satisfy the bounds.")

    t_single = [np.array([t]) for t in range(T)]   # allocated once, not per step

    def step(x, u, t):
        if vectorized:
            return np.asarray(dynamics(x[None], u[None], t_single[t]))[0]
        return np.asarray(dynamics(x, u, t), dtype=float)

    def total_cost(X, U):
        with np.errstate(all="ignore"):
            if vectorized:
                c = float(np.sum(cost(X[:-1], U, np.arange(T)))) + float(np.asarray(terminal_cost(X[-1:]))[0])
            else:
                c = sum(float(cost(X[t], U[t], t)) for t in range(T)) + float(terminal_cost(X[-1]))
        return c if math.isfinite(c) else math.inf

    if compiled_step is not None:
        from .forward_numba import forward_compiled

    def forward(X, U, K, k, alpha):
        """Closed-loop pass u_t = U_t + alpha k_t + K_t (x_t - X_t) (clipped in box-QP mode)."""
        with np.errstate(all="ignore"):
            if compiled_step is not None:
                return forward_compiled(compiled_step, x0, X, U, K, k, alpha, lo, hi, clip)
            X_new = np.empty((T + 1, D))
            U_new = np.empty_like(U)
            X_new[0] = x0
            U_ff = U + alpha * k                       # feed-forward part, all steps at once
            for t in range(T):
                u = U_ff[t] + K[t] @ (X_new[t] - X[t])
                U_new[t] = np.clip(u, lo, hi) if clip else u
                X_new[t + 1] = step(X_new[t], U_new[t], t)
        return X_new, U_new

    K = np.zeros((T, M, D))
    k = np.zeros((T, M))
    X, U = forward(np.zeros((T + 1, D)), U, K, k, 0.0)   # zero gains: open-loop roll-out
    J = total_cost(X, U)
    if not math.isfinite(J):
        raise ValidationError("the cost of the initial trajectory (x0, U0) is not finite; start from "
                              "controls whose roll-out stays bounded.")
    costs = [J]
    mu, delta = float(regularization), 1.0
    reason, converged, it = "max_iterations", False, 0

    def increase(mu, delta):
        delta = max(_DELTA0, delta * _DELTA0)
        return max(_MU_MIN, mu * delta), delta

    for it in range(1, max_iterations + 1):
        d = (derivatives(X, U) if derivatives is not None else
             finite_difference_derivatives(dynamics, cost, terminal_cost, X, U, vectorized=vectorized,
                                           step=fd_step))
        if not _all_finite(d):
            reason = "non-finite derivatives at the current trajectory (stopped, last finite iterate kept)"
            break
        back_lo, back_hi = (lo, hi) if clip else (None, None)
        while True:
            res = backward_pass(d, U, mu=mu, value_model=value_model, u_min=back_lo, u_max=back_hi,
                                k_warm=k, reg_type=regularization_type)
            if res.ok:
                break
            mu, delta = increase(mu, delta)
            if mu > _MU_MAX:
                reason = "regularization limit: Q_uu not positive definite"
                return ILQRResult(X, U, K, k, J, costs, False, reason, it, mu)
        K, k = res.K, res.k
        expected_full = res.expected_change(1.0)
        if expected_full > -tol * max(1.0, abs(J)):
            reason, converged = "expected decrease below tol", True
            break
        accepted = False
        for alpha in alphas:
            X_new, U_new = forward(X, U, K, k, alpha)
            if constraint == "reject" and not _inside(U_new, lo, hi):
                continue
            J_new = total_cost(X_new, U_new)
            if not math.isfinite(J_new):
                continue   # non-finite costs are rejected, never propagated
            expected = res.expected_change(alpha)
            if expected < 0 and J_new - J <= accept_ratio * expected:
                accepted = True
                break
        if not accepted:
            mu, delta = increase(mu, delta)
            if mu > _MU_MAX:
                reason = "no improving step (regularization limit reached)"
                break
            continue
        improvement = J - J_new
        X, U, J = X_new, U_new, J_new
        costs.append(J)
        delta = min(1.0 / _DELTA0, delta / _DELTA0)
        mu = mu * delta if mu * delta > _MU_MIN else 0.0
        if callback is not None and callback(it, X, U, J):
            reason = "callback"
            break
        if improvement < tol * max(1.0, abs(J)):
            reason, converged = "relative improvement below tol", True
            break
    return ILQRResult(X, U, K, k, J, costs, converged, reason, it, mu)


def _all_finite(d: Derivatives) -> bool:
    return all(np.all(np.isfinite(getattr(d, name))) for name in
               ("f_x", "f_u", "c_x", "c_u", "c_xx", "c_uu", "cT_x", "cT_xx")) and (
        d.c_ux is None or bool(np.all(np.isfinite(d.c_ux))))


def _inside(U: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> bool:
    return bool(np.all(U >= lo) and np.all(U <= hi))
