"""metalqr.experiments with TOW runs (``kind = "tow"``): configuration and validation, one
strategy per run equal to metalqr.tow.run_experiment, the same numbers on any worker,
aggregation (mean and 95% CI over seeds, curves with bands by window), the example study."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

import metalqr
from metalqr import tow
from metalqr.experiments import (ResultStore, Study, comparable, curves, execute_run, load_study,
                                 mean_ci, normalize_run, run_id, run_study, summary_table,
                                 sweep_main, write_report)
from helpers import assert_named_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "docs", "studies", "tow_sinusoid.toml")
#: A TOW run of a few hundredths of a second.
TINY_TOW = {"kind": "tow", "n_iterations": 3, "T": 2, "M": 2, "hidden": 8, "n_test": 6,
            "n_val": 4}


def tiny_tow_study(seeds=2, name="tiny-tow", strategies=("uniform", "tow"), **base):
    return Study.grid(base={**TINY_TOW, **base}, grid={"strategy": list(strategies)}, seeds=seeds,
                      name=name)


def stored(store, study):
    return {r["run_id"]: comparable(r) for r in ResultStore(store).records(study.ids)}


# ---------------------------------------------------------------- configuration


def test_tow_defaults_follow_the_source():
    sin = normalize_run({"kind": "tow"})
    cls = normalize_run({"kind": "tow", "source": "classification"})
    from metalqr.cli import TOW_DEFAULTS
    from metalqr.experiments import TOW_SOURCE_DEFAULTS, TOW_SOURCES
    assert all(TOW_SOURCE_DEFAULTS[s] == TOW_DEFAULTS[s] for s in TOW_SOURCES)
    for cfg, src in ((sin, "sinusoid"), (cls, "classification")):
        d = TOW_DEFAULTS[src]
        assert (cfg["learner"], cfg["optimizer"], cfg["alpha"], cfg["gamma"], cfg["n_iterations"]) \
            == (d["learner"], d["optimizer"], d["alpha"], d["gamma"], d["iterations"])
        assert cfg["eval_every"] == max(1, cfg["n_iterations"] // 20)
    assert normalize_run(sin) == sin                        # a normalised config is a fixed point
    assert run_id(sin) == run_id({"kind": "tow"}) != run_id({"kind": "tow", "strategy": "tow"})
    # the zo_maml default kind is not stored: ids of zo_maml runs are unchanged by it
    assert run_id({"kind": "zo_maml", "d": 2, "k": 2}) == run_id({"d": 2, "k": 2})
    assert "kind" not in normalize_run({"kind": "zo_maml"})


def test_M_means_tasks_per_batch_for_tow_and_perturbations_for_zo_maml():
    study = Study.grid(base={"M": 3, "iterations": 2},
                       runs=[{"kind": "tow", "n_iterations": 4}, {"d": 1, "k": 1, "M_prime": 3}])
    t, z = study.runs
    assert t["kind"] == "tow" and t["M"] == 3 and t["n_iterations"] == 4
    assert z["n_perturbations"] == 3 and z["n_iterations"] == 2
    # a variant's alias still replaces base's key
    study = Study.grid(base={"M": 3, "d": 1, "k": 1}, runs=[{"n_perturbations": 7}])
    assert study.runs[0]["n_perturbations"] == 7


BAD_TOW = [
    # (run settings, word the message must name, a valid name it must list or None)
    ({"kind": "tow", "strategy": "unifrom"}, "strategy", "uniform"),
    ({"kind": "tow", "strategy": "TOW"}, "strategy", "tow"),
    ({"kind": "tow", "source": "omniglott", "data": "x"}, "source", "omniglot"),
    ({"kind": "tow", "source": "omniglot"}, "data", None),
    ({"kind": "tow", "source": "omniglot", "data": 3}, "data", None),
    ({"kind": "tow", "data": "/tmp/omniglot"}, "data", None),
    ({"kind": "tow", "n_way": 5}, "n_way", None),
    ({"kind": "tow", "source": "classification", "n_way": 1}, "n_way", None),
    ({"kind": "tow", "learner": "protonet"}, "protonet", "fomaml"),
    ({"kind": "tow", "learner": "reptile"}, "learner", "maml"),
    ({"kind": "tow", "estimator": "exact"}, "estimator", "strategy"),
    ({"kind": "tow", "stratgy": "tow"}, "stratgy", "strategy"),
    ({"kind": "tow", "M": 0}, "M", None),
    ({"kind": "tow", "T": 1.5}, "T", None),
    ({"kind": "tow", "alpha": -1.0}, "alpha", None),
    ({"kind": "tow", "alpha": "fast"}, "alpha", None),
    ({"kind": "tow", "beta_u": 0.0}, "beta_u", None),
    ({"kind": "tow", "beta_u": 1e13}, "beta_u", None),
    ({"kind": "tow", "kappa": 1.0}, "kappa", None),
    ({"kind": "tow", "optimizer": "rmsprop"}, "optimizer", "adam"),
    ({"kind": "tow", "value_model": "dense"}, "value_model", "diagonal"),
    ({"kind": "tow", "n_test": 1}, "n_test", None),
    ({"kind": "tow", "eval_every": 0}, "eval_every", None),
    ({"kind": "tow", "eval_every": "never"}, "eval_every", None),
    ({"kind": "tow", "seed": -1}, "seed", None),
    ({"kind": "tow", "k_shot": 0}, "k_shot", None),
    ({"kind": "tow", "hidden": True}, "hidden", None),
    ({"kind": "tows"}, "kind", "tow"),
    ({"kind": 1}, "kind", "zo_maml"),
    ({"strategy": "tow"}, "strategy", "kind"),              # a TOW key in a zo_maml run
    ({"source": "sinusoid", "d": 1}, "source", "tow"),
]


@pytest.mark.parametrize("run,word,valid", BAD_TOW,
                         ids=[f"{w}-{i}" for i, (_, w, _) in enumerate(BAD_TOW)])
def test_bad_tow_runs_name_the_key(run, word, valid):
    err = assert_named_error(normalize_run, word, run)
    if valid is not None:
        assert valid in str(err)


@pytest.mark.parametrize("text,word", [
    ('[base]\nkind = "tow"\nstrategy = "uniform"\nsource = "sinusiod"\n', "sinusoid"),
    ('[base]\nkind = "tow"\n[grid]\nstrategy = ["uniform", "tow", "explore"]\n', "exploration"),
    ('[base]\nkind = "tow"\nn_perturbations = 3\n', "n_perturbations"),
    ('[grid]\nstratgy = ["tow"]\n', "strategy"),
])
def test_bad_tow_study_files_name_the_key(tmp_path, text, word):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert_named_error(load_study, word, path)


def test_line_search_and_terminal_cost_options():
    if not hasattr(tow, "LINE_SEARCHES"):
        assert_named_error(normalize_run, "line_search", {"kind": "tow", "line_search": "paper"})
        assert_named_error(normalize_run, "terminal_cost", {"kind": "tow", "terminal_cost": "x"})
        assert normalize_run({"kind": "tow"})["line_search"] is None
        return
    for key, names in (("line_search", tow.LINE_SEARCHES), ("terminal_cost", tow.TERMINAL_COSTS)):
        err = assert_named_error(normalize_run, key, {"kind": "tow", key: "nope"})
        assert all(name in str(err) for name in names)
        assert all(normalize_run({"kind": "tow", key: n})[key] == n for n in names)
    rec = execute_run({**TINY_TOW, "strategy": "tow", "line_search": tow.LINE_SEARCHES[-1],
                       "terminal_cost": tow.TERMINAL_COSTS[-1]})
    assert rec["status"] == "finished"
    assert rec["tow_settings"].get("line_search", tow.LINE_SEARCHES[-1]) == tow.LINE_SEARCHES[-1]


# ---------------------------------------------------------------- runs


def test_one_strategy_per_run_equals_run_experiment():
    """Each run is its strategy's column of one multi-strategy run_experiment call with the
    same settings and seed (the strategies share mini-batches, not state)."""
    study = tiny_tow_study(seeds=[3], strategies=("uniform", "exploration", "tow"))
    cfg = study.runs[0]
    source = tow.SinusoidTasks()
    learner = tow.make_learner(cfg["learner"], source, hidden=cfg["hidden"], gamma=cfg["gamma"])
    import inspect
    seed_kw = "rng" if "rng" in inspect.signature(tow.run_experiment).parameters else "seed"
    ref = tow.run_experiment(source, learner, ["uniform", "exploration", "tow"],
                             n_iterations=cfg["n_iterations"], T=cfg["T"], M=cfg["M"],
                             optimizer=cfg["optimizer"], alpha=cfg["alpha"], n_test=cfg["n_test"],
                             n_val=cfg["n_val"], eval_every=cfg["eval_every"], **{seed_kw: 3})
    for r, c in zip(ref, study.runs):
        rec = execute_run(c)
        assert rec["status"] == "finished" and rec["config"]["strategy"] == r.name
        assert rec["test_metric"] == r.metric.tolist()
        assert rec["summary"]["final_test_metric"] == r.mean
        assert rec["summary"]["metric"] == "mse" and "squared" in rec["summary"]["units"]
        assert rec["summary"]["units"] == tow.experiment.UNITS["mse"]
        assert [(h["window"], h["validation_metric"], h["validation_ci95"])
                for h in rec["history"]] == [tuple(p) for p in r.curve]
    uniform, _, tw = (execute_run(c) for c in study.runs)
    assert uniform["test_metric"] != tw["test_metric"]      # the strategy matters


def test_classification_source_records_accuracy():
    rec = execute_run({**TINY_TOW, "source": "classification", "strategy": "exploitation",
                       "n_way": 3, "seed": 1})
    assert rec["status"] == "finished" and rec["summary"]["metric"] == "accuracy"
    assert all(0.0 <= v <= 1.0 for v in rec["test_metric"])
    assert rec["summary"]["best_validation_metric"] == max(h["validation_metric"]
                                                           for h in rec["history"])
    assert "n_way=3" in rec["tow_settings"]["source"]


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")      # on the way to divergence
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_diverged_and_failed_tow_runs_are_recorded(tmp_path):
    study = Study([{**TINY_TOW, "optimizer": "sgd", "alpha": 1e200},          # diverges
                   {**TINY_TOW, "source": "classification", "n_way": 50}],   # no such task
                  name="bad-tow")
    rep = run_study(study, tmp_path, engine="serial", progress=False)
    assert rep.complete and len(rep.ran) == 2
    diverged, failed = (ResultStore(tmp_path).load(i) for i in study.ids)
    assert diverged["status"] == "diverged" and "alpha" in diverged["error"]
    assert failed["status"] == "failed" and "n_way" in failed["error"]
    assert rep.failed == {study.ids[1]: failed["error"]}
    rows = summary_table(tmp_path, study)
    assert [(r["n_diverged"], r["n_failed"], r["final_test_metric_mean"]) for r in rows] == \
        [(1, 0, None), (0, 1, None)]


def test_missing_omniglot_data_is_an_error_retried_by_a_rerun(tmp_path):
    study = Study([{**TINY_TOW, "source": "omniglot", "data": str(tmp_path / "no-omniglot")}])
    rep = run_study(study, tmp_path / "store", engine="serial", progress=False)
    assert not rep.complete and "no-omniglot" in rep.errors[study.ids[0]]
    assert ResultStore(tmp_path / "store").ids() == []        # nothing stored: a rerun retries


# ---------------------------------------------------------------- aggregation and report


def test_tow_summary_curves_and_report(tmp_path):
    study = tiny_tow_study(seeds=3)
    rep = run_study(study, tmp_path, engine="serial", progress=False)
    assert rep.complete and len(rep.ran) == 6
    records = [ResultStore(tmp_path).load(i) for i in study.ids]
    rows = summary_table(tmp_path, study)
    assert [r["setting"] for r in rows] == ["strategy=uniform", "strategy=tow"]
    for row in rows:
        finals = [r["summary"]["final_test_metric"] for r in records
                  if r["config"]["strategy"] == row["strategy"]]
        assert row["n_seeds"] == 3 and row["metric"] == "mse" and row["kind"] == "tow"
        assert (row["final_test_metric_mean"], row["final_test_metric_ci_low"],
                row["final_test_metric_ci_high"]) == pytest.approx(mean_ci(finals))
    data = curves(tmp_path, study)
    for c in data:
        assert c["x_name"] == "window" and c["column"] == "validation_metric"
        assert list(c["iteration"]) == [0, 1, 2, 3] and (c["n"] == 3).all()
        vals = np.array([[h["validation_metric"] for h in r["history"]] for r in records
                         if r["config"]["strategy"] == c["config"]["strategy"]])
        assert np.allclose(c["mean"], vals.mean(axis=0))
        assert (c["ci_low"] <= c["mean"]).all() and (c["mean"] <= c["ci_high"]).all()
    paths = write_report(tmp_path, study, tmp_path / "rep")
    assert open(paths["curves_png"], "rb").read(4) == b"\x89PNG"
    with open(paths["curves_csv"]) as fh:
        long = list(csv.DictReader(fh))
    assert len(long) == 2 * 4 and {r["column"] for r in long} == {"validation_metric"}
    assert [r["window"] for r in long[:4]] == ["0", "1", "2", "3"]
    with open(paths["summary"]) as fh:
        assert {r["metric"] for r in csv.DictReader(fh)} == {"mse"}
    assert_named_error(curves, "column", tmp_path, study, column="validation")


def test_mixed_study_of_both_kinds(tmp_path, capsys):
    study = Study.grid(runs=[{**TINY_TOW, "strategy": "uniform"},
                             {"d": 1, "k": 1, "n_iterations": 2, "M": 5, "M_prime": 5,
                              "backend": "numpy"}], seeds=2, name="mixed")
    run_study(study, tmp_path, engine="serial", progress=False)
    rows = summary_table(tmp_path, study)
    assert [r["kind"] for r in rows] == ["tow", "zo_maml"]
    assert rows[0]["final_test_metric_mean"] is not None and "final_cost_gap_ratio_mean" not in rows[0]
    assert rows[1]["final_cost_gap_ratio_mean"] is not None
    assert {c["x_name"] for c in curves(tmp_path, study)} == {"window", "iteration"}
    assert [c["x_name"] for c in curves(tmp_path, study, column="meta_objective")] == ["iteration"]
    write_report(tmp_path, study)


# ---------------------------------------------------------------- the example study


def test_example_study_file_runs_at_tiny_size(tmp_path, capsys):
    """docs/studies/tow_sinusoid.toml: every registered strategy x 10 seeds; run here with
    2 seeds and tiny sizes through ``metalqr sweep``."""
    study = load_study(EXAMPLE)
    assert study.name == "tow-sinusoid" and len(study) == 10 * len(tow.strategies())
    assert {r["strategy"] for r in study.runs} == set(tow.strategies())
    text = open(EXAMPLE).read()
    for key, value in (("n_iterations", 3), ("n_test", 6), ("n_val", 4), ("hidden", 8),
                       ("eval_every", 1), ("seeds", 2)):
        text = "\n".join(f"{key} = {value}" if line.split("=")[0].strip() == key else line
                         for line in text.splitlines())
    small = tmp_path / "tow_sinusoid.toml"
    small.write_text(text)
    assert len(load_study(small)) == 2 * len(tow.strategies())
    store = tmp_path / "store"
    assert sweep_main([str(small), "--store", str(store), "--serial", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "final_test_metric_mean" in out and "strategy=tow" in out and "mse" in out
    assert (store / "report" / "tow-sinusoid" / "curves.png").exists()
    assert sweep_main([str(small), "--store", str(store), "--serial", "--no-progress"]) == 0
    assert f"0 run now, {len(load_study(small))} already stored" in capsys.readouterr().out


# ---------------------------------------------------------------- workers


@pytest.mark.slow
def test_tow_study_same_numbers_serial_and_on_two_workers(tmp_path):
    distributed = pytest.importorskip("distributed")
    from metalqr.experiments import local_cluster
    study = tiny_tow_study(seeds=2, strategies=tuple(tow.strategies()))
    run_study(study, tmp_path / "serial", engine="serial", progress=False)
    with local_cluster(2) as cluster, distributed.Client(cluster) as client:
        pids = set(client.run(os.getpid).values())
        rep = run_study(study, tmp_path / "dask", client=client, progress=False)

        def threads_in_a_run():
            from metalqr.experiments import limit_threads
            import numba
            limit_threads()               # as every run on a worker: NUMBA_NUM_THREADS=1 there
            return numba.get_num_threads()
        assert client.submit(threads_in_a_run, pure=False).result() == 1
    assert rep.complete and len(rep.ran) == len(study)
    ref = stored(tmp_path / "serial", study)
    assert len(ref) == len(study) and stored(tmp_path / "dask", study) == ref   # bit for bit
    ran_in = {ResultStore(tmp_path / "dask").load(i)["device"]["pid"] for i in study.ids}
    assert ran_in <= pids and os.getpid() not in ran_in
