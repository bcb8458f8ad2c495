"""Execute one run of a study: build its tasks and initial gain from its configuration,
run Algorithm 3, and return a JSON-able record (config, version, history, summary)."""

from __future__ import annotations

import os
import socket
import time
import zlib
from typing import Any, Mapping

import numpy as np

from ..exceptions import (NotMAMLStabilizingError, NotMetaLearnableError,
                          TrainingStalledError, ValidationError)
from ._config import normalize_run, run_id

__all__ = ["execute_run", "RECORD_FORMAT", "RECORD_VERSION", "run_rng", "build_tasks"]

RECORD_FORMAT = "metalqr-run"
RECORD_VERSION = 1
_HETEROGENEITY = {"random": 0.25}
_PERTURB_HETEROGENEITY = 1e-3
#: Errors that are a deterministic outcome of the configuration: recorded as a "failed"
#: run (not retried). Anything else (a dead worker, a missing GPU) is retried / reported.
_DETERMINISTIC = (ValidationError, NotMAMLStabilizingError, NotMetaLearnableError)


def run_rng(config: Mapping[str, Any]) -> np.random.Generator:
    """The run's only source of randomness, seeded from its configuration: ``[seed, d, k]``
    for the random family (as ``metalqr reproduce fig1``), ``[seed, crc32(family)]`` else.
    It draws the tasks first, then the perturbations of training."""
    if config["family"] == "random":
        return np.random.default_rng([config["seed"], config["d"], config["k"]])
    return np.random.default_rng([config["seed"], zlib.crc32(config["family"].encode())])


def build_tasks(config: Mapping[str, Any], rng: np.random.Generator):
    """The run's task family (a :class:`metalqr.TaskSet`)."""
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
                            "backend": config["backend"]}
    if config["backend"] == "cupy":
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

    The run seeds its own generator from its configuration (:func:`run_rng`), so the same
    configuration gives the same numbers in any process, on any worker.

    Returns
    -------
    dict
        ``run_id``, ``config``, ``metalqr_version``, ``status`` (``"finished"``,
        ``"stalled"`` or ``"failed"``), ``error``, ``initial``, ``history`` (the per-iteration
        records of :class:`metalqr.History`), ``K``, ``summary``, ``device``, ``wall_seconds``.

    Raises
    ------
    MetalqrError
        Errors that do not follow from the configuration (e.g. BackendUnavailableError).
    """
    from .. import __version__
    from ..meta import common_stabilizing_gain, meta_policy_optimization

    config = normalize_run(config)
    t0 = time.perf_counter()
    record: dict[str, Any] = {"format": RECORD_FORMAT, "format_version": RECORD_VERSION,
                              "run_id": run_id(config), "config": dict(config),
                              "metalqr_version": __version__, "device": _device(config)}
    rng = run_rng(config)
    est = config["estimator"]
    options: dict[str, Any] = {}
    if est in ("one_point", "two_point"):
        options = {"n_perturbations": config["n_perturbations"],
                   "inner_perturbations": config["inner_perturbations"],
                   "radius": config["radius"], "rollout_length": config["rollout_length"],
                   "two_point": est == "two_point"}
    try:
        tasks = build_tasks(config, rng)
        K0 = (np.zeros((tasks.k, tasks.d)) if config["K0"] == "zero"
              else common_stabilizing_gain(tasks))
        try:
            res = meta_policy_optimization(
                tasks, K0, alpha=config["alpha"], eta=config["eta"],
                n_iterations=config["n_iterations"],
                gradient="zo" if est in ("one_point", "two_point") else est, rng=rng,
                backend=config["backend"], progress=False, tol=config["tol"],
                max_backtracks=config["max_backtracks"],
                max_consecutive_rejections=config["max_consecutive_rejections"], **options)
            status = "finished"
        except TrainingStalledError as err:
            res, status = err.result, "stalled"
    except _DETERMINISTIC as err:
        record.update(status="failed", error=f"{type(err).__name__}: {err}", initial=None,
                      history=[], K=None, summary=None,
                      wall_seconds=time.perf_counter() - t0)
        return record
    records = [dict(r) for r in res.history.records]
    ratio = [res.initial["cost_gap_ratio"]] + [r["cost_gap_ratio"] for r in res.history.records]
    objective = [res.initial["meta_objective"]] + [r["meta_objective"] for r in res.history.records]
    summary = {"iterations": len(res.history), "stop_reason": res.stop_reason,
               "initial_cost_gap_ratio": ratio[0], "final_cost_gap_ratio": ratio[-1],
               "min_cost_gap_ratio": min(ratio), "final_meta_objective": objective[-1],
               "rejected": int(sum(r["rejected"] for r in res.history.records))}
    record.update(status=status, error=None,
                  initial={k: float(v) for k, v in res.initial.items()}, history=records,
                  K=np.asarray(res.K).tolist(), summary=summary,
                  wall_seconds=time.perf_counter() - t0)
    return record


def comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    """The deterministic part of a record (drops timings, host and process id): two runs
    of one configuration give equal ``comparable`` records, whichever worker ran them."""
    out = {k: v for k, v in record.items() if k not in ("device", "wall_seconds")}
    out["history"] = [{k: v for k, v in r.items() if k != "seconds"} for r in record["history"]]
    return out
