"""iLQR on the standard problems and the diagonal value model at large D.

Run:  python benchmarks/bench_ilqr.py [--quick]

Prints wall time (best of 3 after a warm-up), iterations and final cost for the acrobot,
pendulum (T = 300) and cart-pole (T = 50) problems of ``metalqr.ilqr.problems``
(finite-difference dynamics derivatives, exact quadratic-cost derivatives), with the
forward passes compiled (``compiled_step``) and in plain Python. The ratio column compares with
the JIT-compiled JAX iLQR timings quoted in the issue (26 / 130 / 120 ms on a 2-core
machine; JAX is not installed here, so they are quoted figures, not measured in this run).
The last rows run the diagonal value model at D = 1e5 with analytic derivatives and report
the peak traced memory against one D-vector (it must stay O(D)).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(__file__))
from _common import print_table  # noqa: E402
from metalqr.ilqr import ilqr, problems  # noqa: E402

JAX_QUOTED_MS = {"acrobot": 26.0, "pendulum": 130.0, "cartpole": 120.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timing run, D = 1e4")
    args = parser.parse_args()
    rows = []
    cases = ((problems.acrobot(), {}), (problems.pendulum(), {}),
             (problems.cartpole(), {"max_iterations": 1000, "tol": 1e-6}))
    for (prob, opts), compiled in itertools.product(cases, (True, False)):
        kw = {"max_iterations": 100, **opts}
        ilqr(**prob.kwargs(compiled), max_iterations=2)       # compile the problem's dynamics
        best, res = float("inf"), None
        for _ in range(1 if args.quick else 3):
            t0 = time.perf_counter()
            res = ilqr(**prob.kwargs(compiled), **kw)
            best = min(best, time.perf_counter() - t0)
        rows.append({"problem": prob.name, "forward": "compiled" if compiled else "python",
                     "ms": 1e3 * best, "iterations": res.n_iterations,
                     "initial_cost": res.costs[0], "final_cost": res.cost,
                     "jax_quoted_ms": JAX_QUOTED_MS[prob.name],
                     "ratio_vs_jax": 1e3 * best / JAX_QUOTED_MS[prob.name]})
    print_table(rows, "iLQR on standard problems (finite-difference derivatives)")
    print()
    D = 10_000 if args.quick else 100_000
    rows = []
    for M, T in ((5, 5), (10, 5)):
        prob = problems.diagonal_quadratic(D, M, T, rng=0)
        tracemalloc.start()
        t0 = time.perf_counter()
        res = ilqr(**prob.kwargs(), value_model="diagonal", max_iterations=5)
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append({"D": D, "M": M, "T": T, "seconds": elapsed, "iterations": res.n_iterations,
                     "cost_reduction": 1 - res.cost / res.costs[0],
                     "peak_MB": peak / 2**20, "peak_in_D_vectors": peak / (8 * D)})
    print_table(rows, "Diagonal value model (TOW Section 3.1), analytic derivatives")


if __name__ == "__main__":
    main()
