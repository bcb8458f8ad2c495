"""Model-based policy optimisation for single tasks (Section 3.1 of the ZO-MAML paper).

Model-based policy optimisation for single tasks: the three updates of Section 3.1 of the ZO-MAML
paper (after Fazel et al. 2018), batched over a TaskSet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .._validation import check_choice, check_positive, check_real
from .policy import _raise_unstable, check_gain, closed_loop, evaluate_batch
from .lyapunov import spectral_radius_of
from .tasks import TaskLike, as_batch

__all__ = ["policy_optimization", "PolicyOptimizationResult"]

Method = Literal["gd", "natural", "gauss_newton"]


@dataclass
class PolicyOptimizationResult:  # numpydoc ignore=PR01
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
    method : str
        The update used.
    stop_reason : {"tolerance", "max_iterations"}
        ``"tolerance"`` when every task's gradient norm fell below ``tol`` (then
        ``converged``), ``"max_iterations"`` when ``max_iterations`` steps were taken first.
    """

    K: np.ndarray
    costs: np.ndarray
    gradient_norms: np.ndarray
    converged: bool
    n_iterations: int
    method: str = field(default="gd")
    stop_reason: str = field(default="max_iterations")


def policy_optimization(task: TaskLike, K0: Any, method: Method = "gd", eta: float = 1e-3,
                        max_iterations: int = 100, tol: float = 1e-10) -> PolicyOptimizationResult:
    """Run exact policy optimisation from ``K0``.

    Updates (Section 3.1 of the ZO-MAML paper):

    * ``"gd"``: ``K <- K - eta * grad J(K)``
    * ``"natural"``: ``K <- K - eta * grad J(K) Sigma_K^{-1}``
    * ``"gauss_newton"``: ``K <- K - eta * (R + B'P_K B)^{-1} grad J(K) Sigma_K^{-1}``
      (``eta = 1/2`` is policy iteration).

    Parameters
    ----------
    task : LQRTask or TaskSet
        For a TaskSet every task is optimised independently, batched.
    K0 : array_like, shape (k, d) or (n, k, d)
        Stabilising initial gain(s): one shared gain, or one per task of a TaskSet.
    method : {"gd", "natural", "gauss_newton"}
        The update (see above).
    eta : float
        Step size ``eta`` of Section 3.1, finite and > 0 (Fazel et al. give safe values;
        ``1/2`` for Gauss-Newton).
    max_iterations : int
        Maximum number of steps (>= 0); the loop stops earlier at ``tol``.
    tol : float
        Stop when every task's gradient Frobenius norm is below ``tol`` (finite, >= 0).

    Returns
    -------
    PolicyOptimizationResult
        The final gain(s), the costs and gradient norms along the way, ``converged`` and
        ``stop_reason``.

    Raises
    ------
    ValidationError
        On an unknown method, a malformed gain or out-of-range numbers.
    UnstablePolicyError
        If ``K0`` or an iterate does not stabilise a task (reduce ``eta``).

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Section 3.1 (the three model-based updates, after Fazel et
    al. 2018).

    Examples
    --------
    Gauss-Newton with ``eta = 1/2`` (policy iteration) reaches the optimal gain in a few steps:

    >>> import numpy as np, metalqr
    >>> task = metalqr.double_integrator()
    >>> res = metalqr.policy_optimization(task, [[1.0, 1.5]], method="gauss_newton", eta=0.5,
    ...                                   max_iterations=20)
    >>> res.converged, bool(np.allclose(res.K, metalqr.optimal_gain(task)[0]))
    (True, True)
    """
    method = check_choice(method, "method", ("gd", "natural", "gauss_newton"))
    step = check_positive(eta, "eta")
    n_iter = check_positive(max_iterations, "max_iterations", allow_zero=True, integer=True)
    tol = check_real(tol, "tol", minimum=0.0)
    batch = as_batch(task)
    K = np.array(check_gain(batch, K0, name="K0"))
    _raise_unstable(spectral_radius_of(closed_loop(batch, K)), batch, "policy_optimization",
                    gain="K0")
    costs, norms = [], []
    converged = False
    it = 0
    for it in range(n_iter + 1):
        ev = evaluate_batch(batch, K, f"policy_optimization (iteration {it})")
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
                        f"policy_optimization step {it + 1} (eta={step:g})")
    costs_a, norms_a = np.array(costs), np.array(norms)
    if batch.single:
        costs_a, norms_a = costs_a[:, 0], norms_a[:, 0]
    return PolicyOptimizationResult(batch.out(K), costs_a, norms_a, converged, it, method,
                                    "tolerance" if converged else "max_iterations")
