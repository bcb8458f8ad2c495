"""Execute one run of a study.

Build its tasks and initial gain from its configuration, run Algorithm 3, and return a JSON-able
record (config, version, history, summary).
"""

from __future__ import annotations

import os
import socket
import time
import warnings
import zlib
from typing import Any, Mapping

import numpy as np

from ..exceptions import (MetalqrWarning, NotMAMLStabilizingError, NotMetaLearnableError,
                          TrainingDivergedError, TrainingStalledError, ValidationError)
from ._config import normalize_run, run_id

__all__ = ["execute_run", "RECORD_FORMAT", "RECORD_VERSION", "run_rng", "build_tasks"]

RECORD_FORMAT = "metalqr-run"
#: Version of the record layout. 2: a zo_maml summary counts its updates as ``n_iterations``
#: (was ``iterations``; the project's result vocabulary), TOW configurations hold ``preset``,
#: ``net``, ``channels``, ``inner_steps``, ``curve_smoothing`` and ``max_shot``.
RECORD_VERSION = 2
_HETEROGENEITY = {"random": 0.25}
_PERTURB_HETEROGENEITY = 1e-3
#: Errors that are a deterministic outcome of the configuration: recorded as a "failed"
#: run (not retried). Anything else (a dead worker, a missing GPU) is retried / reported.
_DETERMINISTIC = (ValidationError, NotMAMLStabilizingError, NotMetaLearnableError)


def run_rng(config: Mapping[str, Any]) -> np.random.Generator:
    """Return the run's only source of randomness, seeded from its configuration.

    Return the (zo_maml) run's only source of randomness, seeded from its configuration:
    ``[seed, d, k]`` for the random family (as ``metalqr reproduce fig1``), ``[seed,
    crc32(family)]`` else. It draws the tasks first, then the perturbations of training.

    Parameters
    ----------
    config : mapping
        A full run configuration (:func:`normalize_run`).

    Returns
    -------
    numpy.random.Generator
        A new generator.
    """
    if config["family"] == "random":
        return np.random.default_rng([config["seed"], config["d"], config["k"]])
    return np.random.default_rng([config["seed"], zlib.crc32(config["family"].encode())])


def build_tasks(config: Mapping[str, Any], rng: np.random.Generator):
    """Return the run's task family.

    Parameters
    ----------
    config : mapping
        A full run configuration (:func:`normalize_run`).
    rng : numpy.random.Generator
        The run's generator (:func:`run_rng`); random families draw from it.

    Returns
    -------
    metalqr.TaskSet
        The ``n_tasks`` tasks.
    """
    from ..lqr import standard_systems
    from ..meta import perturb_tasks, sample_tasks
    if config["family"] == "random":
        h = _HETEROGENEITY["random"] if config["heterogeneity"] is None else config["heterogeneity"]
        return sample_tasks(config["n_tasks"], config["d"], config["k"], heterogeneity=h, rng=rng)
    h = _PERTURB_HETEROGENEITY if config["heterogeneity"] is None else config["heterogeneity"]
    return perturb_tasks(standard_systems()[config["family"]], config["n_tasks"],
                         heterogeneity=h, rng=rng)


def _device(config: Mapping[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(),
                            "backend": config.get("backend")}
    if config.get("backend") == "cupy":
        try:
            import cupy
            dev = cupy.cuda.runtime.getDevice()
            info["gpu"] = dev
            info["gpu_name"] = cupy.cuda.runtime.getDeviceProperties(dev)["name"].decode()
        except Exception as exc:  # recorded, the run itself reports a missing backend
            info["gpu_error"] = f"{type(exc).__name__}: {exc}"
    return info


def execute_run(config: Mapping[str, Any]) -> dict[str, Any]:
    """Run one configuration (normalised by :func:`normalize_run`) and return its record.

    A ``kind = "tow"`` configuration runs one TOW weighting strategy instead (see
    :func:`metalqr.experiments.execute_tow_run` for its record).

    The run seeds its own generator from its configuration (:func:`run_rng`), so the same
    configuration gives the same numbers in any process, on any worker.

    Parameters
    ----------
    config : mapping
        A full run configuration (:func:`normalize_run`).

    Returns
    -------
    dict
        ``run_id``, ``config``, ``metalqr_version``, ``status`` (``"finished"``,
        ``"stalled"``, ``"diverged"`` or ``"failed"``), ``error``, ``initial``, ``history``
        (the per-iteration records of :class:`metalqr.History`), ``K``, ``K_best``,
        ``summary``, ``warnings`` (metalqr warnings issued by the run), ``device``,
        ``wall_seconds``.

    Raises
    ------
    MetalqrError
        Errors that do not follow from the configuration (e.g. BackendUnavailableError).
    """
    from .._version import __version__
    from ..meta import common_stabilizing_gain, meta_policy_optimization

    config = normalize_run(config)
    t0 = time.perf_counter()
    record: dict[str, Any] = {"format": RECORD_FORMAT, "format_version": RECORD_VERSION,
                              "run_id": run_id(config), "config": dict(config),
                              "metalqr_version": __version__, "device": _device(config)}
    if config.get("kind") == "tow":
        from ._tow import execute_tow_run
        return execute_tow_run(config, record)
    rng = run_rng(config)
    est = config["estimator"]
    options: dict[str, Any] = {}
    if est in ("one_point", "two_point"):
        length = config["rollout_length"]
        options = {"n_perturbations": config["n_perturbations"],
                   "inner_perturbations": config["inner_perturbations"],
                   "radius": config["radius"], "rollout_length": None if length == "auto" else length,
                   "two_point": est == "two_point"}
    try:
        tasks = build_tasks(config, rng)
        K0 = (np.zeros((tasks.k, tasks.d)) if config["K0"] == "zero"
              else common_stabilizing_gain(tasks))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MetalqrWarning)
            try:
                res = meta_policy_optimization(
                    tasks, K0, alpha=config["alpha"], eta=config["eta"],
                    n_iterations=config["n_iterations"],
                    gradient="zo" if est in ("one_point", "two_point") else est, rng=rng,
                    backend=config["backend"], progress=False, tol=config["tol"],
                    max_backtracks=config["max_backtracks"],
                    max_consecutive_rejections=config["max_consecutive_rejections"],
                    guard=config["guard"], outer_update=config["outer_update"], **options)
                status = "finished"
            except (TrainingStalledError, TrainingDivergedError) as err:
                res, status = err.result, err.result.stop_reason
    except _DETERMINISTIC as err:
        record.update(status="failed", error=f"{type(err).__name__}: {err}", initial=None,
                      history=[], K=None, summary=None, warnings=[],
                      wall_seconds=time.perf_counter() - t0)
        return record
    for w in caught:   # metalqr's warnings go into the record, others on as usual
        if not issubclass(w.category, MetalqrWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    records = [dict(r) for r in res.history.records]
    updates = [r for r in records if r["iteration"] > 0]
    ratio = curve(res.initial, records, "cost_gap_ratio")
    objective = curve(res.initial, records, "meta_objective")
    summary = {"n_iterations": len(updates), "stop_reason": res.stop_reason,
               "initial_cost_gap_ratio": ratio[0], "final_cost_gap_ratio": ratio[-1],
               "min_cost_gap_ratio": min(ratio), "final_meta_objective": objective[-1],
               "best_meta_objective": float(getattr(res, "best_objective", min(objective))),
               "best_iteration": int(getattr(res, "best_iteration", int(np.argmin(objective)))),
               "rejected": int(sum(r["rejected"] for r in updates))}
    K_best = getattr(res, "K_best", None)
    record.update(status=status, error=None,
                  initial={k: float(v) for k, v in res.initial.items()}, history=records,
                  K=np.asarray(res.K).tolist(),
                  K_best=None if K_best is None else np.asarray(K_best).tolist(), summary=summary,
                  warnings=[f"{w.category.__name__}: {w.message}" for w in caught
                            if issubclass(w.category, MetalqrWarning)],
                  wall_seconds=time.perf_counter() - t0)
    return record


def curve(initial: Mapping[str, Any], history: list[dict], column: str) -> list[float]:
    """Return a history column from iteration 0 on.

    A history column from iteration 0 (the initial gain) on: the history's own row 0 when it has
    one, else ``initial[column]`` prepended.
    """
    values = [r[column] for r in history]
    if history and history[0].get("iteration") == 0:
        return values
    return [initial[column]] + values


def comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    """Return the deterministic part of a run record.

    The deterministic part of a record (drops timings, host and process id, and the recorded
    warnings): two runs of one configuration give equal ``comparable`` records, whichever worker
    ran them.

    Warnings are left out because Python's warning capture is process-wide: when several
    runs share a process in threads, a warning may be recorded by another run (or shown
    normally instead); the numbers and ``summary["stop_reason"]`` are not affected.

    Parameters
    ----------
    record : mapping
        A record of :func:`execute_run`.

    Returns
    -------
    dict
        A copy without the non-deterministic keys.
    """
    out = {k: v for k, v in record.items()
           if k not in ("device", "wall_seconds", "warnings", "train_seconds", "window_seconds")}
    out["history"] = [{k: v for k, v in r.items() if k != "seconds"} for r in record["history"]]
    return out
