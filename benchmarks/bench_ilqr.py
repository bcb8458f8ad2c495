"""iLQR on the standard problems and the diagonal value model at large D.

Run:  python benchmarks/bench_ilqr.py [--quick]

Prints wall time, iterations and final cost for the acrobot, pendulum (T = 300) and
cart-pole (T = 50) problems of ``metalqr.ilqr.problems`` (finite-difference dynamics
derivatives, exact quadratic-cost derivatives), with the forward passes compiled
(``compiled_step``) and in plain Python. When JAX is installed (``pip install '.[bench]'``)
trajax's ``ilqr`` (vendored under ``benchmarks/peers/``, Apache-2.0) solves the same problems
at trajax's own settings in the same run (``benchmarks/peers/trajax_problems.py``): its first
call (tracing + XLA compilation + solve) and warm calls, interleaved with metalqr's calls;
medians of the rounds. metalqr's first call in this process (loading its compiled kernels
from the Numba cache) is shown too. Without JAX the trajax columns are skipped (said so).
The last rows run the diagonal value model at D = 1e5 with analytic derivatives and report
the peak traced memory against one D-vector (it must stay O(D)).

``--startup`` times ``import metalqr.ilqr`` + an acrobot solve in fresh processes: one with an
empty Numba cache (a fresh ``NUMBA_CACHE_DIR``), then warm runs, with the cache size and the
number of functions Numba compiled and saved in each (0 when the cache is warm).
``--startup-root DIR`` runs the same against another checkout (e.g. ``/work/main``).
``--references`` recomputes the standard problems' reference costs independently (SciPy
L-BFGS-B direct shooting with an adjoint gradient; minutes).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout
from _common import print_table  # noqa: E402
from metalqr.ilqr import ilqr, problems  # noqa: E402



def _trajax():
    """The vendored trajax problems module, or ``None`` (with a note) without JAX."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
    try:
        import trajax_problems
    except ImportError as exc:
        print(f"JAX is not installed ({exc}): trajax's iLQR is skipped "
              f"(pip install '.[bench]' to time it).")
        return None
    return trajax_problems


_STARTUP = """
import time; t0 = time.perf_counter(); c0 = time.process_time()
import metalqr.ilqr as il
t1 = time.perf_counter()
p = il.problems.acrobot(); r = il.ilqr(**p.kwargs(), max_iterations=100)
print("RESULT", t1 - t0, time.perf_counter() - t0, time.process_time() - c0, r.n_iterations, r.cost)
"""


def _folder_size(path: str) -> tuple[int, int]:
    files = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    return len(files), sum(os.path.getsize(f) for f in files)


def startup(root: str, warm_runs: int) -> None:
    """Fresh-process import + acrobot solve, cold then warm Numba cache (issue 15)."""
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPATH": root, "NUMBA_CACHE_DIR": cache, "NUMBA_DEBUG_CACHE": "1"}
        for run in range(1 + warm_runs):
            out = subprocess.run([sys.executable, "-c", _STARTUP], env=env, capture_output=True,
                                 text=True, check=True, cwd=tempfile.gettempdir()).stdout
            res = next(line.split()[1:] for line in out.splitlines() if line.startswith("RESULT"))
            n_files, size = _folder_size(cache)
            rows.append({"run": "cold" if run == 0 else f"warm {run}",
                         "import_s": float(res[0]), "import_solve_s": float(res[1]),
                         "cpu_s": float(res[2]), "iterations": int(res[3]),
                         "cost": float(res[4]),
                         "compiled_saved": out.count("[cache] data saved"),
                         "cache_files": n_files, "cache_KB": size / 1024})
    print_table(rows, f"Start-up in a fresh process ({root}; load average "
                      f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


def references() -> None:
    """Each standard problem's reference against SciPy L-BFGS-B direct shooting (exact
    adjoint gradient of the cost through the dynamics: central-difference Jacobians,
    analytic cost derivatives), from U = 0 at the default T and dt."""
    import scipy.optimize
    rows = []
    for name in problems.standard_problems():
        prob = problems.standard_problem(name)
        T, M = prob.U0.shape

        def fg(u):
            U = u.reshape(T, M)
            X = np.empty((T + 1, prob.x0.size))
            X[0] = prob.x0
            for t in range(T):
                X[t + 1] = prob.dynamics(X[t][None], U[t][None], np.array([t]))[0]
            if not np.all(np.isfinite(X)) or np.max(np.abs(X)) > 1e6:
                return 1e30, np.zeros_like(u)      # a trial step that blew up: reject it
            J = float(np.sum(prob.cost(X[:-1], U, np.arange(T))) + prob.terminal_cost(X[-1:])[0])
            d = prob.derivatives(X, U)
            lam, g = d.cT_x.copy(), np.empty((T, M))
            for t in range(T - 1, -1, -1):
                g[t] = d.c_u[t] + d.f_u[t].T @ lam
                lam = d.c_x[t] + (d.f_x[t].T @ lam if d.f_x.ndim == 3 else d.f_x[t] * lam)
            return J, g.ravel()

        t0 = time.perf_counter()
        ref = scipy.optimize.minimize(fg, prob.U0.ravel(), jac=True, method="L-BFGS-B",
                                      options=dict(maxiter=20000, maxfun=40000, ftol=1e-15,
                                                   gtol=1e-9))
        res = ilqr(**prob.kwargs(), **prob.solver_options)
        rows.append({"problem": name, "scipy_cost": f"{ref.fun:.6f}",
                     "scipy_s": time.perf_counter() - t0, "ilqr_cost": f"{res.cost:.6f}",
                     "registered_reference": f"{prob.reference:g}",
                     "both_reach_it": bool(ref.fun <= prob.reference and res.cost <= prob.reference)})
    print_table(rows, "Reference costs: SciPy L-BFGS-B direct shooting vs iLQR")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timing run, D = 1e4")
    parser.add_argument("--startup", action="store_true",
                        help="only the fresh-process start-up table (cold + 3 warm runs)")
    parser.add_argument("--startup-root", default=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), help="checkout whose metalqr --startup imports")
    parser.add_argument("--references", action="store_true",
                        help="only recompute the reference costs with SciPy (minutes)")
    args = parser.parse_args()
    if args.startup:
        startup(args.startup_root, 3)
        return
    if args.references:
        references()
        return
    tp = _trajax()
    rounds = 1 if args.quick else 5
    rows = []
    cases = [problems.standard_problem(name) for name in problems.standard_problems()]
    for prob, compiled in itertools.product(cases, (True, False)):
        kw = {"max_iterations": 100, **prob.solver_options}
        t0 = time.perf_counter()
        ilqr(**prob.kwargs(compiled), max_iterations=2)       # load/compile the problem's kernels
        first = time.perf_counter() - t0
        fns = {"metalqr": lambda: ilqr(**prob.kwargs(compiled), **kw)}
        row = {"problem": prob.name, "forward": "compiled" if compiled else "python"}
        if tp is not None and compiled and prob.name in tp.TRAJAX_MAXITER:
            solve, x0 = tp.solver(problems.standard_problem_spec(prob.name))
            t0 = time.perf_counter()
            out = tp.block(solve(x0))
            row["trajax_first_s"] = time.perf_counter() - t0
            fns["trajax"] = lambda: tp.block(solve(x0))
        times = {name: [] for name in fns}
        results = {}
        for _ in range(rounds):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                results[name] = fn()
                times[name].append(time.perf_counter() - t0)
        res = results["metalqr"]
        ms = 1e3 * float(np.median(times["metalqr"]))
        row.update({"metalqr_first_s": first, "ms": ms, "iterations": res.n_iterations,
                    "final_cost": res.cost, "reference": prob.reference})
        if "trajax" in fns:
            _, obj, it = results["trajax"]
            tms = 1e3 * float(np.median(times["trajax"]))
            row.update({"trajax_ms": tms, "trajax_iterations": int(it),
                        "trajax_cost": float(obj), "ratio_vs_trajax": ms / tms})
        elif tp is not None:
            row.update({"trajax_first_s": float("nan"), "trajax_ms": float("nan"),
                        "trajax_iterations": -1, "trajax_cost": float("nan"),
                        "ratio_vs_trajax": float("nan")})
        rows.append(row)
    print_table(rows, f"iLQR on standard problems (finite-difference derivatives; ms: median of "
                      f"{rounds} interleaved warm calls; ratio_vs_trajax = metalqr ms / trajax ms"
                      f"{'' if tp is None else f', JAX {tp.version}'}; load average "
                      f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)")
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
