"""The four task weightings at CPU scale (TOW paper Section 5): skewed sinusoid regression,
synthetic hierarchical (imbalanced-alphabet) classification and its any-shot variant.

Run:  python benchmarks/bench_tow.py [--quick] [--sources sinusoid classification anyshot]
      python benchmarks/bench_tow.py --timing --omniglot PATH [--learners protonet maml]
             [--windows 2] [--repeats 2] [--line-search metalqr|paper]

For each source all strategies train the same learner on the same task stream and seed
(Adam meta-optimiser, as in the paper's iLQR dynamics) and are tested on the same held-out
tasks (600 by default). Printed per strategy: mean test metric with its 95% CI, the paired
difference to the best baseline with its 95% CI (the same test tasks are used by every
strategy, so the paired interval is the sharp one), and wall time relative to uniform.
Every registered strategy (metalqr.tow.strategies()) runs with the paper's settings (beta_u = 10,
2 iLQR iterations, kappa = 1.2); each setting variant (one iLQR iteration, beta_u = 1, kappa = 2,
and for ProtoNets the Monte-Carlo Gauss-Newton diagonal) is run for the strategies whose
``reads`` include the settings it changes. No strategy is named in this script.
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


#: Setting variants, each run for every registered strategy that reads the settings it changes
#: (``WeightingStrategy.reads``); "gauss_newton" swaps a ProtoNet's curvature for the Monte-Carlo
#: Gauss-Newton diagonal.
VARIANTS = [("beta_u=10, 1 iLQR", dict(beta_u=10.0, n_ilqr=1), None),
            ("beta_u=1, 2 iLQR", dict(beta_u=1.0, n_ilqr=2), None),
            ("beta_u=10, 1 iLQR, MC-GN", dict(beta_u=10.0, n_ilqr=1), "mc"),
            ("kappa=2", dict(kappa=2.0), None)]


def run_source(name: str, quick: bool, names=None):
    cfg = SETTINGS[name]
    source = cfg["source"]()
    learner = tow.make_learner(cfg["learner"], source, hidden=cfg["hidden"], gamma=cfg["gamma"])
    iters, n_test = (max(5, cfg["iterations"] // 10), 200) if quick else (cfg["iterations"], 600)
    common = dict(n_iterations=iters, T=5, M=5, optimizer="adam", alpha=cfg["alpha"], n_test=n_test, rng=0)
    names = tow.strategies() if names is None else tuple(names)
    defaults = tow.run_experiment(source, learner, names, **common)     # the paper's settings
    results = list(defaults)
    for label, kw, curvature in VARIANTS:
        needs = set(kw) | ({"gauss_newton"} if curvature else set())
        if curvature is not None and not isinstance(learner, tow.ProtoNet):
            continue
        chosen = [n for n in names if needs <= set(tow.get_strategy(n).reads)]
        if not chosen:
            continue
        variant = tow.ProtoNet(learner.net, curvature) if curvature else learner
        for r in tow.run_experiment(source, variant, chosen, **common, **kw):
            r.name = f"{r.name} ({label})"
            results.append(r)
    higher_better = results[0].metric_name == "accuracy"
    base_time = results[0].seconds
    rows = []
    for r in results:
        # compare with the best default run of the *other* strategies (paired over test tasks)
        others = [d for d in defaults if not r.name.startswith(d.name)] or defaults
        best = max(others, key=lambda d: d.mean) if higher_better else min(others, key=lambda d: d.mean)
        diff = r.metric - best.metric
        if not higher_better:
            diff = -diff                                   # positive = better than the best other strategy
        rows.append({"strategy": r.name, r.metric_name: r.mean, "ci95": r.ci95, "vs": best.name,
                     "gain_vs_best_other": float(diff.mean()),
                     "paired_ci95": 1.96 * diff.std(ddof=1) / np.sqrt(diff.size),
                     "seconds": r.seconds, f"time_vs_{results[0].name}": r.seconds / base_time})
    print_table(rows, f"{name}: {cfg['learner']}, Adam alpha={cfg['alpha']:g}, {iters} windows of T=5 x M=5, "
                      f"{n_test} test tasks (gain > 0 = better than the best other strategy's default run)")
    return rows


def seed_study(name: str, seeds, quick: bool, pair) -> None:
    """Strategy ``pair[0]`` vs ``pair[1]`` (default uniform vs TOW; beta_u = 10, 1 iLQR iteration)
    over several seeds: per-seed paired gain, and the across-seed mean with a t-interval (the
    per-seed CI ignores seed-to-seed variation)."""
    from scipy import stats
    cfg = SETTINGS[name]
    source = cfg["source"]()
    learner = tow.make_learner(cfg["learner"], source, hidden=cfg["hidden"], gamma=cfg["gamma"])
    iters, n_test = (max(5, cfg["iterations"] // 10), 200) if quick else (cfg["iterations"], 600)
    rows, gains = [], []
    for seed in seeds:
        common = dict(n_iterations=iters, T=5, M=5, optimizer="adam", alpha=cfg["alpha"], n_test=n_test, rng=seed)
        u, t = tow.run_experiment(source, learner, tuple(pair), beta_u=10.0, n_ilqr=1, **common)
        diff = (t.metric - u.metric) if u.metric_name == "accuracy" else (u.metric - t.metric)
        gains.append(float(diff.mean()))
        rows.append({"seed": seed, pair[0]: u.mean, pair[1]: t.mean, "gain": gains[-1],
                     "paired_ci95": 1.96 * diff.std(ddof=1) / np.sqrt(diff.size), "time_ratio": t.seconds / u.seconds})
    print_table(rows, f"{name}: {pair[0]} vs {pair[1]} (beta_u=10, 1 iLQR) over seeds (gain > 0 = {pair[1]} better)")
    if len(gains) > 1:
        half = stats.t.ppf(0.975, len(gains) - 1) * np.std(gains, ddof=1) / np.sqrt(len(gains))
        print(f"mean gain over {len(gains)} seeds: {np.mean(gains):.4f} +- {half:.4f} (95% t-interval)")


#: The paper preset (metalqr.tow.PAPER_PRESET, TOW paper Section 5.1), spelled out so that
#: ``--timing`` also runs against older metalqr versions (before/after comparisons).
TIMING_PAPER = dict(T=5, M=10, alpha=1e-4, beta_u=10.0, n_ilqr=2, kappa=1.2, gamma=0.1, inner_steps=5)


def timing(data: str, learners, windows: int, repeats: int, line_search: str | None, channels: int) -> None:
    """Wall time of one TOW window vs one uniform window at the paper's settings on Omniglot
    (ConvNet ProtoNet / first-order MAML), interleaved: for every window and repeat, uniform
    then TOW, then TOW then uniform, all from the same state and mini-batches."""
    import time
    from metalqr.tow.convnet import ConvNet
    from metalqr.tow.omniglot import OmniglotTasks
    from metalqr.tow.optimizers import Adam
    p = TIMING_PAPER
    preset = getattr(tow, "PAPER_PRESET", None)
    if preset is not None:
        assert all(preset[k] == v for k, v in p.items()), "TIMING_PAPER must match metalqr.tow.PAPER_PRESET"
    src = OmniglotTasks(data)
    opt = Adam(p["alpha"])
    options = dict(beta_u=p["beta_u"], mu_u=1.0 / p["M"], kappa=p["kappa"], n_ilqr=p["n_ilqr"],
                   value_model="diagonal")
    if line_search is not None:
        options["line_search"] = line_search
    rows = []
    for kind in learners:
        if kind == "protonet":
            learner = tow.ProtoNet(ConvNet(784, channels, 3, 64, "mse"))
        else:
            learner = tow.MAML(ConvNet(784, channels, 3, src.n_way, "ce"), p["gamma"], p["inner_steps"], True)
        x0 = learner.init(0)
        z = opt.initial_state(x0)
        secs = {"uniform": [], "tow": []}
        for k in range(windows):
            rng = np.random.default_rng([0, k])
            batches = [src.sample(rng, p["M"]) for _ in range(p["T"])]
            for r in range(repeats):
                order = ("uniform", "tow") if r % 2 == 0 else ("tow", "uniform")
                for name in order:
                    w = tow.Window(learner, z, x0.size, batches, opt, k * p["T"], np.random.default_rng(r), options)
                    t0 = time.perf_counter()
                    out = tow.get_strategy(name).window(w)
                    secs[name].append(time.perf_counter() - t0)
                    if name == "uniform":
                        z_next = out.z
            z = z_next                        # the next window starts from uniform's state
        u, t = np.array(secs["uniform"]), np.array(secs["tow"])
        rows.append({"learner": kind, "D": x0.size, "windows x repeats": f"{windows} x {repeats}",
                     "uniform_s_per_window": u.mean(), "tow_s_per_window": t.mean(), "tow/uniform": t.sum() / u.sum(),
                     "ratio_min": float(np.min(t / u)), "ratio_max": float(np.max(t / u))})
    print_table(rows, f"TOW vs uniform wall time at the paper's settings (M={p['M']}, T={p['T']}, Adam "
                      f"{p['alpha']:g}, {p['n_ilqr']} iLQR iterations, beta_u={p['beta_u']:g}; MAML gamma="
                      f"{p['gamma']}, {p['inner_steps']} inner steps), Omniglot 5-way 1-shot, ConvNet({channels} maps), "
                      f"line search {line_search or 'default'}; interleaved")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timing", action="store_true",
                        help="only the TOW / uniform wall-time ratio at the paper's settings on Omniglot (needs "
                             "--omniglot), windows interleaved")
    parser.add_argument("--omniglot", default=None, metavar="PATH", help="your Omniglot copy (for --timing)")
    parser.add_argument("--learners", nargs="+", default=["protonet", "maml"], choices=["protonet", "maml"])
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--line-search", default=None, choices=["metalqr", "paper"])
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="a tenth of the windows, 200 test tasks")
    parser.add_argument("--sources", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--strategies", nargs="+", default=list(tow.strategies()), choices=list(tow.strategies()),
                        help="registered strategies to compare (default: all)")
    parser.add_argument("--seed-study", type=int, nargs="+", default=None, metavar="SEED",
                        help="instead of the table: the first vs the last of --strategies (by default "
                             "the registry's first and last: uniform vs tow), 1 iLQR iteration, over "
                             "these seeds")
    args = parser.parse_args()
    if args.timing:
        if not args.omniglot:
            parser.error("--timing needs --omniglot PATH")
        timing(args.omniglot, args.learners, args.windows, args.repeats, args.line_search, args.channels)
        return
    if args.seed_study and len(set(args.strategies)) < 2:
        parser.error("--seed-study needs two different --strategies")
    for name in args.sources:
        if args.seed_study:
            seed_study(name, args.seed_study, args.quick, (args.strategies[0], args.strategies[-1]))
        else:
            run_source(name, args.quick, args.strategies)


if __name__ == "__main__":
    main()
