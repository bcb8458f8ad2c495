"""Property tests of the ZO-MAML lemmas' inequalities on random task families
(hypothesis), with the counterexamples to the printed constants kept as regression tests."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import metalqr
from metalqr import theory as th
from helpers import random_task

families = st.tuples(st.integers(1, 4), st.integers(1, 2), st.integers(1, 3),
                     st.integers(0, 2**31 - 1), st.floats(0.3, 1.1))


def _family(params):
    d, k, n, seed, rho = params
    rng = np.random.default_rng(seed)
    ts = metalqr.TaskSet([random_task(rng, d, k, rho=rho * rng.uniform(0.8, 1.0)) for _ in range(n)])
    try:
        K = metalqr.common_stabilizing_gain(ts)
    except (metalqr.NotMetaLearnableError, metalqr.ValidationError):
        assume(False)
    return ts, K, rng


@given(families)
def test_lemma8_uniform_bounds(params):
    ts, K, _ = _family(params)
    c = th.task_constants(ts, K)
    grads = metalqr.gradient(ts, K)
    slack = 1e-9 * c.J_max          # rounding at K = K*, where h_G = 0 exactly
    assert np.linalg.norm(grads, axis=(1, 2)).max() <= th.h_G(c) * (1 + 1e-9) + slack
    assert np.linalg.norm(K) <= th.h_c(c) * (1 + 1e-9)
    H = max(np.linalg.norm(metalqr.hessian(t, K)) for t in ts)
    assert H <= th.h_H(c, c.J_max) * (1 + 1e-9)


def test_lemma8_printed_h_G_counterexample():
    """The printed h_G lacks the factor 2 of grad J = 2 E Sigma: a scalar task where the
    bound chain is tight (Psi = Q = I, K near K*) violates it, the corrected one holds."""
    task = metalqr.LQRTask([[0.9]], [[1.0]], [[1.0]], [[1.0]])
    K_star, _ = metalqr.optimal_gain(task)
    ts = metalqr.TaskSet([task])
    K = K_star - 0.3
    c = th.task_constants(ts, K)
    g = float(np.abs(metalqr.gradient(task, K)).max())
    assert g > th.h_G(c, "paper")
    assert g <= th.h_G(c)


@given(families)
def test_lemma9_perturbation_within_h_Delta(params):
    ts, K, rng = _family(params)
    c = th.task_constants(ts, K)
    hD = th.h_Delta(c)
    D = rng.standard_normal(K.shape)
    D *= hD * rng.uniform(0.01, 1.0) / np.linalg.norm(D)
    assert np.all(metalqr.is_stabilizing(ts, K + D))        # h_Delta keeps K + D stabilising
    dJ = np.abs(metalqr.cost(ts, K + D) - metalqr.cost(ts, K))
    nD = np.linalg.norm(D)
    assert np.all(dJ <= th.cost_lipschitz(c) * nD * (1 + 1e-9))
    assert np.all(dJ <= th.h_cost(c) * metalqr.cost(ts, K) * nD * (1 + 1e-9))
    dG = np.linalg.norm(metalqr.gradient(ts, K + D) - metalqr.gradient(ts, K), axis=(1, 2))
    assert np.all(dG <= th.h_grad(c) * nD * (1 + 1e-9))


def test_lemma9_printed_h_cost_counterexample():
    """Regression: the printed h_cost is violated (by ~13x here); the derived one holds."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        ts = metalqr.TaskSet([random_task(rng, 2, 1, rho=rng.uniform(0.3, 1.1)) for _ in range(3)])
        try:
            K = metalqr.common_stabilizing_gain(ts)
        except (metalqr.NotMetaLearnableError, metalqr.ValidationError):
            continue
        c = th.task_constants(ts, K)
        D = rng.standard_normal(K.shape)
        D *= th.h_Delta(c) / np.linalg.norm(D)
        dJ = np.abs(metalqr.cost(ts, K + D) - metalqr.cost(ts, K))
        rel = dJ / (metalqr.cost(ts, K) * np.linalg.norm(D))
        if np.max(rel) > 2 * th.h_cost(c, "paper"):
            assert np.all(rel <= th.h_cost(c) * (1 + 1e-9))
            return
    pytest.fail("no counterexample to the printed h_cost found (expected many)")


@given(families)
def test_lemma9_hessian_lipschitz(params):
    """Third inequality of Lemma 9 with the derived h_hess (and the printed one, read with
    mu~ = J_max / sigma_Q), Hessians compared as dk x dk matrices."""
    ts, K, rng = _family(params)
    c = th.task_constants(ts, K)
    D = rng.standard_normal(K.shape)
    D *= th.h_Delta(c) * rng.uniform(0.01, 1.0) / np.linalg.norm(D)
    dH = max(np.linalg.norm(metalqr.hessian(t, K + D) - metalqr.hessian(t, K)) for t in ts)
    nD = np.linalg.norm(D)
    assert dH <= th.h_hess(c) * nD * (1 + 1e-9)
    assert dH <= th.h_hess(c, "paper") * nD * (1 + 1e-9)


def test_h_hess_is_not_vacuous_near_a_tight_direction():
    """The derived h_hess is within 10^3 of the observed Hessian change on a scalar task
    (a regression guard against a bound that silently becomes astronomically loose)."""
    task = metalqr.LQRTask([[0.9]], [[1.0]], [[1.0]], [[1.0]])
    ts = metalqr.TaskSet([task])
    K = np.array([[0.3]])
    c = th.task_constants(ts, K)
    D = np.array([[th.h_Delta(c)]])
    dH = float(np.abs(metalqr.hessian(task, K + D) - metalqr.hessian(task, K)).max())
    assert dH <= th.h_hess(c) * abs(D[0, 0]) <= 1e3 * dH


@given(families, st.floats(1e-5, 1e-2))
def test_lemma12_meta_objective_perturbation(params, eta):
    """Lemma 5 / 12 for ||K' - K|| <= h_Delta(K), with the constants taken over the sub-level
    set that contains K, K' and all adapted gains (the paper's barred constants); also the
    per-task meta-gradient bound ||grad L_i|| <= (1 + eta h_H) h_G behind h_sample,task."""
    ts, K, rng = _family(params)
    assume(metalqr.is_maml_stabilizing(ts, K, eta))
    c0 = th.task_constants(ts, K)
    assume(np.all(c0.J - c0.J_star > 1e-9 * c0.J))
    D = rng.standard_normal(K.shape)
    D *= th.h_Delta(c0) * rng.uniform(0.01, 1.0) / np.linalg.norm(D)
    K2 = K + D
    assume(metalqr.is_maml_stabilizing(ts, K2, eta))
    points = [K, K2] + [K - eta * g for g in metalqr.gradient(ts, K)] + [K2 - eta * g for g in metalqr.gradient(ts, K2)]
    gamma = max(1.0, max(np.max((metalqr.cost(ts, p) - c0.J_star) / (c0.J - c0.J_star)) for p in points))
    bar = th.sublevel_constants(ts, K, gamma)
    hH = th.h_H(bar, bar.J_max)
    nD = np.linalg.norm(D)
    dL = abs(metalqr.maml_objective(ts, K2, eta) - metalqr.maml_objective(ts, K, eta))
    assert dL <= th.h_cost_meta(bar, eta) * nD * (1 + 1e-9)
    dG = np.linalg.norm(metalqr.maml_gradient(ts, K2, eta) - metalqr.maml_gradient(ts, K, eta))
    assert dG <= th.h_L_grad(bar, eta, hH) * nD * (1 + 1e-9)
    per_task = [np.linalg.norm(metalqr.maml_gradient(t, K, eta)) for t in ts]
    assert max(per_task) <= (1 + eta * hH) * th.h_G(bar) * (1 + 1e-9)


@given(families)
def test_lemma10_gradient_domination_lambda(params):
    ts, K, _ = _family(params)
    c = th.task_constants(ts, K)
    gap = metalqr.cost(ts, K) - c.J_star
    g2 = np.sum(metalqr.gradient(ts, K) ** 2, axis=(1, 2))
    assert np.all(gap <= g2 / th.gradient_domination_lambda(c) + 1e-9 * c.J_star)


@given(families, st.floats(1e-5, 1e-2))
def test_lemma11_meta_gradient_bound(params, eta):
    ts, K, _ = _family(params)
    assume(metalqr.is_maml_stabilizing(ts, K, eta))
    c = th.task_constants(ts, K)
    g = np.linalg.norm(metalqr.maml_gradient(ts, K, eta))
    assert g <= th.h_G_meta(c, eta, th.h_H(c, c.J_max)) * (1 + 1e-9) + 1e-9 * c.J_max


@given(families, st.floats(1e-3, 1.0))
def test_lemma14_finite_horizon(params, epsilon):
    """With l >= the Lemma 14 bound, the finite-horizon cost of the roll-outs (x_0 ~ N(0, I),
    average of x_1..x_l; exact expectation) is within epsilon of the ergodic cost."""
    ts, K, _ = _family(params)
    c = th.task_constants(ts, K)
    ell = th.rollout_length_bound(c, epsilon)
    assume(ell < 20000)
    l = int(math.ceil(ell))
    gap = np.abs(metalqr.expected_rollout_cost(ts, K, l) - metalqr.cost(ts, K))
    assert np.all(gap <= epsilon)


def test_rollout_length_variance_concentration():
    """With l = rollout_length_variance(eps, delta), the empirical cost of single roll-outs
    deviates from its exact finite-horizon mean by more than eps in at most a fraction delta
    of 400 roll-outs (binomial slack: 3 standard deviations), on random low-dimensional tasks."""
    rng = np.random.default_rng(11)
    checked = 0
    while checked < 4:
        ts = metalqr.TaskSet([random_task(rng, 1, int(rng.integers(1, 3)), rho=rng.uniform(0.3, 0.9))])
        try:
            K = metalqr.common_stabilizing_gain(ts)
        except (metalqr.NotMetaLearnableError, metalqr.ValidationError):
            continue
        c = th.task_constants(ts, K)
        eps, delta = 0.5 * c.J_max, 0.2
        l = th.rollout_length_variance(c, eps, delta)
        if l > 5000:
            continue
        l = int(math.ceil(l))
        mean = metalqr.expected_rollout_cost(ts, K, l)[0]
        costs = metalqr.simulate_costs(ts[0], np.broadcast_to(K, (400,) + K.shape), length=l, rng=checked,
                                       backend="numpy")
        assert np.mean(np.abs(costs - mean) > eps) <= delta + 3 * math.sqrt(delta * (1 - delta) / 400)
        assert th.rollout_length_variance(c, eps / 2, delta) > l          # finer accuracy needs longer
        checked += 1


@given(families, st.floats(0.1, 12.0), st.floats(0.01, 0.5))
def test_lemma7_outer_rollout_length(params, e_rel, radius):
    """h^2_{l,grad}(12/eps): at that roll-out length the finite-horizon bias of each outer
    roll-out, scaled by dk/r as in the estimator, is at most eps/12 (exact expectation).
    eps is drawn relative to (dk/r) J_max so that the length stays simulable."""
    ts, K, _ = _family(params)
    c = th.task_constants(ts, K)
    epsilon = e_rel * ts.d * ts.k / radius * c.J_max
    ell = th.rollout_length_meta(c, epsilon, radius)
    assume(ell < 20000)
    bias = np.abs(metalqr.expected_rollout_cost(ts, K, int(math.ceil(ell))) - metalqr.cost(ts, K))
    assert np.all(ts.d * ts.k / radius * bias <= epsilon / 12)


def test_lemma13_matrix_bernstein_failure_rate():
    """Z_i uniform on the Frobenius sphere of radius r in R^{3x2}: E Z = 0, ||Z|| <= r,
    E ZZ' = r^2/3 I, E Z'Z = r^2/2 I, so sigma^2 = r^2/2. With m from Lemma 13 the sample
    mean is within epsilon with empirical probability >= 1 - delta."""
    r, eps, delta = 1.0, 0.15, 0.1
    m = th.bernstein_samples(eps, delta, sigma2=r**2 / 2, bound=r, d1=3, d2=2)
    rng = np.random.default_rng(0)
    reps = 400
    Z = rng.standard_normal((reps, m, 3, 2))
    Z *= r / np.linalg.norm(Z, axis=(2, 3), keepdims=True)
    fails = np.mean(np.linalg.norm(Z.mean(axis=1), axis=(1, 2)) > eps)
    assert fails <= delta


@given(families, st.floats(0.0, 1.0))
def test_sublevel_bounds_dominate_constants_inside_the_set(params, frac):
    """Points on the segment from K0 to K* whose costs lie in the sub-level set (gamma = 1)
    have every building block below the closed-form suprema of sublevel_constants."""
    ts, K0, _ = _family(params)
    K_star = np.mean(metalqr.optimal_gain(ts)[0], axis=0)
    K = K0 + frac * (K_star - K0)
    assume(np.all(metalqr.is_stabilizing(ts, K)))
    c0 = th.task_constants(ts, K0)
    c = th.task_constants(ts, K)
    assume(np.all(c.J - c.J_star <= c0.J - c0.J_star))
    bar = th.sublevel_constants(ts, K0)
    tol = 1 + 1e-9
    assert c.J_max <= bar.J_max * tol and c.RBPB <= bar.RBPB * tol and c.BPA_F <= bar.BPA_F * tol
    assert c.norm_K_F <= bar.norm_K_F * tol and c.norm_AK <= bar.norm_AK * tol
    assert th.h_grad(c) <= th.h_grad(bar) * tol and th.h_G(c) <= th.h_G(bar) * tol + 1e-9 * c.J_max
    assert th.h_Delta(c) >= th.h_Delta(bar) / tol


def test_certify_report():
    ts = metalqr.sample_tasks(3, 1, 1, rng=0)
    K0 = np.zeros((1, 1))
    cert = th.certify(ts, K0, eta=1e-5, alpha=1e-3, epsilon=0.1, delta=0.05)
    assert all(np.isfinite(v) and v > 0 for v in (cert.eta_max, cert.alpha_max, cert.radius_max,
                                                    cert.n_perturbations_min, cert.rollout_length_min))
    tiny = th.certify(ts, K0, eta=cert.eta_max / 2, alpha=cert.alpha_max / 2, epsilon=0.1, delta=0.05)
    assert tiny.holds and not cert.holds
    finer = th.certify(ts, K0, eta=1e-5, alpha=1e-3, epsilon=0.01, delta=0.05)
    assert finer.n_perturbations_min > cert.n_perturbations_min and finer.radius_max <= cert.radius_max
    assert "eta_max" in str(cert) and "iterations N" in str(cert) and "h_l,var" in str(cert)
    assert cert.rollout_length_min == max(cert.constants["h_l,grad"], cert.constants["h_l,var"])
    # Lemma 7 / Theorem 2 quantities: finite, and monotone in the accuracy asked for.
    assert finer.task_batch_min > cert.task_batch_min and finer.meta_radius_max < cert.meta_radius_max
    assert finer.meta_rollout_length_min > cert.meta_rollout_length_min
    kw = dict(eta=1e-5, epsilon=0.1, delta=0.05, epsilon0=1e-4)
    slow = th.certify(ts, K0, alpha=1e-3, **kw)
    assert 0 < slow.psi0 and np.isfinite(slow.iterations_min) and slow.iterations_min > 0
    assert cert.iterations_min == 0.0              # psi0 < epsilon0 / 2: already accurate enough
    faster = th.certify(ts, K0, alpha=2e-3, **kw)
    assert faster.iterations_min == pytest.approx(slow.iterations_min / 2, rel=1e-9)
    L0 = metalqr.maml_objective(ts, K0, 1e-5)
    exact = th.certify(ts, K0, alpha=1e-3, L_star=L0 - 0.5 * slow.psi0, **kw)
    assert exact.iterations_min < slow.iterations_min
    with pytest.raises(metalqr.ValidationError, match="L_star"):
        th.certify(ts, K0, eta=1e-5, alpha=1e-3, epsilon=0.1, delta=0.05, L_star=L0 + 1.0)
    with pytest.raises(metalqr.ValidationError, match="MAML-stabilising"):
        th.certify(ts, 100 * np.ones((1, 1)), eta=1e-5, alpha=1e-3, epsilon=0.1, delta=0.05)
