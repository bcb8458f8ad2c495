"""Execute one TOW run of a study (``kind = "tow"``).

One weighting strategy of the TOW paper on one task source, through the public
:func:`metalqr.tow.run_experiment`.
"""

from __future__ import annotations

import inspect
import os
import socket
import time
import warnings
from typing import Any, Mapping

import numpy as np

from ..exceptions import MetalqrWarning, TrainingDivergedError, ValidationError
from ._config import tow_default_net

__all__ = ["execute_tow_run", "TOW_METRICS", "TOW_CURVE_COLUMNS"]

#: Final metrics of a TOW run (keys of its record's ``summary``): the mean metric of the final
#: meta-parameters over the ``n_test`` held-out test tasks and the half-width of its normal 95%
#: interval over those tasks; the validation metric (over ``n_val`` tasks) at the end, at
#: window 0 and its best (lowest MSE / highest accuracy) along the curve.
TOW_METRICS = ("final_test_metric", "final_test_ci95", "final_validation_metric",
               "initial_validation_metric", "best_validation_metric")
#: History columns of a TOW run (one row per evaluated window, window 0 included).
TOW_CURVE_COLUMNS = ("validation_metric", "validation_ci95")


def _seed_keyword(fn) -> str:
    """Return the name under which ``fn`` takes its seed.

    ``"rng"`` (metalqr's name for a seed or Generator argument) or, in older versions of
    :mod:`metalqr.tow`, ``"seed"``: the name under which ``fn`` takes its integer seed.
    """
    params = inspect.signature(fn).parameters
    return "rng" if "rng" in params else "seed"


def _source(config: Mapping[str, Any]):
    """Return the task source of a normalised TOW run, built as ``metalqr tow`` builds it."""
    from .. import tow
    options = {k: config[k] for k in ("k_shot", "k_query", "n_way") if config.get(k) is not None}
    source = config["source"]
    if source == "sinusoid":
        return tow.SinusoidTasks(**options)
    if source in ("classification", "anyshot"):
        cls = tow.HierarchicalClassificationTasks if source == "classification" else tow.AnyShotTasks
        extra = {"max_shot": config["max_shot"]} if source == "anyshot" else {}
        return cls(**options, **extra, **{_seed_keyword(cls): config["seed"]})
    if source == "digits":
        return tow.DigitsTasks(**options)
    if source == "images":
        return tow.ImageFolderTasks(config["data"], **options)
    return tow.OmniglotTasks(config["data"], **options)


def _learner(config: Mapping[str, Any], source):
    """Return the learner of a normalised TOW run (:func:`metalqr.tow.make_learner`)."""
    from .. import tow
    options = {k: config[k] for k in ("hidden", "channels", "inner_steps")
               if config.get(k) is not None}
    return tow.make_learner(config["learner"], source, net=config.get("net", "mlp"),
                            gamma=config["gamma"], **options)


def execute_tow_run(config: Mapping[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """Fill ``record`` with the TOW run of the normalised ``config``.

    Fill ``record`` (from :func:`metalqr.experiments.execute_run`) with the TOW run of the
    normalised ``config``: :func:`metalqr.tow.run_experiment` with the single strategy
    ``config["strategy"]`` (TOW paper, Section 5; Algorithm 1 for ``"tow"``).

    Every random draw of the run (the source's world, the initial parameters, the
    mini-batches, the test and validation tasks, the strategy's own draws) is seeded by
    ``config["seed"]``, so the run gives the same numbers on any worker; a strategy's run
    here equals its column of a ``metalqr tow`` run with the same settings and seed (the
    strategies of one ``run_experiment`` call share mini-batches, not state).

    Parameters
    ----------
    config : mapping
        A normalised TOW run configuration (``kind = "tow"``).
    record : dict
        The record begun by :func:`metalqr.experiments.execute_run` (filled in place).

    Returns
    -------
    dict
        ``record`` with ``status`` (``"finished"``, ``"diverged"`` or ``"failed"``),
        ``history`` (rows ``window``, ``validation_metric``, ``validation_ci95``),
        ``initial``, ``summary`` (``metric``: ``"mse"`` or ``"accuracy"``, ``units``,
        :data:`TOW_METRICS`, ``n_test``, ``windows``), ``test_metric`` (per test task),
        ``tow_settings`` (``run_experiment``'s settings, with ``preset`` and
        ``preset_overrides``, and, as ``metalqr tow`` records them, ``source_name``,
        ``learner_kind``, ``net``, ``hidden``, ``channels``; a preset's network overridden by
        ``net`` is listed in ``preset_overrides``), ``train_seconds`` and
        ``window_seconds`` (s; timings are not part of :func:`comparable`).

    References
    ----------
    TOW paper [nguyen2023tow], Section 5 and Algorithm 1.
    """
    from .. import tow
    t0 = time.perf_counter()
    if config["data"] is not None and not os.path.exists(config["data"]):
        # not a property of the configuration but of this machine: raised (the run is
        # reported as not finished and retried by a rerun), never recorded as failed
        raise FileNotFoundError(f"data {config['data']!r} (the {config['source']} data of this run) does "
                                f"not exist on host {socket.gethostname()}; give a path that "
                                f"every worker can read (docs/experiments.md).")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MetalqrWarning)
            source = _source(config)
            learner = _learner(config, source)
            options = dict(n_iterations=config["n_iterations"], T=config["T"], M=config["M"],
                           optimizer=config["optimizer"], alpha=config["alpha"],
                           beta_u=config["beta_u"], kappa=config["kappa"],
                           n_ilqr=config["n_ilqr"], n_test=config["n_test"],
                           n_val=config["n_val"], eval_every=config["eval_every"],
                           progress=False, value_model=config["value_model"],
                           line_search=config["line_search"],
                           terminal_cost=config["terminal_cost"],
                           curve_smoothing=config["curve_smoothing"], preset=config["preset"])
            options[_seed_keyword(tow.run_experiment)] = config["seed"]
            if config["strategy"] != "tow":     # a study's shared TOW settings: run_experiment
                for k in ("beta_u", "n_ilqr", "value_model", "line_search", "terminal_cost"):
                    options.pop(k, None)         # refuses them for the others (TOW_ONLY_SETTINGS)
            try:
                result, = tow.run_experiment(source, learner, [config["strategy"]], **options)
                status, error = "finished", None
            except TrainingDivergedError as err:
                result, status, error = None, "diverged", f"{type(err).__name__}: {err}"
    except ValidationError as err:
        text = str(err)
        if config["source"] == "omniglot" and text.startswith("path: "):
            text = "data" + text[len("path"):]  # OmniglotTasks' path is the study key data
        record.update(status="failed", error=f"{type(err).__name__}: {text}", initial=None,
                      history=[], summary=None, warnings=[], wall_seconds=time.perf_counter() - t0)
        return record
    for w in caught:   # metalqr's warnings go into the record, others on as usual
        if not issubclass(w.category, MetalqrWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    kept = [f"{w.category.__name__}: {w.message}" for w in caught
            if issubclass(w.category, MetalqrWarning)]
    if result is None:
        record.update(status=status, error=error, initial=None, history=[], summary=None,
                      warnings=kept, wall_seconds=time.perf_counter() - t0)
        return record
    history = [{"window": int(w), "validation_metric": float(m), "validation_ci95": float(c)}
               for w, m, c in result.curve]
    vals = [h["validation_metric"] for h in history]
    best = max if result.metric_name == "accuracy" else min
    summary = {"metric": result.metric_name, "units": tow.experiment.UNITS[result.metric_name],
               "final_test_metric": result.mean, "final_test_ci95": result.ci95,
               "n_test": int(result.metric.size), "windows": config["n_iterations"],
               "final_validation_metric": vals[-1], "initial_validation_metric": vals[0],
               "best_validation_metric": best(vals),
               "mean_weight": float(np.mean(result.weights)) if result.weights is not None else None}
    settings = {k: v for k, v in result.settings.items() if k != "metalqr_version"}
    # as metalqr tow: the network, and the preset's network when the run overrides it
    settings.update(source_name=config["source"], learner_kind=config["learner"],
                    net=config["net"], hidden=config["hidden"], channels=config["channels"])
    preset_net = tow_default_net(config["preset"], config["source"])
    if config["preset"] is not None and config["net"] != preset_net:
        settings["preset_overrides"] = dict(settings["preset_overrides"],
                                            net=[preset_net, config["net"]])
    record.update(status=status, error=error, initial={"validation_metric": vals[0]},
                  history=history, summary=summary,
                  test_metric=[float(v) for v in result.metric], tow_settings=settings,
                  warnings=kept, train_seconds=float(result.seconds),
                  window_seconds=[float(s) for s in np.asarray(result.window_seconds)],
                  wall_seconds=time.perf_counter() - t0)
    return record
