"""Model-based policy optimisation for single tasks (Section 3.1 of the ZO-MAML paper).

Model-based policy optimisation for single tasks: the three updates of Section 3.1 of the ZO-MAML
paper (after Fazel et al. 2018), batched over a TaskSet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .._validation import check_choice, check_positive, check_real
from .policy import _evaluate, _raise_unstable, check_gain, closed_loop
from .lyapunov import spectral_radius_of
from .tasks import TaskLike, as_batch

__all__ = ["policy_optimization", "PolicyOptimizationResult"]

Method = Literal["gd", "natural", "gauss_newton"]


@dataclass
class PolicyOptimizationResult:
    """Result of :func:`policy_optimization`.

    Attributes
    ----------
    K : ndarray
        Final gain(s), shape (k, d) or (n, k, d).
    costs : ndarray
        ``J`` before the first step and after every step: shape (n_steps + 1,) or
        (n_steps + 1, n).
    gradient_norms : ndarray
        Frobenius norm of the gradient at each visited gain (same shape as ``costs``).
    converged : bool
        Whether every task's gradient norm fell below ``tol``.
    n_iterations : int
        Steps taken.
    """

    K: np.ndarray
    costs: np.ndarray
    gradient_norms: np.ndarray
    converged: bool
    n_iterations: int
    method: str = field(default="gd")


def policy_optimization(task: TaskLike, K0: Any, method: Method = "gd", step_size: float = 1e-3,
                        n_iterations: int = 100, tol: float = 1e-10) -> PolicyOptimizationResult:
    """Run exact policy optimisation from ``K0``.

    Updates (Section 3.1 of the ZO-MAML paper):

    * ``"gd"``: ``K <- K - step * grad J(K)``
    * ``"natural"``: ``K <- K - step * grad J(K) Sigma_K^{-1}``
    * ``"gauss_newton"``: ``K <- K - step * (R + B'P_K B)^{-1} grad J(K) Sigma_K^{-1}``
      (``step = 1/2`` is policy iteration).

    Parameters
    ----------
    task : LQRTask or TaskSet
        For a TaskSet every task is optimised independently, batched.
    K0 : array_like, shape (k, d) or (n, k, d)
        Stabilising initial gain(s): one shared gain, or one per task of a TaskSet.
    method : {"gd", "natural", "gauss_newton"}
    step_size : float
        Step size, finite and > 0 (Fazel et al. give safe values; ``1/2`` for Gauss-Newton).
    n_iterations : int
        Maximum number of steps (>= 0).
    tol : float
        Stop when every task's gradient Frobenius norm is below ``tol`` (finite, >= 0).

    Raises
    ------
    ValidationError
        On an unknown method, a malformed gain or out-of-range numbers.
    UnstablePolicyError
        If ``K0`` or an iterate does not stabilise a task (reduce ``step_size``).
    """
    method = check_choice(method, "method", ("gd", "natural", "gauss_newton"))
    step = check_positive(step_size, "step_size")
    n_iter = check_positive(n_iterations, "n_iterations", allow_zero=True, integer=True)
    tol = check_real(tol, "tol", minimum=0.0)
    batch = as_batch(task)
    K = np.array(check_gain(batch, K0, name="K0"))
    _raise_unstable(spectral_radius_of(closed_loop(batch, K)), batch, "policy_optimization",
                    gain="K0")
    costs, norms = [], []
    converged = False
    it = 0
    for it in range(n_iter + 1):
        ev = _evaluate(batch, K, f"policy_optimization (iteration {it})")
        grad = ev.gradient
        costs.append(np.einsum("nij,nji->n", ev.P, batch.Psi))
        norms.append(np.linalg.norm(grad, axis=(-2, -1)))
        if np.all(norms[-1] < tol):
            converged = True
            break
        if it == n_iter:
            break
        if method == "gd":
            direction = grad
        elif method == "natural":
            direction = 2.0 * ev.E
        else:
            direction = 2.0 * np.linalg.solve(ev.RBPB, ev.E)
        K = K - step * direction
        _raise_unstable(spectral_radius_of(closed_loop(batch, K)), batch,
                        f"policy_optimization step {it + 1} (step_size={step:g})")
    costs_a, norms_a = np.array(costs), np.array(norms)
    if batch.single:
        costs_a, norms_a = costs_a[:, 0], norms_a[:, 0]
    return PolicyOptimizationResult(batch.out(K), costs_a, norms_a, converged, it, method)
