"""Algorithm 3 as a tool: monotone decrease with exact gradients, ZO learning, step
rejection, stall detection, history I/O, checkpoint/resume, errors, the Figure 1 runner."""

import json
import math

import numpy as np
import pytest

import metalqr
from metalqr.meta.figure1 import Figure1Setting, reproduce_figure1


@pytest.mark.parametrize("d, k", [(1, 1), (2, 2), (4, 2)])
def test_exact_gradient_decreases_meta_objective_monotonically(d, k):
    ts = metalqr.sample_tasks(5, d, k, rng=d)
    K0, eta = np.zeros((k, d)), 1e-4
    # alpha below 1/L with L bounded by the largest Hessian eigenvalue seen at K0 (x2 margin).
    L = max(np.max(np.linalg.eigvalsh(metalqr.hessian(t, K0))) for t in ts)
    res = metalqr.meta_policy_optimization(ts, K0, alpha=0.5 / L, eta=eta, n_iterations=40,
                                           gradient="exact", progress=False)
    L_hist = np.concatenate([[res.initial["meta_objective"]], res.history["meta_objective"]])
    assert np.all(np.diff(L_hist) <= 1e-12 * L_hist[0])
    assert L_hist[-1] < L_hist[0]
    assert res.history["rejected"].sum() == 0


def test_zo_training_reduces_cost_gap_ratio():
    ts = metalqr.sample_tasks(5, 2, 2, rng=np.random.default_rng([0, 2, 2]))
    res = metalqr.meta_policy_optimization(ts, np.zeros((2, 2)), alpha=1e-3, eta=1e-5,
                                           n_iterations=60, rng=0, progress=False,
                                           n_perturbations=50, inner_perturbations=50)
    ratio = res.history["cost_gap_ratio"]
    assert ratio[-5:].mean() < 0.8 * res.initial["cost_gap_ratio"]
    assert np.all(np.isfinite(res.history["grad_norm"]))


def test_history_io_and_never_nan(tmp_path):
    ts = metalqr.sample_tasks(3, 2, 1, rng=0)
    res = metalqr.meta_policy_optimization(ts, np.zeros((1, 2)), alpha=1e-3, eta=1e-4,
                                           n_iterations=5, gradient="first_order", progress=False)
    h = res.history
    assert len(h) == 6 and set(h.columns) >= {"iteration", "meta_objective", "cost_gap_ratio",
                                               "grad_norm", "step", "backtracks", "rejected", "seconds"}
    h.to_csv(tmp_path / "h.csv")
    h.to_json(tmp_path / "h.json")
    back = metalqr.History.from_json(tmp_path / "h.json")
    assert np.allclose(back["cost_gap_ratio"], h["cost_gap_ratio"])
    assert (tmp_path / "h.csv").read_text().splitlines()[0].startswith("iteration,")
    assert list(h["iteration"]) == [0, 1, 2, 3, 4, 5]        # iteration 0 = K0, in files too
    assert (tmp_path / "h.csv").read_text().splitlines()[1].startswith("0,")
    assert back["cost_gap_ratio"][0] == res.initial["cost_gap_ratio"]
    ax = h.plot("cost_gap_ratio")
    assert len(ax.lines) == 1
    for col in h.columns:
        assert not np.any(np.isnan(h[col].astype(float)))
    with pytest.raises(metalqr.ValidationError, match="NaN"):
        h.append({"iteration": 6, "cost_gap_ratio": float("nan")})


def test_oversized_steps_are_backtracked_and_stay_stabilising():
    ts = metalqr.sample_tasks(3, 2, 2, rng=1)
    eta = 1e-4
    res = metalqr.meta_policy_optimization(ts, np.zeros((2, 2)), alpha=10.0, eta=eta,
                                           n_iterations=5, gradient="exact", progress=False,
                                           guard="model")
    assert res.history["backtracks"].max() > 0
    assert metalqr.is_maml_stabilizing(ts, res.K, eta)
    assert np.all(np.isfinite(res.history["meta_objective"]))


def test_stall_raises_with_partial_result():
    ts = metalqr.sample_tasks(3, 2, 2, rng=0)
    with pytest.raises(metalqr.TrainingStalledError, match="radius") as info:
        metalqr.meta_policy_optimization(ts, np.zeros((2, 2)), alpha=1e-3, eta=1e-5, n_iterations=30,
                                         rng=0, progress=False, radius=5.0, rollout_length=400,
                                         n_perturbations=10, max_consecutive_rejections=3)
    res = info.value.result
    assert res.stop_reason == "stalled" and len(res.history) == 1 + 3
    assert np.array_equal(res.K, np.zeros((2, 2)))


def _checkpoint_records(path):
    """The records stored in a checkpoint (header line, then an npz body with __meta__)."""
    import io
    body = path.read_bytes().partition(b"\n")[2]
    with np.load(io.BytesIO(body)) as npz:
        return json.loads(npz["__meta__"].tobytes().decode())["records"]


def _run(path, n, **kw):
    ts = metalqr.sample_tasks(3, 2, 1, rng=5)
    return metalqr.meta_policy_optimization(ts, np.zeros((1, 2)), alpha=1e-3, eta=1e-5,
                                            n_iterations=n, rng=11, progress=False,
                                            checkpoint=path, checkpoint_every=4,
                                            n_perturbations=20, inner_perturbations=10,
                                            rollout_length=20, **kw)


def test_killed_run_resumes_to_identical_result(tmp_path):
    full = _run(None, 13)

    class Killed(Exception):
        pass

    def kill_at_10(record, K):
        if record["iteration"] == 10:
            raise Killed

    ckpt = tmp_path / "run.json"
    with pytest.raises(Killed):
        _run(ckpt, 13, callback=kill_at_10)
    assert _checkpoint_records(ckpt)[-1]["iteration"] == 8   # last checkpoint
    resumed = _run(ckpt, 13)
    assert np.array_equal(resumed.K, full.K)
    assert np.allclose(resumed.history["cost_gap_ratio"], full.history["cost_gap_ratio"])
    with pytest.raises(metalqr.CheckpointError, match="different run"):
        ts = metalqr.sample_tasks(3, 2, 1, rng=6)
        metalqr.meta_policy_optimization(ts, np.zeros((1, 2)), alpha=1e-3, eta=1e-5, n_iterations=13,
                                         rng=11, progress=False, checkpoint=ckpt)


def test_training_input_errors():
    ts = metalqr.sample_tasks(3, 2, 1, rng=0)
    K0 = np.zeros((1, 2))
    with pytest.raises(metalqr.NotMAMLStabilizingError, match="K0"):
        metalqr.meta_policy_optimization(ts, 100 * np.ones((1, 2)), alpha=1e-3, eta=1e-5,
                                         n_iterations=1, progress=False)
    with pytest.raises(metalqr.ValidationError, match="gradient"):
        metalqr.meta_policy_optimization(ts, K0, alpha=1e-3, eta=1e-5, n_iterations=1, gradient="newton")
    with pytest.raises(metalqr.ValidationError, match="estimator options"):
        metalqr.meta_policy_optimization(ts, K0, alpha=1e-3, eta=1e-5, n_iterations=1, n_perturbation=5)
    with pytest.raises(metalqr.ValidationError, match="alpha"):
        metalqr.meta_policy_optimization(ts, K0, alpha=-1.0, eta=1e-5, n_iterations=1)


def test_callback_stops_and_tolerance():
    ts = metalqr.sample_tasks(3, 2, 1, rng=0)
    res = metalqr.meta_policy_optimization(ts, np.zeros((1, 2)), alpha=1e-3, eta=1e-5,
                                           n_iterations=50, gradient="exact", progress=False,
                                           callback=lambda rec, K: rec["iteration"] >= 3)
    assert res.stop_reason == "callback" and len(res.history) == 1 + 3
    res = metalqr.meta_policy_optimization(ts, np.zeros((1, 2)), alpha=1e-3, eta=1e-5,
                                           n_iterations=50, gradient="exact", progress=False, tol=1e9)
    assert res.converged and len(res.history) == 1 + 1


def test_figure1_runner_writes_outputs(tmp_path):
    settings = (Figure1Setting(1, 1, alpha=1e-3, eta=1e-5, n_iterations=8, n_perturbations=10,
                               inner_perturbations=10),
                Figure1Setting(3, 2, alpha=1e-4, eta=1e-6, n_iterations=5, n_perturbations=10,
                               inner_perturbations=10, two_point=True))
    summary = reproduce_figure1(output_dir=str(tmp_path), settings=settings, progress=False,
                                verbose=False)
    assert [row["iterations"] for row in summary] == [8, 5]
    assert summary.ok, summary.failures
    assert all(row["status"] in ("ok", "no_improvement") for row in summary)
    assert {"fig1.csv", "fig1.png", "summary.csv"} <= {p.name for p in tmp_path.iterdir()}
    rows = (tmp_path / "fig1.csv").read_text().splitlines()
    assert len(rows) == 1 + (1 + 8) + (1 + 5)      # iteration 0 of each setting included
    assert all(math.isfinite(row["final_ratio"]) for row in summary)


def test_cli_reproduce_fig1_runs(tmp_path):
    from metalqr.cli import main
    assert main(["reproduce", "fig1", "--quick", "--iterations", "2", "--output", str(tmp_path),
                 "--no-progress"]) == 0
    rows = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("setting,")
    # --resume continues from the checkpoints instead of starting again
    assert main(["reproduce", "fig1", "--quick", "--iterations", "3", "--output", str(tmp_path),
                 "--no-progress", "--resume"]) == 0
    assert "3" in (tmp_path / "summary.csv").read_text().splitlines()[1].split(",")


def test_figure1_stalled_setting_is_a_failure(tmp_path):
    bad = Figure1Setting(2, 1, alpha=1e-3, eta=1e-5, n_iterations=40, n_perturbations=5,
                         inner_perturbations=5, radius=5.0, rollout_length=400)
    summary = reproduce_figure1(output_dir=str(tmp_path), settings=(bad,), progress=False,
                                verbose=False)
    assert not summary.ok and len(summary.failures) == 1
    assert "stalled" in summary.failures[0] and "d=2, k=1" in summary.failures[0]
    assert summary[0]["status"] == "stalled" and summary[0]["iterations"] == 25


def test_figure1_summary_describes_itself(tmp_path):
    import csv
    s = Figure1Setting(1, 1, alpha=1e-3, eta=1e-5, n_iterations=3, n_perturbations=10,
                       inner_perturbations=7, rollout_length=60)
    reproduce_figure1(output_dir=str(tmp_path), settings=(s,), progress=False, verbose=False,
                      seed=4, backend="numpy")
    with open(tmp_path / "summary.csv") as fh:
        row = next(csv.DictReader(fh))
    assert {k: row[k] for k in ("seed", "r", "l", "M", "M'", "alpha", "eta", "estimator",
                                "backend", "version")} == {
        "seed": "4", "r": "0.05", "l": "60", "M": "10", "M'": "7", "alpha": "0.001",
        "eta": "1e-05", "estimator": "one-point", "backend": "numpy",
        "version": metalqr.__version__}
    assert "dimensionless" in row["units"]
    floor = float(row["floor"])
    assert 0 < floor < float(row["initial_ratio"])
