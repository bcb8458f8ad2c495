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
from ._config import RUN_DEFAULTS, TOW_RUN_DEFAULTS, Study, setting_key
from ._runner import curve
from ._store import ResultStore
from ._tow import TOW_CURVE_COLUMNS, TOW_METRICS

__all__ = ["mean_ci", "summary_table", "curves", "write_report", "METRICS", "CURVE_COLUMNS",
           "TOW_METRICS", "TOW_CURVE_COLUMNS"]

#: Final metrics of a zo_maml run (keys of a record's ``summary``) aggregated by
#: :func:`summary_table` (TOW runs: :data:`TOW_METRICS`).
METRICS = ("final_cost_gap_ratio", "min_cost_gap_ratio", "final_meta_objective",
           "best_meta_objective", "initial_cost_gap_ratio", "n_iterations", "rejected")
#: History columns of zo_maml runs that :func:`curves` can aggregate (iteration 0 is the
#: initial gain; TOW runs: :data:`TOW_CURVE_COLUMNS`, by window).
CURVE_COLUMNS = ("cost_gap_ratio", "meta_objective")
_ALL_KEYS = ["kind"] + list(RUN_DEFAULTS) + [k for k in TOW_RUN_DEFAULTS
                                             if k not in RUN_DEFAULTS and k != "kind"]


def _kind(config: Mapping[str, Any]) -> str:
    return config.get("kind", "zo_maml")


def _default_metrics(kind: str) -> tuple[str, ...]:
    return TOW_METRICS if kind == "tow" else METRICS


def _default_column(kind: str) -> str:
    return "validation_metric" if kind == "tow" else "cost_gap_ratio"


def _series(record: Mapping[str, Any], column: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, values)`` of a history column.

    ``(x, values)`` of a history column: iterations from 0 (zo_maml) or the evaluated windows,
    window 0 included (TOW).
    """
    if _kind(record["config"]) == "tow":
        h = record["history"]
        return (np.array([r["window"] for r in h], dtype=int),
                np.array([r[column] for r in h], dtype=float))
    y = np.array(curve(record["initial"], record["history"], column), dtype=float)
    return np.arange(y.size), y


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
    varying = [k for k in _ALL_KEYS if k != "seed" and configs
               and len({json.dumps(c.get(k, "zo_maml" if k == "kind" else None))
                        for c in configs}) > 1]
    for g in groups.values():
        g.sort(key=lambda r: r["config"]["seed"])
    return list(groups.items()), varying


_SHORT = {"n_perturbations": "M", "inner_perturbations": "M'", "radius": "r",
          "rollout_length": "l"}


def _label(config: Mapping[str, Any], varying: list[str], default: str) -> str:
    """``d=1, k=1, alpha=0.001, M=100`` (the keys that vary, paper symbols where short)."""
    short = {} if _kind(config) == "tow" else _SHORT
    return ", ".join(f"{short.get(k, k)}={config.get(k, _kind(config) if k == 'kind' else None)}"
                     for k in varying) or default


def summary_table(store: ResultStore | str | os.PathLike, study: Study | None = None, *,
                  metrics: Iterable[str] | None = None, confidence: float = 0.95) -> list[dict]:
    """Return one summary row per setting.

    One row per setting: the setting's varying keys, ``kind``, ``n_seeds``, ``n_stalled``,
    ``n_diverged``, ``n_failed`` and for each metric ``<metric>_mean``, ``_ci_low``,
    ``_ci_high`` (mean over seeds and its Student-t interval, :func:`mean_ci`). Rows of TOW runs
    also give ``metric`` (``"mse"`` or ``"accuracy"``) and ``metric_units``.

    Parameters
    ----------
    store : ResultStore or path
        The result store.
    study : Study, optional
        Only this study's runs (default every run in the store).
    metrics : iterable of str, optional
        Keys of :data:`METRICS` (zo_maml runs) or :data:`TOW_METRICS` (TOW runs); default
        all of a setting's kind. A metric of the other kind is left empty (``None``).
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
    if metrics is not None:
        if isinstance(metrics, str):
            raise ValidationTypeError(f"metrics must be a list of names; got the string "
                                      f"{metrics!r}.")
        metrics = [check_choice(m, "metrics", METRICS + TOW_METRICS) for m in metrics]
    confidence = check_probability(confidence, "confidence")
    groups, varying = _groups(_records(store, study))
    rows = []
    for _, recs in groups:
        cfg = recs[0]["config"]
        ok = [r for r in recs if r.get("summary") is not None]
        row: dict[str, Any] = {"setting": _label(cfg, varying, study.name if study else "all")}
        row.update({k: cfg.get(k) for k in varying})
        row.update(kind=_kind(cfg), n_seeds=len(recs), n_stalled=sum(r["status"] == "stalled" for r in recs),
                   n_diverged=sum(r["status"] == "diverged" for r in recs),
                   n_failed=sum(r["status"] == "failed" for r in recs))
        if _kind(cfg) == "tow" and ok:
            row.update(metric=ok[0]["summary"]["metric"], metric_units=ok[0]["summary"]["units"])
        for m in (_default_metrics(_kind(cfg)) if metrics is None else metrics):
            if ok and m in ok[0]["summary"]:
                mean, lo, hi = mean_ci([r["summary"][m] for r in ok], confidence)
            else:
                mean = lo = hi = None
            row.update({f"{m}_mean": mean, f"{m}_ci_low": lo, f"{m}_ci_high": hi})
        rows.append(row)
    return rows


def curves(store: ResultStore | str | os.PathLike, study: Study | None = None, *,
           column: str | None = None, confidence: float = 0.95) -> list[dict]:
    """Return, per setting, the mean curve of ``column`` over seeds with its confidence band.

    Parameters
    ----------
    store : ResultStore or path
        The result store.
    study : Study, optional
        Only this study's runs (default every run in the store).
    column : str, optional
        A column of :data:`CURVE_COLUMNS` (zo_maml runs, by iteration) or
        :data:`TOW_CURVE_COLUMNS` (TOW runs, by window); default ``"cost_gap_ratio"`` for
        zo_maml settings and ``"validation_metric"`` for TOW settings. Settings of the other
        kind than an explicit ``column`` are left out.
    confidence : float in (0, 1)
        Confidence level of the bands.

    Returns
    -------
    list of dict
        ``label``, ``config`` (of the first seed), ``column``, ``x_name`` (``"iteration"``
        or ``"window"``), ``iteration`` (the x values: iterations, or evaluated windows),
        ``mean``, ``ci_low``, ``ci_high`` (arrays; the band is NaN-free: where fewer than two
        seeds reached a point, ``ci_low = ci_high = mean``), ``n`` (seeds at each point;
        runs that stopped early contribute up to their last point) and ``metric`` (TOW:
        ``"mse"`` or ``"accuracy"``; zo_maml: the column).

    Raises
    ------
    ValidationError, ValidationTypeError
        An unknown ``column`` or a ``confidence`` outside (0, 1).
    """
    if column is not None:
        column = check_choice(column, "column", CURVE_COLUMNS + TOW_CURVE_COLUMNS)
    confidence = check_probability(confidence, "confidence")
    groups, varying = _groups(_records(store, study))
    out = []
    for _, recs in groups:
        kind = _kind(recs[0]["config"])
        col = _default_column(kind) if column is None else column
        if col not in (TOW_CURVE_COLUMNS if kind == "tow" else CURVE_COLUMNS):
            continue
        ok = [r for r in recs if r.get("summary") is not None]
        series = [_series(r, col) for r in ok]
        if not series:
            continue
        x = max((s[0] for s in series), key=len)
        length = x.size
        mean, lo, hi, n = (np.empty(length) for _ in range(4))
        for i in range(length):
            vals = [s[1][i] for s in series if len(s[1]) > i]
            m, a, b = mean_ci(vals, confidence)
            mean[i], lo[i], hi[i], n[i] = m, m if a is None else a, m if b is None else b, len(vals)
        out.append({"label": _label(recs[0]["config"], varying, study.name if study else col),
                    "config": recs[0]["config"], "column": col,
                    "x_name": "window" if kind == "tow" else "iteration", "iteration": x,
                    "mean": mean, "ci_low": lo, "ci_high": hi, "n": n.astype(int),
                    "metric": ok[0]["summary"]["metric"] if kind == "tow" else col})
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


def plot_curves(path: str, data: list[dict], *, column: str | None = None,
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
    x_names = sorted({c.get("x_name", "iteration") for c in data}) or ["iteration"]
    ax.set_xlabel(" / ".join(x_names))
    if column is None:
        columns = sorted({c.get("column", "cost_gap_ratio") for c in data}) or ["cost_gap_ratio"]
        metrics = sorted({c["metric"] for c in data if c.get("x_name") == "window"})
        column = " / ".join(columns) + (f" ({', '.join(metrics)})" if metrics else "")
    ax.set_ylabel(column.replace("_", " ") + " (mean, 95% CI band)")
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if data:   # below the axes: labels of many varying keys are long
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.15),
                  ncol=1 if len(data) < 6 else 2, frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")     # the legend below the axes included


def write_report(store: ResultStore | str | os.PathLike, study: Study | None = None,
                 output_dir: str | os.PathLike | None = None, *, column: str | None = None,
                 confidence: float = 0.95, logy: bool = False) -> dict[str, str]:
    """Write the summary table, the curves CSV and the curves figure of a study.

    Write ``summary.csv`` (:func:`summary_table`), ``curves.csv`` (long format: label, column,
    iteration or window, mean, ci_low, ci_high, n) and ``curves.png`` (:func:`curves`;
    ``column`` as there) to ``output_dir`` (default ``<store>/report/<study name>``). Returns
    the paths.

    Parameters
    ----------
    store : ResultStore or path
        The result store.
    study : Study, optional
        Only this study's runs (default every run in the store).
    output_dir : path, optional
        The report folder.
    column : str, optional
        The history column of the curves (as in :func:`curves`).
    confidence : float in (0, 1)
        Confidence level.
    logy : bool
        Logarithmic y axis in the figure.

    Returns
    -------
    dict of str to str
        The paths written, by kind.

    Raises
    ------
    ValidationError, ValidationTypeError
        An unknown ``column``, a ``confidence`` outside (0, 1), or a store without runs.
    """
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    if column is not None:
        column = check_choice(column, "column", CURVE_COLUMNS + TOW_CURVE_COLUMNS)
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
    long = [{"label": c["label"], "column": c["column"], c["x_name"]: int(i), "mean": float(m),
             "ci_low": float(a), "ci_high": float(b), "n": int(n)}
            for c in data for i, m, a, b, n in zip(c["iteration"], c["mean"], c["ci_low"],
                                                   c["ci_high"], c["n"])]
    if long:
        _write_csv(paths["curves_csv"], long)
    plot_curves(paths["curves_png"], data, column=column,
                title=f"{study.name if study else 'study'}: mean over seeds, {confidence:.0%} CI",
                logy=logy)
    return paths
