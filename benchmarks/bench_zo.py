"""One Algorithm 2 meta-gradient per rollout backend vs a straightforward per-rollout loop.

Run:  python benchmarks/bench_zo.py [--quick]

Setting (issue target): (d, k) = (20, 10), 5 tasks, M = 100 outer x M' = 100 inner
perturbations, roll-out length l = 50: 5 * 100 * (100 + 1) = 50,500 roll-outs. The baseline
simulates roll-outs one at a time in Python/NumPy (fresh normals, matrix-vector products);
it is timed on a subset and extrapolated. GFLOP/s counts the multiply-adds of the Numba
kernel's simulation (see `flops_per_rollout`) and is compared with this machine's float64
matmul rate measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import metalqr  # noqa: E402
from _common import print_table  # noqa: E402


def loop_rollout_costs(tasks, task_index, K, length, rng):
    """The straightforward baseline: one roll-out at a time."""
    out = np.empty(len(task_index))
    L0 = [np.linalg.cholesky(t.Sigma0) for t in tasks]
    Lw = [np.linalg.cholesky(t.Psi) for t in tasks]
    for n, (i, Kn) in enumerate(zip(task_index, K)):
        t = tasks[int(i)]
        AK, M = t.A - t.B @ Kn, t.Q + Kn.T @ t.R @ Kn
        x = L0[i] @ rng.standard_normal(t.d)
        total = 0.0
        for _ in range(length):
            x = AK @ x + Lw[i] @ rng.standard_normal(t.d)
            total += x @ M @ x
        out[n] = total / length
    return out


def flops_per_rollout(d: int, k: int, length: int) -> float:
    """Floating-point operations of the Numba kernel's roll-out (multiply-add = 2): gain in
    noise coordinates ``K G``; ``u = K~ y`` at each of the ``l + 1`` states; per step the state
    cost as a weighted sum of squares (3 a coordinate), ``u'Ru`` from the upper triangle of
    ``R`` and ``A~ y - B~ u``."""
    setup = 2 * k * d * d
    gains = 2 * (length + 1) * d * k
    step = 3 * d + 2 * (k * (k + 1) // 2 + k) + 2 * (d * d + d * k)
    return float(setup + gains + length * step)


def matmul_gflops(n: int = 2000) -> float:
    a, b = np.random.rand(n, n), np.random.rand(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(3):
        a @ b
    return 3 * 2 * n**3 / (time.perf_counter() - t0) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="M = M' = 20")
    parser.add_argument("--backends", default=",".join(metalqr.available_backends()),
                        help="comma-separated names from the backend registry: "
                             + metalqr.rollouts.backend_help())
    args = parser.parse_args()
    for name in args.backends.split(","):
        if name not in metalqr.available_backends():   # the registry's names, nothing else
            parser.error(f"backend {name!r} cannot run here; available: "
                         f"{', '.join(metalqr.available_backends())} (known: "
                         f"{', '.join(metalqr.rollouts.known_backends())})")
    d, k, n_tasks, length = 20, 10, 5, 50
    M = 20 if args.quick else 100
    ts = metalqr.sample_tasks(n_tasks, d, k, rng=0)
    K = np.zeros((k, d))
    n_rollouts = n_tasks * M * (M + 1)
    flops = n_rollouts * flops_per_rollout(d, k, length)

    rng = np.random.default_rng(0)
    subset = 500
    ti = np.arange(subset) % n_tasks
    t0 = time.perf_counter()
    loop_rollout_costs(ts, ti, np.zeros((subset, k, d)), length, rng)
    t_loop = (time.perf_counter() - t0) * n_rollouts / subset

    peak = matmul_gflops()
    rows = [{"backend": "python loop (extrapolated)", "seconds": t_loop, "speedup_vs_loop": 1.0,
             "GFLOP/s": flops / t_loop / 1e9, "pct_of_matmul": 100 * flops / t_loop / 1e9 / peak}]
    for name in args.backends.split(","):
        kw = dict(eta=1e-7, n_perturbations=M, inner_perturbations=M, rollout_length=length,
                  radius=0.05, backend=name)
        metalqr.zo_maml_gradient(ts, K, rng=1, **{**kw, "n_perturbations": 2, "inner_perturbations": 2})
        best = float("inf")
        for rep in range(3):
            t0 = time.perf_counter()
            metalqr.zo_maml_gradient(ts, K, rng=rep, **kw)
            best = min(best, time.perf_counter() - t0)
        rows.append({"backend": name, "seconds": best, "speedup_vs_loop": t_loop / best,
                     "GFLOP/s": flops / best / 1e9, "pct_of_matmul": 100 * flops / best / 1e9 / peak})
    print(f"Algorithm 2 meta-gradient: (d, k) = ({d}, {k}), {n_tasks} tasks, M = M' = {M}, l = {length}: "
          f"{n_rollouts} roll-outs, {flops / 1e9:.2f} GFLOP; float64 matmul peak here: {peak:.1f} GFLOP/s")
    print_table(rows)


if __name__ == "__main__":
    main()
