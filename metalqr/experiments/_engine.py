"""Execution of a study, serially or on Dask.

Execution of a study: serially in this process, or on Dask (an embedded LocalCluster or an existing
cluster), writing each finished run to the result store as it arrives.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .._validation import check_bool, check_callable, check_choice, check_int
from ..exceptions import ValidationError, ValidationTypeError
from ._config import Study
from ._runner import execute_run
from ._store import ResultStore

__all__ = ["run_study", "StudyReport", "thread_limits", "limit_threads", "dask_available",
           "local_cluster", "run_cost"]

ENGINES = ("auto", "dask", "serial")
_THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS", "METALQR_NUM_THREADS")


def thread_limits(threads: int = 1) -> dict[str, str]:
    """Return environment variables that limit a worker's thread pools.

    Environment variables that limit Numba, BLAS and metalqr's own thread pools to ``threads``
    in a worker process (so that one worker per core does not oversubscribe).

    Parameters
    ----------
    threads : int, >= 1
        Threads per pool.

    Returns
    -------
    dict of str to str
        Variable names and values.

    Raises
    ------
    ValidationError, ValidationTypeError
        ``threads`` not a positive int.
    """
    threads = check_int(threads, "threads", minimum=1)
    return {name: str(threads) for name in _THREAD_VARS}


def limit_threads(threads: int | None = None) -> int | None:
    """Limit Numba's (and BLAS's) threads in the calling thread.

    Limit Numba's threads (and BLAS's, through ``threadpoolctl`` when installed) in the calling
    thread of this process to ``threads``; ``None``: to ``NUMBA_NUM_THREADS`` of the
    environment, if set. Returns the limit applied (``None``: none).

    Dask workers import Numba before a cluster's ``env`` reaches ``os.environ`` (a worker
    process re-imports the main module, which imports metalqr), so ``NUMBA_NUM_THREADS``
    in the worker's environment does not take effect by itself; each run on a worker calls
    this first. :func:`numba.set_num_threads` is per thread, hence per run.

    Parameters
    ----------
    threads : int >= 1, optional
        Thread limit (``None``: ``NUMBA_NUM_THREADS`` of the environment, if set).

    Returns
    -------
    int or None
        The limit applied (``None``: none).

    Raises
    ------
    ValidationError, ValidationTypeError
        ``threads`` is not an int >= 1.
    """
    if threads is None:
        env = os.environ.get("NUMBA_NUM_THREADS", "")
        if not env.isdigit() or int(env) < 1:
            return None
        threads = int(env)
    threads = check_int(threads, "threads", minimum=1)
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency
        numba = None
    if numba is not None:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    _blas_limit(threads)
    return threads


_BLAS_LIMITED: dict[int, Any] = {}


def _blas_limit(threads: int) -> None:
    if threads in _BLAS_LIMITED:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        _BLAS_LIMITED[threads] = None
        return
    _BLAS_LIMITED[threads] = threadpool_limits(limits=threads, user_api="blas")


def _worker_run(config: Mapping[str, Any], threads: int | None) -> dict[str, Any]:
    """Run one configuration on a Dask worker: :func:`limit_threads`, then :func:`execute_run`."""
    limit_threads(threads)
    return execute_run(config)


def run_cost(config: Mapping[str, Any]) -> float:
    """Return a rough relative cost of a run.

    Floating-point work, arbitrary units. Used to start the longest runs first so that the
    study's tail is short (longest processing time first). For zo_maml runs: iterations x tasks
    x d (d + k) x M (M' + 1) x l (l = 50 for ``"auto"``), or x d^2 for the exact and first-order
    gradients; for TOW runs: windows x T x M x hidden width (x (1 + n_ilqr) for strategy
    ``"tow"``; a ConvNet counts as width 100 x channels).

    Parameters
    ----------
    config : mapping
        A run's settings (normalised by :func:`normalize_run`).

    Returns
    -------
    float
        The relative cost (arbitrary units).

    Raises
    ------
    ValidationError, ValidationTypeError
        A malformed configuration (as :func:`normalize_run`).
    """
    from ._config import normalize_run
    return _cost(normalize_run(config))


def _cost(config: Mapping[str, Any]) -> float:
    if config.get("kind") == "tow":
        width = config["hidden"] if config.get("net", "mlp") == "mlp" else 100 * config["channels"]
        return float(config["n_iterations"] * config["T"] * config["M"]
                     * (1 + (config["strategy"] == "tow") * config["n_ilqr"]) * width)
    d = config["d"] or 4
    k = config["k"] or 2
    work = float(config["n_iterations"] * config["n_tasks"] * d * (d + k))
    if config["n_perturbations"] is not None:
        length = 50 if config["rollout_length"] == "auto" else config["rollout_length"]
        work *= config["n_perturbations"] * (config["inner_perturbations"] + 1) * length
    else:
        work *= d * d
    return work


def dask_available() -> bool:
    """Return whether ``dask.distributed`` can be imported.

    Returns
    -------
    bool
        False without the ``distributed`` extra (``pip install 'metalqr[distributed]'``).
    """
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def local_cluster(workers: int | None = None, threads_per_worker: int = 1, **kwargs: Any):
    """Start an embedded Dask LocalCluster with limited thread pools.

    An embedded :class:`distributed.LocalCluster`: ``workers`` processes (default one per core)
    of ``threads_per_worker`` threads, with Numba/BLAS/metalqr thread pools limited to
    ``threads_per_worker`` by :func:`thread_limits`.

    Parameters
    ----------
    workers : int, optional
        Worker processes (default one per core).
    threads_per_worker : int
        Threads per worker, and the size of each worker's thread pools.
    **kwargs
        Passed to :class:`distributed.LocalCluster`.

    Returns
    -------
    distributed.LocalCluster
        The running cluster (close it when done).

    Raises
    ------
    ValidationError, ValidationTypeError
        ``workers`` or ``threads_per_worker`` not a positive int.
    ImportError
        ``distributed`` is not installed (:func:`dask_available`).
    """
    import logging

    import dask
    from distributed import LocalCluster
    n = (os.cpu_count() or 1) if workers is None else check_int(workers, "workers", minimum=1)
    t = check_int(threads_per_worker, "threads_per_worker", minimum=1)
    options = dict(n_workers=n, threads_per_worker=t, processes=True, env=thread_limits(t),
                   dashboard_address=None, silence_logs=logging.ERROR)
    options.update(kwargs)
    # the workers' statistical profiler samples every thread's stack every 10 ms: CPU taken
    # from the runs on a machine with one worker per core (the workers copy this config)
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        return LocalCluster(**options)


@dataclass
class StudyReport:  # numpydoc ignore=PR01
    """What :func:`run_study` did.

    Attributes
    ----------
    name : str
        The study's name.
    ids : list of str
        Every run of the study, in order.
    skipped : list of str
        Runs already in the store (no work done).
    ran : list of str
        Runs executed and stored now (including ``failed`` ones).
    failed : dict run id -> message
        Runs whose configuration cannot train (e.g. no common stabilising gain); stored
        with ``status = "failed"``, not retried.
    errors : dict run id -> message
        Runs that raised after all retries; not stored, a rerun retries them.
    damaged : dict run id -> message
        Store files that could not be read; moved aside and redone.
    seconds : float
        Wall time.
    engine : str
        ``"serial"`` or the Dask scheduler's address.
    """

    name: str
    ids: list[str]
    skipped: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    engine: str = "serial"

    @property
    def complete(self) -> bool:
        """Every run is in the store."""
        return not self.errors


def _describe(cfg: Mapping[str, Any]) -> str:
    keys = (("source", "strategy", "learner", "alpha", "seed") if cfg.get("kind") == "tow"
            else ("family", "d", "k", "estimator", "alpha", "eta", "seed"))
    return " ".join(f"{k}={cfg[k]}" for k in keys if cfg.get(k) is not None)


def run_study(study: Study, store: str | os.PathLike | ResultStore, *, engine: str = "auto",
              scheduler: str | None = None, workers: int | None = None, client: Any = None,
              retries: int = 2, progress: bool = True,
              callback: Callable[[str, dict], Any] | None = None) -> StudyReport:
    """Run every run of ``study`` that is not yet in ``store``.

    Parameters
    ----------
    study : Study
        The runs.
    store : path or ResultStore
        Result store; finished runs are skipped, damaged run files are moved aside and redone.
    engine : {"auto", "dask", "serial"}
        ``"auto"``: Dask if installed, else serial. The results are the same either way
        (each run seeds its own generator from its configuration).
    scheduler : str, optional
        Address of an existing Dask scheduler (e.g. ``"tcp://10.0.0.1:8786"`` or a
        dask-jobqueue cluster's ``scheduler_address``); default an embedded LocalCluster.
    workers : int, optional
        Worker processes of the embedded LocalCluster (default one per core).
    client : distributed.Client, optional
        Use this client (and its cluster) instead.
    retries : int
        Dask retries of a run that raised (a run whose worker died is rescheduled by Dask).
    progress : bool
        Print one line per finished run (to stderr).
    callback : callable(run_id, record), optional
        Called in this process after each run is stored.

    Returns
    -------
    StudyReport
        Which runs were skipped, ran, failed or raised, and the wall time.

    Raises
    ------
    ValidationError
        Bad arguments; ``engine="dask"``/``scheduler`` without Dask installed; a scheduler
        that cannot be reached.

    Examples
    --------
    A rerun skips the runs already in the store:

    >>> import tempfile
    >>> from metalqr.experiments import Study, run_study
    >>> study = Study.grid(base={"n_iterations": 3, "estimator": "exact", "n_tasks": 2},
    ...                    seeds=2, name="demo")
    >>> store = tempfile.mkdtemp()
    >>> report = run_study(study, store, engine="serial", progress=False)
    >>> len(report.ran), len(report.skipped), report.failed
    (2, 0, {})
    >>> again = run_study(study, store, engine="serial", progress=False)
    >>> len(again.ran), len(again.skipped)
    (0, 2)
    """
    if not isinstance(study, Study):
        raise ValidationTypeError(f"study must be a metalqr.experiments.Study; got "
                                  f"{type(study).__name__}. Build one with Study.grid or "
                                  f"load_study.")
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    engine = check_choice(engine, "engine", ENGINES)
    if scheduler is not None and not isinstance(scheduler, str):
        raise ValidationTypeError(f"scheduler must be an address string; got "
                                  f"{type(scheduler).__name__}.")
    if workers is not None:
        workers = check_int(workers, "workers", minimum=1)
    retries = check_int(retries, "retries", minimum=0)
    progress = check_bool(progress, "progress")
    callback = check_callable(callback, "callback", allow_none=True)
    distributed_asked = engine == "dask" or scheduler is not None or client is not None
    if engine == "serial" and (scheduler is not None or client is not None):
        raise ValidationError("engine='serial' cannot use a scheduler or client; drop them or "
                              "use engine='dask'.")
    if distributed_asked and not dask_available():
        raise ValidationError("engine='dask' (or a scheduler) needs dask.distributed: pip install "
                              "'metalqr[distributed]', or use engine='serial'.")
    use_dask = engine != "serial" and dask_available()

    t0 = time.perf_counter()
    report = StudyReport(study.name, list(study.ids))
    store.save_study(study.name, study.ids, study.runs)
    done, report.damaged = store.check(study.ids)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    for rid, why in report.damaged.items():
        log(f"[sweep] run {rid}: {why} (moved aside; redoing it)")
    report.skipped = [rid for rid in study.ids if rid in done]
    todo = [(rid, cfg) for rid, cfg in study if rid not in done]
    log(f"[sweep] study {study.name!r}: {len(study)} runs, {len(report.skipped)} already in "
        f"{store.root}, {len(todo)} to run")
    n_done = 0

    def finish(rid: str, cfg: dict, record: dict) -> None:
        nonlocal n_done
        store.save(record)
        report.ran.append(rid)
        n_done += 1
        if record["status"] == "failed":
            report.failed[rid] = record["error"]
            tail = record["error"]
        elif record["summary"] is None:
            tail = f"{record['status']}: {record.get('error')}"
        elif record["config"].get("kind") == "tow":
            tail = (f"{record['status']}, final test {record['summary']['metric']} "
                    f"{record['summary']['final_test_metric']:.4g}")
        else:
            tail = (f"{record['status']}, final cost-gap ratio "
                    f"{record['summary']['final_cost_gap_ratio']:.4g}")
        log(f"[sweep] {n_done}/{len(todo)} {rid} ({_describe(cfg)}): {tail} "
            f"[{record['wall_seconds']:.1f} s]")
        if callback is not None:
            callback(rid, record)

    if not todo:
        report.engine = "none (nothing to run)"
    elif not use_dask:
        report.engine = "serial"
        for rid, cfg in todo:
            try:
                record = execute_run(cfg)
            except Exception as exc:
                report.errors[rid] = f"{type(exc).__name__}: {exc}"
                log(f"[sweep] {rid} ({_describe(cfg)}): error {report.errors[rid]}")
                continue
            finish(rid, cfg, record)
    else:
        _run_dask(todo, report, finish, log, scheduler=scheduler, workers=workers,
                  client=client, retries=retries)
    report.seconds = time.perf_counter() - t0
    log(f"[sweep] study {study.name!r}: ran {len(report.ran)}, skipped {len(report.skipped)}, "
        f"failed {len(report.failed)}, errors {len(report.errors)} in {report.seconds:.1f} s")
    return report


def _run_dask(todo, report, finish, log, *, scheduler, workers, client, retries) -> None:
    threads = None       # an existing cluster: its workers' NUMBA_NUM_THREADS, if set
    from distributed import Client, as_completed

    own_cluster = own_client = None
    try:
        if client is None:
            if scheduler is not None:
                try:
                    own_client = Client(scheduler)  # timeout: distributed.comm.timeouts.connect
                except (OSError, TimeoutError) as exc:
                    raise ValidationError(f"scheduler {scheduler!r} cannot be reached ({exc}); "
                                          f"check the address (tcp://host:port) and that the "
                                          f"scheduler is running.") from None
            else:
                own_cluster = local_cluster(workers)
                own_client = Client(own_cluster)
                threads = 1
            client = own_client
        report.engine = str(client.scheduler.address)
        gpu_workers = any("GPU" in (w.get("resources") or {})
                          for w in client.scheduler_info()["workers"].values())
        tag = uuid.uuid4().hex[:8]
        futures, meta = [], {}
        # longest runs first (a study's tail is then made of short runs); Dask runs
        # higher priorities first, ties in submission order
        order = sorted(range(len(todo)), key=lambda i: -_cost(todo[i][1]))
        rank = {i: len(todo) - r for r, i in enumerate(order)}
        for i, (rid, cfg) in enumerate(todo):
            resources = {"GPU": 1} if (gpu_workers and cfg.get("backend") == "cupy") else None
            fut = client.submit(_worker_run, cfg, threads, key=f"metalqr-run-{rid}-{tag}",
                                pure=False, retries=retries, resources=resources,
                                priority=rank[i])
            futures.append(fut)
            meta[fut.key] = (rid, cfg)
        for fut in as_completed(futures):
            rid, cfg = meta[fut.key]
            try:
                record = fut.result()
            except Exception as exc:
                report.errors[rid] = f"{type(exc).__name__}: {exc}"
                log(f"[sweep] {rid} ({_describe(cfg)}): error {report.errors[rid]}")
                continue
            finally:
                fut.release()
            finish(rid, cfg, record)
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()

