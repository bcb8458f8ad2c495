"""metalqr.experiments: the TOW study keys of ``metalqr tow`` (preset, net, channels,
inner_steps, curve_smoothing, the sources anyshot / digits / images and their options), each
reaching metalqr.tow.run_experiment with the value given (bit for bit against a direct call),
a preset's overrides recorded as ``metalqr tow --preset`` records them, one table of defaults
shared with the CLI; the result vocabulary ``n_iterations`` in records and tables, and older
records redone with a message that says why."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from metalqr import cli, tow
from metalqr.experiments import (TOW_RUN_DEFAULTS, TOW_SOURCE_DEFAULTS, TOW_SOURCES, ResultStore,
                                 Study, comparable, execute_run, normalize_run, run_study,
                                 summary_table, tow_default_net)

#: A TOW run of a few hundredths of a second (as tests/test_experiments_tow.py).
TINY_TOW = {"kind": "tow", "n_iterations": 3, "T": 2, "M": 2, "hidden": 8, "n_test": 6,
            "n_val": 4}
TINY_RUN_EXPERIMENT = dict(n_iterations=3, T=2, M=2, n_test=6, n_val=4, eval_every=1,
                           progress=False)


def same_numbers(record, result):
    """The record of a one-strategy study run equals ``result`` bit for bit."""
    assert record["status"] == "finished", record.get("error")
    assert record["test_metric"] == result.metric.tolist()
    assert record["summary"]["final_test_metric"] == result.mean
    assert [(h["window"], h["validation_metric"], h["validation_ci95"])
            for h in record["history"]] == [tuple(p) for p in result.curve]


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    """ROOT/{train,test}/<class>/*.png: 5 classes of 6 random 8 x 8 grey images per split."""
    import matplotlib.image as mpimg
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(5):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(6):
                img = np.clip(rng.random((8, 8)) * 0.3 + c / 5.0, 0.0, 1.0)
                mpimg.imsave(folder / f"{i}.png", img, cmap="gray", vmin=0.0, vmax=1.0)
    return str(root)


# ---------------------------------------------------------------- one table of defaults


def test_cli_and_studies_share_one_table_of_defaults():
    assert cli.TOW_DEFAULTS is TOW_SOURCE_DEFAULTS
    assert set(TOW_SOURCE_DEFAULTS) == set(TOW_SOURCES)
    assert all(cli.TOW_COMMON_DEFAULTS[k] == TOW_RUN_DEFAULTS[k] for k in cli.TOW_COMMON_DEFAULTS)
    assert (cli.TOW_HIDDEN, cli.TOW_CHANNELS, cli.TOW_MAX_SHOT) == \
        (TOW_RUN_DEFAULTS["hidden"], TOW_RUN_DEFAULTS["channels"], TOW_RUN_DEFAULTS["max_shot"])
    # the study's max_shot default is the task class's own
    assert TOW_RUN_DEFAULTS["max_shot"] == tow.AnyShotTasks().max_shot
    import argparse
    for source in TOW_SOURCES:
        for preset in (None, *tow.PRESETS):
            ns = argparse.Namespace(net=None, preset=preset, source=source)
            assert cli._tow_net(ns) == tow_default_net(preset, source)
    # a study's default run is metalqr tow's default run
    cfg = normalize_run({"kind": "tow", "source": "classification"})
    d = cli.TOW_DEFAULTS["classification"]
    assert (cfg["learner"], cfg["alpha"], cfg["n_iterations"], cfg["net"], cfg["hidden"],
            cfg["channels"], cfg["inner_steps"], cfg["curve_smoothing"], cfg["preset"]) == \
        (d["learner"], d["alpha"], d["iterations"], "mlp", 40, None, None, None, None)


def test_new_keys_resolve_as_metalqr_tow():
    sin = normalize_run({"kind": "tow"})
    assert (sin["net"], sin["hidden"], sin["channels"], sin["inner_steps"], sin["max_shot"],
            sin["line_search"], sin["terminal_cost"]) == ("mlp", 40, None, 1, None, "metalqr", "none")
    paper = tow.PRESETS["paper"]
    cfg = normalize_run({"kind": "tow", "source": "omniglot", "data": "somewhere", "preset": "paper",
                         "learner": "fomaml", "M": 4})
    assert cfg["net"] == "conv" and cfg["channels"] == 8 and cfg["hidden"] is None
    assert cfg["M"] == 4                                           # the key given wins
    for key in ("T", "optimizer", "alpha", "gamma", "inner_steps", "n_test", "n_val",
                "curve_smoothing", "line_search", "kappa"):
        assert cfg[key] == paper[key], key                          # else the preset's value
    assert normalize_run(cfg) == cfg                                # a fixed point
    any_ = normalize_run({"kind": "tow", "source": "anyshot"})
    assert any_["max_shot"] == 5 and any_["learner"] == "protonet" and any_["inner_steps"] is None
    assert normalize_run({"kind": "tow", "net": "auto", "learner": "auto"}) == sin


# ---------------------------------------------------------------- each key reaches run_experiment


def test_inner_steps_and_curve_smoothing_reach_run_experiment():
    cfg = {**TINY_TOW, "inner_steps": 2, "curve_smoothing": 0.5, "gamma": 0.05, "seed": 4}
    rec = execute_run(cfg)
    s = rec["tow_settings"]
    assert s["learner_inner_steps"] == 2 and s["curve_smoothing"] == 0.5
    assert rec["config"]["inner_steps"] == 2 and rec["config"]["curve_smoothing"] == 0.5
    source = tow.SinusoidTasks()
    learner = tow.make_learner("fomaml", source, hidden=8, gamma=0.05, inner_steps=2)
    ref, = tow.run_experiment(source, learner, ["uniform"], optimizer="adam", alpha=3e-3,
                              curve_smoothing=0.5, rng=4, **TINY_RUN_EXPERIMENT)
    same_numbers(rec, ref)
    one = execute_run({**cfg, "inner_steps": 1})
    assert one["test_metric"] != rec["test_metric"]          # the key changes the numbers


def test_anyshot_max_shot_reaches_the_source():
    cfg = {**TINY_TOW, "source": "anyshot", "max_shot": 2, "n_way": 3, "k_query": 2,
           "strategy": "exploration", "seed": 2}
    rec = execute_run(cfg)
    assert "max_shot=2" in rec["tow_settings"]["source"] and rec["config"]["max_shot"] == 2
    source = tow.AnyShotTasks(n_way=3, k_query=2, max_shot=2, rng=2)
    learner = tow.make_learner("protonet", source, hidden=8)
    ref, = tow.run_experiment(source, learner, ["exploration"], optimizer="adam", alpha=1e-3,
                              rng=2, **TINY_RUN_EXPERIMENT)
    same_numbers(rec, ref)
    assert execute_run({**cfg, "max_shot": 4})["test_metric"] != rec["test_metric"]


@pytest.mark.filterwarnings("ignore:strategy 'uniform' ended worse")   # 3 windows of noise
def test_images_source_with_net_conv_and_channels(image_root):
    cfg = {**{k: v for k, v in TINY_TOW.items() if k != "hidden"}, "source": "images",
           "data": image_root, "n_way": 3, "k_query": 2, "net": "conv", "channels": 2,
           "strategy": "uniform", "seed": 1}
    rec = execute_run(cfg)
    s = rec["tow_settings"]
    assert (s["net"], s["channels"], s["hidden"]) == ("conv", 2, None)
    assert "ConvNet" in s["learner"] and s["source_name"] == "images"
    source = tow.ImageFolderTasks(image_root, n_way=3, k_query=2)
    learner = tow.make_learner("protonet", source, net="conv", channels=2)
    assert s["n_parameters"] == learner.net.size
    ref, = tow.run_experiment(source, learner, ["uniform"], optimizer="adam", alpha=1e-3, rng=1,
                              **TINY_RUN_EXPERIMENT)
    same_numbers(rec, ref)


def test_digits_source_reaches_digits_tasks():
    cfg = normalize_run({**TINY_TOW, "source": "digits", "n_way": 2, "k_query": 2})
    assert cfg["source"] == "digits" and cfg["learner"] == "protonet"
    try:
        import sklearn  # noqa: F401
    except ImportError:   # the optional extra: an error of this machine, never a stored result
        from metalqr.exceptions import BackendUnavailableError
        with pytest.raises(BackendUnavailableError, match="scikit-learn"):
            execute_run(cfg)
        return
    rec = execute_run(cfg)
    source = tow.DigitsTasks(n_way=2, k_query=2)
    ref, = tow.run_experiment(source, tow.make_learner("protonet", source, hidden=8), ["uniform"],
                              optimizer="adam", alpha=1e-3, rng=0, **TINY_RUN_EXPERIMENT)
    same_numbers(rec, ref)


def test_preset_overrides_are_recorded_as_by_run_experiment():
    """preset = "paper" on classification, tiny sizes given explicitly: the same numbers and
    the same settings["preset_overrides"] as run_experiment(preset="paper") given only those."""
    cfg = {**TINY_TOW, "source": "classification", "preset": "paper", "strategy": "tow",
           "n_way": 3, "k_query": 2, "seed": 5}
    rec = execute_run(cfg)
    s = rec["tow_settings"]
    source = tow.HierarchicalClassificationTasks(n_way=3, k_query=2, rng=5)
    learner = tow.make_learner("protonet", source, hidden=8)
    ref, = tow.run_experiment(source, learner, ["tow"], preset="paper", rng=5,
                              **TINY_RUN_EXPERIMENT)
    same_numbers(rec, ref)
    assert s["preset"] == "paper" and s["preset_overrides"] == ref.settings["preset_overrides"]
    assert s["preset_overrides"] == {"T": [5, 2], "M": [10, 2], "n_test": [1000, 6],
                                     "n_val": [100, 4]}
    assert (s["line_search"], s["curve_smoothing"], s["alpha"]) == ("paper", 0.1, 1e-4)  # preset's


def test_preset_records_the_same_overrides_as_the_cli(tmp_path, image_root, capsys):
    """``metalqr tow --preset paper`` and a study run with the same settings: equal
    preset_overrides (the network's override included) and equal numbers."""
    args = ["tow", "--source", "images", "--images", image_root, "--preset", "paper",
            "--net", "conv", "--channels", "2", "--learner", "fomaml", "--inner-steps", "2",
            "--iterations", "2", "--T", "2", "--M", "2", "--n-test", "6", "--n-val", "4",
            "--strategies", "uniform", "--seed", "3", "--output", str(tmp_path / "cli"),
            "--no-progress"]
    assert cli.main(args) == 0
    capsys.readouterr()
    with open(tmp_path / "cli" / "tow_images.json") as fh:
        doc = json.load(fh)
    rec = execute_run({"kind": "tow", "source": "images", "data": image_root, "preset": "paper",
                       "net": "conv", "channels": 2, "learner": "fomaml", "inner_steps": 2,
                       "n_iterations": 2, "T": 2, "M": 2, "n_test": 6, "n_val": 4, "seed": 3})
    assert rec["status"] == "finished"
    s = rec["tow_settings"]
    assert s["preset_overrides"] == doc["settings"]["preset_overrides"]
    assert s["preset_overrides"]["net"] == ["mlp", "conv"]
    assert s["preset_overrides"]["inner_steps"] == [5, 2]
    for key in ("T", "M", "optimizer", "alpha", "n_test", "n_val", "curve_smoothing", "line_search",
                "learner_gamma", "learner_inner_steps", "net", "channels", "hidden", "n_parameters",
                "preset", "seed", "source", "learner"):
        assert s[key] == doc["settings"][key], key
    row, = doc["table"]
    assert row["mean"] == rec["summary"]["final_test_metric"]


# ---------------------------------------------------------------- n_iterations, old stores


def zo_study():
    return Study.grid(base={"d": 1, "k": 1, "n_iterations": 2, "M": 5, "M_prime": 5,
                            "backend": "numpy"}, seeds=1, name="vocab")


def test_summaries_say_n_iterations(tmp_path):
    study = zo_study()
    run_study(study, tmp_path, engine="serial", progress=False)
    rec = ResultStore(tmp_path).load(study.ids[0])
    assert rec["summary"]["n_iterations"] == 2 and "iterations" not in rec["summary"]
    row, = summary_table(tmp_path, study)
    assert row["n_iterations_mean"] == 2 and "iterations_mean" not in row


def test_a_store_of_older_records_is_redone_and_says_why(tmp_path):
    study = zo_study()
    run_study(study, tmp_path, engine="serial", progress=False)
    store = ResultStore(tmp_path)
    rid = study.ids[0]
    fresh = comparable(store.load(rid))
    with open(store.path(rid)) as fh:      # as metalqr before the rename wrote it
        body = json.load(fh)
    body["format_version"] = 1
    summary = body["record"]["summary"]
    summary["iterations"] = summary.pop("n_iterations")
    with open(store.path(rid), "w") as fh:
        json.dump(body, fh)
    from metalqr.exceptions import CheckpointError
    with pytest.raises(CheckpointError, match="older metalqr") as info:
        store.load(rid)
    assert "n_iterations" in str(info.value) and "rerun the study" in str(info.value)
    rep = run_study(study, tmp_path, engine="serial", progress=False)
    assert rep.ran == [rid] and "older metalqr" in rep.damaged[rid]
    assert comparable(store.load(rid)) == fresh                  # redone: the same numbers
    assert any(f.startswith(f"{rid}.json.damaged-") for f in os.listdir(store.runs_dir))


def test_example_preset_study_file_runs_at_tiny_size(tmp_path, capsys):
    """docs/studies/tow_paper_preset.toml: the preset reaches every run, its overrides are
    recorded; run here with 1 seed and tiny sizes through ``metalqr sweep``."""
    from metalqr.experiments import load_study, sweep_main
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                        "studies", "tow_paper_preset.toml")
    study = load_study(path)
    assert len(study) == 5 * len(tow.strategies())
    assert all(r["preset"] == "paper" and r["M"] == 10 and r["alpha"] == 1e-4 and r["n_test"] == 300
               for r in study.runs)
    text = open(path).read()
    for key, value in (("n_iterations", 2), ("n_test", 6), ("hidden", 8), ("eval_every", 1),
                       ("seeds", 1)):
        text = "\n".join(f"{key} = {value}" if line.split("=")[0].strip() == key else line
                         for line in text.splitlines())
    small = tmp_path / "tow_paper_preset.toml"
    small.write_text(text + '\n[[runs]]\nM = 2\nT = 2\nn_val = 4\n')
    store = tmp_path / "store"
    assert sweep_main([str(small), "--store", str(store), "--serial", "--no-progress"]) == 0
    capsys.readouterr()
    small_study = load_study(small)
    records = list(ResultStore(store).records(small_study.ids))
    assert len(records) == len(small_study) == len(tow.strategies())
    for rec in records:
        assert rec["status"] == "finished" and rec["tow_settings"]["preset"] == "paper"
        assert rec["tow_settings"]["preset_overrides"] == {
            "M": [10, 2], "T": [5, 2], "n_test": [1000, 6], "n_val": [100, 4]}
