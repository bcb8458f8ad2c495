"""Train one learner with each weighting strategy on the same task stream and evaluate it
on held-out tasks (Section 5 of the TOW paper, at CPU scale).

Every strategy sees the same mini-batches (window ``k`` draws its ``T`` mini-batches of
``M`` tasks from ``default_rng([seed, k])``), starts from the same initialisation and uses
the same meta-optimiser (SGD or Adam). Baselines update once per mini-batch with their
weights; TOW solves Algorithm 1 over the window and follows the optimised trajectory.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..exceptions import TrainingDivergedError, ValidationError
from .learner import MAML, ProtoNet
from .mlp import MLP
from .optimizers import make_optimizer
from .tasks import SinusoidTasks
from .weighting import dirichlet_weights, tow_weights

__all__ = ["StrategyResult", "run_experiment", "run_sinusoid_experiment", "make_learner", "STRATEGIES",
           "save_results", "plot_curves", "plot_weights"]

STRATEGIES = ("uniform", "exploration", "exploitation", "tow")


@dataclass
class StrategyResult:
    """Per-test-task metric (MSE or accuracy), wall time, learning curve ``[(window, mean
    validation metric)]`` and the weights used: ``weights`` (windows, T, M) with the tasks'
    ``groups`` (amplitude or alphabet) of the same shape."""

    name: str
    metric: np.ndarray
    seconds: float
    metric_name: str = "mse"
    curve: list = field(default_factory=list)
    weights: np.ndarray | None = None
    groups: np.ndarray | None = None

    @property
    def test_mse(self) -> np.ndarray:          # backward-compatible name for regression
        return self.metric

    @property
    def mean(self) -> float:
        return float(self.metric.mean())

    @property
    def ci95(self) -> float:
        """Half-width of the normal 95% confidence interval of the mean over test tasks."""
        return float(1.96 * self.metric.std(ddof=1) / np.sqrt(self.metric.size))


def make_learner(kind: str, source, *, hidden: int = 40, gamma: float = 0.01, inner_steps: int = 1,
                 embedding: int = 16):
    """``"fomaml"``, ``"maml"`` (second order) or ``"protonet"`` on an MLP sized for ``source``."""
    if kind in ("fomaml", "maml"):
        net = MLP(source.n_in, hidden, source.n_out, source.loss)
        return MAML(net, gamma, inner_steps, first_order=(kind == "fomaml"))
    if kind == "protonet":
        if source.loss != "ce":
            raise ValidationError("protonet needs a classification source.")
        return ProtoNet(MLP(source.n_in, hidden, embedding, "mse"))
    raise ValidationError(f"learner must be 'fomaml', 'maml' or 'protonet'; got {kind!r}.")


def _save_state(path: str, fingerprint: str, k: int, z, curve, weights, groups, seconds: float) -> None:
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, fingerprint=fingerprint, k=k, z=z, curve=np.array(curve, dtype=float).reshape(-1, 2),
             weights=np.array(weights), groups=np.array(groups, dtype=float), seconds=seconds)
    os.replace(tmp, path)          # atomic: a kill leaves the old or the new checkpoint


def _load_state(path: str, fingerprint: str):
    with np.load(path) as f:
        if str(f["fingerprint"]) != fingerprint:
            raise ValidationError(f"checkpoint {path!r} belongs to a different run (source, learner or "
                                  "settings differ); delete it or use another checkpoint folder.")
        curve = [(int(a), float(b)) for a, b in f["curve"]]
        return (int(f["k"]), f["z"].copy(), curve, list(f["weights"]), [list(g) for g in f["groups"]],
                float(f["seconds"]))


def run_experiment(source, learner, strategies: Sequence[str] = STRATEGIES, *, n_iterations: int = 100,
                   T: int = 5, M: int = 5, optimizer: str = "sgd", alpha: float = 0.05,
                   beta_u: float = 10.0, kappa: float = 1.2, n_ilqr: int = 2, n_test: int = 600,
                   n_val: int = 100, seed: int = 0, eval_every: int = 0, progress: bool = False,
                   value_model: str = "diagonal", checkpoint: str | None = None,
                   checkpoint_every: int = 10) -> list[StrategyResult]:
    """Train ``learner`` with each strategy for ``n_iterations`` windows of ``T`` mini-batches.

    With ``checkpoint`` (a folder), each strategy's state (optimiser state, curve, weights,
    elapsed time) is saved atomically every ``checkpoint_every`` windows and at the end; a
    rerun with the same source, learner and settings resumes from it and gives the same
    result as an uninterrupted run (the task stream is a function of ``(seed, window)``).
    A larger ``n_iterations`` extends a finished run.

    Raises
    ------
    ValidationError
        Unknown strategy or optimiser.
    TrainingDivergedError
        A strategy's parameters became non-finite (reduce ``alpha``).
    """
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        raise ValidationError(f"unknown strategies {sorted(unknown)}; choose from {STRATEGIES}.")
    opt = make_optimizer(optimizer, alpha)
    x0 = learner.init(seed)
    D = x0.size
    test_tasks = source.sample(np.random.default_rng([seed, 10**6]), n_test, train=False)
    val_tasks = source.sample(np.random.default_rng([seed, 10**6 + 1]), n_val, train=False)
    results = []
    from tqdm.auto import tqdm
    for name in strategies:
        z = opt.initial_state(x0)
        curve, weights, groups = [], [], []
        start, spent = 0, 0.0
        if checkpoint is not None:
            os.makedirs(checkpoint, exist_ok=True)
            path = os.path.join(checkpoint, f"{name}.npz")
            settings = dict(strategy=name, T=T, M=M, optimizer=optimizer, alpha=alpha, beta_u=beta_u, kappa=kappa,
                            n_ilqr=n_ilqr, seed=seed, value_model=value_model, eval_every=eval_every,
                            learner=repr(learner), source=repr(source))
            fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode() + x0.tobytes()).hexdigest()
            if os.path.exists(path):
                start, z, curve, weights, groups, spent = _load_state(path, fingerprint)
        t0 = time.perf_counter() - spent
        for k in tqdm(range(start, n_iterations), desc=f"{name:>12}", disable=not progress,
                      initial=start, total=n_iterations):
            rng = np.random.default_rng([seed, k])
            batches = [source.sample(rng, M) for _ in range(T)]
            tau0 = k * T
            if name == "tow":
                res = tow_weights(learner, z, batches, optimizer=opt, tau0=tau0, beta_u=beta_u,
                                  n_ilqr=n_ilqr, value_model=value_model)
                z, U = res.X[-1], res.U
            else:
                U = np.empty((T, M))
                for t, batch in enumerate(batches):
                    losses, G, _ = learner.batch(z[:D], batch)
                    U[t] = (np.full(M, 1.0 / M) if name == "uniform"
                            else dirichlet_weights(losses, kappa, name))
                    z = opt.step(z, G @ U[t], tau0 + t + 1)
            if not np.all(np.isfinite(z)):
                raise TrainingDivergedError(
                    f"strategy {name!r} diverged at window {k + 1}: the meta-parameters are no longer "
                    f"finite. Reduce the meta step size alpha (= {alpha:g}).")
            weights.append(U)
            groups.append([[task.group for task in b] for b in batches])
            if eval_every and (k + 1) % eval_every == 0:
                curve.append((k + 1, float(learner.evaluate(z[:D], val_tasks).mean())))
            if checkpoint is not None and ((k + 1) % checkpoint_every == 0 or k + 1 == n_iterations):
                _save_state(path, fingerprint, k + 1, z, curve, weights, groups, time.perf_counter() - t0)
        seconds = time.perf_counter() - t0
        results.append(StrategyResult(name, learner.evaluate(z[:D], test_tasks), seconds,
                                      getattr(learner, "metric_name", "mse"), curve,
                                      np.array(weights).reshape(-1, T, M), np.array(groups, dtype=float).reshape(-1, T, M)))
    return results


def run_sinusoid_experiment(strategies: Sequence[str] = STRATEGIES, *, hidden: int = 40, gamma: float = 0.01,
                            source: SinusoidTasks | None = None, learner: str = "fomaml",
                            **kwargs) -> list[StrategyResult]:
    """:func:`run_experiment` on skewed sinusoids with (FO)MAML on a tanh MLP."""
    source = source or SinusoidTasks()
    return run_experiment(source, make_learner(learner, source, hidden=hidden, gamma=gamma), strategies, **kwargs)


def save_results(results: Sequence[StrategyResult], path_prefix: str) -> dict:
    """Write ``<prefix>_table.csv`` (strategy, mean, ci95, seconds, time vs uniform),
    ``<prefix>_curves.csv`` and ``<prefix>.json`` (everything, weights included)."""
    base = next((r.seconds for r in results if r.name == "uniform"), results[0].seconds)
    table = [{"strategy": r.name, "metric": r.metric_name, "mean": r.mean, "ci95": r.ci95, "n_test": r.metric.size,
              "seconds": r.seconds, "time_vs_uniform": r.seconds / base} for r in results]
    with open(f"{path_prefix}_table.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    with open(f"{path_prefix}_curves.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["strategy", "window", "validation_" + results[0].metric_name])
        for r in results:
            w.writerows([(r.name, k, v) for k, v in r.curve])
    with open(f"{path_prefix}.json", "w") as fh:
        json.dump({"table": table, "curves": {r.name: r.curve for r in results},
                   "weights": {r.name: r.weights.tolist() for r in results if r.weights is not None},
                   "groups": {r.name: r.groups.tolist() for r in results if r.groups is not None}}, fh)
    return {"table": table}


def plot_curves(results: Sequence[StrategyResult], path: str, title: str = "") -> None:
    """Validation metric against training windows, one line per strategy (like Figure 1)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        if r.curve:
            k, v = zip(*r.curve)
            ax.plot(k, v, label=r.name)
    ax.set_xlabel("training window (T mini-batches)")
    ax.set_ylabel("validation " + results[0].metric_name)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_weights(result: StrategyResult, path: str, n_bins: int = 10) -> None:
    """Weight visualisation (like Figure 4): the mean weight TOW gives a task against its
    group (amplitude / alphabet) over training (heat map: window x group bin), and the
    histogram of all weights."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    W, G = result.weights, result.groups
    n_windows = W.shape[0]
    edges = np.unique(np.quantile(G, np.linspace(0, 1, n_bins + 1)))
    if edges.size < 2:
        edges = np.array([G.min() - 0.5, G.max() + 0.5])
    bins = np.clip(np.searchsorted(edges, G, side="right") - 1, 0, edges.size - 2)
    heat = np.full((n_windows, edges.size - 1), np.nan)
    M = W.shape[-1]
    for k in range(n_windows):
        for b in range(edges.size - 1):
            sel = bins[k] == b
            if np.any(sel):
                heat[k, b] = W[k][sel].mean() * M            # 1 = uniform weight
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    im = a1.imshow(heat.T, aspect="auto", origin="lower", cmap="viridis",
                   extent=(0.5, n_windows + 0.5, 0, edges.size - 1))
    a1.set_yticks(np.arange(edges.size - 1) + 0.5, [f"{edges[b]:.2g}" for b in range(edges.size - 1)])
    a1.set_xlabel("training window")
    a1.set_ylabel("task group (amplitude / alphabet), lower edge")
    a1.set_title(f"{result.name}: mean weight x M")
    fig.colorbar(im, ax=a1)
    a2.hist(W.ravel() * M, bins=40)
    a2.set_xlabel("weight x M (1 = uniform)")
    a2.set_title("all weights")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
