"""Task-weighting strategies behind one interface: ``uniform``, ``exploration`` and
``exploitation`` (Eq. (12) of the TOW paper) and ``tow`` (Algorithm 1, via
:func:`metalqr.ilqr.ilqr`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.optimize

from ..exceptions import ValidationError
from ..ilqr import Derivatives, ilqr
from .optimizers import SGD
from .tasks import Task

__all__ = ["dirichlet_weights", "tow_weights", "TOWResult", "TOWProblem"]


def dirichlet_weights(losses: np.ndarray, kappa: float, mode: str) -> np.ndarray:
    """Eq. (12): ``argmin_u -+ u'l - ln Dir(u; kappa)`` on the simplex (SLSQP).

    ``mode="exploration"`` (``-u'l``) favours hard tasks, ``"exploitation"`` (``+u'l``)
    familiar ones. ``-ln Dir(u; kappa) = -(kappa - 1) sum_j ln u_j + const``, ``kappa > 1``.
    """
    if kappa <= 1:
        raise ValidationError(f"kappa must be > 1 (kappa = 1 is a flat prior); got {kappa}.")
    if mode not in ("exploration", "exploitation"):
        raise ValidationError(f"mode must be 'exploration' or 'exploitation'; got {mode!r}.")
    sign = -1.0 if mode == "exploration" else 1.0
    M = losses.size
    f = lambda u: sign * u @ losses - (kappa - 1) * np.sum(np.log(u))
    g = lambda u: sign * losses - (kappa - 1) / u
    res = scipy.optimize.minimize(f, np.full(M, 1.0 / M), jac=g, method="SLSQP",
                                  bounds=[(1e-9, 1.0)] * M,
                                  constraints=[{"type": "eq", "fun": lambda u: u.sum() - 1.0,
                                                "jac": lambda u: np.ones(M)}],
                                  options={"ftol": 1e-12, "maxiter": 200})
    u = np.clip(res.x, 0.0, None)
    return u / u.sum()


@dataclass
class TOWResult:
    """Weights ``U`` (T, M), the optimiser states along the trajectory ``X`` (T+1, S) and the
    iLQR result (``costs[0]`` is the uniform nominal trajectory's cost)."""

    U: np.ndarray
    X: np.ndarray
    ilqr: object


@dataclass
class TOWProblem:
    """The trajectory-optimisation problem of one TOW window, in the form :func:`metalqr.ilqr.ilqr`
    takes: ``dynamics(z, u, t)``, ``cost(z, u, t)`` and ``derivatives(Z, U)`` (see :func:`tow_weights`)."""

    learner: object
    batches: Sequence[list[Task]]
    optimizer: object
    D: int
    tau0: int = 0
    beta_u: float = 10.0
    mu: float = 0.2
    _cache: dict = field(default_factory=dict, repr=False)

    def evaluate(self, zt: np.ndarray, t: int):
        """Losses and gradients of mini-batch t at zt. The forward pass asks for the dynamics
        and the cost at the same (zt, t), and the derivatives at the accepted trajectory, so
        the last evaluation per step t is kept."""
        key = zt[:self.D].tobytes()
        if self._cache.get(t, (None,))[0] != key:
            self._cache[t] = (key, *self.learner.batch(zt[:self.D], self.batches[t])[:2])
        return self._cache[t][1:]

    def dynamics(self, zt, u, t):
        """One optimiser update with the weighted gradient ``J_t' u`` (Eq. (90) / (97))."""
        return self.optimizer.step(zt, self.evaluate(zt, t)[1] @ u, self.tau0 + t + 1)

    def cost(self, zt, u, t):
        """Eq. (7): ``1'l(x_t) + beta_u/2 |u_t - mu_u|^2``."""
        return float(self.evaluate(zt, t)[0].sum() + 0.5 * self.beta_u * np.sum((u - self.mu) ** 2))

    def derivatives(self, Z, U) -> Derivatives:
        """Linearised dynamics and quadratised cost (Eq. (92)/(99)-(105), (106)-(108)) along ``(Z, U)``."""
        T, M = U.shape
        S, D = Z.shape[1], self.D
        f_x, f_u, c_x, c_xx = (np.empty((T, S)), np.empty((T, S, M)), np.zeros((T, S)), np.zeros((T, S)))
        for t in range(T):
            G = self.evaluate(Z[t], t)[1]
            GN = self.learner.curvature(Z[t, :D], self.batches[t])
            f_x[t], f_u[t] = self.optimizer.linearize(Z[t], G @ U[t], G, GN @ U[t], self.tau0 + t + 1)
            c_x[t, :D] = G.sum(axis=1)
            c_xx[t, :D] = GN.sum(axis=1)
        return Derivatives(f_x=f_x, f_u=f_u, c_x=c_x, c_u=self.beta_u * (U - self.mu), c_xx=c_xx,
                           c_uu=np.broadcast_to(self.beta_u * np.eye(M), (T, M, M)).copy(), c_ux=None,
                           cT_x=np.zeros(S), cT_xx=np.zeros(S))


def tow_weights(learner, z: np.ndarray, batches: Sequence[list[Task]], *, alpha: float | None = None,
                optimizer=None, tau0: int = 0, beta_u: float = 10.0, mu_u: float | None = None,
                n_ilqr: int = 2, value_model: str = "diagonal", constraint: str = "boxqp",
                tol: float = 0.0) -> TOWResult:
    """Algorithm 1 of the TOW paper for one window of ``T = len(batches)`` mini-batches.

    State: the optimiser state ``z`` (the meta-parameters ``x`` for SGD, ``(x, m, v)`` for
    Adam; see :mod:`metalqr.tow.optimizers`); action: weights ``u`` of the ``M`` tasks of a
    mini-batch; dynamics: one optimiser update with ``g = sum_j u_j grad l_j(x_t)`` (SGD
    Eq. (90), Adam Eq. (97), update count ``tau0 + t + 1``); cost Eq. (7):
    ``1'l(x_t) + beta_u/2 |u_t - mu_u|^2``. Derivatives (Appendix G, H): ``f_z`` and ``f_u``
    from the optimiser's linearisation with the Gauss-Newton diagonal ``sum_j u_j GN_j`` as
    the Hessian, ``c_x = sum_j grad l_j``, ``c_xx ~ diag(sum_j GN_j)`` (zero on ``m, v``),
    ``c_u = beta_u (u - mu_u)``, ``c_uu = beta_u I``. Solved by :func:`metalqr.ilqr.ilqr` from
    the uniform nominal ``u = mu_u`` with ``u >= 0``. ``learner`` is a
    :class:`~metalqr.tow.MAML` or :class:`~metalqr.tow.ProtoNet`; ``alpha`` alone means SGD.
    ``tol`` is iLQR's relative stopping tolerance (0: always run ``n_ilqr`` iterations).
    """
    if optimizer is None:
        if alpha is None:
            raise ValidationError("give the meta step size alpha (SGD) or an optimizer.")
        optimizer = SGD(alpha)
    M = len(batches[0])
    mu = 1.0 / M if mu_u is None else float(mu_u)
    z = np.asarray(z, dtype=float)
    D = z.size if isinstance(optimizer, SGD) else z.size // 3
    problem = TOWProblem(learner, batches, optimizer, D, tau0, beta_u, mu)
    res = ilqr(problem.dynamics, problem.cost, z, np.full((len(batches), M), mu), terminal_cost=lambda zT: 0.0,
               derivatives=problem.derivatives, value_model=value_model, u_min=0.0, constraint=constraint,
               max_iterations=n_ilqr, tol=tol)
    return TOWResult(res.U, res.X, res)
