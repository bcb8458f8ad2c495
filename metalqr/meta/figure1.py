"""Reproduction of Figure 1 of the ZO-MAML paper: the cost-gap ratio
``(sum_i J_i(K_n) - sum_i J_i(K_i*)) / sum_i J_i(K_i*)`` along Algorithm 3 with zeroth-order
meta-gradients (Algorithm 2) on three random families of 5 tasks (Section 6)."""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..exceptions import TrainingStalledError
from .families import sample_tasks
from .training import meta_policy_optimization

__all__ = ["Figure1Setting", "PAPER_SETTINGS", "QUICK_SETTINGS", "reproduce_figure1"]


@dataclass(frozen=True)
class Figure1Setting:
    """One curve of Figure 1."""

    d: int
    k: int
    alpha: float
    eta: float
    n_iterations: int = 1200
    n_tasks: int = 5
    n_perturbations: int = 100
    inner_perturbations: int = 100
    radius: float = 0.05
    rollout_length: int = 50
    two_point: bool = False

    @property
    def label(self) -> str:
        return f"d={self.d}, k={self.k}" + (" (two-point)" if self.two_point else "")


#: The paper's settings (caption of Figure 1).
PAPER_SETTINGS = (
    Figure1Setting(1, 1, alpha=1e-3, eta=1e-5),
    Figure1Setting(2, 2, alpha=1e-3, eta=1e-5),
    Figure1Setting(20, 10, alpha=1e-5, eta=1e-7),
)
#: ``--quick``: fewer iterations; for (20, 10) M = M' = 20 and the two-point estimator,
#: because the paper's one-point estimator stalls there (see docs/meta_learning.md).
#: Under 2 minutes on 2 cores.
QUICK_SETTINGS = (
    replace(PAPER_SETTINGS[0], n_iterations=300),
    replace(PAPER_SETTINGS[1], n_iterations=300),
    replace(PAPER_SETTINGS[2], n_iterations=60, n_perturbations=20, inner_perturbations=20,
            two_point=True),
)


def _write_csv(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _curve(res) -> tuple[np.ndarray, np.ndarray]:
    """Iterations and cost-gap ratios, starting with the initial gain at iteration 0."""
    h = res.history
    return (np.concatenate([[0], h["iteration"]]),
            np.concatenate([[res.initial["cost_gap_ratio"]], h["cost_gap_ratio"]]))


def _plot(path: str, runs: list[tuple[Figure1Setting, Any]]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for setting, res in runs:
        ax.plot(*_curve(res), label=f"{setting.label} (alpha={setting.alpha:g}, eta={setting.eta:g})")
    ax.set_xlabel("iteration")
    ax.set_ylabel(r"$(\sum_i J_i(K) - \sum_i J_i(K_i^*)) / \sum_i J_i(K_i^*)$")
    ax.set_title("Learning curve of the average cost-gap ratio (Figure 1, ZO-MAML)")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reproduce_figure1(*, quick: bool = False, output_dir: str = "results/fig1", seed: int = 0,
                      iterations: int | None = None, backend: str | None = None,
                      progress: bool = True, resume: bool = False,
                      settings: tuple[Figure1Setting, ...] | None = None, verbose: bool = True) -> list[dict]:
    """Run the Figure 1 experiment and write ``fig1.csv``, ``fig1.png`` and ``summary.csv``.

    Each setting samples 5 tasks with :func:`metalqr.sample_tasks` (seed ``seed``), starts
    from ``K0 = 0`` (which stabilises every task of the family) and runs
    :func:`metalqr.meta_policy_optimization` with ``gradient="zo"``. Checkpoints
    (``checkpoint_d{d}_k{k}.json``) let a killed run continue with ``resume=True``.

    Returns the summary rows (also printed as a table when ``verbose``).
    """
    chosen = settings or (QUICK_SETTINGS if quick else PAPER_SETTINGS)
    if iterations is not None:
        chosen = tuple(replace(s, n_iterations=iterations) for s in chosen)
    os.makedirs(output_dir, exist_ok=True)
    runs, curve_rows, summary = [], [], []
    for s in chosen:
        ckpt = os.path.join(output_dir, f"checkpoint_d{s.d}_k{s.k}.json")
        if not resume and os.path.exists(ckpt):
            os.remove(ckpt)
        rng = np.random.default_rng([seed, s.d, s.k])
        tasks = sample_tasks(s.n_tasks, s.d, s.k, rng=rng)
        if verbose:
            print(f"[fig1] {s.label}: alpha={s.alpha:g} eta={s.eta:g} M={s.n_perturbations} "
                  f"M'={s.inner_perturbations} r={s.radius} l={s.rollout_length} "
                  f"iterations={s.n_iterations}", flush=True)
        t0 = time.perf_counter()
        try:
            res = meta_policy_optimization(
                tasks, np.zeros((s.k, s.d)), alpha=s.alpha, eta=s.eta, n_iterations=s.n_iterations,
                gradient="zo", rng=rng, backend=backend, progress=progress, checkpoint=ckpt,
                n_perturbations=s.n_perturbations, inner_perturbations=s.inner_perturbations,
                radius=s.radius, rollout_length=s.rollout_length, two_point=s.two_point)
        except TrainingStalledError as err:
            if verbose:
                print(f"[fig1] {s.label}: stalled ({err})", flush=True)
            res = err.result
        h = res.history
        runs.append((s, res))
        for rec in h.records:
            curve_rows.append({"d": s.d, "k": s.k, **rec})
        ratio = _curve(res)[1]
        tail = ratio[-max(1, len(ratio) // 10):]
        summary.append({"setting": s.label, "alpha": s.alpha, "eta": s.eta, "M": s.n_perturbations,
                        "iterations": len(h), "initial_ratio": float(ratio[0]),
                        "final_ratio": float(ratio[-1]), "stop": res.stop_reason, "min_ratio": float(ratio.min()),
                        "mean_last_10pct": float(tail.mean()), "rejected": int(h["rejected"].sum()),
                        "seconds_this_run": time.perf_counter() - t0,
                        "seconds_total": float(h["seconds"].sum())})
    _write_csv(os.path.join(output_dir, "fig1.csv"), curve_rows)
    _write_csv(os.path.join(output_dir, "summary.csv"), summary)
    _plot(os.path.join(output_dir, "fig1.png"), runs)
    if verbose:
        from ..cli import _print_table
        print(f"\nFigure 1 {'(quick) ' if quick else ''}summary; curves in {output_dir}/fig1.csv, "
              f"plot in {output_dir}/fig1.png")
        _print_table(summary)
    return summary
