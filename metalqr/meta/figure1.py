"""Reproduction of Figure 1 of the ZO-MAML paper.

The cost-gap ratio ``(sum_i J_i(K_n) - sum_i J_i(K_i*)) / sum_i J_i(K_i*)`` along Algorithm 3 with
zeroth-order meta-gradients (Algorithm 2) on three random families of 5 tasks (Section 6).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from .._checkpoint import FolderLock, atomic_write_text
from .._report import csv_text
from .._validation import as_rng, as_seed, check_bool, check_choice, check_int, check_real
from ..exceptions import (MetalqrWarning, TrainingDivergedError, TrainingStalledError,
                          ValidationError, ValidationTypeError)
from ..lqr.policy import cost, gradient as policy_gradient
from .families import sample_tasks
from .objective import optimal_costs
from ..rollouts.backends import check_backend
from .training import GUARDS, OUTER_UPDATES, meta_policy_optimization

__all__ = ["Figure1Setting", "PAPER_SETTINGS", "QUICK_SETTINGS", "reproduce_figure1",
           "Figure1Summary", "floor_ratio"]

#: Units of the columns of ``summary.csv`` / ``fig1.csv``.
UNITS = ("ratios dimensionless ((sum J - sum J*) / sum J*); alpha, eta, r in units of K; "
         "l in time steps; seconds wall-clock")


@dataclass(frozen=True)
class Figure1Setting:
    """One curve of Figure 1 (the caption's settings).

    One curve of Figure 1 (the caption's settings; ``M`` = ``n_perturbations``, ``M'`` =
    ``inner_perturbations``, ``r`` = ``radius``, ``l`` = ``rollout_length``).
    """

    d: int
    k: int
    alpha: float
    eta: float
    n_iterations: int = 1200
    n_tasks: int = 5
    n_perturbations: int = 100
    inner_perturbations: int = 100
    radius: float = 0.05
    rollout_length: int = 50
    two_point: bool = False
    outer_update: str = "plain"
    guard: str = "rollouts"

    def __post_init__(self) -> None:
        for name in ("d", "k", "n_iterations", "n_tasks", "n_perturbations",
                     "inner_perturbations", "rollout_length"):
            check_int(getattr(self, name), name, minimum=1)
        check_real(self.alpha, "alpha", minimum=0.0, min_inclusive=False)
        check_real(self.eta, "eta", minimum=0.0)
        check_real(self.radius, "radius", minimum=0.0, min_inclusive=False)
        check_bool(self.two_point, "two_point")
        check_choice(self.outer_update, "outer_update", OUTER_UPDATES)
        check_choice(self.guard, "guard", GUARDS)

    @property
    def estimator(self) -> str:
        """``"two-point"`` or ``"one-point"``."""
        return "two-point" if self.two_point else "one-point"

    @property
    def label(self) -> str:
        """Legend label of the setting's curve."""
        extra = [] if not self.two_point else ["two-point"]
        if self.outer_update != "plain":
            extra.append(self.outer_update)
        return f"d={self.d}, k={self.k}" + (f" ({', '.join(extra)})" if extra else "")


#: The paper's settings (caption of Figure 1).
PAPER_SETTINGS = (
    Figure1Setting(1, 1, alpha=1e-3, eta=1e-5),
    Figure1Setting(2, 2, alpha=1e-3, eta=1e-5),
    Figure1Setting(20, 10, alpha=1e-5, eta=1e-7),
)
#: ``--quick``: fewer iterations; for (20, 10) M = M' = 20 and the two-point estimator,
#: because the paper's one-point estimator stalls there (see docs/meta_learning.md).
QUICK_SETTINGS = (
    replace(PAPER_SETTINGS[0], n_iterations=300),
    replace(PAPER_SETTINGS[1], n_iterations=300),
    replace(PAPER_SETTINGS[2], n_iterations=60, n_perturbations=20, inner_perturbations=20,
            two_point=True),
)


class Figure1Summary(list):
    """The summary rows of :func:`reproduce_figure1` (a list of dicts), plus the verdict.

    Attributes
    ----------
    ok : bool
        False when some setting stalled or diverged (the curve could not be drawn to the end).
    failures : list of str
        One line per failed setting, with the reason (for the command line's exit message).
    concerns : list of str
        Settings that ran to the end but finished worse than they started
        (``stop == "no_improvement"``): not failures, but not a reproduction either.
    """

    def __init__(self, rows, failures, concerns=()) -> None:
        super().__init__(rows)
        self.failures = list(failures)
        self.concerns = list(concerns)

    @property
    def ok(self) -> bool:
        """Whether no check failed."""
        return not self.failures


def floor_ratio(tasks: Any, *, max_iterations: int = 100) -> float:
    """Return the smallest cost-gap ratio a single gain reaches.

    The smallest cost-gap ratio a single gain reaches: ``min_K (sum_i J_i(K) - sum_i J_i*) /
    sum_i J_i*``, by L-BFGS on ``sum_i J_i`` with the exact gradient from ``K = 0`` (gains that
    destabilise a task count as a huge cost). This is the floor of Figure 1's curves as ``eta ->
    0``; it uses the model. With the default 100 L-BFGS iterations it is within about 0.01% of
    the minimum on the Figure 1 families (checked against 500 iterations).

    Parameters
    ----------
    tasks : TaskSet
    max_iterations : int >= 1

    Returns
    -------
    float
    """
    import scipy.optimize
    from .objective import as_taskset
    ts = as_taskset(tasks)
    max_iterations = check_int(max_iterations, "max_iterations", minimum=1)
    k, d = ts.k, ts.d
    J_star = float(np.sum(optimal_costs(ts)))
    K0 = np.zeros((k, d))
    if not np.all(np.isfinite(cost(ts, K0))):
        from .objective import common_stabilizing_gain
        K0 = common_stabilizing_gain(ts)
    big = 1e6 * float(np.sum(cost(ts, K0)))

    def f(x):
        K = x.reshape(k, d)
        J = cost(ts, K)
        if not np.all(np.isfinite(J)):
            return big, np.zeros_like(x)
        return float(np.sum(J)), np.sum(policy_gradient(ts, K), axis=0).ravel()

    res = scipy.optimize.minimize(f, K0.ravel(), jac=True, method="L-BFGS-B",
                                  options={"maxiter": max_iterations, "gtol": 1e-10,
                                           "ftol": 1e-14})
    best = min(float(res.fun), f(K0.ravel())[0])
    return (best - J_star) / J_star


def _curve(res) -> tuple[np.ndarray, np.ndarray]:
    """Return the iterations and cost-gap ratios (from iteration 0, the initial gain)."""
    h = res.history
    return h["iteration"], h["cost_gap_ratio"]


def _plot(path: str, runs: list, mode: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(runs)
    fig = Figure(figsize=(4.2 * n, 4.0))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (s, res, floor, status) in zip(axes, runs):
        it, ratio = _curve(res)
        finite = np.isfinite(ratio) & (ratio > 0)
        ax.plot(it[finite], ratio[finite], label=f"{s.estimator}, {s.outer_update}")
        if floor is not None and floor > 0:
            ax.axhline(floor, color="k", linestyle="--", linewidth=1,
                       label=f"floor {floor:.3g}")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_title(f"{s.label}\nalpha={s.alpha:g}, eta={s.eta:g}, M={s.n_perturbations}, "
                     f"l={s.rollout_length}" + ("" if status == "ok" else f"\n[{status}]"),
                     fontsize=9)
        ax.legend(fontsize=8)
    axes[0].set_ylabel(r"$(\sum_i J_i(K) - \sum_i J_i(K_i^*)) / \sum_i J_i(K_i^*)$")
    est = "; ".join(f"({s.d},{s.k}) {s.estimator}, {s.outer_update} update" for s, *_ in runs)
    fig.suptitle(f"Figure 1 ({mode}): average cost-gap ratio, ZO-MAML. Estimators: {est}",
                 fontsize=10)
    fig.tight_layout()
    tmp = path + ".part.png"
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def _check_settings(settings: Any) -> tuple[Figure1Setting, ...]:
    if isinstance(settings, Figure1Setting):
        settings = (settings,)
    if isinstance(settings, (str, bytes, dict)) or not hasattr(settings, "__iter__"):
        raise ValidationTypeError(f"settings must be a tuple of Figure1Setting; got "
                                  f"{type(settings).__name__}.")
    out = tuple(settings)
    if not out:
        raise ValidationError("settings must contain at least one Figure1Setting; got none.")
    for s in out:
        if not isinstance(s, Figure1Setting):
            raise ValidationTypeError(f"settings must contain only Figure1Setting objects; got "
                                      f"{type(s).__name__}.")
    keys = [(s.d, s.k, s.label) for s in out]
    if len(set(keys)) != len(keys):
        raise ValidationError("settings contains the same (d, k, estimator) twice; their "
                              "checkpoints and curves would collide.")
    return out


def reproduce_figure1(*, quick: bool = False, output_dir: str = "results/fig1", rng: Any = 0,
                      n_iterations: int | None = None, backend: str | None = None,
                      progress: bool = True, resume: bool = False,
                      settings: tuple[Figure1Setting, ...] | None = None,
                      verbose: bool = True) -> Figure1Summary:
    """Run the Figure 1 experiment and write ``fig1.csv``, ``fig1.png`` and ``summary.csv``.

    Each setting samples 5 tasks with :func:`metalqr.sample_tasks` (seed ``[rng, d, k]``),
    starts from ``K0 = 0`` (which stabilises every task of the family) and runs
    :func:`metalqr.meta_policy_optimization` with ``gradient="zo"``. Checkpoints
    (``checkpoint_d{d}_k{k}*.npz``) let a killed run continue with ``resume=True``.

    Parameters
    ----------
    quick : bool
        Use :data:`QUICK_SETTINGS` instead of :data:`PAPER_SETTINGS`.
    output_dir : str
        Folder for the outputs (locked against a second run writing into it).
    rng : int seed >= 0, Generator or None
        Root seed of the settings' streams (``0`` by default; a Generator gives one draw,
        recorded as ``seed`` in the summary rows).
    n_iterations : int >= 1, optional
        Override every setting's number of iterations.
    backend : str or None
        A name of :func:`metalqr.rollouts.known_backends` (``None``: the default one).
    progress, resume, verbose : bool
    settings : tuple of Figure1Setting, optional
        Custom settings (override ``quick``).

    Returns
    -------
    Figure1Summary
        One row per setting (seed, r, l, M, M', alpha, eta, estimator, outer update, guard,
        backend, floor, ratios, stop reason, timings, metalqr version, units), plus ``ok``
        and ``failures``: a setting that stalled or diverged is a failure, and the command
        line should exit non-zero with ``failures`` when not ``ok``; ``concerns`` lists
        settings that finished worse than they started.

    Raises
    ------
    ValidationError, ValidationTypeError
        A malformed argument.
    CheckpointError
        Another run holds ``output_dir``, or a checkpoint is damaged (with ``resume``).
    """
    quick = check_bool(quick, "quick")
    if not isinstance(output_dir, (str, os.PathLike)) or isinstance(output_dir, bytes):
        raise ValidationTypeError(f"output_dir must be a folder path (str); got "
                                  f"{type(output_dir).__name__}.")
    output_dir = os.fspath(output_dir)
    if not output_dir.strip() or "\x00" in output_dir:
        raise ValidationError(f"output_dir must be a non-empty folder path; got {output_dir!r}.")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValidationError(f"output_dir {output_dir!r} exists and is a file; pass a folder.")
    seed = as_seed(rng, "rng")
    if n_iterations is not None:
        n_iterations = check_int(n_iterations, "n_iterations", minimum=1)
    backend = None if backend is None else check_backend(backend, "backend")
    progress = check_bool(progress, "progress")
    resume = check_bool(resume, "resume")
    verbose = check_bool(verbose, "verbose")
    chosen = (QUICK_SETTINGS if quick else PAPER_SETTINGS) if settings is None \
        else _check_settings(settings)
    if n_iterations is not None:
        chosen = tuple(replace(s, n_iterations=n_iterations) for s in chosen)
    from .._version import __version__
    from ..rollouts.backends import DEFAULT_BACKEND

    runs, curve_rows, summary, failures, concerns = [], [], [], [], []
    with FolderLock(output_dir):
        for s in chosen:
            tag = "" if s.label == f"d={s.d}, k={s.k}" else "_" + "".join(
                c if c.isalnum() else "_" for c in s.label.split("(", 1)[1].rstrip(")"))
            ckpt = os.path.join(output_dir, f"checkpoint_d{s.d}_k{s.k}{tag}.npz")
            if not resume and os.path.exists(ckpt):
                os.remove(ckpt)
            rng = np.random.default_rng([seed, s.d, s.k])
            tasks = sample_tasks(s.n_tasks, s.d, s.k, rng=rng)
            if verbose:
                print(f"[fig1] {s.label}: {s.estimator} estimator, {s.outer_update} update, "
                      f"alpha={s.alpha:g} eta={s.eta:g} M={s.n_perturbations} "
                      f"M'={s.inner_perturbations} r={s.radius} l={s.rollout_length} "
                      f"iterations={s.n_iterations}", flush=True)
            t0 = time.perf_counter()
            status = "ok"
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", MetalqrWarning)
                try:
                    res = meta_policy_optimization(
                        tasks, np.zeros((s.k, s.d)), alpha=s.alpha, eta=s.eta,
                        n_iterations=s.n_iterations, gradient="zo", rng=rng, backend=backend,
                        progress=progress, checkpoint=ckpt, guard=s.guard,
                        outer_update=s.outer_update, n_perturbations=s.n_perturbations,
                        inner_perturbations=s.inner_perturbations, radius=s.radius,
                        rollout_length=s.rollout_length, two_point=s.two_point)
                except (TrainingStalledError, TrainingDivergedError) as err:
                    res = err.result
                    status = res.stop_reason
                    if verbose:
                        print(f"[fig1] {s.label}: {status} ({err})", flush=True)
            notes = [f"{type(w.message).__name__}: {str(w.message)[:160]}"
                     for w in caught if issubclass(w.category, MetalqrWarning)]
            for w in caught:
                if not issubclass(w.category, MetalqrWarning):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
                elif verbose:
                    print(f"[fig1] {s.label}: warning: {w.message}", flush=True)
            if res.stop_reason == "no_improvement":
                status = "no_improvement"
            h = res.history
            floor = floor_ratio(tasks)
            runs.append((s, res, floor, status))
            for rec in h.records:
                curve_rows.append({"d": s.d, "k": s.k, "estimator": s.estimator,
                                   "outer_update": s.outer_update, **rec})
            ratio = _curve(res)[1]
            tail = ratio[-max(1, len(ratio) // 10):]
            row = {"setting": s.label, "d": s.d, "k": s.k, "seed": seed, "n_tasks": s.n_tasks,
                   "r": s.radius, "l": s.rollout_length, "M": s.n_perturbations,
                   "M'": s.inner_perturbations, "alpha": s.alpha, "eta": s.eta,
                   "estimator": s.estimator, "outer_update": s.outer_update, "guard": s.guard,
                   "backend": backend or DEFAULT_BACKEND, "iterations": len(h) - 1,
                   "initial_ratio": float(ratio[0]), "final_ratio": float(ratio[-1]),
                   "min_ratio": float(np.min(ratio)), "best_iteration": res.best_iteration,
                   "mean_last_10pct": float(tail.mean()), "floor": floor,
                   "stop": res.stop_reason, "status": status,
                   "rejected": int(h["rejected"].sum()),
                   "warnings": " | ".join(notes),
                   "seconds_this_run": time.perf_counter() - t0,
                   "seconds_total": float(h["seconds"].sum()),
                   "version": __version__, "units": UNITS}
            summary.append(row)
            if status != "ok":
                (concerns if status == "no_improvement" else failures).append(f"{s.label}: {status} after {len(h) - 1} iterations (cost-gap "
                                f"ratio {ratio[0]:.4g} -> {ratio[-1]:.4g}, best {np.min(ratio):.4g} "
                                f"at iteration {res.best_iteration}, floor {floor:.4g})")
        atomic_write_text(os.path.join(output_dir, "fig1.csv"), csv_text(curve_rows))
        atomic_write_text(os.path.join(output_dir, "summary.csv"), csv_text(summary))
        mode = ("custom settings" if settings is not None else
                "quick run" if quick else "full run, the paper's settings")
        _plot(os.path.join(output_dir, "fig1.png"), runs, mode)
    if verbose:
        from .._report import print_table
        print(f"\nFigure 1 {'(quick) ' if quick else ''}summary; curves in {output_dir}/fig1.csv, "
              f"plot in {output_dir}/fig1.png")
        print_table([{c: r[c] for c in ("setting", "estimator", "alpha", "eta", "iterations",
                                         "initial_ratio", "final_ratio", "min_ratio", "floor",
                                         "stop", "rejected", "seconds_this_run")}
                      for r in summary])
        for f in concerns:
            print(f"[fig1] WORSE THAN AT THE START: {f}", flush=True)
        for f in failures:
            print(f"[fig1] FAILED {f}", flush=True)
    return Figure1Summary(summary, failures, concerns)
