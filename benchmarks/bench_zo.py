"""One Algorithm 2 meta-gradient per rollout backend, against a naive einsum version of the
array backend, a per-roll-out Python loop and this machine's DGEMM rate, all in one run.

Run:  python benchmarks/bench_zo.py [--outer 20] [--inner 10] [--repeat 7] [--quick]
                                   [--back-to-back C] [--blas-spin]

Setting: (d, k) = (20, 10), 5 tasks, M outer x M' inner perturbations (default the issue-15
target (M, M') = (20, 10); ``--outer 100 --inner 100`` is the paper's setting), roll-out
length l = 50: ``tasks * M * (M' + 1)`` roll-outs. Every repetition times, in turn, a float64
matmul (the DGEMM rate), each backend's meta-gradient and the einsum peer, so that all of them
see the same load on a shared machine; the table gives medians over the repetitions
(``uptime`` load printed before and after; ``cpu_s`` is the median process CPU time, all
threads, spin-waits included). By default each repetition times one call of each backend,
right after the DGEMM or another backend (cold caches); ``--back-to-back C`` times C
consecutive calls and keeps their median (the steady state of a training loop).

Flop counts (multiply-add = 2), per roll-out, stated in the output:

* nominal (:func:`nominal_flops_per_rollout`): the straightforward simulation,
  ``A_K = A - B K`` once (``2 d^2 k``), ``x_0 = L0 z`` (``2 d^2``), then per step
  ``x_{t+1} = A_K x_t + G z_t`` (``4 d^2``), ``u = -K x`` (``2 k d``) and the stage cost
  ``x'Qx + u'Ru`` (``2 d^2 + 2 d + 2 k^2 + 2 k``);
* executed (:func:`flops_per_rollout`): what the Numba kernel actually computes in the noise
  coordinates (diagonal state cost, no product with ``G``), about 0.6 of nominal.

The peers:

* ``naive einsum``: the array backend written the obvious way, a NumPy backend registered
  here whose ``simulate`` forms each roll-out's closed loop ``A_K`` and cost matrix
  ``Q + K'RK`` and advances all roll-outs by ``einsum("nij,nj->ni")`` per step, with the same
  counter-based noise (so it returns the same costs, which the script checks) and no
  chunking, threading or divergence test;
* ``python loop``: one roll-out at a time (timed on a subset, extrapolated).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time

# OpenBLAS's worker threads spin for about 0.1 s after each threaded call (THREAD_TIMEOUT 2^28
# cycles) before they sleep: after the DGEMM of each repetition a spinning worker held one of
# the two cores during the next timed meta-gradient (the Numba one at even repetitions), whose
# two threads then shared one core (median 8 ms for a 4 ms call). 2^4 cycles: they sleep at
# once; the DGEMM rate is unchanged (one 1000 x 1000 call wakes them once). Set before NumPy
# loads OpenBLAS; an explicit setting is kept (pass ``--blas-spin`` to restore the default).
if "--blas-spin" not in sys.argv:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.dirname(_HERE))       # this checkout's metalqr, not an installed one
import metalqr  # noqa: E402
from metalqr.rollouts.backends import register_backend  # noqa: E402
from metalqr.rollouts.counter_rng import block_stride, normals  # noqa: E402
from metalqr.rollouts.numpy_backend import NumpyBackend  # noqa: E402
from _common import blas_report, print_table  # noqa: E402

D, K_IN, TASKS, LENGTH = 20, 10, 5, 50


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


class NaiveEinsumBackend(NumpyBackend):
    """The array backend written the obvious way (peer of the benchmark, not shipped):
    per-roll-out closed loops and cost matrices, one ``einsum`` per product and step, the
    library's counter-based noise (identical costs), no divergence test."""

    name = "naive_einsum"
    description = "benchmark peer: per-roll-out einsum"
    CHUNK = 8192

    def simulate(self, A, B, Q, R, L0, G, task_index, K, noise_index, length, key, ref=None,
                 factor=math.inf):
        N, _, d = K.shape
        out = np.empty(N)
        S = block_stride(length, d)
        for s in range(0, N, self.CHUNK):
            ti, Kc = task_index[s:s + self.CHUNK], K[s:s + self.CHUNK]
            n = ti.shape[0]
            c = (noise_index[s:s + n].astype(np.uint64)[:, None] * np.uint64(S)
                 + np.arange(S, dtype=np.uint64)[None, :])
            Z = normals(np, key, c).reshape(n, length + 1, d)
            AK = A[ti] - np.einsum("nij,njk->nik", B[ti], Kc)
            Mc = Q[ti] + np.einsum("nji,njk,nkl->nil", Kc, R[ti], Kc)
            Gn = G[ti]
            x = np.einsum("nij,nj->ni", L0[ti], Z[:, 0])
            total = np.zeros(n)
            for t in range(1, length + 1):
                x = np.einsum("nij,nj->ni", AK, x) + np.einsum("nij,nj->ni", Gn, Z[:, t])
                total += np.einsum("ni,ni->n", x, np.einsum("nij,nj->ni", Mc, x))
            out[s:s + n] = total / length
        return out


def nominal_flops_per_rollout(d: int, k: int, length: int) -> float:
    """Flops of the straightforward roll-out (multiply-add = 2): ``A_K = A - B K`` once,
    ``x_0 = L0 z``, then per step ``A_K x + G z``, ``u = -K x``, ``x'Qx`` and ``u'Ru``."""
    setup = 2 * d * d * k + 2 * d * d
    step = 4 * d * d + 2 * k * d + (2 * d * d + 2 * d) + (2 * k * k + 2 * k)
    return float(setup + length * step)


def flops_per_rollout(d: int, k: int, length: int) -> float:
    """Flops the Numba kernel executes per roll-out (multiply-add = 2): gain in noise
    coordinates ``K G``; ``u = K~ y`` at each of the ``l + 1`` states; per step the state
    cost as a weighted sum of squares (3 a coordinate), ``u'Ru`` from the upper triangle of
    ``R`` and ``A~ y - B~ u``."""
    setup = 2 * k * d * d
    gains = 2 * (length + 1) * d * k
    step = 3 * d + 2 * (k * (k + 1) // 2 + k) + 2 * (d * d + d * k)
    return float(setup + gains + length * step)


def dgemm_gflops(n: int, tries: int = 3) -> float:
    """Best float64 ``n x n`` matmul rate of ``tries`` (NumPy's BLAS, all its threads)."""
    a, b = np.random.default_rng(0).random((2, n, n))
    c = np.empty((n, n))
    np.matmul(a, b, out=c)
    best = math.inf
    for _ in range(tries):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def stacked_gflops(d: int, lanes: int = 256, blocks: int = 64, tries: int = 3) -> float:
    """Rate of the kernel-shaped product: ``blocks`` stacked ``(lanes, d) @ (d, d)``."""
    rng = np.random.default_rng(0)
    x, a = rng.random((blocks, lanes, d)), rng.random((blocks, d, d))
    out = np.empty((blocks, lanes, d))
    np.matmul(x, a, out=out)
    best = math.inf
    for _ in range(tries):
        t0 = time.perf_counter()
        np.matmul(x, a, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * blocks * lanes * d * d / best / 1e9


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True,
                              check=False).stdout.strip()
    except OSError:
        return "(uptime unavailable)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outer", type=int, default=20, help="M, outer perturbations (20)")
    parser.add_argument("--inner", type=int, default=10, help="M', inner perturbations (10)")
    parser.add_argument("--repeat", type=int, default=7, help="interleaved repetitions (7)")
    parser.add_argument("--dgemm-size", type=int, default=1000,
                        help="n of the n x n float64 matmul giving the DGEMM rate (1000)")
    parser.add_argument("--quick", action="store_true", help="3 repetitions")
    parser.add_argument("--back-to-back", type=int, default=1,
                        help="time C consecutive calls of each backend per repetition and keep "
                             "their median (1: one call right after the previous backend and "
                             "the DGEMM, whose 24 MB have evicted the caches; more: the steady "
                             "state of repeated calls, as in training)")
    parser.add_argument("--no-loop", action="store_true", help="skip the Python-loop peer")
    parser.add_argument("--blas-spin", action="store_true",
                        help="leave OpenBLAS's thread timeout at its default (its workers spin "
                             "~0.1 s after the DGEMM, over the next timed call)")
    parser.add_argument("--backends", default=",".join(metalqr.available_backends()),
                        help="comma-separated names from the backend registry: "
                             + metalqr.rollouts.backend_help())
    args = parser.parse_args()
    names = [s for s in args.backends.split(",") if s]
    for name in names:
        if name not in metalqr.available_backends():   # the registry's names, nothing else
            parser.error(f"backend {name!r} cannot run here; available: "
                         f"{', '.join(metalqr.available_backends())} (known: "
                         f"{', '.join(metalqr.rollouts.known_backends())})")
    for opt in ("outer", "inner", "repeat", "dgemm_size", "back_to_back"):
        if getattr(args, opt) < 1:
            parser.error(f"--{opt.replace('_', '-')} must be at least 1")
    repeat = 3 if args.quick else args.repeat
    register_backend(NaiveEinsumBackend())
    peer = NaiveEinsumBackend.name
    d, k, n_tasks, length, M, Mi = D, K_IN, TASKS, LENGTH, args.outer, args.inner
    ts = metalqr.sample_tasks(n_tasks, d, k, rng=0)
    K = np.zeros((k, d))
    n_rollouts = n_tasks * M * (Mi + 1)
    nominal = n_rollouts * nominal_flops_per_rollout(d, k, length)
    executed = n_rollouts * flops_per_rollout(d, k, length)

    def grad(name, seed):
        return metalqr.zo_maml_gradient(ts, K, eta=1e-7, n_perturbations=M,
                                        inner_perturbations=Mi, rollout_length=length,
                                        radius=0.05, backend=name, rng=seed)

    # The peer is correct: the same estimate as the NumPy reference (same noise).
    ref, got = grad("numpy", 123), grad(peer, 123)
    agree = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
    if agree > 1e-8:
        raise SystemExit(f"the einsum peer disagrees with the numpy backend ({agree:.2e})")
    for name in names:
        grad(name, 0)                                   # compile / warm up

    print(f"load before: {uptime()}")
    timed = names + [peer]
    times = {name: [] for name in timed}
    cpu = {name: [] for name in timed}
    peaks, stacked = [], []
    for rep in range(repeat):
        peaks.append(dgemm_gflops(args.dgemm_size))
        stacked.append(stacked_gflops(d))
        for name in (timed if rep % 2 == 0 else timed[::-1]):
            wall, proc = [], []
            for call in range(args.back_to_back):
                t0, c0 = time.perf_counter(), time.process_time()
                grad(name, rep * args.back_to_back + call)
                wall.append(time.perf_counter() - t0)
                proc.append(time.process_time() - c0)
            times[name].append(float(np.median(wall)))
            cpu[name].append(float(np.median(proc)))
    print(f"load after:  {uptime()}")
    try:
        import numba
        layer = numba.threading_layer()
    except (ImportError, ValueError):
        layer = "n/a"
    for line in blas_report():          # the DGEMM rate depends on the kernels OpenBLAS chose
        print(line)
    print(f"numba threading layer {layer}, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY', '(unset)')}, OPENBLAS_THREAD_TIMEOUT="
          f"{os.environ.get('OPENBLAS_THREAD_TIMEOUT', '(unset)')}, {os.cpu_count()} CPUs")
    peak = float(np.median(peaks))

    t_loop = math.nan
    if not args.no_loop:
        rng = np.random.default_rng(0)
        subset = 200
        ti = np.arange(subset) % n_tasks
        t0 = time.perf_counter()
        loop_rollout_costs(ts, ti, np.zeros((subset, k, d)), length, rng)
        t_loop = (time.perf_counter() - t0) * n_rollouts / subset

    t_peer = float(np.median(times[peer]))
    rows = []
    for name in timed + ([] if args.no_loop else ["python loop"]):
        t = t_loop if name == "python loop" else float(np.median(times[name]))
        label = {peer: "naive einsum (peer)",
                 "python loop": "python loop (extrapolated)"}.get(name, name)
        rows.append({"backend": label, "median_s": t,
                     "min_s": t if name == "python loop" else float(np.min(times[name])),
                     "cpu_s": t if name == "python loop" else float(np.median(cpu[name])),
                     "vs_einsum": t_peer / t,
                     "GFLOP/s nominal": nominal / t / 1e9,
                     "%DGEMM nominal": 100 * nominal / t / 1e9 / peak,
                     "%DGEMM executed": 100 * executed / t / 1e9 / peak})
    print(f"Algorithm 2 meta-gradient: (d, k) = ({d}, {k}), {n_tasks} tasks, (M, M') = "
          f"({M}, {Mi}), l = {length}: {n_rollouts} roll-outs; {nominal / 1e9:.4g} GFLOP "
          f"nominal ({nominal_flops_per_rollout(d, k, length):.0f} a roll-out), "
          f"{executed / 1e9:.4g} GFLOP executed by the Numba kernel "
          f"({flops_per_rollout(d, k, length):.0f} a roll-out)")
    print(f"DGEMM ({args.dgemm_size} x {args.dgemm_size} float64 matmul, median of {repeat}, "
          f"interleaved; {args.back_to_back} call(s) of each backend a repetition): "
          f"{peak:.1f} GFLOP/s (range {min(peaks):.1f}-{max(peaks):.1f}); "
          f"kernel-shaped stacked (256, {d}) @ ({d}, {d}) matmul: "
          f"{float(np.median(stacked)):.1f} GFLOP/s; einsum peer agrees to {agree:.1e}")
    print_table(rows)


if __name__ == "__main__":
    main()
