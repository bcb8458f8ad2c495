"""The ``metalqr`` console script.

Sub-commands
------------
``metalqr demo``
    Designs LQR controllers for the standard systems and prints a comparison table.
``metalqr reproduce fig1 [--quick]``
    Reproduces Figure 1 of the ZO-MAML paper (see :mod:`metalqr.meta.figure1`).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import numpy as np

__all__ = ["main", "demo_table"]


def demo_table(n_iterations: int = 200) -> list[dict]:
    """Controller design on the standard systems: DARE vs python-control vs the three
    policy-optimisation methods started from a stabilising, suboptimal gain."""
    import control

    from . import lqr

    rows = []
    for name, task in lqr.standard_systems().items():
        K_star, P_star = lqr.optimal_gain(task)
        K_ctrl, _, _ = control.dlqr(task.A, task.B, task.Q, task.R)
        rho_ol = float(np.max(np.abs(np.linalg.eigvals(task.A))))
        # A stabilising but suboptimal start: the LQR gain of a much cheaper state weight.
        K0, _ = lqr.optimal_gain(lqr.LQRTask(task.A, task.B, 1e-2 * task.Q + 1e-6 * np.eye(task.d),
                                             1e2 * task.R))
        J_star = lqr.cost(task, K_star)
        row = {"system": name, "d": task.d, "k": task.k, "rho_open_loop": rho_ol,
               "rho_closed_loop": lqr.spectral_radius(task, K_star), "J_star": J_star,
               "max|K*-K_dlqr|": float(np.max(np.abs(K_star - K_ctrl))), "J(K0)": lqr.cost(task, K0)}
        for method, step in (("gd", None), ("natural", None), ("gauss_newton", 0.5)):
            if step is None:
                # Conservative step from the initial curvature (largest Hessian eigenvalue).
                if method == "gd":
                    step = 1.0 / np.max(np.linalg.eigvalsh(lqr.hessian(task, K0)))
                else:
                    ev = lqr.evaluate(task, K0)
                    step = 0.5 / np.linalg.norm(ev.RBPB[0], 2)
            res = lqr.policy_optimization(task, K0, method=method, step_size=step,
                                          n_iterations=n_iterations)
            row[f"gap_{method}"] = (res.costs[-1] - J_star) / J_star
        rows.append(row)
    return rows


def _print_table(rows: list[dict], out=None) -> None:
    out = sys.stdout if out is None else out
    cols = list(rows[0])
    fmt = {c: (lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)) for c in cols}
    cells = [[fmt[c](r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)), file=out)
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)), file=out)


def _cmd_demo(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    rows = demo_table(args.iterations)
    print(f"LQR controller design on standard systems ({args.iterations} policy-optimisation "
          f"steps from a suboptimal stabilising K0; gap = (J - J*) / J*)")
    _print_table(rows)
    print(f"done in {time.perf_counter() - t0:.2f} s")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .meta.figure1 import reproduce_figure1
    reproduce_figure1(quick=args.quick, output_dir=args.output, seed=args.seed,
                      iterations=args.iterations, backend=args.backend,
                      progress=not args.no_progress, resume=args.resume)
    return 0


TOW_DEFAULTS = {   # per source: learner, optimiser, alpha, gamma, windows
    "sinusoid": dict(learner="fomaml", optimizer="adam", alpha=3e-3, gamma=0.02, iterations=500),
    "classification": dict(learner="protonet", optimizer="adam", alpha=1e-3, gamma=0.1, iterations=100),
    "anyshot": dict(learner="protonet", optimizer="adam", alpha=1e-3, gamma=0.1, iterations=100),
    "digits": dict(learner="protonet", optimizer="adam", alpha=1e-3, gamma=0.1, iterations=100),
    "images": dict(learner="protonet", optimizer="adam", alpha=1e-3, gamma=0.1, iterations=100),
}


def _tow_source(args: argparse.Namespace):
    from . import tow
    if args.source == "sinusoid":
        return tow.SinusoidTasks()
    if args.source == "classification":
        return tow.HierarchicalClassificationTasks(seed=args.seed)
    if args.source == "anyshot":
        return tow.AnyShotTasks(seed=args.seed)
    if args.source == "digits":
        return tow.DigitsTasks()
    if not args.images:
        raise SystemExit("--source images needs --images ROOT (ROOT/train/<class>/*.png, ROOT/test/...)")
    return tow.ImageFolderTasks(args.images)


def _cmd_tow(args: argparse.Namespace) -> int:
    import os
    from . import tow
    d = TOW_DEFAULTS[args.source]
    pick = lambda name: d[name] if getattr(args, name) is None else getattr(args, name)
    iterations = 10 if args.quick else pick("iterations")
    n_test = 100 if args.quick else args.n_test
    source = _tow_source(args)
    learner = tow.make_learner(pick("learner"), source, hidden=args.hidden, gamma=pick("gamma"))
    os.makedirs(args.output, exist_ok=True)
    ckpt = os.path.join(args.output, f"checkpoints_{args.source}")
    if not args.resume:                 # a fresh run must not pick up an older one's state
        for name in args.strategies:
            if os.path.exists(os.path.join(ckpt, f"{name}.npz")):
                os.remove(os.path.join(ckpt, f"{name}.npz"))
    eval_every = max(1, iterations // 20)
    t0 = time.perf_counter()
    results = tow.run_experiment(source, learner, args.strategies, n_iterations=iterations, T=args.T, M=args.M,
                                 optimizer=pick("optimizer"), alpha=pick("alpha"), beta_u=args.beta_u,
                                 kappa=args.kappa, n_ilqr=args.n_ilqr, n_test=n_test, seed=args.seed,
                                 eval_every=eval_every, progress=not args.no_progress, checkpoint=ckpt)
    prefix = os.path.join(args.output, f"tow_{args.source}")
    table = tow.save_results(results, prefix)["table"]
    tow.plot_curves(results, prefix + "_curves.png",
                    f"{args.source}, {pick('learner')}, T={args.T} x M={args.M}")
    for r in results:
        if r.name != "uniform":
            tow.plot_weights(r, f"{prefix}_weights_{r.name}.png")
    print(f"TOW task weighting on {args.source} ({pick('learner')}, {pick('optimizer')} alpha={pick('alpha'):g}, "
          f"{iterations} windows of T={args.T} x M={args.M} tasks, {n_test} test tasks; "
          f"mean {results[0].metric_name} +- 95% CI)")
    _print_table(table)
    print(f"wrote {prefix}_table.csv, {prefix}_curves.csv/.png, {prefix}.json and weight plots "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metalqr", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="design controllers for standard systems and print a table")
    p.add_argument("--iterations", type=int, default=200, help="policy-optimisation steps")
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser("reproduce", help="reproduce a figure of the papers")
    p.add_argument("figure", choices=["fig1"], help="which figure")
    p.add_argument("--quick", action="store_true", help="short run (< 2 minutes on 2 cores)")
    p.add_argument("--output", default="results/fig1", help="output folder (CSV, PNG, checkpoints)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=None, help="override the number of iterations")
    p.add_argument("--backend", default=None, help="rollout backend: numpy, numba or cupy")
    p.add_argument("--no-progress", action="store_true", help="disable progress bars")
    p.add_argument("--resume", action="store_true", help="resume from checkpoints in --output")
    p.set_defaults(func=_cmd_reproduce)
    p = sub.add_parser("tow", help="TOW task weighting vs the uniform/exploration/exploitation baselines")
    p.add_argument("--source", choices=sorted(TOW_DEFAULTS), default="sinusoid")
    p.add_argument("--images", default=None, help="root of an image-folder dataset (--source images)")
    p.add_argument("--learner", choices=["fomaml", "maml", "protonet"], default=None)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default=None)
    p.add_argument("--alpha", type=float, default=None, help="meta step size")
    p.add_argument("--gamma", type=float, default=None, help="inner (adaptation) step size")
    p.add_argument("--iterations", type=int, default=None, help="training windows")
    p.add_argument("--T", type=int, default=5, help="mini-batches per TOW window")
    p.add_argument("--M", type=int, default=5, help="tasks per mini-batch")
    p.add_argument("--beta-u", type=float, default=10.0)
    p.add_argument("--kappa", type=float, default=1.2, help="Dirichlet concentration of the baselines")
    p.add_argument("--n-ilqr", type=int, default=2)
    p.add_argument("--n-test", type=int, default=600)
    p.add_argument("--hidden", type=int, default=40)
    p.add_argument("--strategies", nargs="+", default=["uniform", "exploration", "exploitation", "tow"],
                   choices=["uniform", "exploration", "exploitation", "tow"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="results/tow")
    p.add_argument("--quick", action="store_true", help="10 windows, 100 test tasks")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoints in --output (saved every 10 windows)")
    p.set_defaults(func=_cmd_tow)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metalqr`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
