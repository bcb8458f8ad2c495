"""First-order MAML on the MLP: per-task validation losses ``l_i(x)`` (Eq. (3)-(4) of the
TOW paper), their gradients (the rows of the Jacobian ``J_t``) and Gauss-Newton diagonals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mlp import MLP
from .tasks import Task

__all__ = ["FOMAML"]


@dataclass(frozen=True)
class FOMAML:
    """Inner loop Eq. (4): ``phi_i = x - gamma grad l(S_i^s; x)`` (``inner_steps`` times);
    validation loss ``l_i(x) = l(S_i^q; phi_i(x))``. First order: ``d phi / d x ~ I``, so
    the gradient and the Gauss-Newton diagonal of ``l_i`` are those of the query loss at
    ``phi_i`` (exact for ``gamma = 0``)."""

    net: MLP
    gamma: float = 0.01
    inner_steps: int = 1

    def adapt(self, x: np.ndarray, task: Task) -> np.ndarray:
        phi = x
        for _ in range(self.inner_steps):
            phi = phi - self.gamma * self.net.loss_and_grad(phi, task.s, task.y)[1]
        return phi

    def batch(self, x: np.ndarray, tasks: list[Task], curvature: bool = False):
        """Validation losses (M,), gradients (D, M) and, with ``curvature``, GN diagonals (D, M)."""
        losses, grads, gn = [], [], []
        for task in tasks:
            phi = self.adapt(x, task)
            loss, g = self.net.loss_and_grad(phi, task.sq, task.yq)
            losses.append(loss)
            grads.append(g)
            if curvature:
                gn.append(self.net.gauss_newton_diagonal(phi, task.sq))
        G = np.stack(grads, axis=1)
        return np.array(losses), G, (np.stack(gn, axis=1) if curvature else None)

    def test_mse(self, x: np.ndarray, tasks: list[Task]) -> np.ndarray:
        """Query MSE after adaptation, one per task."""
        return np.array([self.net.loss_and_grad(self.adapt(x, t), t.sq, t.yq)[0] for t in tasks])
