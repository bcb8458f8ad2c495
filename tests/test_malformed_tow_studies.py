"""Malformed inputs of metalqr.tow.studies: each raises a metalqr error naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_named_error
from test_tow_studies import TINY, make_tree

from metalqr.tow import MLP, ProtoNet, SinusoidTasks, studies
from metalqr.tow.omniglot import OmniglotTasks


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("omni_bad")
    src = OmniglotTasks(make_tree(root / "tree"), n_way=2, k_shot=1, k_query=1, size=4, test_alphabets=2)
    learner = ProtoNet(MLP(src.n_in, 4, 3, "mse"))
    afile = root / "afile"
    afile.write_text("x")
    folder = root / "adir"
    folder.mkdir()
    study = studies.Table1Study({}, dict(learners=[], seeds=[0], strategies=[], experiment={}))
    curve = studies.CurveStudy({}, {}, {})
    probe = studies.WeightProbeStudy(np.array([0]), {}, {}, np.array([0.0]), dict(M=2), {})
    return dict(src=src, learner=learner, file=str(afile), dir=str(folder), study=study, curve=curve, probe=probe)


T1 = studies.run_table1_study
W = studies.weight_probe_study
D = studies.ilqr_iterations_study
B = studies.value_model_study

# (id, function(env) -> (fn, args, kwargs), word)
CASES = [
    # run_table1_study
    ("t1-source", lambda e: (T1, (None, {"p": e["learner"]}), {}), "source"),
    ("t1-learners-empty", lambda e: (T1, (e["src"], {}), {}), "learners"),
    ("t1-learners-list", lambda e: (T1, (e["src"], [e["learner"]]), {}), "learners"),
    ("t1-learner-type", lambda e: (T1, (e["src"], {"p": 3}), {}), "learners"),
    ("t1-learner-name", lambda e: (T1, (e["src"], {"a b/": e["learner"]}), {}), "learners"),
    ("t1-seeds-repeat", lambda e: (T1, (e["src"], {"p": e["learner"]}, (0, 0)), {}), "seeds"),
    ("t1-seeds-negative", lambda e: (T1, (e["src"], {"p": e["learner"]}, (-1,)), {}), "seeds"),
    ("t1-seeds-str", lambda e: (T1, (e["src"], {"p": e["learner"]}, "012"), {}), "seeds"),
    ("t1-strategies-str", lambda e: (T1, (e["src"], {"p": e["learner"]}), {"strategies": "tow"}), "strategies"),
    ("t1-folder-type", lambda e: (T1, (e["src"], {"p": e["learner"]}), {"folder": 3}), "folder"),
    ("t1-folder-file", lambda e: (T1, (e["src"], {"p": e["learner"]}), {"folder": e["file"]}), "folder"),
    ("t1-compute", lambda e: (T1, (e["src"], {"p": e["learner"]}), {"compute": "no"}), "compute"),
    ("t1-compute-nofolder", lambda e: (T1, (e["src"], {"p": e["learner"]}), {"compute": False}), "folder"),
    ("t1-progress", lambda e: (T1, (e["src"], {"p": e["learner"]}), {"progress": 1}), "progress"),
    ("t1-seed-kw", lambda e: (T1, (e["src"], {"p": e["learner"]}), {"seed": 1}), "seed"),
    ("t1-rng-kw", lambda e: (T1, (e["src"], {"p": e["learner"]}), {"rng": 1}), "rng"),
    ("t1-iterations", lambda e: (T1, (e["src"], {"p": e["learner"]}, (0,)), dict(TINY, n_iterations=0)),
     "n_iterations"),
    # estimate_delta
    ("delta-1d", lambda e: (studies.estimate_delta, ([0.5, 0.5],), {}), "weights"),
    ("delta-nan", lambda e: (studies.estimate_delta, ([[0.5, np.nan]],), {}), "weights"),
    ("delta-empty", lambda e: (studies.estimate_delta, (np.zeros((0, 2)),), {}), "weights"),
    ("delta-str", lambda e: (studies.estimate_delta, ("abc",), {}), "weights"),
    ("delta-mu", lambda e: (studies.estimate_delta, ([[0.5, 0.5]],), {"mu": -1.0}), "mu"),
    ("delta-exclude-type", lambda e: (studies.estimate_delta, ([[0.5, 0.5]],), {"exclude_last": 1}), "exclude_last"),
    ("delta-exclude-2d", lambda e: (studies.estimate_delta, ([[0.5, 0.5]],), {"exclude_last": True}),
     "exclude_last"),
    # ema
    ("ema-str", lambda e: (studies.ema, ("abc",), {}), "values"),
    ("ema-2d", lambda e: (studies.ema, ([[1.0]],), {}), "values"),
    ("ema-nan", lambda e: (studies.ema, ([1.0, np.nan],), {}), "values"),
    ("ema-zero", lambda e: (studies.ema, ([1.0],), {"smoothing": 0.0}), "smoothing"),
    ("ema-big", lambda e: (studies.ema, ([1.0],), {"smoothing": 1.5}), "smoothing"),
    # weight_probe_study
    ("probe-source", lambda e: (W, (SinusoidTasks(), e["learner"]), {}), "source"),
    ("probe-learner", lambda e: (W, (e["src"], None), {}), "learner"),
    ("probe-iterations", lambda e: (W, (e["src"], e["learner"]), {"n_iterations": 0}), "n_iterations"),
    ("probe-every", lambda e: (W, (e["src"], e["learner"]), {"probe_every": 1.5}), "probe_every"),
    ("probe-M", lambda e: (W, (e["src"], e["learner"]), {"M": 0}), "M"),
    ("probe-optimizer", lambda e: (W, (e["src"], e["learner"]), {"optimizer": "adamw"}), "optimizer"),
    ("probe-alpha", lambda e: (W, (e["src"], e["learner"]), {"alpha": -1.0}), "alpha"),
    ("probe-strategy", lambda e: (W, (e["src"], e["learner"]), {"train_strategy": "nope"}), "train_strategy"),
    ("probe-strategy-type", lambda e: (W, (e["src"], e["learner"]), {"train_strategy": 3}), "train_strategy"),
    ("probe-rng", lambda e: (W, (e["src"], e["learner"]), {"rng": -2}), "rng"),
    ("probe-rng-type", lambda e: (W, (e["src"], e["learner"]), {"rng": "abc"}), "rng"),
    ("probe-n_val", lambda e: (W, (e["src"], e["learner"]), {"n_val": 0}), "n_val"),
    # ilqr_iterations_study
    ("ilqr-empty", lambda e: (D, (e["src"], e["learner"], ()), {}), "n_ilqr"),
    ("ilqr-repeat", lambda e: (D, (e["src"], e["learner"], (2, 2)), {}), "n_ilqr"),
    ("ilqr-zero", lambda e: (D, (e["src"], e["learner"], (0, 2)), {}), "n_ilqr"),
    ("ilqr-str", lambda e: (D, (e["src"], e["learner"], "2"), {}), "n_ilqr"),
    ("ilqr-reference", lambda e: (D, (e["src"], e["learner"], (1,)), {"reference": 3}), "reference"),
    ("ilqr-checkpoint", lambda e: (D, (e["src"], e["learner"], (1,)), {"checkpoint": "x"}), "checkpoint"),
    ("ilqr-folder", lambda e: (D, (e["src"], e["learner"], (1,)), {"folder": e["file"]}), "folder"),
    ("ilqr-learner", lambda e: (D, (e["src"], "maml", (1,)), {}), "learner"),
    # value_model_study
    ("vm-value_model", lambda e: (B, (e["src"], e["learner"]), {"value_model": "full"}), "value_model"),
    ("vm-learner", lambda e: (B, (e["src"], None), {}), "learner"),
    ("vm-source", lambda e: (B, (3, e["learner"]), {}), "source"),
    ("vm-reference", lambda e: (B, (e["src"], e["learner"]), {"reference": [1]}), "reference"),
    ("vm-folder", lambda e: (B, (e["src"], e["learner"]), {"folder": 7}), "folder"),
    ("vm-progress", lambda e: (B, (e["src"], e["learner"]), {"progress": "y"}), "progress"),
    # result objects' outputs
    ("t1-tow-alone", lambda e: (T1, (e["src"], {"p": e["learner"]}, (0,)), dict(TINY, strategies=("tow",))),
     "strategies"),
    ("t1-eval-every-0", lambda e: (T1, (e["src"], {"p": e["learner"]}, (0,)), dict(TINY, eval_every=0)),
     "eval_every"),
    ("delta-negative-3d", lambda e: (studies.estimate_delta, (-np.ones((2, 2, 2)),), {}), "weights"),
    ("delta-negative-one", lambda e: (studies.estimate_delta, ([[0.6, -1e-3]],), {}), "weights"),
    ("delta-inf", lambda e: (studies.estimate_delta, (np.full((1, 2, 2), np.inf),), {}), "weights"),
    ("delta-4d", lambda e: (studies.estimate_delta, (np.full((1, 1, 2, 2), 0.5),), {}), "weights"),
    ("delta-bool", lambda e: (studies.estimate_delta, (np.ones((1, 2, 2), dtype=bool),), {}), "weights"),
    ("t1save-type", lambda e: (e["study"].save, (3,), {}), "prefix"),
    ("t1save-dir", lambda e: (e["study"].save, (e["dir"],), {}), "prefix"),
    ("t1save-empty", lambda e: (e["study"].save, ("",), {}), "prefix"),
    ("t1plot-smoothing", lambda e: (e["study"].plot_curves, (), {"smoothing": 0.0}), "smoothing"),
    ("t1plot-smoothing-str", lambda e: (e["study"].plot_curves, (), {"smoothing": "a"}), "smoothing"),
    ("curvesave-none", lambda e: (e["curve"].save, (None,), {}), "prefix"),
    ("curvesave-dir", lambda e: (e["curve"].save, (e["dir"],), {}), "prefix"),
    ("curvesave-bytes", lambda e: (e["curve"].save, (b"x",), {}), "prefix"),
    ("curvesave-empty", lambda e: (e["curve"].save, ("",), {}), "prefix"),
    ("probesave-type", lambda e: (e["probe"].save, (1.5,), {}), "prefix"),
    ("probesave-dir", lambda e: (e["probe"].save, (e["dir"],), {}), "prefix"),
    ("probesave-none", lambda e: (e["probe"].save, (None,), {}), "prefix"),
    ("probesave-empty", lambda e: (e["probe"].save, ("",), {}), "prefix"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_studies(env, case):
    _, build, word = case
    fn, args, kwargs = build(env)
    assert_named_error(fn, word, *args, **kwargs)
