"""metalqr.experiments: studies, the serial and Dask engines, the result store (resume,
damaged files, concurrent studies, a worker killed mid-study), aggregation and the CLI."""

from __future__ import annotations

import json
import os
import signal
import threading

import numpy as np
import pytest
from hypothesis import given, strategies as st

import metalqr
from metalqr.experiments import (ResultStore, Study, comparable, curves, execute_run,
                                 figure1_study, limit_threads, load_study, mean_ci, normalize_run,
                                 run_cost, run_id, run_study, summary_table, sweep_main,
                                 write_report)
from metalqr.experiments import _engine
from helpers import assert_named_error

#: Tiny runs (a few hundredths of a second each): NumPy backend (no JIT in fresh workers).
TINY = {"d": 1, "k": 1, "n_iterations": 4, "M": 5, "M_prime": 5, "backend": "numpy"}


def tiny_study(seeds=2, name="tiny", **grid):
    return Study.grid(base=TINY, grid=grid or {"alpha": [1e-3, 1e-4]}, seeds=seeds, name=name)


def stored(store, study):
    return {r["run_id"]: comparable(r) for r in ResultStore(store).records(study.ids)}


@pytest.fixture(scope="module")
def serial_reference(tmp_path_factory):
    """The 8-run study run serially: the reference for every other engine."""
    study = tiny_study(seeds=4)
    store = tmp_path_factory.mktemp("serial")
    rep = run_study(study, store, engine="serial", progress=False)
    assert rep.complete and len(rep.ran) == len(study) == 8
    return study, stored(store, study)


# ---------------------------------------------------------------- configurations and ids


def test_grid_expansion_and_ids():
    study = Study.grid(base=TINY, grid={"alpha": [1e-3, 1e-4], "eta": [0.0, 1e-5]},
                       runs=[{}, {"estimator": "two_point"}], seeds=[3, 5])
    assert len(study) == 2 * 2 * 2 * 2
    assert len(set(study.ids)) == len(study)
    assert {r["seed"] for r in study.runs} == {3, 5}
    assert all(r["n_perturbations"] == 5 for r in study.runs)      # alias M resolved
    assert {(r["estimator"], r["alpha"], r["eta"]) for r in study.runs} == {
        (e, a, h) for e in ("one_point", "two_point") for a in (1e-3, 1e-4) for h in (0.0, 1e-5)}


@given(st.permutations(list(TINY.items())), st.integers(0, 2**31))
def test_run_id_ignores_key_order_and_aliases_but_not_values(items, seed):
    cfg = dict(items, seed=seed)
    full = normalize_run(cfg)
    assert run_id(cfg) == run_id(full) == run_id(normalize_run(full))
    assert run_id({**cfg, "seed": seed + 1}) != run_id(cfg)
    assert run_id({**cfg, "M": 6}) != run_id(cfg)
    assert run_id(cfg, "9.9") != run_id(cfg)                 # the version is part of the id


def test_study_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[study]\nname = "toml-study"\nseeds = 3\n[base]\nd = 1\nk = 1\n'
                    'iterations = 4\nM = 5\n[grid]\nalpha = [1e-3, 1e-4]\n'
                    '[[runs]]\nestimator = "one_point"\n[[runs]]\nestimator = "exact"\n'
                    'n_iterations = 2\n')
    with pytest.raises(metalqr.ValidationError, match="n_perturbations"):
        load_study(path)                                    # M does not apply to "exact"
    path.write_text(path.read_text().replace("M = 5\n", "").replace("[[runs]]\nestimator = \"one_point\"",
                                                                     "[[runs]]\nestimator = \"one_point\"\nM = 5"))
    study = load_study(path)
    assert study.name == "toml-study" and len(study) == 3 * 2 * 2
    exact = [r for r in study.runs if r["estimator"] == "exact"]
    assert all(r["n_iterations"] == 2 and r["n_perturbations"] is None for r in exact)


BAD_CONFIGS = [
    # (study file text, word the message must name, a valid name it must list)
    ("[base]\nalpah = 1e-3\n", "alpah", "alpha"),
    ("[grid]\nsed = [1, 2]\n", "sed", "seed"),
    ("[[runs]]\nfamly = 'random'\n", "famly", "family"),
    ("[base]\nfamily = 'boeing'\n", "family", "boeing747"),
    ("[base]\nestimator = 'one-point'\n", "estimator", "one_point"),
    ("[base]\nbackend = 'cuda'\n", "backend", "cupy"),
    ("[grid]\nguard = ['rollouts', 'models']\n", "guard", "model"),
    ("[bases]\nd = 1\n", "bases", "base"),
    ("[study]\nseed = 3\n", "seed", "seeds"),
    ("[base]\nalpha = -1.0\n", "alpha", None),
    ("[base]\nd = 1.5\n", "d", None),
    ("[base]\nn_iterations = 0\n", "n_iterations", None),
    ("[base]\nfamily = 'boeing747'\nd = 3\n", "d", None),
    ("[grid]\nalpha = []\n", "alpha", None),
    ("[study]\nseeds = 0\n", "seeds", None),
    ("[base]\nalpha = [1\n", "TOML", None),
]


@pytest.mark.parametrize("text,word,valid", BAD_CONFIGS)
def test_bad_study_files_name_the_key(tmp_path, text, word, valid):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    err = assert_named_error(load_study, word, path)
    if valid is not None:
        assert valid in str(err)


def test_unknown_key_suggests_the_close_one():
    err = assert_named_error(normalize_run, "n_iteration", {"n_iteration": 5})
    assert "Did you mean 'n_iterations'" in str(err)


def test_duplicate_runs_refused():
    assert_named_error(Study, "runs[1]", [{"seed": 1}, {"seed": 1, "alpha": 1e-3}])


# ---------------------------------------------------------------- runs and determinism


def test_same_seed_same_numbers_as_reproduce_fig1(tmp_path):
    """A study run is the run of ``metalqr reproduce fig1`` with the same setting and seed."""
    from metalqr.meta.figure1 import Figure1Setting, reproduce_figure1
    s = Figure1Setting(1, 1, alpha=1e-3, eta=1e-5, n_iterations=3, n_perturbations=5,
                       inner_perturbations=5)
    reproduce_figure1(output_dir=str(tmp_path), rng=2, settings=(s,), progress=False,
                      verbose=False, backend="numpy")
    import csv
    with open(tmp_path / "fig1.csv") as fh:
        ref = [float(r["cost_gap_ratio"]) for r in csv.DictReader(fh)]
    rec = execute_run({"seed": 2, "d": 1, "k": 1, "alpha": 1e-3, "eta": 1e-5, "n_iterations": 3,
                       "M": 5, "M_prime": 5, "K0": "zero", "backend": "numpy"})
    assert [h["cost_gap_ratio"] for h in rec["history"]] == ref
    assert rec["status"] == "finished" and rec["summary"]["final_cost_gap_ratio"] == ref[-1]


def test_figure1_study_matches_paper_settings():
    study = figure1_study(3, quick=True, n_iterations=5)
    assert len(study) == 9 and {r["seed"] for r in study.runs} == {0, 1, 2}
    big = [r for r in study.runs if r["d"] == 20]
    assert all(r["estimator"] == "two_point" and r["n_perturbations"] == 20 for r in big)


def test_perturbation_family_and_failed_runs_are_recorded(tmp_path):
    study = Study([{"family": "double_integrator", "n_iterations": 2, "M": 5, "M_prime": 5,
                    "backend": "numpy", "alpha": 1e-4},
                   {"family": "random", "d": 1, "k": 1, "eta": 50.0, "n_iterations": 2,
                    "estimator": "exact"}])
    rep = run_study(study, tmp_path, engine="serial", progress=False)
    assert rep.complete and len(rep.ran) == 2
    good, bad = (ResultStore(tmp_path).load(i) for i in study.ids)
    assert good["status"] in ("finished", "stalled") and len(good["history"]) >= 1
    assert bad["status"] == "failed" and "NotMAMLStabilizingError" in rep.failed[study.ids[1]]
    rep2 = run_study(study, tmp_path, engine="serial", progress=False)
    assert rep2.ran == [] and len(rep2.skipped) == 2                 # failures are outcomes


# ---------------------------------------------------------------- store: resume, damage


def test_rerun_of_finished_study_does_no_work(tmp_path, serial_reference):
    study, ref = serial_reference
    run_study(study, tmp_path, engine="serial", progress=False)
    mtimes = {p: os.stat(p).st_mtime_ns for p in (tmp_path / "runs").iterdir()}
    calls = []
    rep = run_study(study, tmp_path, engine="serial", progress=False,
                    callback=lambda rid, rec: calls.append(rid))
    assert rep.ran == [] and calls == [] and rep.skipped == study.ids
    assert mtimes == {p: os.stat(p).st_mtime_ns for p in (tmp_path / "runs").iterdir()}
    assert stored(tmp_path, study) == ref


def test_rerun_after_interruption_runs_only_the_missing_runs(tmp_path, serial_reference):
    study, ref = serial_reference
    seen = []

    def interrupt(rid, record):
        seen.append(rid)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(study, tmp_path, engine="serial", progress=False, callback=interrupt)
    rep = run_study(study, tmp_path, engine="serial", progress=False)
    assert rep.skipped == seen and rep.ran == [i for i in study.ids if i not in seen]
    assert stored(tmp_path, study) == ref


def test_damaged_run_files_are_reported_moved_aside_and_redone(tmp_path, serial_reference):
    study, ref = serial_reference
    run_study(study, tmp_path, engine="serial", progress=False)
    store = ResultStore(tmp_path)
    a, b, c, d = study.ids[:4]
    text = open(store.path(a)).read()
    open(store.path(a), "w").write(text[: len(text) // 2])                 # truncated
    open(store.path(b), "wb").write(b"\x00\xff garbage")                   # garbage
    body = json.loads(open(store.path(c)).read())                          # edited value
    body["record"]["summary"]["final_cost_gap_ratio"] = 0.0
    open(store.path(c), "w").write(json.dumps(body))
    body = json.loads(open(store.path(a.replace(a, d))).read())            # another run's file
    open(store.path(d), "w").write(open(store.path(study.ids[5])).read())
    for rid in (a, b, c, d):
        with pytest.raises(metalqr.CheckpointError, match=rid):
            store.load(rid)
    rep = run_study(study, tmp_path, engine="serial", progress=False)
    assert set(rep.damaged) == {a, b, c, d} and sorted(rep.ran) == sorted([a, b, c, d])
    assert all(os.path.basename(store.path(r)) in rep.damaged[r] for r in (a, b, c, d))
    aside = [f for f in os.listdir(store.runs_dir) if ".damaged-" in f]
    assert len(aside) == 4                                                 # nothing lost
    assert stored(tmp_path, study) == ref


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::metalqr.exceptions.MetalqrWarning")  # capture is process-wide
def test_two_studies_on_one_store_concurrently(tmp_path, serial_reference):
    study, ref = serial_reference
    other = tiny_study(seeds=4, name="other", alpha=[1e-3, 1e-5])          # shares 4 runs
    errors = []

    def go(s):
        try:
            run_study(s, tmp_path, engine="serial", progress=False)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(s,)) for s in (study, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store = ResultStore(tmp_path)
    assert len(store.ids()) == 12 and not [f for f in os.listdir(store.runs_dir) if ".tmp" in f]
    assert store.check(store.ids()) == (set(store.ids()), {})
    assert stored(tmp_path, study) == ref
    assert sorted(os.listdir(tmp_path / "studies")) == ["other.json", "tiny.json"]


# ---------------------------------------------------------------- Dask


@pytest.mark.slow
def test_dask_study_survives_a_killed_worker_and_matches_serial(tmp_path, serial_reference):
    distributed = pytest.importorskip("distributed")
    from metalqr.experiments import local_cluster
    study, ref = serial_reference
    killed = {}
    with local_cluster(2) as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)

        def kill_a_busy_worker(rid, record):
            if killed:
                return
            busy = [w for w, keys in client.processing().items() if keys and w in pids]
            if busy:
                killed["worker"], killed["tasks"] = busy[0], client.processing()[busy[0]]
                os.kill(pids[busy[0]], signal.SIGKILL)

        rep = run_study(study, tmp_path, client=client, progress=False,
                        callback=kill_a_busy_worker)
        new_pids = client.run(os.getpid)
    assert killed and killed["tasks"], "no worker was busy when the first run finished"
    assert pids[killed["worker"]] not in new_pids.values()                 # it did die
    assert rep.complete and sorted(rep.ran) == sorted(study.ids)
    assert stored(tmp_path, study) == ref                                   # bit for bit
    ran_in = {ResultStore(tmp_path).load(i)["device"]["pid"] for i in study.ids}
    assert ran_in <= set(pids.values()) | set(new_pids.values())            # on the workers


@pytest.mark.slow
def test_killed_dask_study_then_rerun_runs_only_the_missing_runs(tmp_path, serial_reference):
    """The process running a study on a 2-worker LocalCluster is killed (SIGKILL, as a
    killed job) right after its 3rd run is stored; the rerun finds exactly those 3 intact,
    runs only the 5 others, and every run equals the serial run."""
    pytest.importorskip("distributed")
    import subprocess
    import sys
    study, ref = serial_reference
    code = ("import json, os, signal, sys\n"
            "from metalqr.experiments import Study, run_study\n"
            "study = Study(json.loads(sys.argv[1]), name='tiny')\n"
            "def cb(rid, record, n=[0]):\n"
            "    n[0] += 1\n"
            "    if n[0] == 3:\n"
            "        os.kill(os.getpid(), signal.SIGKILL)\n"
            "run_study(study, sys.argv[2], workers=2, progress=False, callback=cb)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(study.runs), str(tmp_path)],
                            env=dict(os.environ, PYTHONPATH=root), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)        # the orphaned worker processes
        except ProcessLookupError:
            pass
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    store = ResultStore(tmp_path)
    before = set(store.ids())
    assert len(before) == 3 and store.check(study.ids) == (before, {})
    rep = run_study(study, tmp_path, engine="serial", progress=False)
    assert set(rep.skipped) == before and not rep.damaged
    assert rep.ran == [i for i in study.ids if i not in before]
    assert stored(tmp_path, study) == ref
    assert run_study(study, tmp_path, engine="serial", progress=False).ran == []


def test_device_is_recorded_and_a_cupy_run_without_gpu_is_an_error_not_stored(tmp_path):
    import socket
    rec = execute_run({**TINY, "seed": 1})
    assert rec["device"] == {"host": socket.gethostname(), "pid": os.getpid(), "backend": "numpy"}
    if "cupy" in metalqr.available_backends():
        pytest.skip("a GPU is available here: the CuPy run would succeed")
    study = Study([{**TINY, "backend": "cupy"}], name="gpu")
    rep = run_study(study, tmp_path, engine="serial", progress=False)
    assert not rep.complete and "cupy" in rep.errors[study.ids[0]].lower()
    assert ResultStore(tmp_path).ids() == []                 # not stored: a rerun on a GPU retries


def test_limit_threads_and_run_cost():
    numba = pytest.importorskip("numba")
    from metalqr.experiments import limit_threads, run_cost
    before = numba.get_num_threads()
    try:
        assert limit_threads(1) == 1 and numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)
    base = {"d": 2, "k": 1, "n_iterations": 10, "M": 10, "M_prime": 10}
    cost = run_cost(base)
    assert run_cost({**base, "n_iterations": 20}) == 2 * cost
    assert run_cost({**base, "M": 20}) == 2 * cost
    exact = {k: v for k, v in base.items() if k not in ("M", "M_prime")}
    assert run_cost({**base, "d": 4}) > cost > run_cost({**exact, "estimator": "exact"})
    tow = {"kind": "tow", "n_iterations": 10}
    assert run_cost({**tow, "strategy": "tow"}) > run_cost(tow) > 0


def test_engine_choice_without_dask(tmp_path, monkeypatch, serial_reference):
    study, ref = serial_reference
    monkeypatch.setattr(_engine, "dask_available", lambda: False)
    rep = run_study(study, tmp_path, progress=False)                       # auto -> serial
    assert rep.engine == "serial" and stored(tmp_path, study) == ref
    assert_named_error(run_study, "engine", study, tmp_path, engine="dask")
    assert_named_error(run_study, "scheduler", study, tmp_path, scheduler="tcp://127.0.0.1:1")


def test_unreachable_scheduler_is_named(tmp_path):
    pytest.importorskip("distributed")
    study = tiny_study(seeds=1)
    import dask
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        err = assert_named_error(run_study, "scheduler", study, tmp_path,
                                 scheduler="tcp://127.0.0.1:9", progress=False)
    assert "tcp://127.0.0.1:9" in str(err)


# ---------------------------------------------------------------- aggregation


def test_mean_ci_matches_scipy():
    from scipy import stats
    x = np.random.default_rng(0).normal(3.0, 2.0, size=7)
    m, lo, hi = mean_ci(x)
    ref = stats.t.interval(0.95, 6, loc=x.mean(), scale=stats.sem(x))
    assert m == pytest.approx(x.mean()) and (lo, hi) == pytest.approx(ref)
    assert mean_ci([1.5]) == (1.5, None, None)
    assert mean_ci(x, 0.5)[2] - mean_ci(x, 0.5)[1] < hi - lo


def test_summary_curves_and_report(tmp_path, serial_reference):
    study, ref = serial_reference
    run_study(study, tmp_path, engine="serial", progress=False)
    rows = summary_table(tmp_path, study)
    assert [r["setting"] for r in rows] == ["alpha=0.001", "alpha=0.0001"]
    for row in rows:
        finals = [r["summary"]["final_cost_gap_ratio"] for r in ref.values()
                  if r["config"]["alpha"] == row["alpha"]]
        assert row["n_seeds"] == 4 == len(finals)
        assert (row["final_cost_gap_ratio_mean"], row["final_cost_gap_ratio_ci_low"],
                row["final_cost_gap_ratio_ci_high"]) == pytest.approx(mean_ci(finals))
    data = curves(tmp_path, study)
    for c in data:
        assert len(c["iteration"]) == TINY["n_iterations"] + 1 and (c["n"] == 4).all()
        assert (c["ci_low"] <= c["mean"]).all() and (c["mean"] <= c["ci_high"]).all()
        assert np.isfinite(c["ci_low"]).all()
    paths = write_report(tmp_path, study, tmp_path / "rep")
    assert open(paths["curves_png"], "rb").read(4) == b"\x89PNG"
    import csv
    with open(paths["curves_csv"]) as fh:
        assert len(list(csv.DictReader(fh))) == 2 * (TINY["n_iterations"] + 1)


# ---------------------------------------------------------------- command line


def test_sweep_command(tmp_path, capsys):
    cfg = tmp_path / "s.toml"
    cfg.write_text('[study]\nname = "cli"\nseeds = 2\n[base]\nd = 1\nk = 1\nn_iterations = 3\n'
                   'M = 5\nM_prime = 5\nbackend = "numpy"\n')
    store = tmp_path / "store"
    assert sweep_main([str(cfg), "--store", str(store), "--serial", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 run now" in out and "summary.csv" in out
    assert (store / "report" / "cli" / "curves.png").exists()
    assert sweep_main([str(cfg), "--store", str(store), "--serial", "--no-progress"]) == 0
    assert "0 run now, 2 already stored" in capsys.readouterr().out
    cfg.write_text("[base]\nalpah = 1\n")
    assert sweep_main([str(cfg), "--store", str(store), "--serial"]) == 2
    assert "alpah" in capsys.readouterr().err


# ---------------------------------------------------------------- malformed inputs


def _study():
    return Study([{"seed": 0, **TINY}])


MALFORMED = [
    # (callable, word named in the message, args, kwargs)
    (Study, "runs", ("nope",), {}),
    (Study, "runs", ([],), {}),
    (Study, "runs[0]", ([3],), {}),
    (Study, "name", ([{}],), {"name": ""}),
    (Study, "name", ([{}],), {"name": "../escape"}),
    (Study, "name", ([{}],), {"name": 3}),
    (Study, "seed", ([{"seed": -1}],), {}),
    (Study.grid, "base", (), {"base": [1]}),
    (Study.grid, "grid", (), {"grid": {"alpha": []}}),
    (Study.grid, "runs", (), {"runs": []}),
    (Study.grid, "seeds", (), {"seeds": "3"}),
    (Study.grid, "seeds", (), {"seeds": [-1]}),
    (normalize_run, "run", ("x",), {}),
    (normalize_run, "eta", ({"eta": -1.0},), {}),
    (normalize_run, "radius", ({"radius": float("nan")},), {}),
    (normalize_run, "K0", ({"K0": "zeros"},), {}),
    (normalize_run, "two_point", ({"two_point": True},), {}),
    (normalize_run, "heterogeneity", ({"heterogeneity": "big"},), {}),
    (normalize_run, "guard", ({"guard": "rollout"},), {}),
    (normalize_run, "outer_update", ({"outer_update": "adam"},), {}),
    (normalize_run, "rollout_length", ({"l": "50"},), {}),
    (normalize_run, "rollout_length", ({"l": 0},), {}),
    (load_study, "study", ("/nonexistent/study.toml",), {}),
    (load_study, "study", (os.path.dirname(__file__),), {}),
    (load_study, "study", (3,), {}),
    (load_study, "study", (None,), {}),
    (run_study, "study", ([{}], "s"), {}),
    (run_study, "engine", (_study(), "s"), {"engine": "threads"}),
    (run_study, "workers", (_study(), "s"), {"workers": 0}),
    (run_study, "retries", (_study(), "s"), {"retries": -1}),
    (run_study, "progress", (_study(), "s"), {"progress": 1}),
    (run_study, "callback", (_study(), "s"), {"callback": 3}),
    (run_study, "scheduler", (_study(), "s"), {"scheduler": 8786}),
    (ResultStore, "store", (3,), {}),
    (ResultStore, "store", (None,), {}),
    (ResultStore, "store", (__file__,), {}),
    (ResultStore(os.devnull + "-no").load, "does not exist", ("0" * 16,), {}),
    (mean_ci, "confidence", ([1.0, 2.0], 1.5), {}),
    (mean_ci, "confidence", ([1.0, 2.0], 0.0), {}),
    (mean_ci, "values", ([],), {}),
    (mean_ci, "values", ([1.0, float("nan")],), {}),
    (mean_ci, "values", (["a", "b"],), {}),
    (summary_table, "metrics", ("s",), {"metrics": ["final_ratio"]}),
    (summary_table, "study", ("s", "tiny"), {}),
    (curves, "column", ("s",), {"column": "ratio"}),
    (curves, "confidence", ("s",), {"confidence": True}),
    (summary_table, "confidence", ("s",), {"confidence": 95}),
    (summary_table, "store", (3,), {}),
    (curves, "column", ("s",), {"column": 3}),
    (curves, "store", (None,), {}),
    (write_report, "store", ("s-empty",), {}),
    (write_report, "store", (3.0,), {}),
    (write_report, "column", ("s",), {"column": "grad"}),
    (write_report, "confidence", ("s",), {"confidence": -0.1}),
    (ResultStore, "store", (b"x",), {}),
    (execute_run, "alpha", ({"alpha": 0.0},), {}),
    (execute_run, "family", ({"family": "cartpole"},), {}),
    (execute_run, "run", ([("alpha", 1.0)],), {}),
    (execute_run, "n_tasks", ({"n_tasks": 2.0},), {}),
    (limit_threads, "threads", (0,), {}),
    (limit_threads, "threads", ("2",), {}),
    (limit_threads, "threads", (1.5,), {}),
    (limit_threads, "threads", (True,), {}),
    (run_cost, "alpha", ({"alpha": -1.0},), {}),
    (run_cost, "run", ("x",), {}),
    (run_cost, "strategy", ({"kind": "tow", "strategy": "best"},), {}),
    (run_cost, "kind", ({"kind": None},), {}),
    (figure1_study, "seeds", (0,), {}),
    (figure1_study, "seeds", ("3",), {}),
    (figure1_study, "n_iterations", (2,), {"n_iterations": -1}),
    (figure1_study, "backend", (2,), {"backend": "cuda"}),
]


@pytest.mark.parametrize("fn,word,args,kwargs", MALFORMED,
                         ids=[f"{f.__qualname__}-{w}-{i}" for i, (f, w, _, _) in enumerate(MALFORMED)])
def test_malformed_inputs_are_named(fn, word, args, kwargs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_named_error(fn, word, *args, **kwargs)


@pytest.mark.slow
def test_cli_wiring_as_proposed_for_metalqr_cli(tmp_path, capsys, monkeypatch):
    """The wiring proposed for metalqr/cli.py: ``add_sweep_parser(sub)``, and
    ``add_fig1_arguments(p)`` on the existing ``reproduce`` parser (whose --no-progress is kept)
    with ``fig1_seeds_command(args)`` when ``--seeds`` is given."""
    import argparse
    from metalqr.experiments import add_fig1_arguments, add_sweep_parser, fig1_seeds_command
    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser(prog="metalqr")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("reproduce")
    p.add_argument("figure", choices=["fig1"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--output", default="results/fig1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--backend", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--resume", action="store_true")
    add_fig1_arguments(p)
    add_sweep_parser(sub)
    args = parser.parse_args(["reproduce", "fig1", "--quick", "--seeds", "1", "--iterations", "1",
                              "--backend", "numpy", "--serial", "--no-progress"])
    assert fig1_seeds_command(args) == 0
    out = capsys.readouterr().out
    assert "3 runs (3 run now" in out and "d=20, k=10" in out
    assert (tmp_path / "results" / "fig1" / "curves.png").exists()
    assert len(os.listdir(tmp_path / "results" / "fig1-seeds" / "runs")) == 3
    args = parser.parse_args(["reproduce", "fig1", "--seeds", "0", "--serial"])
    assert fig1_seeds_command(args) == 2 and "--seeds" in capsys.readouterr().err
    args = parser.parse_args(["sweep", "missing.toml", "--serial"])
    assert args.func(args) == 2 and "missing.toml" in capsys.readouterr().err


@pytest.mark.slow
def test_without_dask_installed_the_study_runs_serially_with_the_same_numbers(tmp_path,
                                                                             serial_reference):
    """A fresh interpreter in which ``import distributed`` fails (as without the extra)."""
    import subprocess
    import sys
    study, ref = serial_reference
    code = ("import sys, json; sys.modules['distributed'] = None\n"
            "from metalqr.experiments import Study, run_study, dask_available\n"
            "assert not dask_available()\n"
            "study = Study(json.loads(sys.argv[1]), name='tiny')\n"
            "rep = run_study(study, sys.argv[2], progress=False)\n"
            "print(rep.engine, len(rep.ran))\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code, json.dumps(study.runs), str(tmp_path)],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=root)).stdout
    assert out.split() == ["serial", str(len(study))]
    assert stored(tmp_path, study) == ref
