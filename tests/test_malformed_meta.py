"""Malformed-input table for the meta-training area (issue 12): meta_policy_optimization,
rollout_bias, mixing_rollout_length, sample_tasks, perturb_tasks, repair_stable, repair_spd,
default_heterogeneity, History, Figure1Setting, floor_ratio, reproduce_figure1.

Every case asserts a metalqr error (ValueError/TypeError subclass) whose message names the
argument (tests/helpers.py::assert_named_error)."""

from __future__ import annotations

import numpy as np
import pytest

import metalqr
from helpers import assert_named_error
from metalqr.meta.families import default_heterogeneity, repair_spd, repair_stable
from metalqr.meta.figure1 import Figure1Setting, floor_ratio, reproduce_figure1
from metalqr.meta.training import mixing_rollout_length, rollout_bias

TS = metalqr.sample_tasks(2, 2, 1, rng=0)
K0 = np.zeros((1, 2))
BASE = dict(alpha=1e-3, eta=1e-5, n_iterations=1, progress=False, n_perturbations=2,
            inner_perturbations=2)
NOM = metalqr.double_integrator()
SETTING = dict(d=1, k=1, alpha=1e-3, eta=1e-5)


def mpo(**kw):
    args = {**BASE, **kw}
    tasks = args.pop("tasks", TS)
    K = args.pop("K0", K0)
    if args.get("gradient") in ("exact", "first_order"):
        for name in ("n_perturbations", "inner_perturbations"):
            if name not in kw:
                args.pop(name, None)
    return metalqr.meta_policy_optimization(tasks, K, **args)


def _mpo_cases():
    c = []
    add = lambda word, **kw: c.append((word, kw))  # noqa: E731
    # tasks / K0
    add("tasks", tasks=None); add("tasks", tasks="tasks"); add("tasks", tasks=[NOM, NOM])
    add("tasks", tasks=np.eye(2))
    add("tasks", tasks=metalqr.TaskSet([metalqr.LQRTask(t.A, t.B, t.Q, t.R, Psi=np.zeros((2, 2)))
                                        for t in TS]))          # Psi = 0: nothing to learn
    add("K0", K0=np.zeros((2, 2))); add("K0", K0=np.zeros((2, 1, 2))); add("K0", K0=[[np.nan, 0.0]])
    add("K0", K0=[[1j, 0.0]]); add("K0", K0="zero"); add("K0", K0=np.zeros((1, 2), dtype=bool))
    add("K0", K0=np.zeros((1, 3))); add("K0", K0=[[np.inf, 0.0]])
    # step sizes
    for bad in (0.0, -1e-3, np.nan, np.inf, "0.1", None, True, 1j):
        add("alpha", alpha=bad)
    for bad in (-1e-5, np.nan, np.inf, "x", None, [1e-5]):
        add("eta", eta=bad)
    # counts
    for bad in (0, -1, 2.5, 1e3, "10", None, True):
        add("n_iterations", n_iterations=bad)
    for bad in (-1, -5, 1.5, "3", None):
        add("max_backtracks", max_backtracks=bad)
    for bad in (0, -1, 2.0, "2"):
        add("max_consecutive_rejections", max_consecutive_rejections=bad)
    for bad in (0, -3, 1.0, "1"):
        add("checkpoint_every", checkpoint_every=bad)
    for bad in (-1.0, np.nan, "0", [0.0]):
        add("tol", tol=bad)
    # names
    for bad in ("newton", "ZO", "", None, 3):
        add("gradient", gradient=bad)
    for bad in ("rollout", "models", "", None, True):
        add("guard", guard=bad)
    for bad in ("adam", "Adam_clipped", "sgd", None):
        add("outer_update", outer_update=bad)
    for bad in ("numbaa", "gpu", 1, ""):
        add("backend", backend=bad)
    for bad in ("rollouts", "model", 1):
        add("oracle", oracle=bad)
    # flags, callables, rng, weights
    for bad in (1, "yes", None):
        add("progress", progress=bad)
    for bad in (1, "yes", 0):
        add("two_point", two_point=bad)
    for bad in (1, "print", [print]):
        add("callback", callback=bad)
    for bad in (-1, "seed", 1.5, True):
        add("rng", rng=bad)
    for bad in ([1.0], [1.0, -1.0], [0.0, 0.0], [np.nan, 1.0], "ab"):
        add("weights", weights=bad)
    # estimator options
    for bad in (0, -1, 2.5, "5"):
        add("n_perturbations", n_perturbations=bad)
    for bad in (0, -1, 1.5):
        add("inner_perturbations", inner_perturbations=bad)
    for bad in (0, -1, 1.5, "50"):
        add("rollout_length", rollout_length=bad)
    for bad in (0.0, -0.05, np.nan, "r"):
        add("radius", radius=bad)
    for bad in (0, 3, 1.0):
        add("task_batch", task_batch=bad)
    add("n_perturbation", n_perturbation=5)           # typo: suggestion given
    add("rollout_lenght", rollout_lenght=50)
    add("n_perturbations", gradient="exact", n_perturbations=5)   # options need gradient="zo"
    # checkpoint path
    for bad in (3, b"file", ["a"], ""):
        add("checkpoint", checkpoint=bad)
    # size guard
    add("meta_policy_optimization", n_perturbations=10**5, inner_perturbations=10**5)
    return c


@pytest.mark.parametrize("word, kwargs", _mpo_cases(),
                         ids=[f"mpo-{w}-{i}" for i, (w, _) in enumerate(_mpo_cases())])
def test_meta_policy_optimization_malformed(word, kwargs):
    assert_named_error(mpo, word, **kwargs)


def test_checkpoint_folder_is_refused(tmp_path):
    assert_named_error(mpo, "checkpoint", checkpoint=tmp_path)
    (tmp_path / "file").write_text("x")
    assert_named_error(mpo, "checkpoint", checkpoint=tmp_path / "file" / "ckpt")


def test_max_backtracks_minus_one_is_refused_not_trained():
    # Issue 12: max_backtracks=-1 rejected every step and returned K0 as "trained"
    assert_named_error(mpo, "max_backtracks", max_backtracks=-1,
                       exc=metalqr.ValidationError)
    res = mpo(max_backtracks=0, gradient="exact")     # 0 is valid: one try, no halving
    assert res.history["rejected"][-1] == 0 and not np.array_equal(res.K, K0)


KS = metalqr.common_stabilizing_gain(metalqr.perturb_tasks(NOM, 2, rng=0))
TS2 = metalqr.perturb_tasks(NOM, 2, rng=0)
SIMPLE = [
    # rollout_bias
    (rollout_bias, "tasks", ("x", KS, 10), {}),
    (rollout_bias, "tasks", (None, KS, 10), {}),
    (rollout_bias, "K", (TS2, np.zeros((2, 2)), 10), {}),
    (rollout_bias, "K", (TS2, [[np.nan, 0.0]], 10), {}),
    (rollout_bias, "length", (TS2, KS, 0), {}),
    (rollout_bias, "length", (TS2, KS, -3), {}),
    (rollout_bias, "length", (TS2, KS, 2.5), {}),
    (rollout_bias, "length", (TS2, KS, "10"), {}),
    (rollout_bias, "K", (TS2, np.zeros((1, 2)), 10), {}),           # K = 0 does not stabilise
    # mixing_rollout_length
    (mixing_rollout_length, "tasks", ([1, 2], KS), {}),
    (mixing_rollout_length, "K", (TS2, [[1j, 0.0]]), {}),
    (mixing_rollout_length, "tolerance", (TS2, KS), {"tolerance": 0.0}),
    (mixing_rollout_length, "tolerance", (TS2, KS), {"tolerance": 1.0}),
    (mixing_rollout_length, "tolerance", (TS2, KS), {"tolerance": np.nan}),
    (mixing_rollout_length, "tolerance", (TS2, KS), {"tolerance": "5%"}),
    # sample_tasks
    (metalqr.sample_tasks, "n_tasks", (0, 2, 2), {}),
    (metalqr.sample_tasks, "n_tasks", (-1, 2, 2), {}),
    (metalqr.sample_tasks, "n_tasks", (2.0, 2, 2), {}),
    (metalqr.sample_tasks, "n_tasks", (10**8, 2, 2), {}),
    (metalqr.sample_tasks, "d", (2, 0, 2), {}),
    (metalqr.sample_tasks, "d", (2, "2", 2), {}),
    (metalqr.sample_tasks, "k", (2, 2, 0), {}),
    (metalqr.sample_tasks, "k", (2, 2, 1.5), {}),
    (metalqr.sample_tasks, "heterogeneity", (2, 2, 2), {"heterogeneity": -0.1}),
    (metalqr.sample_tasks, "heterogeneity", (2, 2, 2), {"heterogeneity": np.nan}),
    (metalqr.sample_tasks, "max_spectral_radius", (2, 2, 2), {"max_spectral_radius": 0}),
    (metalqr.sample_tasks, "max_spectral_radius", (2, 2, 2), {"max_spectral_radius": 1.0}),
    (metalqr.sample_tasks, "max_spectral_radius", (2, 2, 2), {"max_spectral_radius": "0.5"}),
    (metalqr.sample_tasks, "min_eigenvalue", (2, 2, 2), {"min_eigenvalue": 0.0}),
    (metalqr.sample_tasks, "min_eigenvalue", (2, 2, 2), {"min_eigenvalue": -1.0}),
    (metalqr.sample_tasks, "return_nominal", (2, 2, 2), {"return_nominal": 1}),
    (metalqr.sample_tasks, "rng", (2, 2, 2), {"rng": "seed"}),
    (metalqr.sample_tasks, "rng", (2, 2, 2), {"rng": -5}),
    (metalqr.sample_tasks, "sample_tasks", (10, 30000, 2), {}),
    # perturb_tasks
    (metalqr.perturb_tasks, "nominal", (None, 2), {}),
    (metalqr.perturb_tasks, "nominal", (TS2, 2), {}),
    (metalqr.perturb_tasks, "nominal", (np.eye(2), 2), {}),
    (metalqr.perturb_tasks, "n_tasks", (NOM, 0), {}),
    (metalqr.perturb_tasks, "n_tasks", (NOM, 2.0), {}),
    (metalqr.perturb_tasks, "n_tasks", (NOM, 10**7), {}),
    (metalqr.perturb_tasks, "heterogeneity", (NOM, 2), {"heterogeneity": -1e-4}),
    (metalqr.perturb_tasks, "heterogeneity", (NOM, 2), {"heterogeneity": np.inf}),
    (metalqr.perturb_tasks, "heterogeneity", (NOM, 2), {"heterogeneity": "small"}),
    (metalqr.perturb_tasks, "perturb", (NOM, 2), {"perturb": ("C",)}),
    (metalqr.perturb_tasks, "perturb", (NOM, 2), {"perturb": "AB"}),
    (metalqr.perturb_tasks, "perturb", (NOM, 2), {"perturb": ()}),
    (metalqr.perturb_tasks, "perturb", (NOM, 2), {"perturb": ("A", "A")}),
    (metalqr.perturb_tasks, "perturb", (NOM, 2), {"perturb": 5}),
    (metalqr.perturb_tasks, "min_eigenvalue", (NOM, 2), {"min_eigenvalue": 0}),
    (metalqr.perturb_tasks, "max_spectral_radius", (NOM, 2), {"max_spectral_radius": 0}),
    (metalqr.perturb_tasks, "max_spectral_radius", (NOM, 2), {"max_spectral_radius": 1.2}),
    (metalqr.perturb_tasks, "require_common_gain", (NOM, 2), {"require_common_gain": "no"}),
    (metalqr.perturb_tasks, "rng", (NOM, 2), {"rng": 2.5}),
    (metalqr.perturb_tasks, "heterogeneity", (metalqr.boeing747(), 5),
     {"heterogeneity": 1e-3, "rng": 0}),                 # not meta-learnable: suggests one
    # repair_stable / repair_spd / default_heterogeneity
    (repair_stable, "A", (np.ones((2, 3)), 0.5), {}),
    (repair_stable, "A", ([[np.nan]], 0.5), {}),
    (repair_stable, "A", ("A", 0.5), {}),
    (repair_stable, "max_spectral_radius", (np.eye(2), 0.0), {}),
    (repair_stable, "max_spectral_radius", (np.eye(2), 2.0), {}),
    (repair_spd, "M", (np.ones((2, 3)), 0.1), {}),
    (repair_spd, "M", ([[1j]], 0.1), {}),
    (repair_spd, "M", (np.zeros((0, 0)), 0.1), {}),
    (repair_spd, "min_eigenvalue", (np.eye(2), 0.0), {}),
    (repair_spd, "min_eigenvalue", (np.eye(2), np.nan), {}),
    (default_heterogeneity, "nominal", (None,), {}),
    (default_heterogeneity, "nominal", (TS2,), {}),
    (default_heterogeneity, "perturb", (NOM,), {"perturb": ("X",)}),
    (default_heterogeneity, "perturb", (NOM,), {"perturb": "A"}),
    # History
    (metalqr.History, "records", ("abc",), {}),
    (metalqr.History, "records", (5,), {}),
    (metalqr.History, "records[0]", ([1, 2],), {}),
    (metalqr.History, "records[0]", ([{"a": float("nan")}],), {}),
    (metalqr.History, "records[0]", ([{"a": "x"}],), {}),
    (metalqr.History, "records[1]", ([{"a": 1.0}, {"b": 2.0}],), {}),
    (metalqr.History, "meta", ([],), {"meta": "x"}),
    # Figure1Setting
    (Figure1Setting, "d", (), {**SETTING, "d": 0}),
    (Figure1Setting, "k", (), {**SETTING, "k": 1.5}),
    (Figure1Setting, "alpha", (), {**SETTING, "alpha": 0.0}),
    (Figure1Setting, "eta", (), {**SETTING, "eta": -1.0}),
    (Figure1Setting, "n_iterations", (), {**SETTING, "n_iterations": 0}),
    (Figure1Setting, "radius", (), {**SETTING, "radius": np.nan}),
    (Figure1Setting, "rollout_length", (), {**SETTING, "rollout_length": "50"}),
    (Figure1Setting, "two_point", (), {**SETTING, "two_point": 1}),
    (Figure1Setting, "outer_update", (), {**SETTING, "outer_update": "adam"}),
    (Figure1Setting, "guard", (), {**SETTING, "guard": "oracle"}),
    (Figure1Setting, "n_perturbations", (), {**SETTING, "n_perturbations": -1}),
    # floor_ratio
    (floor_ratio, "tasks", ("tasks",), {}),
    (floor_ratio, "tasks", (None,), {}),
    (floor_ratio, "max_iterations", (TS,), {"max_iterations": 0}),
    (floor_ratio, "max_iterations", (TS,), {"max_iterations": 1.5}),
]


@pytest.mark.parametrize("fn, word, args, kwargs", SIMPLE,
                         ids=[f"{getattr(f, '__name__', f)}-{w}-{i}" for i, (f, w, _, _) in
                              enumerate(SIMPLE)])
def test_malformed_simple(fn, word, args, kwargs):
    assert_named_error(fn, word, *args, **kwargs)


HIST = metalqr.History([{"iteration": 0, "cost_gap_ratio": 1.0}])


@pytest.mark.parametrize("call, word", [
    (lambda: HIST.append({"iteration": 1, "cost_gap_ratio": float("nan")}), "cost_gap_ratio"),
    (lambda: HIST.append({"iteration": 1}), "columns"),
    (lambda: HIST.append("row"), "record"),
    (lambda: HIST.append({"iteration": True, "cost_gap_ratio": 1.0}), "iteration"),
    (lambda: HIST["ratio"], "column"),
    (lambda: HIST[0], "column"),
    (lambda: HIST.plot("ratio"), "column"),
    (lambda: HIST.plot(logy="yes"), "logy"),
    (lambda: HIST.plot(ax="axes"), "ax"),
    (lambda: HIST.plot(label=3), "label"),
    (lambda: metalqr.History().plot(), "column"),
    (lambda: HIST.to_csv(3), "path"),
    (lambda: HIST.to_csv(""), "path"),
    (lambda: HIST.to_json(None), "path"),
    (lambda: HIST.to_json(b"x.json"), "path"),
    (lambda: metalqr.History.from_json(5), "path"),
])
def test_history_methods_malformed(call, word):
    assert_named_error(call, word)


@pytest.mark.parametrize("content", ["", "{", "[1, 2]", '{"records": 5}',
                                     '{"records": [{"a": "x"}]}', "\udcff"])
def test_history_file_damaged(tmp_path, content):
    path = tmp_path / "h.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    err = assert_named_error(metalqr.History.from_json, "file", path,
                             exc=metalqr.CheckpointError)
    assert str(path) in str(err)


def test_history_missing_file(tmp_path):
    assert_named_error(metalqr.History.from_json, "file", tmp_path / "missing.json",
                       exc=metalqr.CheckpointError)


@pytest.mark.parametrize("kwargs, word", [
    ({"quick": 1}, "quick"), ({"quick": "yes"}, "quick"),
    ({"rng": -1}, "rng"), ({"rng": 1.5}, "rng"), ({"rng": "0"}, "rng"),
    ({"n_iterations": 0}, "n_iterations"), ({"n_iterations": -2}, "n_iterations"),
    ({"n_iterations": 2.5}, "n_iterations"),
    ({"backend": "gpu"}, "backend"), ({"backend": "numbaa"}, "backend"),
    ({"progress": 0}, "progress"), ({"resume": "no"}, "resume"), ({"verbose": None}, "verbose"),
    ({"output_dir": 5}, "output_dir"), ({"output_dir": ""}, "output_dir"),
    ({"settings": ()}, "settings"), ({"settings": "paper"}, "settings"),
    ({"settings": (1, 2)}, "settings"),
    ({"settings": (Figure1Setting(**SETTING), Figure1Setting(**SETTING))}, "settings"),
])
def test_reproduce_figure1_malformed(tmp_path, kwargs, word):
    args = {"output_dir": str(tmp_path / "out"), "progress": False, "verbose": False, **kwargs}
    assert_named_error(reproduce_figure1, word, **args)


def test_reproduce_figure1_output_dir_is_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    assert_named_error(reproduce_figure1, "output_dir", output_dir=str(f), progress=False,
                       verbose=False)
