"""Evidence for docs/meta_learning.md: which Figure 1 settings reach a small cost-gap ratio.

Run:  python benchmarks/fig1_alternatives.py [--output results/fig1_alt]

For each family of Figure 1 (same seeds as ``metalqr reproduce fig1``) it prints the
floor (the smallest ratio any single gain can reach, by exact gradient descent with Armijo
backtracking on sum_i J_i), then runs Algorithm 3 with settings other than the paper's.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import metalqr  # noqa: E402
from _common import print_table  # noqa: E402
from metalqr.meta.figure1 import PAPER_SETTINGS, Figure1Setting, reproduce_figure1  # noqa: E402


def floor_ratio(tasks, iterations: int = 4000) -> float:
    """min_K (sum_i J_i(K) - sum_i J_i*) / sum_i J_i* by exact descent (Armijo backtracking)."""
    J_star = metalqr.optimal_costs(tasks)
    K = np.zeros((tasks.k, tasks.d))
    f = float(np.sum(metalqr.cost(tasks, K)))
    step = 1e-2
    for _ in range(iterations):
        g = np.sum(metalqr.gradient(tasks, K), axis=0)
        while True:
            K_new = K - step * g
            f_new = float(np.sum(metalqr.cost(tasks, K_new)))
            if f_new <= f - 0.25 * step * np.sum(g * g):
                break
            step *= 0.5
            if step < 1e-14:
                return (f - J_star.sum()) / J_star.sum()
        K, f, step = K_new, f_new, step * 1.5
    return (f - J_star.sum()) / J_star.sum()


ALTERNATIVES = (
    Figure1Setting(1, 1, alpha=1e-2, eta=1e-5, n_iterations=300),
    Figure1Setting(2, 2, alpha=1e-2, eta=1e-5, n_iterations=300),
    Figure1Setting(20, 10, alpha=1e-5, eta=1e-7, n_iterations=300, n_perturbations=20,
                   inner_perturbations=20, two_point=True),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="results/fig1_alt")
    args = parser.parse_args()
    rows = []
    for s in PAPER_SETTINGS:
        tasks = metalqr.sample_tasks(s.n_tasks, s.d, s.k, rng=np.random.default_rng([0, s.d, s.k]))
        rows.append({"setting": s.label, "ratio_at_K0": metalqr.cost_gap_ratio(tasks, np.zeros((s.k, s.d))),
                     "floor_ratio": floor_ratio(tasks)})
    print_table(rows, "Smallest cost-gap ratio a single gain can reach (the floor)")
    print()
    reproduce_figure1(output_dir=args.output, settings=ALTERNATIVES, progress=False)


if __name__ == "__main__":
    main()
