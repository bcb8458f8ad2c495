"""Train one learner with each weighting strategy on the same task stream and evaluate it
on held-out tasks (Section 5 of the TOW paper, at CPU scale)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..exceptions import TrainingDivergedError, ValidationError
from .learner import FOMAML
from .mlp import MLP
from .tasks import SinusoidTasks
from .weighting import dirichlet_weights, tow_weights

__all__ = ["StrategyResult", "run_sinusoid_experiment", "STRATEGIES"]

STRATEGIES = ("uniform", "exploration", "exploitation", "tow")


@dataclass
class StrategyResult:
    """Test MSE per held-out task, its mean and 95% half-width, wall time, learning curve."""

    name: str
    test_mse: np.ndarray
    seconds: float
    curve: list = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(self.test_mse.mean())

    @property
    def ci95(self) -> float:
        return float(1.96 * self.test_mse.std(ddof=1) / np.sqrt(self.test_mse.size))


def run_sinusoid_experiment(strategies: Sequence[str] = STRATEGIES, *, n_iterations: int = 100,
                            T: int = 5, M: int = 5, alpha: float = 0.05, beta_u: float = 10.0,
                            kappa: float = 1.2, n_ilqr: int = 2, n_test: int = 600, hidden: int = 40,
                            gamma: float = 0.01, seed: int = 0, eval_every: int = 0,
                            source: SinusoidTasks | None = None) -> list[StrategyResult]:
    """Raises :class:`TrainingDivergedError` if a strategy's parameters become non-finite.

    Every strategy sees the same mini-batches (outer iteration ``k`` draws its ``T``
    mini-batches of ``M`` tasks from ``default_rng([seed, k])``) and starts from the same
    initialisation; SGD meta-updates ``x <- x - alpha G u`` for each mini-batch, with ``u``
    from the strategy (TOW: Algorithm 1 over the ``T`` mini-batches, ``x <- x_{T+1}``)."""
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        raise ValidationError(f"unknown strategies {sorted(unknown)}; choose from {STRATEGIES}.")
    source = source or SinusoidTasks()
    net = MLP(hidden=hidden)
    learner = FOMAML(net, gamma=gamma)
    x0 = net.init(seed)
    test_tasks = source.sample(np.random.default_rng([seed, 10**6]), n_test, train=False)
    val_tasks = test_tasks[:100]
    results = []
    for name in strategies:
        x = x0.copy()
        curve = []
        t0 = time.perf_counter()
        for k in range(n_iterations):
            rng = np.random.default_rng([seed, k])
            batches = [source.sample(rng, M) for _ in range(T)]
            if name == "tow":
                x = tow_weights(learner, x, batches, alpha=alpha, beta_u=beta_u, n_ilqr=n_ilqr).X[-1]
            else:
                for batch in batches:
                    losses, G, _ = learner.batch(x, batch)
                    u = (np.full(M, 1.0 / M) if name == "uniform"
                         else dirichlet_weights(losses, kappa, name))
                    x = x - alpha * (G @ u)
            if not np.all(np.isfinite(x)):
                raise TrainingDivergedError(
                    f"strategy {name!r} diverged at window {k + 1}: the meta-parameters are no longer "
                    f"finite. Reduce the meta step size alpha (= {alpha:g}).")
            if eval_every and (k + 1) % eval_every == 0:
                curve.append((k + 1, float(learner.test_mse(x, val_tasks).mean())))
        seconds = time.perf_counter() - t0
        results.append(StrategyResult(name, learner.test_mse(x, test_tasks), seconds, curve))
    return results
