"""The four task weightings on skewed sinusoid regression (TOW paper Section 5, CPU scale).

Run:  python benchmarks/bench_tow.py [--iterations N] [--quick]

Prints mean test MSE with a 95% confidence interval over held-out tasks (amplitudes
uniform on [0.1, 5]; training tasks skewed, 90% with amplitude <= 1) and each strategy's
wall time relative to uniform, all strategies trained on the same mini-batch stream.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _common import print_table  # noqa: E402
from metalqr.tow import run_sinusoid_experiment  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="50 iterations, 200 test tasks")
    parser.add_argument("--beta-u", type=float, default=10.0)
    args = parser.parse_args()
    n_iter, n_test = (50, 200) if args.quick else (args.iterations, 600)
    results = run_sinusoid_experiment(n_iterations=n_iter, n_test=n_test, beta_u=args.beta_u)
    base = next(r.seconds for r in results if r.name == "uniform")
    rows = [{"strategy": r.name, "test_mse": r.mean, "ci95": r.ci95, "seconds": r.seconds,
             "time_vs_uniform": r.seconds / base} for r in results]
    print_table(rows, f"Skewed sinusoid, FOMAML, T=5 x M=5 tasks per window, {n_iter} windows, "
                      f"{n_test} test tasks")


if __name__ == "__main__":
    main()
