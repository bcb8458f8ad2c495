"""Time to draw 100 examples of each metalqr.testing strategy (issue 18: "under a few
seconds" at d <= 10; printed, not asserted).

Run:  python benchmarks/bench_strategies.py [--examples 100]

Each row is the wall time of a Hypothesis run that draws ``--examples`` valid examples
(generation phase only, no database, derandomised), so it includes Hypothesis' own overhead
and the rejected draws. Set OPENBLAS_NUM_THREADS=1 on a shared machine: SciPy's Riccati
solver (used for unstable tasks) is much slower with oversubscribed BLAS threads.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from _common import print_table  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

from metalqr import testing as mt  # noqa: E402


def time_strategy(strategy, n: int) -> tuple[float, int]:
    count = [0]

    @settings(max_examples=n, database=None, deadline=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(example):
        count[0] += 1

    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0, count[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    cases = [
        ("lqr_tasks()  d<=4", mt.lqr_tasks()),
        ("lqr_tasks(10, 3)", mt.lqr_tasks(10, 3)),
        ("lqr_tasks(10, 3, unstable)", mt.lqr_tasks(10, 3, stability="unstable")),
        ("lqr_tasks(10, 3, badly_scaled)", mt.lqr_tasks(10, 3, badly_scaled=True)),
        ("tasks_and_gains()  d<=4", mt.tasks_and_gains()),
        ("tasks_and_gains(d=10, k=3)", mt.tasks_and_gains(d=10, k=3)),
        ("tasks_and_gains(d=10, k=3, unstable)", mt.tasks_and_gains(d=10, k=3, stability="unstable")),
        ("directions(3, 10)", mt.directions(3, 10)),
        ("task_sets()  n<=3, d<=4", mt.task_sets()),
        ("task_sets(5, 10, 3)", mt.task_sets(5, 10, 3)),
        ("meta_learnable_families()", mt.meta_learnable_families()),
        ("meta_learnable_families(5, 10, 3)", mt.meta_learnable_families(5, 10, 3)),
    ]
    rows = []
    for name, strategy in cases:
        seconds, drawn = time_strategy(strategy, args.examples)
        rows.append({"strategy": name, "examples": drawn, "seconds": seconds,
                     "ms / example": 1e3 * seconds / max(drawn, 1)})
    print_table(rows, f"Drawing {args.examples} examples per strategy (metalqr.testing)")


if __name__ == "__main__":
    main()
