"""Task families, the MAML objective (Eq. 4), its exact gradient, Definition 1, the
cost-gap ratio and meta-learnability checks."""

import math

import numpy as np
import pytest

import metalqr
from helpers import rel


def _fd_grad(f, K, h):
    g = np.zeros_like(K)
    for idx in np.ndindex(K.shape):
        E = np.zeros_like(K)
        E[idx] = h
        g[idx] = (f(K + E) - f(K - E)) / (2 * h)
    return g


def test_sample_tasks_properties():
    ts, nominal = metalqr.sample_tasks(6, 4, 2, rng=3, return_nominal=True)
    assert len(ts) == 6 and (ts.d, ts.k) == (4, 2)
    assert np.all(metalqr.spectral_radius(ts, np.zeros((2, 4))) <= 0.7 + 1e-12)
    for name in ("Q", "R", "Psi"):
        M = getattr(ts, name)
        assert np.allclose(M, np.swapaxes(M, -1, -2))
        assert np.min(np.linalg.eigvalsh(M)) >= 0.1 - 1e-12
    again = metalqr.sample_tasks(6, 4, 2, rng=3)
    assert all(a == b for a, b in zip(ts, again))
    same = metalqr.sample_tasks(3, 4, 2, heterogeneity=0.0, rng=3, return_nominal=True)
    assert all(t == same[1] for t in same[0])
    with pytest.raises(metalqr.ValidationError, match="max_spectral_radius"):
        metalqr.sample_tasks(2, 2, 1, max_spectral_radius=1.5)


def test_perturb_tasks_around_boeing():
    nominal = metalqr.boeing747()
    ts = metalqr.perturb_tasks(nominal, 5, heterogeneity=1e-4, rng=0, perturb=("A", "B", "Q"))
    assert len(ts) == 5
    assert np.max(np.abs(ts.A - nominal.A)) < 0.1 and not np.allclose(ts.A, nominal.A)
    assert np.all(np.linalg.eigvalsh(ts.Q) > 0)
    K = metalqr.common_stabilizing_gain(ts)
    assert np.all(metalqr.is_stabilizing(ts, K))
    with pytest.raises(metalqr.ValidationError, match="perturb"):
        metalqr.perturb_tasks(nominal, 2, perturb=("C",))


@pytest.mark.parametrize("d, k", [(1, 1), (2, 2), (5, 3)])
def test_maml_gradient_matches_finite_differences(d, k):
    ts = metalqr.sample_tasks(4, d, k, rng=d)
    K = 0.01 * np.random.default_rng(d).standard_normal((k, d))
    for eta in (1e-4, 1e-3):
        assert metalqr.is_maml_stabilizing(ts, K, eta)
        g = metalqr.maml_gradient(ts, K, eta)
        fd = _fd_grad(lambda Z: metalqr.maml_objective(ts, Z, eta), K, 1e-6)
        assert rel(g, fd) < 1e-5
    w = np.arange(1.0, 5.0)
    g = metalqr.maml_gradient(ts, K, 1e-3, weights=w)
    fd = _fd_grad(lambda Z: metalqr.maml_objective(ts, Z, 1e-3, weights=w), K, 1e-6)
    assert rel(g, fd) < 1e-5


def test_eta_zero_reduces_to_mean_gradient_and_first_order_definition():
    ts = metalqr.sample_tasks(3, 3, 2, rng=1)
    K = np.zeros((2, 3))
    assert rel(metalqr.maml_gradient(ts, K, 0.0), metalqr.gradient(ts, K).mean(axis=0)) < 1e-14
    assert metalqr.maml_objective(ts, K, 0.0) == pytest.approx(np.mean(metalqr.cost(ts, K)))
    eta = 1e-3
    Kad = metalqr.adapted_gains(ts, K, eta)
    assert rel(Kad, K - eta * metalqr.gradient(ts, K)) < 1e-14
    fo = np.mean([metalqr.gradient(t, Kad[i]) for i, t in enumerate(ts)], axis=0)
    assert rel(metalqr.first_order_maml_gradient(ts, K, eta), fo) < 1e-12


def test_definition1_and_infinite_objective():
    ts = metalqr.sample_tasks(3, 2, 2, rng=0)
    K = np.zeros((2, 2))
    assert metalqr.is_maml_stabilizing(ts, K, 1e-4)
    big_eta = 1.0
    assert not metalqr.is_maml_stabilizing(ts, K, big_eta)
    assert metalqr.maml_objective(ts, K, big_eta) == math.inf
    with pytest.raises(metalqr.NotMAMLStabilizingError, match="eta"):
        metalqr.maml_gradient(ts, K, big_eta)
    unstable = 50 * np.ones((2, 2))
    assert not metalqr.is_maml_stabilizing(ts, unstable, 1e-4)
    with pytest.raises(metalqr.NotMAMLStabilizingError, match="task"):
        metalqr.maml_gradient(ts, unstable, 1e-4)


def test_cost_gap_ratio():
    ts = metalqr.sample_tasks(4, 3, 1, rng=2)
    J_star = metalqr.optimal_costs(ts)
    K = np.zeros((1, 3))
    expected = (metalqr.cost(ts, K).sum() - J_star.sum()) / J_star.sum()
    assert metalqr.cost_gap_ratio(ts, K) == pytest.approx(expected)
    assert metalqr.cost_gap_ratio(ts, K, J_star) == pytest.approx(expected)
    K1, _ = metalqr.optimal_gain(ts[0])
    assert metalqr.cost_gap_ratio(ts[:1], K1) == pytest.approx(0.0, abs=1e-12)
    assert metalqr.cost_gap_ratio(ts, 100 * np.ones((1, 3))) == math.inf


def test_paper_scalar_pair_is_not_meta_learnable():
    pair = metalqr.TaskSet([metalqr.LQRTask([[3.0]], [[4.0]], [[1.0]], [[1.0]]),
                            metalqr.LQRTask([[1.0]], [[-1.0]], [[1.0]], [[1.0]])])
    with pytest.raises(metalqr.NotMetaLearnableError, match=r"\(0.5, 1\).*\(-2, -?0\)"):
        metalqr.check_meta_learnable(pair)
    with pytest.raises(metalqr.NotMetaLearnableError):
        metalqr.meta_policy_optimization(pair, [[0.7]], alpha=1e-3, eta=1e-5, n_iterations=1,
                                         gradient="exact", progress=False)
    unreachable = metalqr.TaskSet([metalqr.LQRTask(np.diag([0.5, 2.0]), [[1.0], [0.0]], np.eye(2),
                                                   [[1.0]])])
    with pytest.raises(metalqr.NotMetaLearnableError, match="not stabilisable"):
        metalqr.check_meta_learnable(unreachable)
    ok = metalqr.TaskSet([metalqr.LQRTask([[3.0]], [[4.0]], [[1.0]], [[1.0]]),
                          metalqr.LQRTask([[1.0]], [[1.5]], [[1.0]], [[1.0]])])
    K = metalqr.common_stabilizing_gain(ok)
    assert np.all(metalqr.is_stabilizing(ok, K))
