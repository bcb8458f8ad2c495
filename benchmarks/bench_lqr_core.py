"""metalqr's LQR core against its peers, timed side by side in one run (issue 15).

Run:  python benchmarks/bench_lqr_core.py [--quick] [--only {cost,dare,small}] [--repeat N >= 1] [--no-jax]

* ``cost``: batched exact cost + gradient (``metalqr.cost`` then ``metalqr.gradient``) vs a
  Python loop calling ``scipy.linalg.solve_discrete_lyapunov`` twice per task.
* ``dare``: ``optimal_gain`` (batched structured doubling, checked) vs loops of SciPy's DARE
  and python-control's ``dlqr`` and a jit-compiled JAX batched doubling (vmap), 1000 tasks of
  d = 2 and 4, 10 tasks of d = 20 and 200, with each solver's largest scaled residual.
* ``small``: one task's cost + gradient at d = 2, 1000 tasks of d = 2, 4, 6 and 10 tasks of
  d = 200 by ``metalqr.evaluate`` (one solve shared) vs loops of SciPy / python-control and
  jit JAX with vmap (Kronecker solve and squared Smith doubling; the faster counts).

The JAX peers (``benchmarks/_jax_peers.py``) run when JAX is installed
(``pip install '.[bench]'``); otherwise the script says it skipped them. Rows are medians
of ``--repeat`` interleaved rounds; ``x_*`` = peer time / metalqr time (> 1: metalqr faster),
``strongest_peer`` the fastest peer of the row. Every peer's results are compared with SciPy's
before timing (``rel_diff_scipy``, residual columns). The load average is printed: on a shared
machine the timings are noisy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import scipy.linalg

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout
import metalqr  # noqa: E402
from _common import best_time, blas_report, print_table  # noqa: E402
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


def scipy_dare_loop(tasks: metalqr.TaskSet):
    """Optimal gains by a Python loop over ``scipy.linalg.solve_discrete_are``."""
    Ks, Ps = [], []
    for t in tasks:
        P = scipy.linalg.solve_discrete_are(t.A, t.B, t.Q, t.R)
        Ks.append(np.linalg.solve(t.R + t.B.T @ P @ t.B, t.B.T @ P @ t.A))
        Ps.append(P)
    return np.stack(Ks), np.stack(Ps)


def control_dlqr_loop(tasks: metalqr.TaskSet):
    """Optimal gains by a Python loop over ``control.dlqr``."""
    import control

    Ks, Ps = [], []
    for t in tasks:
        K, P, _ = control.dlqr(t.A, t.B, t.Q, t.R)
        Ks.append(K)
        Ps.append(P)
    return np.stack(Ks), np.stack(Ps)


def interleaved(fns: dict, repeat: int, min_round: float = 0.1) -> dict:
    """Median wall time per call of each function over ``repeat`` rounds, the functions
    alternating within each round so that load changes hit all alike. After a warm-up call
    (which also compiles the JAX peers), a function faster than ``min_round`` seconds is
    called several times in a row per round and the round's mean per call is recorded, as
    ``timeit`` does for short statements."""
    inner = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        inner[name] = max(1, min(50, int(min_round / max(time.perf_counter() - t0, 1e-9))))
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            times[name].append((time.perf_counter() - t0) / inner[name])
    return {name: float(np.median(v)) for name, v in times.items()}


def _jax():
    """The JAX peers module, or ``None`` (with a note) when JAX is not installed."""
    try:
        import _jax_peers
    except ImportError as exc:
        print(f"JAX is not installed ({exc}): the jit-JAX peers are skipped "
              f"(pip install '.[bench]' to measure them).")
        return None
    return _jax_peers


def _load() -> str:
    return (f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
            if hasattr(os, "getloadavg") else "load average unknown")


def _strongest(row: dict, t: dict, ours: str, peers: list) -> None:
    """Add the strongest (fastest) peer and ``its time / metalqr's time`` to ``row``."""
    best = min(peers, key=lambda p: t[p])
    row["strongest_peer"] = best
    row["x_strongest"] = t[best] / t[ours]


def bench_optimal_gain(quick: bool, repeat: int, jp) -> None:
    """``optimal_gain`` (batched structured doubling, checked) vs loops of SciPy's DARE and
    python-control's dlqr, and (when installed) a jit-compiled JAX batched doubling (vmap), on
    random tasks (spectral radius of A uniform in [0.3, 1.2], so about a third are open-loop
    unstable). Also prints the accuracy: the largest scaled Riccati residual of each solver
    and the largest relative gain difference to dlqr."""
    try:
        import control  # noqa: F401
        have_control = True
    except ImportError:
        have_control = False
        print("python-control is not installed: its column is skipped.")
    from metalqr.lqr.riccati import riccati_residual

    rng = np.random.default_rng(1)
    sizes = [(1000, 2, 1), (1000, 4, 2), (10, 20, 10), (10, 200, 100)]
    if quick:
        sizes = [(100, 2, 1), (100, 4, 2), (10, 20, 10), (2, 200, 100)]
    rows = []
    for n, d, k in sizes:
        tasks = metalqr.TaskSet([random_task(rng, d, k) for _ in range(n)])
        fns = {"metalqr": lambda: metalqr.optimal_gain(tasks), "scipy": lambda: scipy_dare_loop(tasks)}
        if have_control:
            fns["control"] = lambda: control_dlqr_loop(tasks)
        if jp is not None:
            dev = jp.to_device(tasks)
            fns["jax"] = lambda: jp.dare_sda(*dev)
        t = interleaved(fns, repeat)
        K, P = metalqr.optimal_gain(tasks)
        K_s, P_s = scipy_dare_loop(tasks)
        row = {"tasks": n, "d": d, "k": k, "metalqr_ms": 1e3 * t["metalqr"],
               "scipy_ms": 1e3 * t["scipy"], "x_scipy": t["scipy"] / t["metalqr"]}
        if have_control:
            K_c, _ = control_dlqr_loop(tasks)
            row.update({"control_ms": 1e3 * t["control"], "x_control": t["control"] / t["metalqr"]})
        if jp is not None:
            row.update({"jax_ms": 1e3 * t["jax"], "x_jax": t["jax"] / t["metalqr"]})
        _strongest(row, t, "metalqr", [p for p in fns if p != "metalqr"])
        if have_control:
            row["max_relK_vs_dlqr"] = float(np.max(np.linalg.norm(K - K_c, axis=(1, 2))
                                                   / np.linalg.norm(K_c, axis=(1, 2))))
        row.update({"max_res_metalqr": float(np.max(riccati_residual(tasks, P))),
                    "max_res_scipy": float(np.max(riccati_residual(tasks, P_s)))})
        if jp is not None:
            P_j = np.asarray(jp.dare_sda(*dev)[1])
            row["max_res_jax"] = float(np.max(riccati_residual(tasks, np.where(
                np.isfinite(P_j), P_j, 1e300)))) if np.all(np.isfinite(P_j)) else float("inf")
        rows.append(row)
    print_table(rows, f"optimal_gain vs loops of scipy.linalg.solve_discrete_are and control.dlqr"
                      f"{' and jit JAX batched doubling (vmap)' if jp is not None else ''} "
                      f"(median of {repeat} interleaved rounds; x_* = peer time / metalqr time; "
                      f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
                      f"{_load()})")


def bench_cost_gradient(quick: bool, repeat: int) -> None:
    rng = np.random.default_rng(0)
    sizes = [(1000, 2, 1), (1000, 20, 10), (100, 50, 25)]
    if quick:
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
        t_scipy = best_time(lambda: scipy_loop(tasks, K), repeat=repeat)
        t_ours = best_time(lambda: metalqr_batched(tasks, K), repeat=repeat)
        rows.append({"tasks": n, "d": d, "k": k, "scipy_loop_s": t_scipy, "metalqr_s": t_ours,
                     "speedup": t_scipy / t_ours, "max_rel_diff": float(diff)})
    print_table(rows, "Batched cost + gradient vs a loop of scipy.linalg.solve_discrete_lyapunov "
                      f"(best of {repeat} calls after a warm-up)")


def control_loop(tasks: metalqr.TaskSet, K: np.ndarray):
    """Cost and gradient by a Python loop over python-control's ``dlyap`` (two solves per
    task), the same formulas as :func:`scipy_loop`."""
    import control

    J, G = np.empty(len(tasks)), np.empty((len(tasks),) + K.shape)
    for i, t in enumerate(tasks):
        AK = t.A - t.B @ K
        P = control.dlyap(AK.T, t.Q + K.T @ t.R @ K)
        S = control.dlyap(AK, t.Psi)
        J[i] = np.trace(P @ t.Psi)
        E = (t.R + t.B.T @ P @ t.B) @ K - t.B.T @ P @ t.A
        G[i] = 2 * E @ S
    return J, G


def metalqr_evaluate(tasks, K):
    """Cost and gradient from one :func:`metalqr.evaluate` (one solve of P and Sigma)."""
    ev = metalqr.evaluate(tasks, K)
    return ev.cost, ev.gradient


def bench_small_tasks(quick: bool, repeat: int, jp) -> None:
    """Issue 15, cost + gradient against the peers: one task at d = 2 (latency), 1000 tasks
    of d = 2, 4, 6 and 10 tasks of d = 200 batched, against loops of SciPy and python-control
    and (when installed) jit-compiled JAX with vmap (Kronecker solve for d <= 6, squared
    Smith doubling at any d; the faster counts), interleaved and repeated in this run."""
    try:
        import control  # noqa: F401
        have_control = True
    except ImportError:
        have_control = False
    rng = np.random.default_rng(1)
    rows = []
    cases = [(1, 2, 1), (1000, 2, 1), (1000, 4, 2), (1000, 6, 3), (10, 200, 100)]
    if quick:
        cases = [(1, 2, 1), (100, 2, 1), (100, 4, 2), (100, 6, 3), (2, 200, 100)]
    for n, d, k in cases:
        tasks = metalqr.TaskSet([random_task(rng, d, k, rho=rng.uniform(0.3, 0.95))
                                 for _ in range(n)])
        K = np.zeros((k, d))
        one = tasks[0]
        target = one if n == 1 else tasks
        fns = {"metalqr_evaluate": lambda: metalqr_evaluate(target, K),
               "metalqr_cost_then_gradient": lambda: metalqr_batched(target, K),
               "scipy": lambda: scipy_loop(tasks, K)}
        if have_control:
            fns["control"] = lambda: control_loop(tasks, K)
        J0, G0 = scipy_loop(tasks, K)
        jax_diff = {}
        if jp is not None:
            dev = jp.to_device(tasks, K)
            peers = {}
            if n == 1 and d <= 6:
                single = tuple(a[0] for a in dev)
                peers["jax_kron"] = lambda: jp.cost_grad_kron_single(*single)
            elif d <= 6:
                peers["jax_kron"] = lambda: jp.cost_grad_kron(*dev)
            peers["jax_doubling"] = lambda: jp.cost_grad_doubling(*dev)
            for name, fn in peers.items():
                Jj, Gj = (np.asarray(x) for x in fn())
                Jj, Gj = np.atleast_1d(Jj), Gj.reshape(G0.shape)
                jax_diff[name] = max(np.max(np.abs(Jj - J0) / np.abs(J0)),
                                     np.max(np.linalg.norm(Gj - G0, axis=(1, 2))
                                            / np.linalg.norm(G0, axis=(1, 2))))
            fns.update(peers)
        J1, G1 = metalqr_evaluate(target, K)
        J1, G1 = np.atleast_1d(J1), G1.reshape(G0.shape)
        diff = max(np.max(np.abs(J1 - J0) / np.abs(J0)),
                   np.max(np.linalg.norm(G1 - G0, axis=(1, 2)) / np.linalg.norm(G0, axis=(1, 2))))
        t = interleaved(fns, repeat)
        row = {"tasks": n, "d": d, "k": k, "evaluate_us": 1e6 * t["metalqr_evaluate"],
               "cost+grad_us": 1e6 * t["metalqr_cost_then_gradient"],
               "scipy_us": 1e6 * t["scipy"], "x_scipy": t["scipy"] / t["metalqr_evaluate"]}
        if have_control:
            row.update({"control_us": 1e6 * t["control"],
                        "x_control": t["control"] / t["metalqr_evaluate"]})
        if jp is not None:
            for name in ("jax_kron", "jax_doubling"):
                row[f"{name}_us"] = 1e6 * t[name] if name in t else float("nan")
        if jax_diff:
            best = min(jax_diff, key=lambda p: t[p])
            row["x_jax"] = t[best] / t["metalqr_evaluate"]
        _strongest(row, t, "metalqr_evaluate",
                   [p for p in fns if not p.startswith("metalqr")])
        row["rel_diff_scipy"] = float(diff)
        if jax_diff:
            row["jax_rel_diff_scipy"] = float(max(jax_diff.values()))
        rows.append(row)
    print_table(rows, f"Cost + gradient: metalqr.evaluate (one solve shared) and cost() then "
                      f"gradient() vs loops of SciPy / python-control dlyap"
                      f"{' and jit JAX (vmap)' if jp is not None else ''} (median of {repeat} "
                      f"interleaved rounds; x_* = peer time / evaluate time; "
                      f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
                      f"{_load()})")


def _positive_int(text: str) -> int:
    """``--repeat``: an integer >= 1 (argparse reports the message with the option's name)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (rounds to time; each row reports the "
                                         f"median or best of them); got {value}")
    return value


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller task counts")
    parser.add_argument("--only", choices=["cost", "dare", "small"], default=None,
                        help="run only the cost+gradient rows against a SciPy loop, the "
                             "optimal_gain rows or the peer rows (one task, 1000 small tasks, "
                             "10 tasks of d = 200)")
    parser.add_argument("--repeat", type=_positive_int, default=5,
                        help="interleaved rounds (default 5; medians are reported)")
    parser.add_argument("--no-jax", action="store_true", help="skip the JAX peers")
    args = parser.parse_args(argv)
    jp = None if args.no_jax else _jax()
    print("\n".join(blas_report()))
    if args.only in (None, "cost"):
        bench_cost_gradient(args.quick, args.repeat)
    if args.only in (None, "dare"):
        bench_optimal_gain(args.quick, args.repeat, jp)
    if args.only in (None, "small"):
        bench_small_tasks(args.quick, args.repeat, jp)


if __name__ == "__main__":
    main()
