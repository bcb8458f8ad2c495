"""Benchmark of the experiments engine (issue 19).

16 Figure 1 runs (the quick settings d=1,k=1 and d=2,k=2, 8 seeds each, fewer iterations)
executed three ways, each into its own result store:

* ``dask``: a 2-worker LocalCluster (one thread per worker, Numba/BLAS limited to 1 thread);
* ``serial-1t``: serially in one process with one thread (the same thread limits);
* ``serial-default``: serially in one process with default threading.

Targets: dask >= 1.7x faster than serial-1t on 2 cores, not slower than serial-default, and
identical results (every history value except timings, bit for bit). Each process first
does one untimed warm-up run (Numba loads its cached kernels; its time in a worker is
reported as the worker's start-up). The modes alternate ``--repeat`` times (a change of
machine load hits them alike); the report gives each mode's median and every repeat, and
the load average before and after. Also reports the per-run overhead of the engine: study
wall time minus the runs' own time (divided by the workers), per run, on this study and on
32 near-empty runs, and the time to start the LocalCluster.

    python benchmarks/bench_sweep.py [--iterations 30] [--seeds 8] [--workers 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CHILD = r"""
import json, resource, sys, time
from metalqr.experiments import Study, execute_run, run_study
spec = json.loads(sys.argv[1])
study = Study.grid(**spec["study"])
execute_run({**study.runs[0], "n_iterations": 1})          # warm-up (Numba cache, imports)
cpu = lambda: (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(resource.RUSAGE_SELF))
t0, c0 = time.perf_counter(), cpu()
rep = run_study(study, spec["store"], engine="serial", progress=False)
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": cpu() - c0, "ran": len(rep.ran)}))
"""


def study_spec(iterations: int, seeds: int) -> dict:
    from metalqr.meta.figure1 import QUICK_SETTINGS
    runs = [{"d": s.d, "k": s.k, "alpha": s.alpha, "eta": s.eta, "K0": "zero",
             "M": s.n_perturbations, "M_prime": s.inner_perturbations}
            for s in QUICK_SETTINGS[:2]]
    return {"base": {"n_iterations": iterations}, "runs": runs, "seeds": seeds,
            "name": "bench-sweep"}


def cpu_seconds() -> float:
    """CPU time (user + system) of this process, all threads."""
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def serial(spec: dict, store: str, one_thread: bool) -> tuple[float, float]:
    from metalqr.experiments import thread_limits
    env = dict(os.environ, PYTHONPATH=ROOT)
    for name in thread_limits(1):
        env.pop(name, None)
    if one_thread:
        env.update(thread_limits(1))
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps({"study": spec, "store": store})],
                         env=env, capture_output=True, text=True, check=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    return res["wall"], res["cpu"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3, help="alternate the modes this many times; "
                   "report each mode's median")
    args = p.parse_args()

    from distributed import Client

    from metalqr.experiments import (ResultStore, Study, comparable, execute_run, local_cluster,
                                     run_study)
    spec = study_spec(args.iterations, args.seeds)
    study = Study.grid(**spec)
    print(f"{len(study)} runs (Figure 1 quick settings d=1,k=1 and d=2,k=2, {args.iterations} "
          f"iterations, {args.seeds} seeds); cpu_count={os.cpu_count()}, load average "
          f"{os.getloadavg()[0]:.2f} at start")
    tmp = tempfile.mkdtemp(prefix="bench_sweep_")
    modes = ("dask", "serial-1t", "serial-default")
    walls = {m: [] for m in modes}
    cpus = {m: [] for m in modes}

    t0 = time.perf_counter()
    cluster = local_cluster(args.workers)
    client = Client(cluster)
    startup = time.perf_counter() - t0
    print(f"LocalCluster start ({args.workers} workers): {startup:.2f} s")
    def warm_up(config):
        t = time.perf_counter()
        execute_run(config)
        return time.perf_counter() - t
    warm = client.run(warm_up, {**study.runs[0], "n_iterations": 1})    # warm-up each worker
    print("worker start-up (first run of 1 iteration: Numba's cached kernels loaded): "
          + ", ".join(f"{w:.2f} s" for w in warm.values()))
    # the modes alternate, `--repeat` times, so that a change of load hits them alike
    for rep_i in range(args.repeat):
        stores = {m: os.path.join(tmp, f"{m}-{rep_i}") for m in modes}
        c0 = sum(client.run(cpu_seconds).values())
        t0 = time.perf_counter()
        rep = run_study(study, stores["dask"], client=client, progress=False)
        walls["dask"].append(time.perf_counter() - t0)
        cpus["dask"].append(sum(client.run(cpu_seconds).values()) - c0)
        assert rep.complete and len(rep.ran) == len(study)
        for m in modes[1:]:
            w, c = serial(spec, stores[m], one_thread=(m == "serial-1t"))
            walls[m].append(w)
            cpus[m].append(c)
        print(f"repeat {rep_i + 1}: " + ", ".join(f"{m} {walls[m][-1]:.2f} s" for m in modes)
              + f"; load average {os.getloadavg()[0]:.2f}")
    # per-run engine overhead with near-empty runs (1 iteration, M = M' = 2)
    tiny = Study.grid(base={"n_iterations": 1, "M": 2, "M_prime": 2, "d": 1, "k": 1},
                      seeds=32, name="overhead")
    t0 = time.perf_counter()
    run_study(tiny, os.path.join(tmp, "overhead"), client=client, progress=False)
    tiny_wall = time.perf_counter() - t0
    tiny_work = sum(r["wall_seconds"] for r in ResultStore(os.path.join(tmp, "overhead")).records())
    client.close()
    cluster.close()
    every = {m: list(walls[m]) for m in modes}
    median = {m: int(np.argsort(walls[m])[(len(walls[m]) - 1) // 2]) for m in modes}
    walls = {m: walls[m][median[m]] for m in modes}
    cpus = {m: cpus[m][median[m]] for m in modes}
    stores = {m: os.path.join(tmp, f"{m}-{median[m]}") for m in modes}

    records = {m: {r["run_id"]: comparable(r) for r in ResultStore(s).records(study.ids)}
               for m, s in stores.items()}
    same = records["dask"] == records["serial-1t"] == records["serial-default"]
    work = sum(r["wall_seconds"] for r in ResultStore(stores["dask"]).records(study.ids))
    overhead_main = (walls["dask"] - work / args.workers) / len(study)
    overhead_tiny = (tiny_wall - tiny_work / args.workers) / len(tiny)
    print()
    print(f"median of {args.repeat} (every repeat: "
          + "; ".join(f"{m} " + ", ".join(f"{w:.2f}" for w in every[m]) for m in modes)
          + f" s); load average {os.getloadavg()[0]:.2f} at the end:")
    print(f"{'mode':>16} {'wall s':>8} {'s/run':>7} {'CPU s':>8} {'cores used':>10}")
    for m, w in walls.items():
        print(f"{m:>16} {w:8.2f} {w / len(study):7.3f} {cpus[m]:8.2f} {cpus[m] / w:10.2f}")
    print("(cores used = CPU time / wall time: on a loaded machine the workers get less than "
          "one core each and the speed-up is bounded by it)")
    for m in modes[1:]:
        ratios = [a / b for a, b in zip(every[m], every["dask"])]
        print(f"per-repeat speed-up dask vs {m}: " + ", ".join(f"{r:.2f}x" for r in ratios)
              + f" (median {float(np.median(ratios)):.2f}x)")
    print(f"speed-up dask vs serial-1t:      {walls['serial-1t'] / walls['dask']:.2f}x (target >= 1.7x)")
    print(f"speed-up dask vs serial-default: {walls['serial-default'] / walls['dask']:.2f}x "
          f"(target >= 1.0x)")
    print(f"identical results (all runs, all history values but timings): {same}")
    print(f"engine overhead per run: {overhead_main:.3f} s (this study), {overhead_tiny:.3f} s "
          f"(32 near-empty runs of {tiny_work / len(tiny) * 1e3:.0f} ms) (target < 0.2 s)")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
