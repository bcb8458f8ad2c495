"""metalqr.testing: the strategies produce only valid inputs with the promised properties,
check_bound finds the printed-h_G counterexample (Lemma 1) reproducibly, the derivative
helpers catch wrong formulas, and metalqr imports without Hypothesis."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import metalqr
from metalqr import testing as mt
from metalqr import theory as th
from helpers import assert_named_error

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _revalidate(task):
    """Every drawn task passes LQRTask validation again (rebuilt from its arrays)."""
    return metalqr.LQRTask(np.array(task.A), np.array(task.B), np.array(task.Q), np.array(task.R),
                           Psi=np.array(task.Psi), Sigma0=np.array(task.Sigma0))


def _rho(A):
    return float(np.max(np.abs(np.linalg.eigvals(A))))


@given(mt.lqr_tasks(max_d=5, max_k=3, condition_number=20.0))
def test_lqr_tasks_valid_stabilisable_and_conditioned(task):
    _revalidate(task)
    K_star, _ = metalqr.optimal_gain(task)                # stabilisable: the DARE has a solution
    assert metalqr.is_stabilizing(task, K_star)
    for W in (task.Q, task.R, task.Psi):
        lam = np.linalg.eigvalsh(W)
        assert lam[0] > 0 and lam[-1] / lam[0] <= 20.0 * (1 + 1e-9)
    assert _rho(task.A) <= 1.2 * (1 + 1e-9)


@given(mt.lqr_tasks(stability="stable"), mt.lqr_tasks(stability="unstable", max_spectral_radius=1.5))
def test_lqr_tasks_stability_classes(stable, unstable):
    assert _rho(stable.A) <= 0.95 * (1 + 1e-9)
    assert 1.05 * (1 - 1e-9) <= _rho(unstable.A) <= 1.5 * (1 + 1e-9)
    assert metalqr.is_stabilizing(unstable, metalqr.optimal_gain(unstable)[0])


@given(mt.lqr_tasks(d=3, k=1, controllable=True))
def test_lqr_tasks_controllable(task):
    C = np.hstack([np.linalg.matrix_power(task.A, j) @ task.B for j in range(3)])
    assert np.linalg.matrix_rank(C) == 3


@given(mt.lqr_tasks(badly_scaled=True, max_exponent=2))
def test_badly_scaled_tasks_are_valid(task):
    _revalidate(task)
    assert metalqr.is_stabilizing(task, metalqr.optimal_gain(task)[0])


@given(st.data(), st.floats(0.0, 0.3))
def test_stabilizing_gains_keep_the_margin(data, margin):
    task = data.draw(mt.lqr_tasks())
    K = data.draw(mt.stabilizing_gains(task, margin=margin))
    assert K.shape == (task.k, task.d)
    assert metalqr.spectral_radius(task, K) <= 1 - margin


@given(st.data())
def test_stabilizing_gains_in_the_sublevel_set(data):
    ts = data.draw(mt.task_sets(max_n=2, stability="stable"))
    K0 = np.zeros((ts.k, ts.d))
    K = data.draw(mt.stabilizing_gains(ts, margin=0.0, gamma=2.0, K0=K0, scale=3.0))
    assert np.all(metalqr.cost(ts, K) <= 2.0 * metalqr.cost(ts, K0))
    assert np.all(metalqr.is_stabilizing(ts, K))


@given(mt.directions(2, 3, norm=0.5))
def test_directions_have_the_norm(X):
    assert X.shape == (2, 3) and np.linalg.norm(X) == pytest.approx(0.5)


@settings(max_examples=15)          # three Riccati equations per example
@given(mt.task_sets(n=3, d=2, k=1, heterogeneity=0.5, stability="stable"))
def test_task_sets_valid(ts):
    assert len(ts) == 3 and (ts.d, ts.k) == (2, 1)
    for t in ts:
        _revalidate(t)
        assert _rho(t.A) <= 0.95 * (1 + 1e-9)
    metalqr.optimal_gain(ts)


@given(mt.meta_learnable_families(margin=0.05))
def test_meta_learnable_families_are_maml_stabilising(fam):
    ts, K, eta = fam
    assert metalqr.is_maml_stabilizing(ts, K, eta)
    assert np.max(metalqr.spectral_radius(ts, K)) <= 0.95
    for t, Ka in zip(ts, metalqr.adapted_gains(ts, K, eta)):
        assert metalqr.spectral_radius(t, Ka) <= 0.95


@given(mt.meta_learnable_families(n=2, d=2, k=1, eta=1e-3))
def test_meta_learnable_families_fixed_eta(fam):
    assert fam.eta == 1e-3 and metalqr.is_maml_stabilizing(fam.tasks, fam.K, 1e-3)


def _grad_norm(task, K):
    return float(np.max(np.linalg.norm(metalqr.gradient(task, K), axis=(-2, -1))))


def _printed_h_G(task, K):
    return th.h_G(th.task_constants(task, K), "paper")


def test_check_bound_finds_the_printed_h_G_counterexample_reproducibly():
    """Lemma 1's printed h_G drops the 2 of grad J = 2 E Sigma: the default budget finds a
    violation, shrunk to a scalar task; the same counterexample on every run."""
    reports = [mt.check_bound(_printed_h_G, _grad_norm, mt.tasks_and_gains(), atol=1e-9, name="printed h_G")
               for _ in range(2)]
    rep = reports[0]
    assert not rep.holds and rep.counterexample_ratio > 1 and rep.worst_ratio >= rep.counterexample_ratio
    task, K = rep.counterexample
    assert (task.d, task.k) == (1, 1)                      # shrunk to the smallest system
    assert _grad_norm(task, K) > _printed_h_G(task, K) and _grad_norm(task, K) <= th.h_G(th.task_constants(task, K))
    text = str(rep)
    assert "VIOLATED" in text and "A = [[" in text and "Psi = " in text
    other = reports[1]
    assert np.array_equal(other.counterexample[0].A, task.A) and np.array_equal(other.counterexample[1], K)
    with pytest.raises(AssertionError, match="shrunk counterexample"):
        mt.assert_bound_holds(_printed_h_G, _grad_norm, mt.tasks_and_gains(), atol=1e-9)


def test_assert_bound_holds_for_the_corrected_h_G():
    rep = mt.assert_bound_holds(lambda t, K: th.h_G(th.task_constants(t, K)), _grad_norm,
                                mt.tasks_and_gains(max_d=3), max_examples=40, atol=1e-9)
    assert rep.holds and 0 < rep.worst_ratio <= 1 and rep.counterexample is None
    assert "holds" in str(rep)


def test_check_bound_ignore_and_rng():
    def q(X):
        if X[0, 0] > 0:
            raise metalqr.UnstablePolicyError("skip me")
        return 0.0
    rep = mt.check_bound(lambda X: 1.0, q, mt.directions(1, 2), max_examples=20,
                         ignore=(metalqr.UnstablePolicyError,), rng=3)
    assert rep.holds and rep.n_rejected > 0 and rep.n_examples > 0

    def always_unstable(X):
        raise metalqr.UnstablePolicyError("never")
    with pytest.raises(metalqr.ValidationError, match="no valid example.*ignore"):
        mt.check_bound(lambda X: 1.0, always_unstable, mt.directions(1, 2), max_examples=5,
                       ignore=(metalqr.UnstablePolicyError,))


def test_check_bound_compares_per_task_values_elementwise():
    """Task 0 is far below its bound, task 1 above it: the maxima (quantity 0.6 <= bound 1.0)
    would pass, the elementwise comparison finds task 1's violation (0.6 > 0.5)."""
    rep = mt.check_bound(lambda X: np.array([1.0, 0.5]), lambda X: np.array([0.1, 0.6]), mt.directions(1, 1),
                         max_examples=5)
    assert not rep.holds and rep.counterexample_ratio == pytest.approx(1.2)
    assert mt.check_bound(lambda X: np.array([1.0, 0.5]), lambda X: np.array([0.9, 0.4]), mt.directions(1, 1),
                          max_examples=5).worst_ratio == pytest.approx(0.9)


def test_gradient_and_hvp_helpers_accept_true_and_reject_wrong_formulas():
    task = metalqr.LQRTask([[0.9, 0.2], [0.0, 0.7]], [[0.0], [1.0]], np.eye(2), [[1.0]])
    K = np.array([[0.1, 0.3]])
    assert mt.assert_gradient_matches_fd(lambda K: metalqr.cost(task, K),
                                         lambda K: metalqr.gradient(task, K), K) < 1e-5
    with pytest.raises(AssertionError, match="gradient mismatch"):
        mt.assert_gradient_matches_fd(lambda K: metalqr.cost(task, K),
                                      lambda K: 0.5 * metalqr.gradient(task, K), K)
    grad = lambda K: metalqr.gradient(task, K)
    assert mt.assert_hvp_matches_fd(grad, lambda K, X: metalqr.hessian_vp(task, K, X), K) < 1e-4
    with pytest.raises(AssertionError, match="Hessian-vector product mismatch"):
        mt.assert_hvp_matches_fd(grad, lambda K, X: metalqr.hessian_vp(task, K, X.T.T * 1.1), K)


@pytest.mark.parametrize("call, word", [
    (lambda: mt.lqr_tasks(d=0), "d"), (lambda: mt.lqr_tasks(k=1.5), "k"),
    (lambda: mt.lqr_tasks(stability="stabel"), "stability"),
    (lambda: mt.lqr_tasks(stability="unstable", max_spectral_radius=0.9), "max_spectral_radius"),
    (lambda: mt.lqr_tasks(condition_number=0.5), "condition_number"),
    (lambda: mt.lqr_tasks(max_d=0), "max_d"), (lambda: mt.lqr_tasks(badly_scaled="yes"), "badly_scaled"),
    (lambda: mt.stabilizing_gains(np.eye(2)), "task"),
    (lambda: mt.stabilizing_gains(metalqr.double_integrator(), margin=1.0), "margin"),
    (lambda: mt.stabilizing_gains(metalqr.double_integrator(), gamma=0.5), "gamma"),
    (lambda: mt.stabilizing_gains(metalqr.double_integrator(), K0=np.zeros((1, 2))), "K0"),
    (lambda: mt.stabilizing_gains(metalqr.double_integrator(), scale=-1.0), "scale"),
    (lambda: mt.stabilizing_gains(metalqr.double_integrator(), K0=np.zeros((2, 1))), "K0"),
    (lambda: mt.stabilizing_gains(metalqr.double_integrator(), K0=[[1j, 0.0]]), "K0"),
    (lambda: mt.directions(0, 2), "k"), (lambda: mt.directions(1, 2, norm=float("nan")), "norm"),
    (lambda: mt.task_sets(n=0), "n"), (lambda: mt.task_sets(heterogeneity=-1.0), "heterogeneity"),
    (lambda: mt.meta_learnable_families(eta=0.0), "eta"),
    (lambda: mt.meta_learnable_families(margin=-0.1), "margin"),
    (lambda: mt.check_bound(1.0, len, mt.directions(1, 1)), "bound"),
    (lambda: mt.check_bound(len, len, [1, 2]), "strategy"),
    (lambda: mt.check_bound(len, len, mt.directions(1, 1), max_examples=0), "max_examples"),
    (lambda: mt.check_bound(len, len, mt.directions(1, 1), ignore=ValueError), "ignore"),
    (lambda: mt.assert_gradient_matches_fd(len, len, 1j * np.ones((1, 1))), "K"),
    (lambda: mt.assert_gradient_matches_fd(len, len, np.ones((1, 1)), h=0.0), "h"),
    (lambda: mt.assert_hvp_matches_fd(len, None, np.ones((1, 1))), "hvp"),
])
def test_malformed_arguments_named(call, word):
    assert_named_error(call, word)


def test_metalqr_imports_without_hypothesis_and_testing_names_the_extra():
    code = ("import sys; sys.modules['hypothesis'] = None\n"
            "import metalqr, metalqr.theory\n"
            "try:\n    import metalqr.testing\nexcept ImportError as e:\n    print('MSG', e)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "MSG" in out.stdout and "metalqr[testing]" in out.stdout
    plain = subprocess.run([sys.executable, "-c", "import sys, metalqr; print('hypothesis' in sys.modules)"],
                           capture_output=True, text=True, env=env, cwd=ROOT)
    assert plain.stdout.strip() == "False"


def test_check_bound_report_describes_its_settings():
    """BoundReport.settings used to be empty (or Hypothesis' raw settings dict): it now holds
    every setting that determined the report, as plain JSON-serialisable values."""
    import json

    def unit_bound(X):
        return 1.0

    strategy = mt.directions(1, 2)
    rep = mt.check_bound(unit_bound, lambda X: float(np.abs(X).max()), strategy, max_examples=7,
                         rtol=1e-6, atol=1e-3, rng=3, ignore=(metalqr.UnstablePolicyError,), name="demo")
    s = rep.settings
    assert s["name"] == rep.name == "demo"
    assert s["bound"].endswith("unit_bound") and "<lambda>" in s["quantity"]
    assert s["strategy"] == repr(strategy)
    assert (s["max_examples"], s["rtol"], s["atol"], s["seed"]) == (7, 1e-6, 1e-3, 3)
    assert s["derandomize"] is False and s["rng"] == "Hypothesis seed 3 (rng=3)"
    assert s["ignore"] == ["UnstablePolicyError"]
    assert s["phases"] == ["explicit", "generate", "target", "shrink"]
    assert json.loads(json.dumps(s)) == s
    # derandomised default and a Generator are described as such; the seed reproduces the run
    d = mt.check_bound(unit_bound, lambda X: 0.0, strategy, max_examples=3).settings
    assert d["seed"] is None and d["derandomize"] is True and d["rng"].startswith("derandomised")
    g = mt.check_bound(unit_bound, lambda X: 0.0, strategy, max_examples=3,
                       rng=np.random.default_rng(0)).settings
    assert isinstance(g["seed"], int) and "Generator" in g["rng"]
    again = mt.check_bound(unit_bound, lambda X: 0.0, strategy, max_examples=3, rng=g["seed"])
    assert again.settings["seed"] == g["seed"]
    # a violated bound carries the same description
    bad = mt.check_bound(lambda X: 0.1, lambda X: 1.0, strategy, max_examples=3, name="never")
    assert not bad.holds and bad.settings["name"] == "never" and bad.settings["max_examples"] == 3


def test_an_unasserted_metalqr_warning_fails_the_suite(tmp_path):
    """setup.cfg's filterwarnings turns every metalqr warning that a test does not assert
    (pytest.warns(<class>, match=...)) into an error, so none can pass unnoticed."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    (tmp_path / "test_w.py").write_text(
        "import warnings, pytest, metalqr\n"
        "def test_unasserted():\n"
        "    warnings.warn('suspect', metalqr.TrainingWorsenedWarning)\n"
        "def test_asserted():\n"
        "    with pytest.warns(metalqr.TrainingWorsenedWarning, match='suspect'):\n"
        "        warnings.warn('suspect', metalqr.TrainingWorsenedWarning)\n")
    env = dict(os.environ, PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-c", os.path.join(root, "setup.cfg"), "--rootdir", str(tmp_path),
                          str(tmp_path / "test_w.py")], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path), timeout=120)
    assert "1 failed, 1 passed" in out.stdout, out.stdout + out.stderr
    assert "TrainingWorsenedWarning: suspect" in out.stdout
