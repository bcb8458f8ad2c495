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


@pytest.mark.slow
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
    with pytest.warns(metalqr.TrainingWorsenedWarning, match="ended worse than it started.*K_best"):
        res = metalqr.meta_policy_optimization(ts, np.zeros((2, 2)), alpha=10.0, eta=eta,
                                               n_iterations=5, gradient="exact", progress=False,
                                               guard="model")             # oversized: ends worse
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
                                            rollout_length=25, **kw)   # >= 22: bias <= 5% at K0 (rho 0.7)


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
    assert res.n_iterations == 3 and not res.converged
    res = metalqr.meta_policy_optimization(ts, np.zeros((1, 2)), alpha=1e-3, eta=1e-5,
                                           n_iterations=50, gradient="exact", progress=False, tol=1e9)
    assert res.converged and len(res.history) == 1 + 1
    assert res.stop_reason == "tolerance" and res.n_iterations == 1


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


@pytest.mark.slow
def test_cli_reproduce_fig1_runs(tmp_path):
    import csv

    from metalqr.cli import main

    def read(name):
        with open(tmp_path / name, newline="") as fh:
            return list(csv.DictReader(fh))

    assert main(["reproduce", "fig1", "--quick", "--iterations", "2", "--output", str(tmp_path),
                 "--no-progress"]) == 0
    first, curve = read("summary.csv"), read("fig1.csv")
    assert len(first) == 3 and [int(r["iterations"]) for r in first] == [2, 2, 2]
    assert [int(r["iteration"]) for r in curve] == [0, 1, 2] * 3
    # --resume continues from the checkpoints instead of starting again: iteration 3 is
    # added to each setting and the first iterations are those of the first run, bit for bit
    assert main(["reproduce", "fig1", "--quick", "--iterations", "3", "--output", str(tmp_path),
                 "--no-progress", "--resume"]) == 0
    second, resumed = read("summary.csv"), read("fig1.csv")
    assert [r["setting"] for r in second] == [r["setting"] for r in first]
    assert [int(r["iterations"]) for r in second] == [3, 3, 3]
    assert [int(r["iteration"]) for r in resumed] == [0, 1, 2, 3] * 3
    kept = [r for r in resumed if int(r["iteration"]) <= 2]
    assert [r["meta_objective"] for r in kept] == [r["meta_objective"] for r in curve]


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
                      rng=4, backend="numpy")
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


# ---------------------------------------------------------------- issue 14: roll-out length
def test_rollout_bias_matches_the_finite_horizon_expectation():
    from metalqr.meta.training import rollout_bias
    for seed in range(3):
        ts = metalqr.perturb_tasks(metalqr.boeing747(), 3, heterogeneity=1e-4, rng=seed)
        K = metalqr.common_stabilizing_gain(ts)
        J = metalqr.cost(ts, K)
        for length in (1, 13, 50, 333):
            direct = np.abs(metalqr.expected_rollout_cost(ts, K, length) - J) / J
            assert np.allclose(rollout_bias(ts, K, length), direct, rtol=1e-8, atol=1e-13)


def test_mixing_rollout_length_is_the_shortest_within_tolerance():
    from metalqr.meta.training import mixing_rollout_length, rollout_bias
    ts = metalqr.perturb_tasks(metalqr.boeing747(), 5, heterogeneity=1e-4, rng=0)
    K = metalqr.common_stabilizing_gain(ts)
    for tol in (0.05, 0.2):
        l = mixing_rollout_length(ts, K, tolerance=tol)
        assert np.max(rollout_bias(ts, K, l)) <= tol < np.max(rollout_bias(ts, K, l - 1))
    # the Boeing family mixes slowly (spectral radius 0.98): 50 steps are far too few
    assert mixing_rollout_length(ts, K) > 400


def test_boeing_short_rollouts_warn_and_name_a_better_length():
    ts = metalqr.perturb_tasks(metalqr.boeing747(), 5, heterogeneity=1e-4, rng=0)
    K0 = metalqr.common_stabilizing_gain(ts)
    from metalqr.exceptions import RolloutLengthWarning, TrainingWorsenedWarning
    from metalqr.meta.training import mixing_rollout_length
    better = mixing_rollout_length(ts, K0)
    # one noisy step (4 perturbations) of these runs ends worse than it started: said too
    worse = dict(expected_warning=TrainingWorsenedWarning, match="ended worse than it started")
    with pytest.warns(RolloutLengthWarning, match=rf"rollout_length >= {better}\b"), pytest.warns(**worse):
        metalqr.meta_policy_optimization(ts, K0, alpha=1e-3, eta=1e-5, n_iterations=1, rng=0,
                                         progress=False, rollout_length=50, n_perturbations=4,
                                         inner_perturbations=4, two_point=True)
    # the default chooses the length from the mixing time (and never below the paper's 50)
    with pytest.warns(**worse):
        res = metalqr.meta_policy_optimization(ts, K0, alpha=1e-3, eta=1e-5, n_iterations=1, rng=0,
                                               progress=False, n_perturbations=4,
                                               inner_perturbations=4, two_point=True)
    assert res.settings["zo"]["rollout_length"] == better
    fast = metalqr.sample_tasks(3, 1, 1, rng=0, max_spectral_radius=0.2)
    res = metalqr.meta_policy_optimization(fast, np.zeros((1, 1)), alpha=1e-3, eta=1e-5,
                                           n_iterations=1, rng=0, progress=False,
                                           n_perturbations=4)
    assert res.settings["zo"]["rollout_length"] == 50


def test_worse_final_objective_warns_and_reports_the_best_iterate():
    from metalqr.exceptions import TrainingWorsenedWarning
    ts = metalqr.sample_tasks(3, 2, 2, rng=1)
    with pytest.warns(TrainingWorsenedWarning, match="K_best"):
        res = metalqr.meta_policy_optimization(ts, np.zeros((2, 2)), alpha=10.0, eta=1e-4,
                                               n_iterations=5, gradient="exact", progress=False,
                                               guard="model")
    L = res.history["meta_objective"]
    assert res.stop_reason == "no_improvement" and not res.improved
    assert res.best_iteration == int(np.argmin(L)) and res.best_objective == L.min()
    assert res.best_objective <= L[0] < L[-1]
    assert metalqr.maml_objective(ts, res.K_best, 1e-4) == res.best_objective


def test_successful_run_reports_n_iterations_and_best():
    ts = metalqr.sample_tasks(3, 2, 1, rng=0)
    res = metalqr.meta_policy_optimization(ts, np.zeros((1, 2)), alpha=1e-3, eta=1e-5,
                                           n_iterations=4, gradient="exact", progress=False)
    assert res.stop_reason == "max_iterations" and res.improved
    assert res.best_iteration == 4 and np.array_equal(res.K_best, res.K)


# ---------------------------------------------------------------- issue 14: guards
def test_rollouts_guard_never_consults_the_model(monkeypatch):
    import metalqr.meta.training as training
    calls = []
    real = training.is_maml_stabilizing

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(training, "is_maml_stabilizing", spy)
    ts = metalqr.sample_tasks(3, 2, 1, rng=0)
    metalqr.meta_policy_optimization(ts, np.zeros((1, 2)), alpha=1e-3, eta=1e-5, n_iterations=3,
                                     rng=0, progress=False, n_perturbations=5)
    assert len(calls) == 1           # only the up-front check of K0 (Definition 1)
    metalqr.meta_policy_optimization(ts, np.zeros((1, 2)), alpha=1e-3, eta=1e-5, n_iterations=3,
                                     rng=0, progress=False, n_perturbations=5, guard="model")
    assert len(calls) >= 1 + 1 + 3   # K0 check + one model check per step


def test_rollouts_guard_backtracks_destabilising_steps():
    ts = metalqr.sample_tasks(3, 2, 2, rng=1)
    with pytest.warns(metalqr.TrainingWorsenedWarning, match="ended worse than it started.*K_best"):
        res = metalqr.meta_policy_optimization(ts, np.zeros((2, 2)), alpha=10.0, eta=1e-4,
                                               n_iterations=5, gradient="exact", progress=False,
                                               rng=0)                     # oversized: ends worse
    assert res.history["backtracks"].max() > 0
    assert np.all(metalqr.spectral_radius(ts, res.K) < 1)
    assert np.all(np.isfinite(res.history["cost_gap_ratio"]))


def test_plain_update_without_guard_diverges_loudly():
    ts = metalqr.sample_tasks(3, 2, 2, rng=1)
    with pytest.raises(metalqr.TrainingDivergedError, match="guard='none'") as info:
        metalqr.meta_policy_optimization(ts, np.zeros((2, 2)), alpha=10.0, eta=1e-4,
                                         n_iterations=5, gradient="exact", progress=False,
                                         guard="none")
    res = info.value.result
    assert res.stop_reason == "diverged" and res.best_iteration == 0
    assert math.isinf(res.history["meta_objective"][-1])
    # a small step with guard="none" is the paper's plain update: K_{n+1} = K_n - alpha G
    K0 = np.zeros((2, 2))
    res = metalqr.meta_policy_optimization(ts, K0, alpha=1e-3, eta=1e-4, n_iterations=1,
                                           gradient="exact", progress=False, guard="none")
    assert np.allclose(res.K, K0 - 1e-3 * metalqr.maml_gradient(ts, K0, 1e-4), rtol=1e-13)


def test_adam_clipped_update_matches_a_hand_computation():
    base = metalqr.sample_tasks(3, 2, 2, rng=3)   # weights x100: gradient norm ~160 > 10
    ts = metalqr.TaskSet([metalqr.LQRTask(t.A, t.B, 100 * t.Q, 100 * t.R, Psi=t.Psi) for t in base])
    eta, alpha = 1e-6, 1e-3
    K = np.zeros((2, 2))
    m, v = np.zeros_like(K), np.zeros_like(K)
    expected = []
    for t in (1, 2, 3):
        G = metalqr.maml_gradient(ts, K, eta)
        nrm = np.sqrt(np.sum(G * G))
        if nrm > 10.0:
            G = G * (10.0 / nrm)
        m = 0.9 * m + 0.1 * G
        v = 0.999 * v + 0.001 * G * G
        m_hat, v_hat = m / (1 - 0.9 ** t), v / (1 - 0.999 ** t)
        K = K - alpha * m_hat / (np.sqrt(v_hat) + 1e-7)
        expected.append(K)
    assert np.linalg.norm(metalqr.maml_gradient(ts, np.zeros((2, 2)), eta)) > 10  # clipping used
    res = metalqr.meta_policy_optimization(ts, np.zeros((2, 2)), alpha=alpha, eta=eta,
                                           n_iterations=3, gradient="exact", progress=False,
                                           guard="none", outer_update="adam_clipped")
    assert np.allclose(res.K, expected[-1], rtol=1e-12, atol=1e-15)
    # first Adam step: every entry moves by alpha (m_hat / sqrt(v_hat) = sign(G))
    res1 = metalqr.meta_policy_optimization(ts, np.zeros((2, 2)), alpha=alpha, eta=eta,
                                            n_iterations=1, gradient="exact", progress=False,
                                            guard="none", outer_update="adam_clipped")
    assert np.allclose(np.abs(res1.K), alpha, rtol=1e-6)


# ---------------------------------------------------------------- issue 12: checkpoints
def _edit_checkpoint(path, edit):
    """Rewrite a valid checkpoint with edited contents and a recomputed checksum (an edit
    that the checksum alone cannot catch)."""
    import io
    from metalqr import _checkpoint
    body = path.read_bytes().partition(b"\n")[2]
    with np.load(io.BytesIO(body)) as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    fingerprint, kind = meta.pop("fingerprint"), meta.pop("kind")
    meta.pop("format_version")
    edit(arrays, meta)
    _checkpoint.save(path, kind, fingerprint, arrays, meta)


def _killed_at(path, n):
    class Killed(Exception):
        pass

    def kill(record, K):
        if record["iteration"] == n:
            raise Killed
    with pytest.raises(Killed):
        _run(path, 13, callback=kill)


def _dup(a, m):
    m["records"] = m["records"][:3] + m["records"][2:]


def _trunc(a, m):
    m["records"] = m["records"][:-2]


def _kchange(a, m):
    a["K"] = a["K"] + 1e-3


def _kbest(a, m):
    a["K_best"] = a["K_best"] * 0.5 + 1e-3


def _drop_rng(a, m):
    del m["rng_state"]


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "header_only", "flipped_byte"])
def test_damaged_checkpoint_is_one_clear_error(tmp_path, damage):
    ckpt = tmp_path / "run.ckpt"
    _killed_at(ckpt, 5)
    data = ckpt.read_bytes()
    ckpt.write_bytes({"empty": b"", "truncated": data[: len(data) // 2],
                      "garbage": b"\x00\xffnot a checkpoint\n\x13" * 10,
                      "header_only": data.partition(b"\n")[0] + b"\n",
                      "flipped_byte": data[:-10] + bytes([data[-10] ^ 1]) + data[-9:]}[damage])
    with pytest.raises(metalqr.CheckpointError, match="afresh") as info:
        _run(ckpt, 13)
    assert str(ckpt) in str(info.value)


@pytest.mark.parametrize("edit", [_kchange, _kbest, _trunc, _dup, _drop_rng],
                         ids=["K_changed", "K_best_changed", "history_truncated",
                              "history_duplicated", "rng_state_missing"])
def test_edited_checkpoint_is_refused(tmp_path, edit):
    ckpt = tmp_path / "run.ckpt"
    _killed_at(ckpt, 5)
    _edit_checkpoint(ckpt, edit)
    with pytest.raises(metalqr.CheckpointError, match="afresh") as info:
        _run(ckpt, 13)
    assert str(ckpt) in str(info.value)


def test_checkpoint_of_another_seed_or_setting_is_refused(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    _killed_at(ckpt, 5)
    ts = metalqr.sample_tasks(3, 2, 1, rng=5)
    kw = dict(alpha=1e-3, eta=1e-5, n_iterations=13, progress=False, checkpoint=ckpt,
              checkpoint_every=4, n_perturbations=20, inner_perturbations=10, rollout_length=25)
    for change in ({"rng": 12}, {"rng": 11, "guard": "model"},
                   {"rng": 11, "outer_update": "adam_clipped"}, {"rng": 11, "radius": 0.04}):
        with pytest.raises(metalqr.CheckpointError, match="different run"):
            metalqr.meta_policy_optimization(ts, np.zeros((1, 2)), **{**kw, **change})
    # the untouched checkpoint still resumes to the uninterrupted result
    assert np.array_equal(_run(ckpt, 13).K, _run(None, 13).K)


def test_adam_run_resumes_bitwise(tmp_path):
    # 9 noisy clipped-Adam steps end 0.1% above the start (said; the best iterate is kept)
    worse = dict(expected_warning=metalqr.TrainingWorsenedWarning, match="ended worse than it started")
    with pytest.warns(**worse):
        full = _run(None, 9, outer_update="adam_clipped")
    ckpt = tmp_path / "adam.ckpt"

    class Killed(Exception):
        pass

    def kill(record, K):
        if record["iteration"] == 6:
            raise Killed
    with pytest.raises(Killed):
        _run(ckpt, 9, outer_update="adam_clipped", callback=kill)
    with pytest.warns(**worse):
        assert np.array_equal(_run(ckpt, 9, outer_update="adam_clipped").K, full.K)


def test_noise_free_tasks_are_refused_clearly():
    # Psi = 0: J(K) = Tr(P_K Psi) = 0 for every gain, the cost-gap ratio is undefined
    base = metalqr.sample_tasks(2, 2, 1, rng=0)
    ts = metalqr.TaskSet([metalqr.LQRTask(t.A, t.B, t.Q, t.R, Psi=np.zeros((2, 2)))
                          for t in base])
    with pytest.raises(metalqr.ValidationError, match="Psi"):
        metalqr.meta_policy_optimization(ts, np.zeros((1, 2)), alpha=1e-3, eta=1e-5,
                                         n_iterations=2, gradient="exact", progress=False)
