"""Few-shot meta-learners on the MLP, all behind one interface used by the weighting
strategies: ``batch(x, tasks, curvature)`` returns the per-task validation losses ``l(x)``
(M,), their gradients (the Jacobian ``J_t'``, D x M) and, on request, per-task Gauss-Newton
diagonals (D x M); ``evaluate(x, tasks)`` returns the per-task test metric.

* :class:`MAML` - inner loop Eq. (4) of the TOW paper, ``phi_i = x - gamma grad l(S_i^s; x)``,
  first order (``d phi / d x ~ I``) or full second order (exact Hessian-vector products).
* :class:`ProtoNet` - Prototypical Networks (Snell et al. 2017): the MLP embeds, class
  prototypes are the support means, logits are ``-|f(q) - c_k|^2``.
"""

from __future__ import annotations

import zlib

from dataclasses import dataclass

import numpy as np

from ..exceptions import ValidationError
from .mlp import MLP, output_loss, softmax
from .tasks import Task

__all__ = ["MAML", "FOMAML", "ProtoNet"]


def _metric(loss: str, out: np.ndarray, y: np.ndarray) -> float:
    """MSE for regression, accuracy for classification."""
    if loss == "mse":
        return float(np.mean(np.sum((out - y) ** 2, axis=-1)))
    return float(np.mean(np.argmax(out, axis=-1) == y))


class _Learner:
    """The interface shared by the learners; subclasses define ``task_loss_and_grad``,
    ``curvature`` and ``evaluate``."""

    def batch(self, x: np.ndarray, tasks: list[Task], curvature: bool = False):
        """Validation losses (M,), gradients (D, M) and, with ``curvature``, GN diagonals (D, M)."""
        pairs = [self.task_loss_and_grad(x, task) for task in tasks]
        G = np.stack([g for _, g in pairs], axis=1)
        return np.array([loss for loss, _ in pairs]), G, (self.curvature(x, tasks) if curvature else None)


@dataclass(frozen=True)
class MAML(_Learner):
    """MAML on an :class:`MLP` (Finn et al. 2017; Eq. (3)-(4) of the TOW paper).

    ``first_order=True`` (FOMAML) uses the query gradient at ``phi_i``; otherwise the exact
    meta-gradient ``prod_j (I - gamma Hess l(S^s; phi_j)) grad l(S^q; phi_K)`` through all
    ``inner_steps`` (back-to-front Hessian-vector products). The curvature returned for TOW
    is the Gauss-Newton diagonal of the query loss at ``phi_i`` (first-order in ``gamma``)."""

    net: MLP
    gamma: float = 0.01
    inner_steps: int = 1
    first_order: bool = True

    @property
    def metric_name(self) -> str:
        return "mse" if self.net.loss == "mse" else "accuracy"

    def init(self, rng) -> np.ndarray:
        return self.net.init(rng)

    def adapt(self, x: np.ndarray, task: Task, trajectory: bool = False):
        phis = [x]
        for _ in range(self.inner_steps):
            phis.append(phis[-1] - self.gamma * self.net.loss_and_grad(phis[-1], task.s, task.y)[1])
        return phis if trajectory else phis[-1]

    def task_loss_and_grad(self, x: np.ndarray, task: Task):
        """Validation loss ``l_i(x) = l(S^q; phi_i(x))`` and its (first- or second-order) gradient."""
        phis = self.adapt(x, task, trajectory=True)
        loss, g = self.net.loss_and_grad(phis[-1], task.sq, task.yq)
        if not self.first_order:
            for phi in reversed(phis[:-1]):
                g = g - self.gamma * self.net.hvp(phi, task.s, task.y, g)
        return loss, g

    def curvature(self, x: np.ndarray, tasks: list[Task]) -> np.ndarray:
        """Per-task Gauss-Newton diagonals of the query loss at the adapted parameters (D, M)."""
        return np.stack([self.net.gauss_newton_diagonal(self.adapt(x, t), t.sq) for t in tasks], axis=1)

    def evaluate(self, x: np.ndarray, tasks: list[Task]) -> np.ndarray:
        """Query MSE (regression) or accuracy (classification) after adaptation, per task."""
        return np.array([_metric(self.net.loss, self.net.predict(self.adapt(x, t), t.sq), t.yq) for t in tasks])


def FOMAML(net: MLP, gamma: float = 0.01, inner_steps: int = 1) -> MAML:
    """First-order MAML (kept for backward compatibility): ``MAML(..., first_order=True)``."""
    return MAML(net, gamma, inner_steps, first_order=True)


@dataclass(frozen=True)
class ProtoNet(_Learner):
    """Prototypical Networks on an MLP embedding (``net.n_out`` = embedding size).

    Logits of query ``q`` for class ``k``: ``-|f(q) - c_k|^2`` with ``c_k`` the mean support
    embedding of class ``k``; loss: softmax cross-entropy. Gradients by back-propagating the
    logit derivatives into both the query and support embeddings; the Gauss-Newton diagonal
    uses the exact logit Jacobian (``curvature_method="exact"``: one back-propagated row per
    query and class) or its Monte-Carlo estimate (``"mc"``, DiagGGN-MC of Dangel et al. 2020:
    ``mc_samples`` rows per query, ``J'(p - e_y)`` with ``y ~ p``; unbiased, N times cheaper,
    seeded by the parameters and the task so that it is reproducible)."""

    net: MLP
    curvature_method: str = "exact"
    mc_samples: int = 1

    metric_name = "accuracy"

    def init(self, rng) -> np.ndarray:
        return self.net.init(rng)

    def _logits(self, x, task):
        n_way = int(max(task.y.max(), task.yq.max())) + 1
        es, eq = self.net.predict(x, task.s), self.net.predict(x, task.sq)
        onehot = np.eye(n_way)[task.y]                              # (n_s, N)
        counts = onehot.sum(0)
        if np.any(counts == 0):
            raise ValidationError("ProtoNet: every class needs at least one support example.")
        A = onehot / counts                                         # prototype = A' es
        protos = A.T @ es                                           # (N, e)
        diff = eq[:, None, :] - protos[None, :, :]                  # (n_q, N, e)
        return -np.sum(diff * diff, axis=-1), diff, A

    def _logit_vjp(self, x, task, dlogits, diff, A):
        """Back-propagate ``dlogits`` (..., n_q, N) to the parameters (..., D)."""
        # logits = -|eq - A'es|^2 -> d/d eq = -2 sum_k dl_k diff_k ; d/d protos_k = 2 sum_q dl_qk diff_qk
        d_eq = -2.0 * np.einsum("...qk,qke->...qe", dlogits, diff)
        d_protos = 2.0 * np.einsum("...qk,qke->...ke", dlogits, diff)
        d_es = np.einsum("sk,...ke->...se", A, d_protos)
        s_all = np.concatenate([task.s, task.sq])
        return self.net.vjp(x, s_all, np.concatenate([d_es, d_eq], axis=-2))

    def task_loss_and_grad(self, x: np.ndarray, task: Task):
        logits, diff, A = self._logits(x, task)
        loss, dlogits, _ = output_loss(logits, task.yq, "ce")
        return loss, self._logit_vjp(x, task, dlogits, diff, A)

    def curvature(self, x: np.ndarray, tasks: list[Task]) -> np.ndarray:
        """Per-task Gauss-Newton diagonals ``diag(J' H J)`` of the query cross-entropy, with the
        exact logit Jacobian ``J`` (one back-propagated row per query and class)."""
        if self.curvature_method not in ("exact", "mc"):
            raise ValidationError(f"curvature_method must be 'exact' or 'mc'; got {self.curvature_method!r}.")
        gn = []
        for task in tasks:
            logits, diff, A = self._logits(x, task)
            nq, N = logits.shape
            if self.curvature_method == "mc":
                p = softmax(logits)
                rng = np.random.default_rng([zlib.crc32(x.tobytes()), zlib.crc32(task.sq.tobytes())])
                S = self.mc_samples
                rows = np.zeros((S * nq, nq, N))
                for j in range(S):
                    y = (rng.random((nq, 1)) > np.cumsum(p, axis=1)).sum(axis=1).clip(0, N - 1)
                    rows[j * nq + np.arange(nq), np.arange(nq)] = p
                    rows[j * nq + np.arange(nq), np.arange(nq), y] -= 1.0
                R = self._logit_vjp(x, task, rows, diff, A)
                gn.append(np.sum(R * R, axis=0) / (nq * S))
                continue
            rows = np.zeros((nq * N, nq, N))
            rows[np.arange(nq * N), np.repeat(np.arange(nq), N), np.tile(np.arange(N), nq)] = 1.0
            J = self._logit_vjp(x, task, rows, diff, A).reshape(nq, N, -1)
            p = softmax(logits)
            H = (np.einsum("qk,kl->qkl", p, np.eye(N)) - p[:, :, None] * p[:, None, :]) / nq
            gn.append(np.sum(J * (H @ J), axis=(0, 1)))
        return np.stack(gn, axis=1)

    def evaluate(self, x: np.ndarray, tasks: list[Task]) -> np.ndarray:
        return np.array([_metric("ce", self._logits(x, t)[0], t.yq) for t in tasks])
