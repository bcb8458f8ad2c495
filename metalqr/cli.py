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


TOW_MAX_SHOT = 5      # any-shot: 1..5 support examples per class (docs/tow.md, benchmarks)
TOW_N_TEST = 600      # held-out test tasks of a full run


def _tow_source(args: argparse.Namespace):
    """The task source named by ``--source`` (with ``--images`` / ``--max-shot``)."""
    from . import tow
    from .exceptions import BackendUnavailableError, ValidationError
    if args.images is not None and args.source != "images":
        raise ValidationError(f"--images is only used with --source images (got --source {args.source}).")
    if args.max_shot is not None and args.source != "anyshot":
        raise ValidationError(f"--max-shot is only used with --source anyshot (got --source {args.source}).")
    if args.source == "sinusoid":
        return tow.SinusoidTasks()
    if args.source == "classification":
        return tow.HierarchicalClassificationTasks(seed=args.seed)
    if args.source == "anyshot":
        max_shot = TOW_MAX_SHOT if args.max_shot is None else args.max_shot
        return tow.AnyShotTasks(seed=args.seed, max_shot=max_shot)
    if args.source == "digits":
        import importlib.util
        if importlib.util.find_spec("sklearn") is None:
            from .tow.tasks import DIGITS_HINT
            raise BackendUnavailableError(DIGITS_HINT)
        return tow.DigitsTasks()
    if not args.images:
        raise ValidationError("--source images needs --images ROOT (ROOT/train/<class>/*.png, ROOT/test/...).")
    import os
    if not os.path.isdir(args.images):
        raise ValidationError(f"--images {args.images!r} is not a folder; expected ROOT/train/<class>/*.png "
                              f"and ROOT/test/<class>/*.png.")
    return tow.ImageFolderTasks(args.images)


def _cmd_tow(args: argparse.Namespace) -> int:
    import glob
    import os

    from . import tow
    from ._checkpoint import FolderLock
    from .exceptions import ValidationError
    d = TOW_DEFAULTS[args.source]
    pick = lambda name: d[name] if getattr(args, name) is None else getattr(args, name)
    iterations = 10 if args.quick and args.iterations is None else pick("iterations")
    n_test = 100 if args.quick and args.n_test is None else (TOW_N_TEST if args.n_test is None else args.n_test)
    learner_kind = pick("learner")
    if learner_kind == "protonet" and args.source == "sinusoid":
        raise ValidationError("--learner protonet needs a classification source; use --learner fomaml or maml "
                              "with --source sinusoid.")
    source = _tow_source(args)
    learner = tow.make_learner(learner_kind, source, hidden=args.hidden, gamma=pick("gamma"))
    ckpt = os.path.join(args.output, f"checkpoints_{args.source}")
    eval_every = max(1, iterations // 20)
    t0 = time.perf_counter()
    with FolderLock(args.output):       # a second run into this folder stops here with a clear error
        if not args.resume:             # a fresh run must not pick up an older one's state
            for path in glob.glob(os.path.join(ckpt, "*.ckpt")):
                os.remove(path)
        results = tow.run_experiment(source, learner, args.strategies, n_iterations=iterations, T=args.T,
                                     M=args.M, optimizer=pick("optimizer"), alpha=pick("alpha"),
                                     beta_u=args.beta_u, kappa=args.kappa, n_ilqr=args.n_ilqr, n_test=n_test,
                                     n_val=args.n_val, seed=args.seed, eval_every=eval_every,
                                     progress=not args.no_progress, checkpoint=ckpt)
        command = (f"metalqr tow --source {args.source}"
                   + (f" --images {args.images}" if args.images else "")
                   + (f" --max-shot {source.max_shot}" if args.source == "anyshot" else "")
                   + f" --learner {learner_kind} --optimizer {pick('optimizer')} --alpha {pick('alpha')!r}"
                   f" --gamma {pick('gamma')!r} --iterations {iterations} --T {args.T} --M {args.M}"
                   f" --beta-u {args.beta_u!r} --kappa {args.kappa!r} --n-ilqr {args.n_ilqr}"
                   f" --n-test {n_test} --n-val {args.n_val} --hidden {args.hidden}"
                   f" --strategies {' '.join(args.strategies)} --seed {args.seed}")
        for r in results:
            r.settings.update(command=command, source_name=args.source, learner_kind=learner_kind,
                              hidden=args.hidden, gamma=pick("gamma"), quick=bool(args.quick))
        prefix = os.path.join(args.output, f"tow_{args.source}")
        table = tow.save_results(results, prefix)["table"]
        tow.plot_curves(results, prefix + "_curves.png",
                        f"{args.source}, {learner_kind}, T={args.T} x M={args.M}, seed {args.seed}")
        for r in results:
            if r.name != "uniform":
                tow.plot_weights(r, f"{prefix}_weights_{r.name}.png")
    print(f"TOW task weighting on {args.source} ({learner_kind}, {pick('optimizer')} alpha={pick('alpha'):g}, "
          f"{iterations} windows of T={args.T} x M={args.M} tasks, {n_test} test tasks, seed {args.seed}; "
          f"mean {results[0].metric_name} +- 95% CI; seconds = training time, strategies interleaved)")
    _print_table([{k: v for k, v in row.items() if not k.startswith("setting_")} for row in table])
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
    # --- metalqr tow -----------------------------------------------------------------------
    def _arg_type(kind, low, strict, what):
        def parse(text):
            try:
                value = kind(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}") from None
            if value != value or value in (float("inf"), float("-inf")) or value < low or \
                    (strict and value == low):
                raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}")
            return value
        parse.__name__ = what
        return parse

    count = _arg_type(int, 1, False, "an integer >= 1")
    count2 = _arg_type(int, 2, False, "an integer >= 2")
    seed = _arg_type(int, 0, False, "an integer >= 0")
    step = _arg_type(float, 0.0, True, "a finite number > 0")
    nonneg = _arg_type(float, 0.0, False, "a finite number >= 0")
    kappa = _arg_type(float, 1.0, True, "a finite number > 1")
    p = sub.add_parser("tow", help="TOW task weighting vs the uniform/exploration/exploitation baselines",
                       description="Train one learner with each task-weighting strategy on the same task "
                                   "stream (TOW paper, Section 5, at CPU scale) and write a table, curves "
                                   "with 95% bands, weight plots and a JSON with every setting.")

    if type(p).error is argparse.ArgumentParser.error:   # unless the parser class already does it:
        def one_line_error(message):                      # a user error is one line, exit status 2
            sys.stderr.write(f"metalqr tow: error: {message} (see metalqr tow --help)\n")
            sys.exit(2)
        p.error = one_line_error
    per_source = lambda key: ", ".join(f"{k} {v[key]:g}" if isinstance(v[key], float) else f"{k} {v[key]}"
                                       for k, v in TOW_DEFAULTS.items())
    p.add_argument("--source", choices=sorted(TOW_DEFAULTS), default="sinusoid",
                   help="task source (default: %(default)s)")
    p.add_argument("--images", default=None, metavar="ROOT",
                   help="root of an image-folder dataset, ROOT/{train,test}/<class>/*.png (only with "
                        "--source images; default: none)")
    p.add_argument("--max-shot", type=count, default=None,
                   help=f"--source anyshot: support examples per class drawn from 1..MAX_SHOT "
                        f"(default: {TOW_MAX_SHOT}, as in docs/tow.md)")
    p.add_argument("--learner", choices=["fomaml", "maml", "protonet"], default=None,
                   help=f"meta-learner (default per source: {per_source('learner')})")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default=None,
                   help=f"meta-optimiser, the TOW dynamics (default per source: {per_source('optimizer')})")
    p.add_argument("--alpha", type=step, default=None,
                   help=f"meta step size > 0 (default per source: {per_source('alpha')})")
    p.add_argument("--gamma", type=nonneg, default=None,
                   help=f"inner (adaptation) step size >= 0 of MAML (default per source: {per_source('gamma')})")
    p.add_argument("--iterations", type=count, default=None,
                   help=f"training windows >= 1 (default per source: {per_source('iterations')}; "
                        f"10 with --quick)")
    p.add_argument("--T", type=count, default=5, help="mini-batches per TOW window, >= 1 (default: %(default)s)")
    p.add_argument("--M", type=count, default=5, help="tasks per mini-batch, >= 1 (default: %(default)s)")
    p.add_argument("--beta-u", type=step, default=10.0,
                   help="TOW prior precision beta_u > 0 of Eq. (7) (default: %(default)s)")
    p.add_argument("--kappa", type=kappa, default=1.2,
                   help="Dirichlet concentration > 1 of the exploration/exploitation baselines, Eq. (12) "
                        "(default: %(default)s)")
    p.add_argument("--n-ilqr", type=count, default=2,
                   help="iLQR iterations per TOW window, >= 1 (default: %(default)s, as in the paper)")
    p.add_argument("--n-test", type=count2, default=None,
                   help=f"held-out test tasks, >= 2 (default: {TOW_N_TEST}; 100 with --quick)")
    p.add_argument("--n-val", type=count2, default=100,
                   help="validation tasks for the learning curves, >= 2 (default: %(default)s)")
    p.add_argument("--hidden", type=count, default=40, help="hidden width of the MLP (default: %(default)s)")
    p.add_argument("--strategies", nargs="+", default=["uniform", "exploration", "exploitation", "tow"],
                   choices=["uniform", "exploration", "exploitation", "tow"],
                   help="weighting strategies to compare (default: all four)")
    p.add_argument("--seed", type=seed, default=0, help="random seed >= 0 (default: %(default)s)")
    p.add_argument("--output", default="results/tow", help="output folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="short run: 10 windows and 100 test tasks unless given (default: off)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar (default: shown)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoints in --output (saved every 10 windows); the settings "
                        "and seed must be those of the interrupted run (default: start afresh)")
    p.set_defaults(func=_cmd_tow)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metalqr`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
