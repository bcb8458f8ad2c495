"""Command lines ``metalqr sweep CONFIG`` and ``metalqr reproduce fig1 --seeds N``."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import Sequence

from ..exceptions import MetalqrError
from ._aggregate import summary_table, write_report
from ._config import Study, load_study
from ._engine import run_study

__all__ = ["sweep_main", "fig1_main", "figure1_study", "add_sweep_parser", "add_fig1_arguments"]


def figure1_study(seeds: int = 10, *, quick: bool = False, n_iterations: int | None = None,
                  backend: str | None = None) -> Study:
    """Return Figure 1 of the ZO-MAML paper as a study.

    Figure 1 of the ZO-MAML paper as a study: its three settings (``quick``: the ``metalqr
    reproduce fig1 --quick`` ones) x seeds ``0..seeds-1``. Seed ``s`` of a setting gives the
    same numbers as ``metalqr reproduce fig1 --seed s``.

    Parameters
    ----------
    seeds : int, >= 1
        Number of seeds.
    quick : bool
        The reduced settings of ``--quick``.
    n_iterations : int, optional
        Override the number of iterations of every setting.
    backend : str, optional
        Roll-out backend (default: the best available).

    Returns
    -------
    Study
        ``3 * seeds`` runs.

    Raises
    ------
    ValidationError, ValidationTypeError
        A bad argument, named.
    """
    from ..meta.figure1 import PAPER_SETTINGS, QUICK_SETTINGS
    chosen = QUICK_SETTINGS if quick else PAPER_SETTINGS
    if n_iterations is not None:
        chosen = tuple(replace(s, n_iterations=n_iterations) for s in chosen)
    runs = []
    for s in chosen:
        run = {"family": "random", "d": s.d, "k": s.k, "alpha": s.alpha, "eta": s.eta,
               "n_iterations": s.n_iterations, "n_tasks": s.n_tasks, "K0": "zero",
               "estimator": "two_point" if s.two_point else "one_point",
               "n_perturbations": s.n_perturbations, "inner_perturbations": s.inner_perturbations,
               "radius": s.radius, "rollout_length": s.rollout_length,
               "guard": getattr(s, "guard", "rollouts"),
               "outer_update": getattr(s, "outer_update", "plain")}
        if backend is not None:
            run["backend"] = backend
        runs.append(run)
    return Study.grid(runs=runs, seeds=seeds, name="fig1-quick" if quick else "fig1")


def _print_rows(rows: list[dict], keys: Sequence[str]) -> None:
    def fmt(v):
        return "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
    cells = [[fmt(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.rjust(w) for k, w in zip(keys, widths)))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths)))


def _engine_arguments(p: argparse.ArgumentParser, default_store: str) -> None:
    def add(*names, **kwargs):
        try:
            p.add_argument(*names, **kwargs)
        except argparse.ArgumentError:   # the parser has it already (e.g. --no-progress)
            pass
    add("--scheduler", default=None, metavar="ADDRESS",
        help="address of an existing Dask scheduler (default: an embedded LocalCluster)")
    add("--workers", type=int, default=None, metavar="N",
        help="worker processes of the embedded LocalCluster (default: one per core)")
    add("--store", default=default_store, metavar="DIR",
        help=f"result store folder (default {default_store}); finished runs are skipped")
    add("--serial", action="store_true", help="run in this process, without Dask")
    add("--retries", type=int, default=2, help="retries of a run that raised")
    add("--no-progress", action="store_true", help="no line per finished run")


def _execute(study: Study, args: argparse.Namespace, report_dir: str | None) -> int:
    report = run_study(study, args.store, engine="serial" if args.serial else "auto",
                       scheduler=args.scheduler, workers=args.workers, retries=args.retries,
                       progress=not args.no_progress)
    print(f"study {study.name!r}: {len(study)} runs ({len(report.ran)} run now, "
          f"{len(report.skipped)} already stored) on {report.engine} in {report.seconds:.1f} s")
    if report.errors and not summary_table(args.store, study):
        # Every run failed: there is nothing to report, but the reasons must be shown and the
        # exit status is 1 (runs did not finish), not 2 (bad input).
        _print_errors(report.errors)
        print("no run finished, so no report was written.", file=sys.stderr)
        return 1
    paths = write_report(args.store, study, report_dir)
    kinds = {r.get("kind", "zo_maml") for r in study.runs}
    for kind, metric in (("zo_maml", "final_cost_gap_ratio"), ("tow", "final_test_metric")):
        if kind not in kinds:
            continue
        rows = [r for r in summary_table(args.store, study, metrics=(metric,))
                if r["kind"] == kind]
        extra = ["metric"] if kind == "tow" else ["n_stalled"]
        keys = ["setting", "n_seeds", *extra, "n_diverged", "n_failed", f"{metric}_mean",
                f"{metric}_ci_low", f"{metric}_ci_high"]
        _print_rows(rows, keys)
    print(f"wrote {paths['summary']}, {paths['curves_csv']}, {paths['curves_png']}")
    for rid, why in report.failed.items():      # stored as failed (n_failed): say why
        print(f"run {rid} failed (stored with status 'failed', not retried): {why}",
              file=sys.stderr)
    _print_errors(report.errors)
    return 0 if report.complete else 1


def _print_errors(errors: dict) -> None:
    for rid, why in errors.items():
        print(f"run {rid} did not finish: {why}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} run{'s' if len(errors) != 1 else ''} did not finish; rerun the "
              f"same command to retry only those.", file=sys.stderr)


def add_sweep_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``sweep`` sub-command to ``subparsers`` (its handler is ``func``).

    Parameters
    ----------
    subparsers : argparse sub-parsers action
        What :meth:`argparse.ArgumentParser.add_subparsers` returned.

    Returns
    -------
    argparse.ArgumentParser
        The ``sweep`` parser.
    """
    p = subparsers.add_parser("sweep", help="run a study (grid of runs over seeds and settings) "
                                            "on Dask, with a resumable result store")
    p.add_argument("config", metavar="CONFIG", help="study file (TOML), see docs/experiments.md")
    _engine_arguments(p, "results/sweep")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="folder of summary.csv, curves.csv/.png (default <store>/report/<study>)")
    p.set_defaults(func=_cmd_sweep)
    return p


def _guard(fn, args) -> int:
    try:
        return fn(args)
    except MetalqrError as err:
        print(f"metalqr: error: {err}", file=sys.stderr)
        return 2


def _cmd_sweep(args: argparse.Namespace) -> int:
    return _guard(lambda a: _execute(load_study(a.config), a, a.report), args)


def sweep_main(argv: Sequence[str] | None = None) -> int:
    """Run ``metalqr sweep CONFIG`` and return the exit status.

    ``metalqr sweep CONFIG [--scheduler ADDRESS] [--workers N] [--store DIR] [--serial]``.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after ``sweep`` (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 every run stored, 1 some runs failed to finish, 2 bad input.
    """
    parser = argparse.ArgumentParser(prog="metalqr")
    add_sweep_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sweep", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


def add_fig1_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--seeds`` and the engine options to the ``metalqr reproduce fig1`` parser.

    Add ``--seeds N`` and the engine options (``--scheduler``, ``--workers``, ``--store``,
    ``--serial``, ``--retries``; options the parser already has are kept) to the parser of
    ``metalqr reproduce fig1``. When ``args.seeds`` is not None, hand ``args`` to
    :func:`fig1_seeds_command` (multi-seed Figure 1 through the experiments engine).

    Parameters
    ----------
    p : argparse.ArgumentParser
        The ``fig1`` parser (modified in place).
    """
    try:
        p.add_argument("--seeds", type=int, default=None, metavar="N",
                       help="run seeds 0..N-1 of every setting through the experiments engine "
                            "(Dask) and plot mean +- 95%% CI")
    except argparse.ArgumentError:
        pass
    _engine_arguments(p, "results/fig1-seeds")


def fig1_seeds_command(args: argparse.Namespace) -> int:
    """Run Figure 1 over ``args.seeds`` seeds.

    Parameters
    ----------
    args : argparse.Namespace
        Needs ``seeds``, ``quick``, ``iterations``, ``backend``, ``output`` and the options of
        :func:`add_fig1_arguments`.

    Returns
    -------
    int
        Exit status (0 on success).
    """
    def go(a):
        from .._validation import check_int
        study = figure1_study(check_int(a.seeds, "--seeds", minimum=1), quick=a.quick,
                              n_iterations=a.iterations, backend=a.backend)
        return _execute(study, a, a.output)
    return _guard(go, args)


def fig1_main(argv: Sequence[str] | None = None) -> int:
    """Run ``metalqr reproduce fig1 --seeds N`` and return the exit status.

    ``metalqr reproduce fig1 --seeds N [--quick] [--iterations I] [--backend B] [--output DIR]
    [--store DIR] [--scheduler ADDRESS] [--workers N] [--serial]``: Figure 1 as mean +- 95% CI
    over seeds 0..N-1.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after ``fig1`` (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status (0 on success).
    """
    p = argparse.ArgumentParser(prog="metalqr reproduce fig1")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--backend", default=None)
    p.add_argument("--output", default="results/fig1-seeds/report",
                   help="folder of summary.csv and curves.csv/.png")
    add_fig1_arguments(p)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.seeds is None:
        p.error("--seeds N is required")
    return fig1_seeds_command(args)
