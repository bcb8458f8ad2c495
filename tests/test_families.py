"""Task families: the default heterogeneity is relative to the system's own scale and gives
meta-learnable families for every bundled system; non-learnable families are refused with a
suggestion that works; size guards."""

import time

import numpy as np
import pytest

import metalqr
from metalqr.meta.families import default_heterogeneity


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(metalqr.standard_systems()))
def test_default_family_is_meta_learnable_over_20_seeds(name):
    nominal = metalqr.standard_systems()[name]
    K_nom, _ = metalqr.optimal_gain(nominal)
    for seed in range(20):
        # perturb_tasks runs common_stabilizing_gain and raises NotMetaLearnableError if it fails
        ts = metalqr.perturb_tasks(nominal, 5, rng=seed)
        assert np.all(metalqr.is_stabilizing(ts, K_nom)), (name, seed)
        assert not np.allclose(ts.A, nominal.A)          # the tasks do differ


def test_perturb_tasks_checks_with_common_stabilizing_gain(monkeypatch):
    import metalqr.meta.objective as objective

    def no_gain(tasks):
        raise metalqr.ValidationError("no common stabilising gain among the candidates")
    monkeypatch.setattr(objective, "common_stabilizing_gain", no_gain)
    with pytest.raises(metalqr.NotMetaLearnableError, match="stabilising gain"):
        metalqr.perturb_tasks(metalqr.double_integrator(), 3, rng=0)


def test_boeing_default_family_regression():
    # Issue 14: the old default (variance 1e-3) made all five rng=0 tasks open-loop unstable
    # (spectral radius 1.07-1.13) and the nominal K* failed for 14 of 20 seeds.
    nominal = metalqr.boeing747()
    ts = metalqr.perturb_tasks(nominal, 5, rng=0)
    rho_open = np.max(np.abs(np.linalg.eigvals(ts.A)), axis=-1)
    rho_nom = np.max(np.abs(np.linalg.eigvals(nominal.A)))
    assert np.all(np.abs(rho_open - rho_nom) < 0.02)


def test_default_heterogeneity_is_relative_to_scale_and_margin():
    nominal = metalqr.boeing747()
    sd = default_heterogeneity(nominal)
    K_star, _ = metalqr.optimal_gain(nominal)
    margin = 1 - float(metalqr.spectral_radius(nominal, K_star))
    for name in ("A", "B"):
        X = getattr(nominal, name)
        assert sd[name] == pytest.approx(0.1 * margin * np.linalg.norm(X) / np.sqrt(X.size))
    # scaling the system's B scales B's perturbation (same closed-loop margin)
    scaled = metalqr.LQRTask(nominal.A, 3.0 * nominal.B, nominal.Q, 9.0 * nominal.R)
    assert default_heterogeneity(scaled)["B"] == pytest.approx(3.0 * sd["B"], rel=1e-6)
    # the empirical spread of the draws matches the standard deviations
    ts = metalqr.perturb_tasks(nominal, 400, rng=1, require_common_gain=False)
    assert np.std(ts.A - nominal.A) == pytest.approx(sd["A"], rel=0.05)
    assert np.std(ts.B - nominal.B) == pytest.approx(sd["B"], rel=0.05)


def test_explicit_heterogeneity_keeps_its_meaning():
    """An explicit heterogeneity is still the variance of each entry, drawn in the same order."""
    nominal = metalqr.boeing747()
    ts = metalqr.perturb_tasks(nominal, 3, heterogeneity=1e-4, rng=7, perturb=("A", "B", "Q"))
    rng = np.random.default_rng(7)
    for t in ts:
        A = nominal.A + 1e-2 * rng.standard_normal((4, 4))
        B = nominal.B + 1e-2 * rng.standard_normal((4, 2))
        Q = metalqr.meta.families.repair_spd(nominal.Q + 1e-2 * rng.standard_normal((4, 4)), 1e-3)
        assert np.array_equal(t.A, A) and np.array_equal(t.B, B) and np.allclose(t.Q, Q)


def test_non_learnable_family_is_refused_with_a_working_suggestion():
    nominal = metalqr.boeing747()
    with pytest.raises(metalqr.NotMetaLearnableError, match=r"heterogeneity=") as info:
        metalqr.perturb_tasks(nominal, 5, heterogeneity=1e-3, rng=0)
    msg = str(info.value)
    suggested = float(msg.split("heterogeneity=")[1].split(" ")[0])
    assert 0 < suggested < 1e-3
    ts = metalqr.perturb_tasks(nominal, 5, heterogeneity=suggested, rng=0)
    assert np.all(metalqr.spectral_radius(ts, metalqr.common_stabilizing_gain(ts)) < 1)
    # the refusal can be switched off explicitly
    ts = metalqr.perturb_tasks(nominal, 5, heterogeneity=1e-3, rng=0, require_common_gain=False)
    assert len(ts) == 5


def test_max_spectral_radius_is_validated_and_applied():
    nominal = metalqr.inverted_pendulum()
    for bad in (0, 0.0, -0.5, 1.0, 1.5, float("nan")):
        with pytest.raises(metalqr.ValidationError, match="max_spectral_radius"):
            metalqr.perturb_tasks(nominal, 2, rng=0, max_spectral_radius=bad)
    ts = metalqr.perturb_tasks(nominal, 4, rng=0, max_spectral_radius=0.9)
    assert np.all(np.max(np.abs(np.linalg.eigvals(ts.A)), axis=-1) <= 0.9 + 1e-12)
    with pytest.raises(metalqr.ValidationError, match="max_spectral_radius"):
        metalqr.sample_tasks(2, 2, 2, max_spectral_radius=0)


def test_size_guards_refuse_before_working():
    t0 = time.perf_counter()
    with pytest.raises(metalqr.ValidationError, match="n_tasks") as info:
        metalqr.sample_tasks(10**8, 2, 2)
    assert "chunks" in str(info.value)
    with pytest.raises(metalqr.ValidationError, match="sample_tasks"):
        metalqr.sample_tasks(10, 20000, 2)
    with pytest.raises(metalqr.ValidationError, match="n_tasks"):
        metalqr.perturb_tasks(metalqr.boeing747(), 10**7)
    assert time.perf_counter() - t0 < 2.0


def test_sample_tasks_family_is_meta_learnable_at_zero():
    for seed in range(5):
        ts = metalqr.sample_tasks(5, 3, 2, rng=seed)
        assert np.all(np.max(np.abs(np.linalg.eigvals(ts.A)), axis=-1) <= 0.7 + 1e-12)
        assert np.all(np.linalg.eigvalsh(ts.R) >= 0.1 - 1e-12)
