"""Batched exact cost + gradient vs a Python loop over SciPy's Lyapunov solver.

Run:  python benchmarks/bench_lqr_core.py [--quick]

For each size the baseline loops over tasks and calls
``scipy.linalg.solve_discrete_lyapunov`` twice per task (P_K and Sigma_K), then forms
J = Tr(P Psi) and grad = 2 E Sigma; metalqr does the same with one batched call of
``metalqr.cost`` and one of ``metalqr.gradient``. Both are timed in this run; the table
gives the speed-up and the largest relative difference between the two results.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import scipy.linalg

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import metalqr  # noqa: E402
from _common import best_time, print_table  # noqa: E402
from helpers import random_task  # noqa: E402


def scipy_loop(tasks: metalqr.TaskSet, K: np.ndarray):
    J, G = np.empty(len(tasks)), np.empty((len(tasks),) + K.shape)
    for i, t in enumerate(tasks):
        AK = t.A - t.B @ K
        P = scipy.linalg.solve_discrete_lyapunov(AK.T, t.Q + K.T @ t.R @ K)
        S = scipy.linalg.solve_discrete_lyapunov(AK, t.Psi)
        J[i] = np.trace(P @ t.Psi)
        E = (t.R + t.B.T @ P @ t.B) @ K - t.B.T @ P @ t.A
        G[i] = 2 * E @ S
    return J, G


def metalqr_batched(tasks: metalqr.TaskSet, K: np.ndarray):
    return metalqr.cost(tasks, K), metalqr.gradient(tasks, K)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller task counts")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sizes = [(1000, 2, 1), (1000, 20, 10), (100, 50, 25)]
    if args.quick:
        sizes = [(n // 10, d, k) for n, d, k in sizes]
    rows = []
    for n, d, k in sizes:
        # Open-loop stable family (rho in [0.3, 0.95]) so K = 0 stabilises every task.
        tasks = metalqr.TaskSet([random_task(rng, d, k, rho=rng.uniform(0.3, 0.95)) for _ in range(n)])
        K = np.zeros((k, d))
        J0, G0 = scipy_loop(tasks, K)
        J1, G1 = metalqr_batched(tasks, K)
        diff = max(np.max(np.abs(J1 - J0) / np.abs(J0)),
                   np.max(np.linalg.norm(G1 - G0, axis=(1, 2)) / np.linalg.norm(G0, axis=(1, 2))))
        t_scipy = best_time(lambda: scipy_loop(tasks, K), repeat=2)
        t_ours = best_time(lambda: metalqr_batched(tasks, K), repeat=3)
        rows.append({"tasks": n, "d": d, "k": k, "scipy_loop_s": t_scipy, "metalqr_s": t_ours,
                     "speedup": t_scipy / t_ours, "max_rel_diff": float(diff)})
    print_table(rows, "Batched cost + gradient vs a loop of scipy.linalg.solve_discrete_lyapunov")


if __name__ == "__main__":
    main()
