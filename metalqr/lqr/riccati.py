"""Optimal LQR gains from the discrete algebraic Riccati equation (DARE)."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ..exceptions import ValidationError
from .tasks import TaskLike, as_batch

__all__ = ["optimal_gain"]


def optimal_gain(task: TaskLike) -> tuple[np.ndarray, np.ndarray]:
    """Optimal gain ``K*`` and value matrix ``P*`` of each task.

    ``P* = Q + A'P*A - A'P*B (R + B'P*B)^{-1} B'P*A`` (DARE, solved with
    :func:`scipy.linalg.solve_discrete_are`) and ``K* = (R + B'P*B)^{-1} B'P*A``, so that
    ``u = -K* x`` minimises ``J``. ``P*`` equals ``P_{K*}`` of Proposition 1.

    Returns
    -------
    K_star : ndarray, shape (k, d) or (n, k, d)
    P_star : ndarray, shape (d, d) or (n, d, d)

    Raises
    ------
    ValidationError
        If a task is not stabilisable/detectable, so the DARE has no stabilising solution.
    """
    batch = as_batch(task)
    Ks, Ps = [], []
    for i in range(batch.n):
        A, B, Q, R = batch.A[i], batch.B[i], batch.Q[i], batch.R[i]
        where = "the task" if batch.single else f"task {i}"
        try:
            P = scipy.linalg.solve_discrete_are(A, B, Q, R)
        except (np.linalg.LinAlgError, ValueError) as exc:
            raise ValidationError(f"the Riccati equation of {where} has no stabilising solution "
                                  f"({exc}); (A, B) must be stabilisable and (A, Q^1/2) detectable.") from None
        K = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
        if not np.all(np.isfinite(P)) or np.max(np.abs(np.linalg.eigvals(A - B @ K))) >= 1.0:
            raise ValidationError(f"the Riccati solution of {where} is not stabilising; (A, B) must be "
                                  f"stabilisable and (A, Q^1/2) detectable.")
        Ks.append(K)
        Ps.append(0.5 * (P + P.T))
    return batch.out(np.stack(Ks)), batch.out(np.stack(Ps))
