"""Aggregation across seeds: final metrics and curves with confidence intervals.

Aggregation across seeds: final metrics per setting with mean and 95% confidence interval (Student
t), curves with bands (CSV and PNG).
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Iterable, Mapping

import numpy as np

from .._validation import check_choice, check_probability
from ..exceptions import ValidationError, ValidationTypeError
from ._config import RUN_DEFAULTS, Study, setting_key
from ._runner import curve
from ._store import ResultStore

__all__ = ["mean_ci", "summary_table", "curves", "write_report", "METRICS", "CURVE_COLUMNS"]

#: Final metrics of a run (keys of a record's ``summary``) aggregated by :func:`summary_table`.
METRICS = ("final_cost_gap_ratio", "min_cost_gap_ratio", "final_meta_objective",
           "best_meta_objective", "initial_cost_gap_ratio", "iterations", "rejected")
#: History columns that :func:`curves` can aggregate (iteration 0 is the initial gain).
CURVE_COLUMNS = ("cost_gap_ratio", "meta_objective")


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float | None, float | None]:
    """Return the mean and the two-sided confidence interval of the mean.

    Mean and two-sided ``confidence`` interval of the mean, ``mean -+ t_{n-1} s / sqrt(n)``
    (Student t, :func:`scipy.stats.t.ppf`). With one value the interval is ``(None, None)``
    (undefined), never NaN.

    Parameters
    ----------
    values : iterable of float
        The sample (at least one finite value).
    confidence : float in (0, 1)
        Confidence level.

    Returns
    -------
    mean : float
        The sample mean.
    low, high : float or None
        The interval's ends (None with one value).

    Raises
    ------
    ValidationError
        No value, a non-finite value, or ``confidence`` outside (0, 1).
    """
    from scipy import stats
    confidence = check_probability(confidence, "confidence")
    from .._validation import as_float_array
    x = as_float_array(list(values), "values", ndim=1)
    if x.size == 0:
        from ..exceptions import ValidationError
        raise ValidationError("values is empty; mean_ci needs at least one value.")
    m = float(x.mean())
    if x.size < 2:
        return m, None, None
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return m, m - half, m + half


def _records(store: ResultStore | str | os.PathLike, study: Study | None) -> list[dict]:
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    if not os.path.isdir(store.root):
        raise ValidationError(f"store {store.root!r} does not exist; pass the folder a study "
                              f"was run with (run_study(..., store=...) or --store).")
    if study is not None and not isinstance(study, Study):
        raise ValidationTypeError(f"study must be a Study or None; got {type(study).__name__}.")
    return list(store.records(None if study is None else study.ids))


def _groups(records: list[dict]) -> tuple[list[tuple[str, list[dict]]], list[str]]:
    """Group records by setting.

    Records grouped by setting (configuration without seed), in first-seen order, and the keys
    whose value differs between settings (used for labels).
    """
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(setting_key(r["config"]), []).append(r)
    configs = [g[0]["config"] for g in groups.values()]
    varying = [k for k in RUN_DEFAULTS if k != "seed" and configs
               and len({json.dumps(c[k]) for c in configs}) > 1]
    for g in groups.values():
        g.sort(key=lambda r: r["config"]["seed"])
    return list(groups.items()), varying


_SHORT = {"n_perturbations": "M", "inner_perturbations": "M'", "radius": "r",
          "rollout_length": "l", "n_iterations": "iterations"}


def _label(config: Mapping[str, Any], varying: list[str], default: str) -> str:
    """``d=1, k=1, alpha=0.001, M=100`` (the keys that vary, paper symbols where short)."""
    return ", ".join(f"{_SHORT.get(k, k)}={config[k]}" for k in varying) or default


def summary_table(store: ResultStore | str | os.PathLike, study: Study | None = None, *,
                  metrics: Iterable[str] = METRICS, confidence: float = 0.95) -> list[dict]:
    """Return one summary row per setting.

    One row per setting: the setting's varying keys, ``n_seeds``, ``n_stalled``, ``n_failed``
    and for each metric ``<metric>_mean``, ``_ci_low``, ``_ci_high``.

    Parameters
    ----------
    store : ResultStore or path
        The result store.
    study : Study, optional
        Only this study's runs (default every run in the store).
    metrics : iterable of str
        Keys of :data:`METRICS`.
    confidence : float in (0, 1)
        Confidence level of the intervals.

    Returns
    -------
    list of dict
        One row per setting.

    Raises
    ------
    ValidationError
        An unknown metric or a bad ``confidence``.
    """
    metrics = [check_choice(m, "metrics", METRICS) for m in metrics]
    confidence = check_probability(confidence, "confidence")
    groups, varying = _groups(_records(store, study))
    rows = []
    for _, recs in groups:
        cfg = recs[0]["config"]
        ok = [r for r in recs if r["status"] != "failed"]
        row: dict[str, Any] = {"setting": _label(cfg, varying, study.name if study else "all")}
        row.update({k: cfg[k] for k in varying})
        row.update(n_seeds=len(recs), n_stalled=sum(r["status"] == "stalled" for r in recs),
                   n_diverged=sum(r["status"] == "diverged" for r in recs),
                   n_failed=len(recs) - len(ok))
        for m in metrics:
            if ok:
                mean, lo, hi = mean_ci([r["summary"][m] for r in ok], confidence)
            else:
                mean = lo = hi = None
            row.update({f"{m}_mean": mean, f"{m}_ci_low": lo, f"{m}_ci_high": hi})
        rows.append(row)
    return rows


def curves(store: ResultStore | str | os.PathLike, study: Study | None = None, *,
           column: str = "cost_gap_ratio", confidence: float = 0.95) -> list[dict]:
    """Return, per setting, the mean curve of ``column`` over seeds with its confidence band.

    Parameters
    ----------
    store : ResultStore or path
        The result store.
    study : Study, optional
        Only this study's runs (default every run in the store).
    column : str
        A history column (e.g. ``"cost_gap_ratio"``).
    confidence : float in (0, 1)
        Confidence level of the bands.

    Returns
    -------
    list of dict
        ``label``, ``config`` (of the first seed), ``iteration``, ``mean``, ``ci_low``,
        ``ci_high`` (arrays; the band is NaN-free: where fewer than two seeds reached an
        iteration, ``ci_low = ci_high = mean``) and ``n`` (seeds at each iteration; runs
        that stopped early contribute up to their last iteration).

    Raises
    ------
    ValidationError, ValidationTypeError
        An unknown ``column`` or a ``confidence`` outside (0, 1).
    """
    column = check_choice(column, "column", CURVE_COLUMNS)
    confidence = check_probability(confidence, "confidence")
    groups, varying = _groups(_records(store, study))
    out = []
    for _, recs in groups:
        series = [np.array(curve(r["initial"], r["history"], column), dtype=float)
                  for r in recs if r["status"] != "failed"]
        if not series:
            continue
        length = max(len(s) for s in series)
        mean, lo, hi, n = (np.empty(length) for _ in range(4))
        for i in range(length):
            vals = [s[i] for s in series if len(s) > i]
            m, a, b = mean_ci(vals, confidence)
            mean[i], lo[i], hi[i], n[i] = m, m if a is None else a, m if b is None else b, len(vals)
        out.append({"label": _label(recs[0]["config"], varying, study.name if study else column),
                    "config": recs[0]["config"], "iteration": np.arange(length), "mean": mean,
                    "ci_low": lo, "ci_high": hi, "n": n.astype(int)})
    return out


def _write_csv(path: str, rows: list[dict]) -> None:
    from .._checkpoint import atomic_write_text
    import io
    buf = io.StringIO()
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    atomic_write_text(path, buf.getvalue())


def plot_curves(path: str, data: list[dict], *, column: str = "cost_gap_ratio",
                title: str = "", logy: bool = False) -> None:
    """Plot mean curves with confidence bands to a PNG file.

    Mean curves with confidence bands to a PNG (matplotlib's object API with the Agg canvas; the
    global backend is left alone).

    Parameters
    ----------
    path : str
        The image file.
    data : list of dict
        Curves of :func:`curves`.
    column : str
        The plotted column (axis label).
    title : str
        Figure title.
    logy : bool
        Logarithmic y axis.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for c in data:
        line, = ax.plot(c["iteration"], c["mean"], label=f"{c['label']} (n={int(c['n'][0])})")
        ax.fill_between(c["iteration"], c["ci_low"], c["ci_high"], color=line.get_color(), alpha=0.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel(column.replace("_", " ") + " (mean, 95% CI band)")
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if data:   # below the axes: labels of many varying keys are long
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.15),
                  ncol=1 if len(data) < 6 else 2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_report(store: ResultStore | str | os.PathLike, study: Study | None = None,
                 output_dir: str | os.PathLike | None = None, *, column: str = "cost_gap_ratio",
                 confidence: float = 0.95, logy: bool = False) -> dict[str, str]:
    """Write the summary table, the curves CSV and the curves figure of a study.

    Write ``summary.csv`` (:func:`summary_table`), ``curves.csv`` (long format: label,
    iteration, mean, ci_low, ci_high, n) and ``curves.png`` (:func:`curves`) to ``output_dir``
    (default ``<store>/report/<study name>``).

    Parameters
    ----------
    store : ResultStore or path
        The result store.
    study : Study, optional
        Only this study's runs (default every run in the store).
    output_dir : path, optional
        The report folder.
    column : str
        The history column of the curves.
    confidence : float in (0, 1)
        Confidence level.
    logy : bool
        Logarithmic y axis in the figure.

    Returns
    -------
    dict of str to str
        The paths written, by kind (``summary``, ``curves_csv``, ``curves_png``).

    Raises
    ------
    ValidationError, ValidationTypeError
        An unknown ``column``, a ``confidence`` outside (0, 1), or a store without runs.
    """
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    column = check_choice(column, "column", CURVE_COLUMNS)
    confidence = check_probability(confidence, "confidence")
    if output_dir is None:
        output_dir = os.path.join(store.root, "report", study.name if study else "all")
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    rows = summary_table(store, study, confidence=confidence)
    if not rows:
        from ..exceptions import ValidationError
        raise ValidationError(f"store {store.root!r} holds no finished run"
                              f"{' of study ' + repr(study.name) if study else ''}; run the study "
                              f"first (run_study / metalqr sweep).")
    data = curves(store, study, column=column, confidence=confidence)
    paths = {"summary": os.path.join(output_dir, "summary.csv"),
             "curves_csv": os.path.join(output_dir, "curves.csv"),
             "curves_png": os.path.join(output_dir, "curves.png")}
    _write_csv(paths["summary"], rows)
    long = [{"label": c["label"], "iteration": int(i), "mean": float(m), "ci_low": float(a),
             "ci_high": float(b), "n": int(n)}
            for c in data for i, m, a, b, n in zip(c["iteration"], c["mean"], c["ci_low"],
                                                   c["ci_high"], c["n"])]
    if long:
        _write_csv(paths["curves_csv"], long)
    plot_curves(paths["curves_png"], data, column=column,
                title=f"{study.name if study else 'study'}: mean over seeds, {confidence:.0%} CI",
                logy=logy)
    return paths
