"""Studies of the TOW paper's Section 5.1 and Appendices B, C, D on any task source.

Omniglot in the paper. Built on the public API of :mod:`metalqr.tow`
(:func:`~metalqr.tow.run_experiment`, :func:`~metalqr.tow.tow_weights`).

* :func:`run_table1_study` - Table 1: the four weightings (uniform, exploration,
  exploitation, TOW) for several learners, on the same task stream and seed, over several
  seeds; per-seed paired differences of TOW to the best baseline, learning curves with bands,
  wall time relative to uniform measured interleaved. Resumable (one checkpoint per learner
  and seed, plus :func:`run_experiment`'s per-strategy checkpoints).
* :func:`weight_probe_study` - Appendix C / Figure 4: the TOW weights that fixed probe
  windows (mini-batches of tasks from the *same* alphabet or from *different* alphabets,
  drawn from training or test alphabets) receive as training progresses.
* :func:`ilqr_iterations_study` - Appendix D / Figure 6: TOW with 2 vs 10 iLQR iterations.
* :func:`value_model_study` - Appendix B: TOW with the full vs the diagonal value matrix
  ``V_t`` on a small network.
* :func:`estimate_delta` - an empirical estimate of Lemma 1 / Theorem 5's ``delta``.

Every result is a dataclass carrying its ``settings`` and ``units``; figures are returned as
:class:`matplotlib.figure.Figure` objects on their own Agg canvas (the user's backend is never
switched).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .. import _checkpoint
from .._validation import as_float_array, as_seed, check_bool, check_int, check_probability, check_real
from ..exceptions import CheckpointError, ValidationError, ValidationTypeError
from ._checks import check_source
from .experiment import StrategyResult, _ci95, _figure, run_experiment
from .learner import _check_learner as check_learner

__all__ = ["Table1Study", "run_table1_study", "PAPER_TABLE1", "TABLE1_STRATEGIES", "DeltaEstimate",
           "estimate_delta", "WeightProbeStudy", "weight_probe_study", "CurveStudy", "ilqr_iterations_study",
           "value_model_study", "ema"]

#: The four weightings of Table 1 (TOW last; the others are the baselines).
TABLE1_STRATEGIES = ("uniform", "exploration", "exploitation", "tow")

#: Table 1 of the TOW paper, Omniglot column: 5-way 1-shot accuracy (%) on 1,000 test tasks,
#: mean and 95% CI half-width (4-block CNN with 32 filters, full Omniglot, GPU).
PAPER_TABLE1 = {
    "maml": {"uniform": (94.86, 0.43), "exploration": (92.64, 0.52), "exploitation": (95.34, 0.42),
             "tow": (95.94, 0.40)},
    "protonet": {"uniform": (95.21, 0.37), "exploration": (94.57, 0.38), "exploitation": (95.78, 0.40),
                 "tow": (96.84, 0.37)},
}

UNITS = {
    "mean": "mean test metric over the n_test held-out tasks (accuracy: fraction in [0, 1]; mse: output "
            "units squared)",
    "ci95": "half-width of the normal 95% confidence interval of that mean over the test tasks",
    "gain": "paired mean difference TOW - best baseline over the same test tasks (sign flipped for mse, so "
            "positive = TOW better); the best baseline is the best of the non-TOW strategies on the test "
            "tasks of that seed (a choice that favours the baseline)",
    "gain_ci95": "half-width of the normal 95% CI of the paired mean difference",
    "beats": "gain - gain_ci95 > 0 (TOW better than the best baseline beyond the paired 95% CI)",
    "delta": "estimate_delta of TOW's stored weights, last mini-batch of each window left out (Lemma 1)",
    "seconds": "wall-clock training time (weights and meta-updates) summed over windows, s",
    "time_vs_uniform": "seconds / uniform's seconds in the same run (strategies interleaved window by window)",
    "not applicable": "empty CSV cell / JSON null / '-' in markdown: gain of a baseline row, delta without TOW "
                      "weights, a t-interval over a single seed, a time ratio without uniform's time",
    "curve": "validation metric over n_val held-out tasks at window 0 and every eval_every windows; band "
             "across seeds = 95% t-interval of the mean over seeds",
}

_CELL_KIND = "tow_table1_cell"


# --------------------------------------------------------------------------------------------
# small shared helpers
# --------------------------------------------------------------------------------------------

def _t_half_width(values) -> float:
    """Half-width of the 95% t-interval of the mean (NaN for fewer than 2 values)."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return float("nan")
    from scipy.stats import t
    return float(t.ppf(0.975, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))


def _check_folder(folder, name: str = "folder"):
    if folder is None:
        return None
    if not isinstance(folder, (str, os.PathLike)) or isinstance(folder, bytes) or not os.fspath(folder):
        raise ValidationTypeError(f"{name} must be a folder path (str) or None; got {folder!r}.")
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValidationError(f"{name}: {folder!r} is a file, not a folder; give a folder path.")
    return folder


def _check_seeds(seeds, name: str = "seeds") -> tuple[int, ...]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, (bool, np.bool_)):
        seeds = [seeds]
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (list, tuple, range)) or len(seeds) == 0:
        raise ValidationTypeError(f"{name} must be a non-empty list of int seeds >= 0 (e.g. (0, 1, 2)); got "
                                  f"{seeds!r}.")
    out = tuple(check_int(s, f"{name}[{i}]", minimum=0) for i, s in enumerate(seeds))
    if len(set(out)) != len(out):
        raise ValidationError(f"{name} must not repeat a seed; got {list(out)}.")
    return out


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ema(values: Any, smoothing: float = 0.1) -> np.ndarray:
    """Return the exponential moving average of ``values``.

    Exponential moving average ``s_0 = v_0``, ``s_k = smoothing v_k + (1 - smoothing) s_{k-1}``
    (the smoothing of Figure 6 of the TOW paper, factor 0.1).

    Parameters
    ----------
    values : (n,) array_like of float
        The series to smooth (e.g. a validation curve).
    smoothing : float, in (0, 1]
        Weight of the newest value (1: no smoothing).

    Returns
    -------
    (n,) ndarray
        The smoothed series, ``s_0 = v_0``.

    Raises
    ------
    ValidationError
        Non-finite or non-1-D ``values``; ``smoothing`` outside (0, 1].
    """
    v = as_float_array(values, "values", ndim=1)
    a = check_probability(smoothing, "smoothing", allow_one=True)
    out = np.empty_like(v)
    for i, x in enumerate(v):
        out[i] = x if i == 0 else a * x + (1.0 - a) * out[i - 1]
    return out


# --------------------------------------------------------------------------------------------
# Table 1
# --------------------------------------------------------------------------------------------

@dataclass
class Table1Study:  # numpydoc ignore=PR01
    """Result of :func:`run_table1_study`.

    Attributes
    ----------
    cells : dict
        ``{(learner name, seed): [StrategyResult, ...]}`` in the order of ``strategies``
        (finished cells only).
    settings : dict
        The study's settings (learners, seeds, strategies, every :func:`run_experiment`
        argument, the source).
    units : dict
        Units of every reported quantity.
    """

    cells: dict
    settings: dict
    units: dict = field(default_factory=lambda: dict(UNITS))

    def __repr__(self) -> str:
        """Short summary: learners, seeds, strategies and the number of finished cells."""
        return (f"Table1Study({len(self.cells)} cells; learners={self.settings.get('learners')}, "
                f"seeds={self.settings.get('seeds')}, strategies={self.settings.get('strategies')})")

    # ------------------------------------------------------------------ tables
    def rows(self) -> list[dict]:
        """Return one row per learner, seed and strategy.

        One row per learner, seed and strategy: ``mean``, ``ci95``, ``seconds``,
        ``time_vs_uniform``, and for TOW the paired ``gain`` to the best baseline, its
        ``gain_ci95``, the baseline's name, ``beats`` and the empirical ``delta`` of its
        weights (:func:`estimate_delta`) (see :attr:`units`).

        Returns
        -------
        list of dict
            The rows, ready for :mod:`csv` or a table.
        """
        out = []
        for (lname, seed), results in sorted(self.cells.items()):
            by = {r.name: r for r in results}
            base_secs = by["uniform"].seconds if "uniform" in by else results[0].seconds
            sign = 1.0 if results[0].metric_name == "accuracy" else -1.0
            baselines = [r for r in results if r.name != "tow"]
            best = max(baselines, key=lambda r: sign * r.mean) if baselines else None
            for r in results:
                row = dict(learner=lname, seed=seed, strategy=r.name, metric=r.metric_name, mean=r.mean,
                           ci95=r.ci95, n_test=int(r.metric.size), seconds=r.seconds,
                           time_vs_uniform=r.seconds / base_secs if base_secs > 0 else float("nan"),
                           best_baseline="", gain=float("nan"), gain_ci95=float("nan"), beats="")
                if r.name == "tow" and best is not None:
                    d = sign * (r.metric - best.metric)
                    row.update(best_baseline=best.name, gain=float(d.mean()), gain_ci95=_ci95(d))
                    row["beats"] = bool(row["gain"] - row["gain_ci95"] > 0)
                if r.name == "tow" and r.weights is not None and np.size(r.weights):
                    row["delta"] = estimate_delta(r.weights, exclude_last=np.shape(r.weights)[1] > 1).delta
                else:
                    row["delta"] = float("nan")
                out.append(row)
        return out

    def seed_summary(self) -> list[dict]:
        """Return the per-learner summary over seeds.

        Per learner: seeds done, seeds where TOW beats the best baseline beyond the paired
        95% CI, the mean gain over seeds with its 95% t-interval, the mean time ratio of TOW
        and the largest empirical delta of its weights.

        Returns
        -------
        list of dict
            The rows, ready for :mod:`csv` or a table.
        """
        rows = [r for r in self.rows() if r["strategy"] == "tow"]
        out = []
        for lname in sorted({r["learner"] for r in rows}):
            mine = [r for r in rows if r["learner"] == lname]
            gains = [r["gain"] for r in mine]
            out.append(dict(learner=lname, seeds=len(mine), beats=sum(bool(r["beats"]) for r in mine),
                            loses=sum(r["gain"] + r["gain_ci95"] < 0 for r in mine),
                            mean_gain=float(np.mean(gains)), mean_gain_t95=_t_half_width(gains),
                            tow_time_vs_uniform=float(np.mean([r["time_vs_uniform"] for r in mine])),
                            max_delta=max((r["delta"] for r in mine if np.isfinite(r["delta"])),
                                          default=float("nan"))))
        return out

    def curves(self) -> list[dict]:
        """Return the validation curves in long form.

        One row per learner, strategy, seed and window: ``mean`` and ``ci95`` of the
        validation metric.

        Returns
        -------
        list of dict
            The rows, ready for :mod:`csv` or a table.
        """
        out = []
        for (lname, seed), results in sorted(self.cells.items()):
            for r in results:
                for p in r.curve:
                    out.append(dict(learner=lname, strategy=r.name, seed=seed, window=int(p[0]), mean=float(p[1]),
                                    ci95=float(p[2]) if len(p) > 2 else float("nan")))
        return out

    def markdown(self) -> str:
        """Return a Table-1-style markdown table.

        A Table-1-style markdown table (mean over seeds of the per-seed mean, and the
        per-seed figures), the paper's Omniglot numbers beside it, and the seed summary.

        Returns
        -------
        str
            The markdown text, ending with a newline.
        """
        rows = self.rows()
        pct = 100.0 if rows and rows[0]["metric"] == "accuracy" else 1.0
        lines = ["| learner | strategy | " + " | ".join(f"seed {s}" for s in self.settings["seeds"])
                 + " | mean over seeds | TOW gain vs best baseline per seed (paired 95% CI) | time vs uniform"
                 " | paper (Omniglot) |", "|" + "---|" * (6 + len(self.settings["seeds"]))]
        for lname in self.settings["learners"]:
            for s in self.settings["strategies"]:
                mine = {r["seed"]: r for r in rows if r["learner"] == lname and r["strategy"] == s}
                if not mine:
                    continue
                cells = [f"{pct * mine[sd]['mean']:.2f} +- {_fmt(pct * mine[sd]['ci95'], '.2f')}" if sd in mine
                         else "-" for sd in self.settings["seeds"]]
                means = [pct * r["mean"] for r in mine.values()]
                gain = "; ".join(f"{pct * r['gain']:+.2f} +- {_fmt(pct * r['gain_ci95'], '.2f')} vs "
                                 f"{r['best_baseline']}" for r in mine.values()
                                 if s == "tow" and r["best_baseline"]) or "-"
                ratio = _fmt(np.mean([r["time_vs_uniform"] for r in mine.values()]), ".1f", "x")
                kind = "maml" if "maml" in lname else lname
                paper = PAPER_TABLE1.get(kind, {}).get(s)
                over = (f"{np.mean(means):.2f} +- {_t_half_width(means):.2f}" if len(means) > 1
                        else f"{np.mean(means):.2f} (1 seed)")
                lines.append(f"| {lname} | {s} | " + " | ".join(cells)
                             + f" | {over} | {gain} | {ratio} | "
                             + (f"{paper[0]:.2f} +- {paper[1]:.2f}" if paper else "-") + " |")
        lines.append("")
        for s in self.seed_summary():
            if not np.isfinite(s["mean_gain"]):
                gain = "mean gain - (no baseline to compare with)"
            elif s["seeds"] > 1:
                gain = (f"mean gain {pct * s['mean_gain']:+.2f} +- {pct * s['mean_gain_t95']:.2f} (95% t-interval "
                        f"over seeds)")
            else:
                gain = f"gain {pct * s['mean_gain']:+.2f} (1 seed: no t-interval over seeds)"
            lines.append(f"* {s['learner']}: TOW beats the best baseline beyond the paired 95% CI in "
                         f"{s['beats']} of {s['seeds']} seeds (loses beyond it in {s['loses']}); {gain}; TOW time "
                         f"{_fmt(s['tow_time_vs_uniform'], '.1f', 'x')} uniform; largest empirical delta "
                         f"(Theorem 5) {_fmt(s['max_delta'], '.3g')} "
                         f"(M = {self.settings['experiment'].get('M', '?')}).")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ output
    def plot_curves(self, smoothing: float = 1.0):
        """Plot the learning curves, one panel per learner.

        Learning curves: one panel per learner, one line per strategy (mean over seeds of
        the validation metric) with a 95% t-interval band over seeds (the per-seed 95% CI
        over validation tasks when there is one seed).

        Parameters
        ----------
        smoothing : float, in (0, 1]
            Below 1, :func:`ema` is applied to each seed's curve first.

        Returns
        -------
        matplotlib.figure.Figure
            A figure not attached to any pyplot backend.

        Raises
        ------
        ValidationError
            ``smoothing`` outside (0, 1].
        """
        smoothing = check_probability(smoothing, "smoothing", allow_one=True)
        learners = [l for l in self.settings["learners"] if any(k[0] == l for k in self.cells)]
        fig = _figure((5.5 * max(1, len(learners)), 4))
        axes = np.atleast_1d(fig.subplots(1, max(1, len(learners))))
        for ax, lname in zip(axes, learners):
            for s in self.settings["strategies"]:
                curves = [next(r for r in res if r.name == s).curve for (l, _), res in sorted(self.cells.items())
                          if l == lname]
                curves = [np.array(c, dtype=float) for c in curves if c]
                if not curves:
                    continue
                n = min(len(c) for c in curves)
                W = curves[0][:n, 0]
                Y = np.array([ema(c[:n, 1], smoothing) for c in curves])
                mean = Y.mean(axis=0)
                band = (np.array([_t_half_width(Y[:, i]) for i in range(n)]) if len(curves) > 1
                        else curves[0][:n, 2])
                line, = ax.plot(W, mean, label=s)
                if np.any(np.isfinite(band)):
                    ax.fill_between(W, mean - band, mean + band, alpha=0.2, color=line.get_color(), linewidth=0)
            ax.set_title(f"{lname} ({len([k for k in self.cells if k[0] == lname])} seeds)")
            ax.set_xlabel(f"training window (T = {self.settings['experiment'].get('T', '?')} mini-batches)")
            ax.set_ylabel(f"validation metric on {self.settings['experiment'].get('n_val', '?')} tasks")
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
            else:
                ax.text(0.5, 0.5, "no validation curve (eval_every = 0)", ha="center", va="center",
                        transform=ax.transAxes)
        fig.tight_layout()
        return fig

    def save(self, prefix: str) -> dict:
        """Write every table, the curves and the figures of the study.

        Write ``<prefix>_table.csv`` (:meth:`rows`), ``<prefix>_seeds.csv``
        (:meth:`seed_summary`), ``<prefix>_curves.csv`` (:meth:`curves`), ``<prefix>.md``
        (:meth:`markdown`), ``<prefix>_curves.png`` and ``<prefix>.json`` (settings, units,
        all of the above), each atomically.

        Parameters
        ----------
        prefix : str
            Path prefix of the files (its folder must exist; not a folder itself).

        Returns
        -------
        dict
            ``{name: path}`` of the files written.

        Raises
        ------
        ValidationError
            ``prefix`` empty, not a string or an existing folder.
        """
        prefix = _check_prefix(prefix)          # before any work on the study
        tables = {"table": self.rows(), "seeds": self.seed_summary(), "curves": self.curves()}
        return _save_study(prefix, self.settings, self.units, tables,
                           figures={"curves_png": self.plot_curves} if self.cells else {},
                           markdown=self.markdown())


def _save_study(prefix, settings: dict, units: dict, tables: dict, figures: dict,
                markdown: str | None = None, extra: dict | None = None) -> dict:
    """Write a study's files atomically and return ``{name: path}``.

    ``<prefix>_<name>.csv`` for each table (a list of row dicts), ``<prefix>.md`` if
    ``markdown`` is given, ``<prefix>.json`` (settings, units, the tables with non-finite
    values as null, and ``extra``) and a PNG per figure: ``figures`` maps a name to a
    function returning the figure; the name ``"png"`` is written to ``<prefix>.png``, any
    other ``"<x>_png"`` to ``<prefix>_<x>.png``. ``prefix`` is already checked
    (:func:`_check_prefix`).
    """
    paths = {}
    for name, rows in tables.items():
        paths[name] = f"{prefix}_{name}.csv"
        _checkpoint.atomic_write_text(paths[name], _csv(rows))
    if markdown is not None:
        paths["markdown"] = f"{prefix}.md"
        _checkpoint.atomic_write_text(paths["markdown"], markdown)
    paths["json"] = f"{prefix}.json"
    record = {"settings": settings, "units": units,
              **{name: _json_nan(rows) for name, rows in tables.items()}, **(extra or {})}
    _checkpoint.atomic_write_text(paths["json"], json.dumps(record, default=float))
    for name, plot in figures.items():
        paths[name] = f"{prefix}.png" if name == "png" else f"{prefix}_{name[:-len('_png')]}.png"
        _write_png(paths[name], plot())
    return paths


def _write_png(path: str, fig) -> None:
    """Write ``fig`` to ``path`` as a PNG (110 dpi), atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _checkpoint.atomic_write_bytes(path, buf.getvalue())


def _fmt(x, spec: str, suffix: str = "") -> str:
    """Format ``x`` with ``spec`` (and ``suffix``), or ``"-"`` (not applicable) when it is NaN/inf."""
    return f"{x:{spec}}{suffix}" if np.isfinite(x) else "-"


def _blank_nan(rows: list[dict]) -> list[dict]:
    """Rows with every non-finite float replaced by ``""`` (a not-applicable cell)."""
    return [{k: ("" if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()} for r in rows]


def _json_nan(rows: list[dict]) -> list[dict]:
    """Rows with every non-finite float replaced by None (JSON null: not applicable)."""
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()} for r in rows]


def _csv(rows: list[dict]) -> str:
    """CSV text of ``rows``; not-applicable (NaN) cells are left empty."""
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(_blank_nan(rows))
    return buf.getvalue()


def _python_terms(exc: CheckpointError, where: str) -> CheckpointError:
    """``exc`` reworded for a Python caller (no command-line flags)."""
    msg = str(exc).replace(_checkpoint._AFRESH, "delete that file to start afresh")
    return CheckpointError(f"{msg} run_table1_study: to start afresh, delete the file (or {where!r}) or pass "
                           f"another folder=; a changed setting gets its own cells and runs in the same folder.")


def _cell_fingerprint(source, lname, learner, seed, strategies, kwargs) -> str:
    blob = json.dumps(dict(source=repr(source), learner_name=lname, learner=repr(learner), seed=seed,
                           strategies=list(strategies), experiment=kwargs), sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def _save_cell(path, fingerprint, results) -> None:
    arrays, meta = {}, {"strategies": [], "settings": results[0].settings}
    for i, r in enumerate(results):
        arrays[f"metric_{i}"] = r.metric
        arrays[f"curve_{i}"] = np.array(r.curve, dtype=float).reshape(-1, 3)
        for name in ("weights", "groups", "window_seconds", "params"):
            v = getattr(r, name)
            if v is not None:
                arrays[f"{name}_{i}"] = np.asarray(v, dtype=float)
        meta["strategies"].append(dict(name=r.name, seconds=r.seconds, metric_name=r.metric_name))
    _checkpoint.save(path, _CELL_KIND, fingerprint, arrays, meta)


def _load_cell(path, fingerprint) -> list[StrategyResult]:
    arrays, meta = _checkpoint.load(path, _CELL_KIND, fingerprint)
    try:
        return [StrategyResult(s["name"], arrays[f"metric_{i}"], s["seconds"], s["metric_name"],
                               [tuple(p) for p in arrays[f"curve_{i}"].tolist()], arrays.get(f"weights_{i}"),
                               arrays.get(f"groups_{i}"), arrays.get(f"window_seconds_{i}"), dict(meta["settings"]),
                               arrays.get(f"params_{i}"))
                for i, s in enumerate(meta["strategies"])]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path!r} is inconsistent ({type(exc).__name__}: {exc}); delete it "
                              f"to start afresh.") from None


def run_table1_study(source, learners: Mapping[str, Any], seeds: Sequence[int] = (0, 1, 2), *,
                     strategies: Sequence[str] = TABLE1_STRATEGIES, folder: str | None = None,
                     compute: bool = True, progress: bool = False, **experiment) -> Table1Study:
    """Run Table 1 of the TOW paper (Section 5.1) for every learner, strategy and seed.

    Table 1 of the TOW paper (Section 5.1): every strategy for every learner, on the same task
    stream and seed, for each seed.

    Each (learner, seed) cell is one :func:`~metalqr.tow.run_experiment` call: all strategies
    see the same mini-batches (``default_rng([seed, k])`` for window ``k``), start from the
    same ``learner.init(seed)``, are interleaved window by window (so wall-time ratios are
    fair) and are tested on the same ``n_test`` held-out tasks (drawn from
    ``default_rng([seed, 10**6])``), so that TOW's difference to the best baseline is a
    *paired* difference over those tasks.

    With ``folder``, each cell's training is checkpointed (``folder/runs/<learner>_seed<s>_<fp>/``,
    keyed by a fingerprint of every setting but ``n_iterations`` and ``checkpoint_every``, one
    checkpoint per strategy, every ``checkpoint_every`` windows) and each finished cell
    is stored (``folder/cells/<learner>_seed<s>_<fingerprint>.ckpt``; versioned, checksummed, keyed by a
    fingerprint of every setting): a rerun with the same arguments loads finished cells and
    resumes unfinished ones; a larger ``n_iterations`` extends finished runs; a changed setting
    (e.g. ``M``) starts its own cells and runs in the same folder, leaving the old ones. Different
    learners may run in separate processes on the same folder.

    Parameters
    ----------
    source : task source
        E.g. :class:`~metalqr.tow.OmniglotTasks`.
    learners : mapping of str to MAML or ProtoNet
        Named learners built for ``source`` (e.g. ``{"protonet": ..., "maml": ...}``).
    seeds : sequence of int, >= 0
        Distinct seeds (the paper's protocol asks for at least 3).
    strategies : sequence of str
        Registered strategy names; the non-TOW ones are the baselines (``"tow"`` needs at least
        one of them beside it).
    folder : str or None
        Checkpoint folder (resumable); None: nothing is written.
    compute : bool
        False: only load finished cells from ``folder`` (cells not finished are left out).
    progress : bool
        Log each cell's start and end, with elapsed time, to stderr, and show
        :func:`run_experiment`'s progress bar.
    **experiment
        Arguments of :func:`run_experiment` (``n_iterations``, ``T``, ``M``, ``optimizer``,
        ``alpha``, ``beta_u``, ``kappa``, ``n_ilqr``, ``n_test``, ``n_val``, ``eval_every``,
        ``value_model``, ``checkpoint_every``); not ``seed``, ``checkpoint``, ``progress``.
        ``eval_every`` defaults to ``max(1, n_iterations // 20)`` here and must be >= 1.

    Returns
    -------
    Table1Study
        The finished cells with the study's settings and units.

    Raises
    ------
    ValidationError
        Malformed arguments (named); ``compute=False`` without ``folder``; ``strategies`` with
        ``"tow"`` and no baseline; ``eval_every=0``.
    CheckpointError
        A damaged or foreign checkpoint in ``folder``.

    References
    ----------
    TOW paper [nguyen2023tow], Section 5.1 and Table 1.
    """
    source = check_source(source)
    if not isinstance(learners, Mapping) or not learners:
        raise ValidationTypeError(f"learners must be a non-empty dict of name -> MAML or ProtoNet (e.g. "
                                  f"{{'protonet': ProtoNet(...)}}); got {type(learners).__name__}.")
    for lname, learner in learners.items():
        if not isinstance(lname, str) or not lname or not lname.replace("_", "").replace("-", "").isalnum():
            raise ValidationError(f"learners: names must be non-empty alphanumeric strings (they name files); "
                                  f"got {lname!r}.")
        check_learner(learner, f"learners[{lname!r}]")
    seeds = _check_seeds(seeds)
    if isinstance(strategies, str) or not isinstance(strategies, (list, tuple)) or not strategies:
        raise ValidationTypeError(f"strategies must be a non-empty list of strategy names; got {strategies!r}.")
    strategies = tuple(strategies)
    folder = _check_folder(folder)
    compute = check_bool(compute, "compute")
    progress = check_bool(progress, "progress")
    for bad in ("seed", "checkpoint", "progress", "rng"):
        if bad in experiment:
            raise ValidationError(f"{bad} is set by run_table1_study; do not pass it (use seeds / folder / "
                                  f"progress).")
    if not compute and folder is None:
        raise ValidationError("compute=False only loads finished cells, so it needs folder.")
    if "tow" in strategies and not any(s != "tow" for s in strategies):
        raise ValidationError(f"strategies: Table 1 compares TOW with baselines, so give at least one "
                              f"baseline alongside 'tow' (e.g. ('uniform', 'tow')); got {list(strategies)}.")
    n_iter = experiment.get("n_iterations", 100)
    if "eval_every" not in experiment and isinstance(n_iter, (int, np.integer)) and not isinstance(n_iter, bool):
        # run_experiment's default (0) records no curve; a curve point every ~n_iterations/20 windows, >= 1
        experiment["eval_every"] = max(1, int(n_iter) // 20)
    if "eval_every" in experiment and check_int(experiment["eval_every"], "eval_every", minimum=0) == 0:
        raise ValidationError("eval_every must be >= 1 in run_table1_study (0 records no learning curves); "
                              "leave it out for max(1, n_iterations // 20).")
    settings = dict(source=repr(source), learners=list(learners), learner_reprs={k: repr(v) for k, v in
                                                                                  learners.items()},
                    seeds=list(seeds), strategies=list(strategies), experiment=dict(experiment))
    cells = {}
    n_cells, t_start = len(seeds) * len(learners), time.perf_counter()
    done = 0
    for seed in seeds:
        for lname, learner in learners.items():
            done += 1
            fp = _cell_fingerprint(source, lname, learner, seed, strategies, experiment)
            path = None if folder is None else os.path.join(folder, "cells", f"{lname}_seed{seed}_{fp[:12]}.ckpt")
            if path is not None and os.path.exists(path):
                try:
                    cells[(lname, seed)] = _load_cell(path, fp)
                except CheckpointError as exc:
                    raise _python_terms(exc, path) from None
                _log(progress, f"cell {done}/{n_cells} ({lname}, seed {seed}): loaded from {path}")
                continue
            if not compute:
                continue
            _log(progress, f"cell {done}/{n_cells} ({lname}, seed {seed}): training "
                           f"{experiment.get('n_iterations', 100)} windows x {len(strategies)} strategies")
            t0 = time.perf_counter()
            # runs/ is keyed by every setting except n_iterations / checkpoint_every, so that a changed
            # setting starts its own runs (the old ones stay) and a larger n_iterations extends them
            run_fp = _cell_fingerprint(source, lname, learner, seed, strategies,
                                       {k: v for k, v in experiment.items()
                                        if k not in ("n_iterations", "checkpoint_every")})
            ckpt = None if folder is None else os.path.join(folder, "runs", f"{lname}_seed{seed}_{run_fp[:12]}")
            try:
                results = run_experiment(source, learner, strategies, rng=seed, checkpoint=ckpt,
                                         progress=progress, **experiment)
            except CheckpointError as exc:
                raise _python_terms(exc, ckpt) from None
            if path is not None:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                _save_cell(path, fp, results)
            cells[(lname, seed)] = results
            _log(progress, f"cell {done}/{n_cells} ({lname}, seed {seed}): done in "
                           f"{time.perf_counter() - t0:.0f} s (study elapsed {time.perf_counter() - t_start:.0f} s); "
                           + ", ".join(f"{r.name} {r.mean:.4f}" for r in results))
    return Table1Study(cells, settings)


# --------------------------------------------------------------------------------------------
# Theorem 5's delta
# --------------------------------------------------------------------------------------------

@dataclass
class DeltaEstimate:  # numpydoc ignore=PR01
    """Result of :func:`estimate_delta`.

    Attributes
    ----------
    delta : float
        ``max_{k, t} ||u_{k,t} - mu 1||_2`` over the stored weights: the smallest ``delta``
        for which Lemma 1's bound holds on them (a lower estimate of the bound over all
        possible windows).
    norms : (n,) ndarray
        ``||u_{k,t} - mu 1||_2`` of every stored mini-batch (window-major order).
    quantiles : dict
        The 50%, 90% and 99% quantiles of ``norms``.
    exceed_bound : float
        ``1 / (n + 1)``: if the stored mini-batches and a new one are exchangeable, the
        probability that the new one's distance exceeds ``delta`` is at most this
        (distribution-free).
    corollary6 : dict
        Checks of Corollary 6 with this delta: ``max ||u_t||`` against ``delta + 1/sqrt(M)``
        (Eq. (14b)), ``max 1'u_t`` against ``delta sqrt(M) + 1`` (Eq. (14c)), and
        ``epsilon0_factor = delta sqrt(M) + 1`` of Eq. (10) (1 for uniform weights).
    settings, units : dict
    """

    delta: float
    norms: np.ndarray = field(repr=False)
    quantiles: dict
    exceed_bound: float
    corollary6: dict = field(repr=False)
    settings: dict
    units: dict = field(repr=False)


def estimate_delta(weights: Any, mu: float | None = None, *, exclude_last: bool = False) -> DeltaEstimate:
    r"""Empirical ``delta`` of Lemma 1 / Theorem 5 of the TOW paper from stored TOW weights.

    Lemma 1 states ``exists delta > 0: ||u_t - \hat u_t|| <= delta`` for the actions ``u_t``
    returned by iLQR from the nominal ``\hat u_t = mu 1`` (``mu = 1/M``: uniform, as in
    Algorithm 1); Theorem 5's bound (Eq. (10)) grows with ``delta`` through
    ``delta sqrt(M) + 1``. The estimator is the sample maximum
    ``delta_hat = max_{k,t} ||u_{k,t} - mu 1||_2`` over every stored window ``k`` and
    mini-batch ``t``: the smallest delta consistent with the data (the true supremum is at
    least this). It is exact when the largest deviation is among the stored weights.

    Parameters
    ----------
    weights : array_like, shape (windows, T, M) or (n, M)
        Stored weights (e.g. ``StrategyResult.weights`` of TOW), finite and >= 0.
    mu : float, >= 0, optional
        Nominal weight (default ``1/M``).
    exclude_last : bool
        Leave out the last mini-batch of each window (for 3-D ``weights``): without a
        terminal cost Algorithm 1 always gives it the nominal weights, so it adds zeros.

    Returns
    -------
    DeltaEstimate
        The estimate with its quantiles, exceedance bound and settings.

    Raises
    ------
    ValidationError
        Empty, non-finite, negative or wrongly shaped ``weights``; negative ``mu``; ``exclude_last``
        with ``T = 1`` or 2-D weights.

    References
    ----------
    TOW paper [nguyen2023tow], Theorem 5 and Corollary 6.
    """
    W = as_float_array(weights, "weights", allow_empty=False)
    if W.ndim not in (2, 3) or W.shape[-1] < 1 or W.size == 0:
        raise ValidationError(f"weights must have shape (windows, T, M) or (n, M); got {W.shape}.")
    if np.any(W < 0):
        i = np.unravel_index(int(np.argmin(W)), W.shape)
        raise ValidationError(f"weights must be >= 0 (TOW weights are non-negative, Algorithm 1); weights{list(i)} "
                              f"= {W[i]:.4g}. Pass StrategyResult.weights of a TOW run.")
    exclude_last = check_bool(exclude_last, "exclude_last")
    if exclude_last:
        if W.ndim != 3 or W.shape[1] < 2:
            raise ValidationError(f"exclude_last needs weights of shape (windows, T >= 2, M); got {W.shape}.")
        W = W[:, :-1]
    M = W.shape[-1]
    mu = 1.0 / M if mu is None else check_real(mu, "mu", minimum=0.0)
    U = W.reshape(-1, M)
    norms = np.linalg.norm(U - mu, axis=1)
    delta = float(norms.max())
    q = {p: float(np.quantile(norms, p / 100)) for p in (50, 90, 99)}
    cor = dict(max_norm_u=float(np.linalg.norm(U, axis=1).max()), bound_14b=delta + np.sqrt(M) * mu,
               max_sum_u=float(U.sum(axis=1).max()), bound_14c=delta * np.sqrt(M) + M * mu,
               epsilon0_factor=delta * np.sqrt(M) + 1.0)
    return DeltaEstimate(delta, norms, q, 1.0 / (norms.size + 1), cor,
                         dict(M=M, mu=mu, n=int(norms.size), exclude_last=exclude_last),
                         {"delta": "Euclidean norm of a weight vector's deviation from mu 1 (weights are "
                                   "dimensionless)", "exceed_bound": "probability"})


# --------------------------------------------------------------------------------------------
# a training loop that exposes the optimiser state (for the probe study)
# --------------------------------------------------------------------------------------------

def _train_windows(source, learner, strategy, opt, z, k0, k1, T, M, seed, options):
    """Train ``strategy`` through windows ``k0 .. k1 - 1`` of the task stream.

    Windows ``k0 .. k1 - 1`` of ``strategy`` on :func:`run_experiment`'s task stream (window
    ``k`` draws its batches from ``default_rng([seed, k])``); returns the state.
    """
    import zlib
    from .weighting_strategies import Window, get_strategy
    strat = get_strategy(strategy, "train_strategy")
    D = learner.net.size
    key = zlib.crc32(strategy.encode())
    for k in range(k0, k1):
        rng = np.random.default_rng([seed, k])
        batches = [source.sample(rng, M) for _ in range(T)]
        out = strat.window(Window(learner, z, D, batches, opt, k * T, np.random.default_rng([seed, k, key]),
                                  options))
        z = np.asarray(out.z, dtype=float)
        if not np.all(np.isfinite(z)):
            from ..exceptions import TrainingDivergedError
            raise TrainingDivergedError(f"training with {strategy!r} diverged at window {k + 1}; reduce alpha.")
    return z


# --------------------------------------------------------------------------------------------
# Appendix C: weights of fixed probe windows over training
# --------------------------------------------------------------------------------------------

PROBES = ("same/train", "same/test", "different/train", "different/test")


@dataclass
class WeightProbeStudy:  # numpydoc ignore=PR01
    """Result of :func:`weight_probe_study`.

    Attributes
    ----------
    windows : (n_points,) ndarray of int
        Training windows done when each probe was weighted (0 = initial parameters).
    weights : dict
        ``{probe: (n_points, T, M) ndarray}``: TOW weights (Algorithm 1) of the probe window
        at the current optimiser state.
    alphabets : dict
        ``{probe: T x M list}``: the alphabet of each probe task.
    validation : (n_points,) ndarray
        Validation metric of the trained learner at each point (mean over ``n_val`` tasks).
    settings, units : dict
    """

    windows: np.ndarray
    weights: dict
    alphabets: dict
    validation: np.ndarray
    settings: dict
    units: dict

    def __repr__(self) -> str:
        """Short summary: probes, points and the weight array shapes."""
        return (f"WeightProbeStudy({len(self.windows)} points, windows {self.windows[:1].tolist()}.."
                f"{self.windows[-1:].tolist()}; probes=" + ", ".join(f"{k!r}: {np.shape(v)}"
                                                                      for k, v in self.weights.items()) + ")")

    def rows(self) -> list[dict]:
        """Return the probes' weights in long form.

        One row per probe, window, mini-batch ``t`` and task ``j``: its alphabet, ``weight``
        and ``weight_x_M`` (``M u``, 1 = uniform).

        Returns
        -------
        list of dict
            The rows, ready for :mod:`csv` or a table.
        """
        out = []
        M = self.settings["M"]
        for probe, W in self.weights.items():
            for i, k in enumerate(self.windows):
                for t in range(W.shape[1]):
                    for j in range(W.shape[2]):
                        out.append(dict(probe=probe, window=int(k), t=t, j=j, alphabet=self.alphabets[probe][t][j],
                                        weight=float(W[i, t, j]), weight_x_M=float(W[i, t, j] * M)))
        return out

    def summary(self) -> list[dict]:
        """Return the weight summary per probe and point.

        Per probe and point: mean, min and max of ``M u`` over the probe's first ``T - 1``
        mini-batches (the last gets the nominal weights when there is no terminal cost), and
        ``M u`` of the single task of interest (mini-batch 0, task 0), as in Figure 4.

        Returns
        -------
        list of dict
            The rows, ready for :mod:`csv` or a table.
        """
        out = []
        M = self.settings["M"]
        for probe, W in self.weights.items():
            for i, k in enumerate(self.windows):
                Wi = W[i, :-1] if W.shape[1] > 1 else W[i]
                out.append(dict(probe=probe, window=int(k), mean_x_M=float(Wi.mean() * M),
                                min_x_M=float(Wi.min() * M), max_x_M=float(Wi.max() * M),
                                task_of_interest_x_M=float(W[i, 0, 0] * M), validation=float(self.validation[i])))
        return out

    def plot(self):
        """Plot ``M u`` of each probe against the training windows (like Figure 4).

        Figure 4-like plot: ``M u`` of each probe against training windows (solid: mean over
        the probe's first ``T - 1`` mini-batches; dashed: the task of interest; band:
        min-max over those mini-batches).

        Returns
        -------
        matplotlib.figure.Figure
            A figure not attached to any pyplot backend.
        """
        fig = _figure((7, 4))
        ax = fig.subplots()
        summ = self.summary()
        for probe in self.weights:
            s = [r for r in summ if r["probe"] == probe]
            x = [r["window"] for r in s]
            line, = ax.plot(x, [r["mean_x_M"] for r in s], marker="o", ms=3, label=f"{probe} (mean)")
            ax.plot(x, [r["task_of_interest_x_M"] for r in s], color=line.get_color(), ls="--", lw=0.8)
            ax.fill_between(x, [r["min_x_M"] for r in s], [r["max_x_M"] for r in s], alpha=0.15,
                            color=line.get_color(), linewidth=0)
        ax.axhline(1.0, color="k", lw=0.6, ls=":")
        ax.set_xlabel("training windows done")
        ax.set_ylabel("TOW weight x M (1 = uniform)")
        ax.set_title("Appendix C probes: same / different alphabets, train / test")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def save(self, prefix: str) -> dict:
        """Write the weights, summary, raw results and figure of the study.

        Write ``<prefix>_weights.csv`` (:meth:`rows`), ``<prefix>_summary.csv``,
        ``<prefix>.json`` (settings, units, both tables, the alphabets) and ``<prefix>.png``.

        Parameters
        ----------
        prefix : str
            Path prefix of the files (its folder must exist; not a folder itself).

        Returns
        -------
        dict
            ``{name: path}`` of the files written.

        Raises
        ------
        ValidationError
            ``prefix`` empty, not a string or an existing folder.
        """
        prefix = _check_prefix(prefix)
        return _save_study(prefix, self.settings, self.units,
                           {"weights": self.rows(), "summary": self.summary()},
                           figures={"png": self.plot}, extra={"alphabets": self.alphabets})


def _check_prefix(prefix) -> str:
    if not isinstance(prefix, (str, os.PathLike)) or isinstance(prefix, bytes) or not os.fspath(prefix):
        raise ValidationTypeError(f"prefix must be a non-empty file prefix (str); got {prefix!r}.")
    prefix = os.fspath(prefix)
    if os.path.isdir(prefix):
        raise ValidationError(f"prefix: {prefix!r} is a folder; give a file prefix inside it.")
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    return prefix


def _tasks_of_group(source, rng, group: int, train: bool, n: int, max_draws: int = 10_000) -> list:
    """``n`` tasks of alphabet index ``group`` from the source's split, by rejection."""
    out, draws = [], 0
    while len(out) < n:
        task = source.sample(rng, 1, train)[0]
        draws += 1
        if int(task.group) == group:
            out.append(task)
        elif draws > max_draws:
            raise ValidationError(f"source: no task of alphabet index {group} in {max_draws} draws; the source "
                                  f"must draw within-alphabet tasks (cross_alphabet=False).")
    return out


def _probe_windows(source, rng, T: int, M: int):
    names = source.alphabet_names()
    train_a, test_a = source.split()
    probes, alphabets = {}, {}
    for split_name, pool, train in (("train", train_a, True), ("test", test_a, False)):
        gid = [names.index(a) for a in pool]
        same, diff = [], []
        for t in range(T):
            g = gid[t % len(gid)]
            same.append(_tasks_of_group(source, rng, g, train, M))
            order = [gid[(t + j) % len(gid)] for j in range(M)]
            diff.append([_tasks_of_group(source, rng, g2, train, 1)[0] for g2 in order])
        for kind, batches in (("same", same), ("different", diff)):
            probes[f"{kind}/{split_name}"] = batches
            alphabets[f"{kind}/{split_name}"] = [[names[int(task.group)] for task in b] for b in batches]
    return probes, alphabets


def weight_probe_study(source, learner, *, n_iterations: int = 50, probe_every: int = 5, T: int = 5, M: int = 5,
                       optimizer: str = "adam", alpha: float = 1e-3, beta_u: float = 10.0, n_ilqr: int = 2,
                       kappa: float = 1.2, train_strategy: str = "tow", n_val: int = 50, rng: Any = 0,
                       progress: bool = False) -> WeightProbeStudy:
    """Appendix C of the TOW paper (Figure 4): the TOW weights of fixed probe windows as training progresses.

    Four probe windows of ``T`` mini-batches of ``M`` tasks are drawn once (from
    ``default_rng([seed, 999_999])``, ``seed`` the root seed from ``rng``): *same* (each mini-batch's ``M`` tasks from one
    alphabet; mini-batch ``t`` uses the split's alphabet ``t mod n``) and *different* (the
    ``M`` tasks of a mini-batch from ``M`` different alphabets, cycling through the split's
    alphabets when it has fewer than ``M``), each from the training and from the test
    alphabets. The learner is trained with ``train_strategy`` on :func:`run_experiment`'s
    task stream; at window 0 and every ``probe_every`` windows, Algorithm 1
    (:func:`~metalqr.tow.tow_weights`) weights each probe window at the current optimiser
    state (update count ``k T``) without updating the learner.

    Parameters
    ----------
    source : OmniglotTasks
        Or any source with ``alphabet_names()`` and ``split()`` whose tasks carry the
        alphabet index as ``group``.
    learner : MAML or ProtoNet
        Built for ``source``.
    n_iterations, probe_every : int, >= 1
        Training windows, and windows between probes.
    T, M : int, >= 1
        Window length and tasks per mini-batch (the paper: 5 and 5).
    optimizer : {"sgd", "adam"}
    alpha : float, > 0
        Outer (meta) step size of the optimiser.
    beta_u : float, > 0
        Weight of the control cost, Eq. (7) (the paper: 10).
    n_ilqr : int, >= 1
        Number of iLQR iterations per window (Algorithm 1).
    kappa : float, > 1
        For ``train_strategy`` exploration / exploitation.
    train_strategy : str
        Registered strategy that trains the learner (the paper: "tow").
    n_val : int, >= 1
        Validation tasks (test alphabets) scored at each probe point.
    rng : int seed >= 0, Generator or None
        Root seed (an int is used as it is; a Generator gives one draw, recorded in
        ``settings["seed"]``).
    progress : bool
        Log each probe point to stderr.

    Returns
    -------
    WeightProbeStudy
        The probes' weights at each probe point, with settings and units.

    Raises
    ------
    ValidationError
        Malformed arguments (named), or a source without alphabets.

    References
    ----------
    TOW paper [nguyen2023tow], Appendix C and Figure 4.
    """
    from .optimizers import make_optimizer
    from .weighting import tow_weights
    source = check_source(source)
    for attr in ("alphabet_names", "split"):
        if not callable(getattr(source, attr, None)):
            raise ValidationTypeError(f"source must have alphabets (alphabet_names() and split(), e.g. "
                                      f"metalqr.tow.OmniglotTasks); {type(source).__name__} lacks {attr}().")
    check_learner(learner)
    n_iterations = check_int(n_iterations, "n_iterations", minimum=1)
    probe_every = check_int(probe_every, "probe_every", minimum=1)
    T = check_int(T, "T", minimum=1)
    M = check_int(M, "M", minimum=1)
    opt = make_optimizer(optimizer, alpha)
    beta_u = check_real(beta_u, "beta_u", minimum=0.0, min_inclusive=False)
    n_ilqr = check_int(n_ilqr, "n_ilqr", minimum=1)
    kappa = check_real(kappa, "kappa", minimum=1.0, min_inclusive=False)
    from .weighting_strategies import get_strategy
    get_strategy(train_strategy, "train_strategy") if isinstance(train_strategy, str) else None
    if not isinstance(train_strategy, str):
        raise ValidationTypeError(f"train_strategy must be a strategy name (str); got {train_strategy!r}.")
    n_val = check_int(n_val, "n_val", minimum=1)
    seed = as_seed(rng, "rng")
    progress = check_bool(progress, "progress")
    probes, alphabets = _probe_windows(source, np.random.default_rng([seed, 999_999]), T, M)
    val_tasks = source.sample(np.random.default_rng([seed, 10**6 + 1]), n_val, train=False)
    options = dict(beta_u=beta_u, mu_u=1.0 / M, kappa=kappa, n_ilqr=n_ilqr, value_model="diagonal")
    z = opt.initial_state(learner.init(seed))
    D = learner.net.size
    points = sorted(set(range(0, n_iterations + 1, probe_every)) | {n_iterations})
    weights = {p: [] for p in probes}
    validation = []
    k, t0 = 0, time.perf_counter()
    for point in points:
        z = _train_windows(source, learner, train_strategy, opt, z, k, point, T, M, seed, options)
        k = point
        for p, batches in probes.items():
            weights[p].append(tow_weights(learner, z, batches, optimizer=opt, tau0=k * T, beta_u=beta_u,
                                          n_ilqr=n_ilqr).U)
        validation.append(float(learner.evaluate(z[:D], val_tasks).mean()))
        _log(progress, f"probes at window {k}/{n_iterations} ({time.perf_counter() - t0:.0f} s): "
                       + ", ".join(f"{p} {np.mean(weights[p][-1][:-1] if T > 1 else weights[p][-1]) * M:.3f}"
                                   for p in probes))
    settings = dict(source=repr(source), learner=repr(learner), n_iterations=n_iterations, probe_every=probe_every,
                    T=T, M=M, optimizer=optimizer, alpha=alpha, beta_u=beta_u, mu_u=1.0 / M, n_ilqr=n_ilqr,
                    kappa=kappa, train_strategy=train_strategy, n_val=n_val, seed=seed,
                    probe_rng="default_rng([seed, 999999])",
                    distinct_alphabets={p: [len(set(row)) for row in a] for p, a in alphabets.items()})
    units = {"weight": "TOW weight u (dimensionless; uniform = 1/M)", "weight_x_M": "M u (1 = uniform)",
             "window": "training windows done (T mini-batches each)",
             "validation": "validation metric (accuracy fraction or mse) over n_val test-alphabet tasks"}
    return WeightProbeStudy(np.array(points), {p: np.array(w) for p, w in weights.items()}, alphabets,
                            np.array(validation), settings, units)


# --------------------------------------------------------------------------------------------
# Appendix D (iLQR iterations) and Appendix B (value model): TOW variants on one stream
# --------------------------------------------------------------------------------------------

@dataclass
class CurveStudy:  # numpydoc ignore=PR01
    """Result of :func:`ilqr_iterations_study` and :func:`value_model_study`.

    TOW variants (and optional reference strategies) trained on the same task stream and seed.

    Attributes
    ----------
    results : dict
        ``{label: StrategyResult}`` (e.g. ``"tow n_ilqr=2"``, ``"uniform"``).
    settings, units : dict
    """

    results: dict
    settings: dict
    units: dict

    def __repr__(self) -> str:
        """Short summary: the variants and their test means."""
        return ("CurveStudy(" + ", ".join(f"{k!r}: mean {r.mean:.4g}" for k, r in self.results.items())
                + f"; title={self.settings.get('title', '')!r})")

    def rows(self) -> list[dict]:
        """Return one summary row per variant.

        Per variant: test mean, ci95, seconds, time relative to the first variant, paired
        gain over the first variant (positive = better) with its 95% CI, and the empirical
        delta of its weights (:func:`estimate_delta`, NaN for the baselines).

        Returns
        -------
        list of dict
            The rows, ready for :mod:`csv` or a table.
        """
        labels = list(self.results)
        first = self.results[labels[0]]
        sign = 1.0 if first.metric_name == "accuracy" else -1.0
        out = []
        for lab in labels:
            r = self.results[lab]
            d = sign * (r.metric - first.metric)
            delta = (estimate_delta(r.weights, exclude_last=r.weights.shape[1] > 1).delta
                     if lab.startswith("tow") and r.weights is not None and r.weights.size else float("nan"))
            out.append(dict(variant=lab, mean=r.mean, ci95=r.ci95, n_test=int(r.metric.size), seconds=r.seconds,
                            time_vs_first=r.seconds / first.seconds if first.seconds > 0 else float("nan"),
                            gain_vs_first=float(d.mean()), gain_ci95=_ci95(d), delta=delta,
                            final_validation=float(r.curve[-1][1]) if r.curve else float("nan")))
        return out

    def curves(self, smoothing: float = 0.1) -> list[dict]:
        """Return the validation curves in long form.

        One row per variant and window: validation ``mean``, its ``ci95`` and its EMA.

        Parameters
        ----------
        smoothing : float, in (0, 1]
            Factor of :func:`ema` (Figure 6 uses 0.1; 1: no smoothing).

        Returns
        -------
        list of dict
            The rows, ready for :mod:`csv` or a table.

        Raises
        ------
        ValidationError
            ``smoothing`` outside (0, 1].
        """
        out = []
        for lab, r in self.results.items():
            if not r.curve:
                continue
            c = np.array(r.curve, dtype=float)
            sm = ema(c[:, 1], smoothing)
            for row, s in zip(c, sm):
                out.append(dict(variant=lab, window=int(row[0]), mean=float(row[1]), ci95=float(row[2]),
                                ema=float(s)))
        return out

    def plot(self, smoothing: float = 0.1):
        """Plot the validation curves, EMA-smoothed, with the raw curves faint.

        Parameters
        ----------
        smoothing : float, in (0, 1]
            Factor of :func:`ema` (Figure 6 uses 0.1; 1: no smoothing).

        Returns
        -------
        matplotlib.figure.Figure
            A figure not attached to any pyplot backend.

        Raises
        ------
        ValidationError
            ``smoothing`` outside (0, 1].
        """
        fig = _figure((6, 4))
        ax = fig.subplots()
        for lab, r in self.results.items():
            if not r.curve:
                continue
            c = np.array(r.curve, dtype=float)
            line, = ax.plot(c[:, 0], ema(c[:, 1], smoothing), label=f"{lab} ({r.seconds:.0f} s)")
            ax.plot(c[:, 0], c[:, 1], color=line.get_color(), alpha=0.3, lw=0.8)
        ax.set_xlabel("training window")
        ax.set_ylabel(f"validation {next(iter(self.results.values())).metric_name} (EMA {smoothing:g})")
        ax.set_title(self.settings.get("title", ""))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def save(self, prefix: str) -> dict:
        """Write the table, curves, raw results and figure of the study.

        Write ``<prefix>_table.csv``, ``<prefix>_curves.csv``, ``<prefix>.json`` and
        ``<prefix>.png``.

        Parameters
        ----------
        prefix : str
            Path prefix of the files (its folder must exist; not a folder itself).

        Returns
        -------
        dict
            ``{name: path}`` of the files written.

        Raises
        ------
        ValidationError
            ``prefix`` empty, not a string or an existing folder.
        """
        prefix = _check_prefix(prefix)
        return _save_study(prefix, self.settings, self.units,
                           {"table": self.rows(), "curves": self.curves()}, figures={"png": self.plot})


_CURVE_UNITS = {"mean": UNITS["mean"], "ci95": UNITS["ci95"], "seconds": UNITS["seconds"],
                "time_vs_first": "seconds / the first variant's seconds (one interleaved run per variant)",
                "gain_vs_first": "paired mean difference to the first variant over the same test tasks "
                                 "(positive = better)", "delta": "estimate_delta of the variant's weights",
                "ema": "exponential moving average of the validation curve (smoothing 0.1, as Figure 6)"}


def _variants_study(source, learner, variants, reference, title, folder, progress, experiment):
    source = check_source(source)
    check_learner(learner)
    folder = _check_folder(folder)
    progress = check_bool(progress, "progress")
    if isinstance(reference, str):
        reference = (reference,)
    if not isinstance(reference, (list, tuple)) or not all(isinstance(r, str) for r in reference):
        raise ValidationTypeError(f"reference must be a list of strategy names (e.g. ('uniform',)); got "
                                  f"{reference!r}.")
    for bad in ("checkpoint", "progress", "strategies"):
        if bad in experiment:
            raise ValidationError(f"{bad} is set by the study; do not pass it.")
    results = {}
    for label, opts in variants:
        ckpt = None if folder is None else os.path.join(folder, label.replace(" ", "_").replace("=", "-"))
        _log(progress, f"{title}: {label}")
        results[label] = run_experiment(source, learner, ("tow",), checkpoint=ckpt, progress=progress,
                                        **dict(experiment, **opts))[0]
    if reference:
        ckpt = None if folder is None else os.path.join(folder, "reference")
        for r in run_experiment(source, learner, tuple(reference), checkpoint=ckpt, progress=progress,
                                **experiment):
            results[r.name] = r
    settings = dict(source=repr(source), learner=repr(learner), variants=[v[0] for v in variants],
                    reference=list(reference), experiment=dict(experiment), title=title)
    return CurveStudy(results, settings, dict(_CURVE_UNITS))


def ilqr_iterations_study(source, learner, n_ilqr: Sequence[int] = (2, 10), *, reference: Sequence[str] = (),
                          folder: str | None = None, progress: bool = False, **experiment) -> CurveStudy:
    """Compare numbers of iLQR iterations in TOW (Appendix D, Figure 6 of the TOW paper).

    Appendix D of the TOW paper (Figure 6): TOW with different numbers of iLQR iterations (the
    paper: 2 vs 10) on the same task stream, seed and test tasks.

    Parameters
    ----------
    source : task source
        Source of tasks (:class:`~metalqr.tow.OmniglotTasks` or another task source).
    learner : MAML or ProtoNet
        The learner to train (its network sets the value model's size).
    n_ilqr : sequence of int, >= 1
        The iteration counts compared (distinct); the first is the reference of
        ``time_vs_first`` and ``gain_vs_first``.
    reference : sequence of str
        Other strategies to train alongside (e.g. ``("uniform",)``).
    folder : str or None
        Checkpoint folder (resumable).
    progress : bool
        Print a line per variant as it starts.
    **experiment
        Arguments of :func:`run_experiment` (not ``n_ilqr``, ``checkpoint``, ``progress``).

    Returns
    -------
    CurveStudy
        The TOW variants (and references) with their settings and units.

    Raises
    ------
    ValidationError
        Malformed arguments (named).

    References
    ----------
    TOW paper [nguyen2023tow], Appendix D and Figure 6.
    """
    if isinstance(n_ilqr, (str, bytes)) or not isinstance(n_ilqr, (list, tuple)) or not n_ilqr:
        raise ValidationTypeError(f"n_ilqr must be a non-empty list of iteration counts (e.g. (2, 10)); got "
                                  f"{n_ilqr!r}.")
    counts = [check_int(n, f"n_ilqr[{i}]", minimum=1) for i, n in enumerate(n_ilqr)]
    if len(set(counts)) != len(counts):
        raise ValidationError(f"n_ilqr must not repeat a count; got {counts}.")
    if "n_ilqr" in experiment:
        raise ValidationError("n_ilqr is the compared setting; pass it as the n_ilqr list only.")
    return _variants_study(source, learner, [(f"tow n_ilqr={n}", dict(n_ilqr=n)) for n in counts], reference,
                           "Appendix D: iLQR iterations", folder, progress, experiment)


def value_model_study(source, learner, *, reference: Sequence[str] = (), folder: str | None = None,
                      progress: bool = False, **experiment) -> CurveStudy:
    """Compare TOW's diagonal and full value models (Appendix B of the TOW paper).

    Appendix B of the TOW paper: TOW with the diagonal value matrix ``V_t`` (the paper's choice)
    and with the exact (full) ``V_t`` of the cost-to-go, Eq. (61)/(68), on the same task stream,
    seed and test tasks. Uses :func:`~metalqr.tow.tow_weights`' ``value_model="full"``, whose
    dense ``S x S`` matrices (``S = 3 D`` with Adam) restrict it to small networks (it refuses
    sizes above metalqr's memory limit, naming the alternative).

    Parameters
    ----------
    source : task source
        Omniglot-like source of tasks (:class:`~metalqr.tow.OmniglotTasks` or another task source).
    learner : MAML or ProtoNet
        A small network (e.g. ``D`` of a few hundred parameters).
    reference : sequence of str
        Other strategies to train alongside (e.g. ``("uniform",)``).
    folder : str or None
        Checkpoint folder (resumable).
    progress : bool
        Print a line per variant as it starts.
    **experiment
        Arguments of :func:`run_experiment` (not ``value_model``, ``checkpoint``,
        ``progress``).

    Returns
    -------
    CurveStudy
        The TOW variants (and references) with their settings and units.
        Variants ``"tow diagonal"`` (first) and ``"tow full"``.

    Raises
    ------
    ValidationError
        Malformed arguments (named), or a network too large for the full model.

    References
    ----------
    TOW paper [nguyen2023tow], Appendix B, Eq. (61) and (68).
    """
    if "value_model" in experiment:
        raise ValidationError("value_model is the compared setting; do not pass it.")
    return _variants_study(source, learner, [("tow diagonal", dict(value_model="diagonal")),
                                             ("tow full", dict(value_model="full"))], reference,
                           "Appendix B: value model", folder, progress, experiment)
