"""CuPy against Numba in one run (issue 19): one Algorithm 2 meta-gradient and a Figure 1
setting through the experiments engine. Skips cleanly (exit status 0, one line) without
CuPy or a GPU.

    python benchmarks/bench_gpu.py [--iterations 20] [--M 100]

1. ``zo_maml_gradient`` at (d, k) = (20, 10), 5 tasks, M = M' = ``--M``, l = 50
   (5 * M * (M' + 1) roll-outs): best of 3 after a warm-up, per backend.
2. The Figure 1 (d, k) = (20, 10) setting (two-point, alpha = 1e-5, eta = 1e-7, M = M' =
   ``--M``) for ``--iterations`` iterations via :func:`metalqr.experiments.execute_run`, per
   backend; reports wall time and the recorded device. The two backends draw different
   random numbers, so their curves agree statistically, not bit for bit.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import metalqr  # noqa: E402


def best_of(fn, repeat=3):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--M", type=int, default=100)
    args = p.parse_args()
    if "cupy" not in metalqr.available_backends():
        print("bench_gpu: skipped (CuPy or a CUDA GPU is not available here)")
        return
    import cupy
    dev = cupy.cuda.runtime.getDevice()
    name = cupy.cuda.runtime.getDeviceProperties(dev)["name"].decode()
    print(f"GPU {dev}: {name}; cpu_count={os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")

    rng = np.random.default_rng([0, 20, 10])
    tasks = metalqr.sample_tasks(5, 20, 10, rng=rng)
    K = np.zeros((10, 20))
    rollouts = 5 * args.M * (args.M + 1)
    print(f"\n1. Algorithm 2 meta-gradient, d=20 k=10, 5 tasks, M=M'={args.M}, l=50 "
          f"({rollouts} roll-outs)")
    grads, times = {}, {}
    for backend in ("numba", "cupy"):
        def one(backend=backend):
            grads[backend] = metalqr.zo_maml_gradient(tasks, K, eta=1e-7, n_perturbations=args.M,
                                                      rng=1, backend=backend)
            if backend == "cupy":
                cupy.cuda.Stream.null.synchronize()
        times[backend] = best_of(one)
        print(f"  {backend:>6}: {times[backend]:.3f} s  ({rollouts / times[backend] / 1e6:.2f} M "
              f"roll-outs/s)")
    print(f"  speed-up cupy vs numba: {times['numba'] / times['cupy']:.2f}x; |G_cupy - G_numba| / "
          f"|G_numba| = {np.linalg.norm(grads['cupy'] - grads['numba']) / np.linalg.norm(grads['numba']):.3g} "
          f"(different random streams: a Monte Carlo difference)")

    from metalqr.experiments import execute_run
    print(f"\n2. Figure 1 setting d=20 k=10 (two-point, M=M'={args.M}), {args.iterations} iterations")
    walls = {}
    for backend in ("numba", "cupy"):
        cfg = {"d": 20, "k": 10, "alpha": 1e-5, "eta": 1e-7, "K0": "zero", "estimator": "two_point",
               "M": args.M, "M_prime": args.M, "n_iterations": args.iterations, "backend": backend}
        execute_run({**cfg, "n_iterations": 1})                       # warm-up
        rec = execute_run(cfg)
        walls[backend] = rec["wall_seconds"]
        print(f"  {backend:>6}: {rec['wall_seconds']:.2f} s ({rec['wall_seconds'] / args.iterations:.3f} "
              f"s/iteration), final cost-gap ratio {rec['summary']['final_cost_gap_ratio']:.4g}, "
              f"device {rec['device']}")
    print(f"  speed-up cupy vs numba: {walls['numba'] / walls['cupy']:.2f}x")


if __name__ == "__main__":
    main()
