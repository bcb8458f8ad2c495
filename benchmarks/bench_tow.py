"""The four task weightings at CPU scale (TOW paper Section 5): skewed sinusoid regression,
synthetic hierarchical (imbalanced-alphabet) classification and its any-shot variant.

Run:  python benchmarks/bench_tow.py [--quick] [--sources sinusoid classification anyshot]

For each source all strategies train the same learner on the same task stream and seed
(Adam meta-optimiser, as in the paper's iLQR dynamics) and are tested on the same held-out
tasks (600 by default). Printed per strategy: mean test metric with its 95% CI, the paired
difference to the best baseline with its 95% CI (the same test tasks are used by every
strategy, so the paired interval is the sharp one), and wall time relative to uniform.
TOW runs with the paper's settings (beta_u = 10, 2 iLQR iterations) and variants: one iLQR
iteration, beta_u = 1, and (ProtoNets) the Monte-Carlo Gauss-Newton diagonal.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import print_table  # noqa: E402
from metalqr import tow  # noqa: E402

SETTINGS = {
    "sinusoid": dict(source=lambda: tow.SinusoidTasks(), learner="fomaml", alpha=3e-3, gamma=0.02,
                     iterations=500, hidden=40),
    "classification": dict(source=lambda: tow.HierarchicalClassificationTasks(), learner="protonet", alpha=1e-3,
                           gamma=0.1, iterations=100, hidden=40),
    "anyshot": dict(source=lambda: tow.AnyShotTasks(k_shot=1, max_shot=5), learner="protonet", alpha=1e-3,
                    gamma=0.1, iterations=100, hidden=40),
}


TOW_VARIANTS = [("tow (paper: beta_u=10, 2 iLQR)", dict(beta_u=10.0, n_ilqr=2), None),
                ("tow (beta_u=10, 1 iLQR)", dict(beta_u=10.0, n_ilqr=1), None),
                ("tow (beta_u=1, 2 iLQR)", dict(beta_u=1.0, n_ilqr=2), None),
                ("tow (beta_u=10, 1 iLQR, MC-GN)", dict(beta_u=10.0, n_ilqr=1), "mc")]


def run_source(name: str, quick: bool):
    cfg = SETTINGS[name]
    source = cfg["source"]()
    learner = tow.make_learner(cfg["learner"], source, hidden=cfg["hidden"], gamma=cfg["gamma"])
    iters, n_test = (max(5, cfg["iterations"] // 10), 200) if quick else (cfg["iterations"], 600)
    common = dict(n_iterations=iters, T=5, M=5, optimizer="adam", alpha=cfg["alpha"], n_test=n_test, seed=0)
    results = tow.run_experiment(source, learner, ("uniform", "exploration", "exploitation"), **common)
    for label, kw, curvature in TOW_VARIANTS:
        if curvature is not None and not isinstance(learner, tow.ProtoNet):
            continue
        variant = tow.ProtoNet(learner.net, curvature) if curvature else learner
        r = tow.run_experiment(source, variant, ("tow",), **common, **kw)[0]
        r.name = label
        results.append(r)
    higher_better = results[0].metric_name == "accuracy"
    baselines = results[:3]
    best = max(baselines, key=lambda r: r.mean) if higher_better else min(baselines, key=lambda r: r.mean)
    base_time = results[0].seconds
    rows = []
    for r in results:
        diff = r.metric - best.metric
        if not higher_better:
            diff = -diff                                   # positive = better than the best baseline
        half = 1.96 * diff.std(ddof=1) / np.sqrt(diff.size) if r is not best else 0.0
        rows.append({"strategy": r.name, r.metric_name: r.mean, "ci95": r.ci95,
                     "gain_vs_best_baseline": float(diff.mean()), "paired_ci95": half,
                     "seconds": r.seconds, "time_vs_uniform": r.seconds / base_time})
    print_table(rows, f"{name}: {cfg['learner']}, Adam alpha={cfg['alpha']:g}, {iters} windows of T=5 x M=5, "
                      f"{n_test} test tasks (gain > 0 = better than {best.name})")
    return rows


def seed_study(name: str, seeds, quick: bool) -> None:
    """Uniform vs TOW (beta_u = 10, 1 iLQR iteration) over several seeds: per-seed paired gain,
    and the across-seed mean with a t-interval (the per-seed CI ignores seed-to-seed variation)."""
    from scipy import stats
    cfg = SETTINGS[name]
    source = cfg["source"]()
    learner = tow.make_learner(cfg["learner"], source, hidden=cfg["hidden"], gamma=cfg["gamma"])
    iters, n_test = (max(5, cfg["iterations"] // 10), 200) if quick else (cfg["iterations"], 600)
    rows, gains = [], []
    for seed in seeds:
        common = dict(n_iterations=iters, T=5, M=5, optimizer="adam", alpha=cfg["alpha"], n_test=n_test, seed=seed)
        u = tow.run_experiment(source, learner, ("uniform",), **common)[0]
        t = tow.run_experiment(source, learner, ("tow",), beta_u=10.0, n_ilqr=1, **common)[0]
        diff = (t.metric - u.metric) if u.metric_name == "accuracy" else (u.metric - t.metric)
        gains.append(float(diff.mean()))
        rows.append({"seed": seed, "uniform": u.mean, "tow": t.mean, "gain": gains[-1],
                     "paired_ci95": 1.96 * diff.std(ddof=1) / np.sqrt(diff.size), "time_ratio": t.seconds / u.seconds})
    print_table(rows, f"{name}: uniform vs TOW (beta_u=10, 1 iLQR) over seeds (gain > 0 = TOW better)")
    if len(gains) > 1:
        half = stats.t.ppf(0.975, len(gains) - 1) * np.std(gains, ddof=1) / np.sqrt(len(gains))
        print(f"mean gain over {len(gains)} seeds: {np.mean(gains):.4f} +- {half:.4f} (95% t-interval)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the windows, 200 test tasks")
    parser.add_argument("--sources", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seed-study", type=int, nargs="+", default=None, metavar="SEED",
                        help="instead of the table: uniform vs TOW (1 iLQR iteration) over these seeds")
    args = parser.parse_args()
    for name in args.sources:
        if args.seed_study:
            seed_study(name, args.seed_study, args.quick)
        else:
            run_source(name, args.quick)


if __name__ == "__main__":
    main()
