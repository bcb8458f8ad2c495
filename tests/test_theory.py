"""Property tests of the ZO-MAML lemmas' inequalities on random task families
(hypothesis, with the public strategies of metalqr.testing), with the counterexamples to the
printed constants kept as regression tests."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import metalqr
from metalqr import theory as th
from metalqr import testing as mt
from helpers import random_task


def _with_gain(ts):
    """A family, a gain stabilising every task, a unit direction and a fraction in [0.01, 1]."""
    return st.tuples(st.just(ts), mt.stabilizing_gains(ts, margin=0.01), mt.directions(ts.k, ts.d),
                     st.floats(0.01, 1.0))


#: Families of 1-3 tasks, d <= 4, k <= 2, open-loop spectral radius up to 1.1 (before the
#: per-task perturbations), weights with condition number <= 10.
families = mt.task_sets(max_n=3, max_d=4, max_k=2, heterogeneity=0.3,
                        max_spectral_radius=1.1).flatmap(_with_gain)


def _family(params):
    ts, K, X, frac = params
    return ts, K, X, frac


@given(families)
def test_lemma8_uniform_bounds(params):
    ts, K, _, _ = _family(params)
    c = th.task_constants(ts, K)
    grads = metalqr.gradient(ts, K)
    # rounding near K = K*: J - J* (inside h_0 = sqrt(RBPB (J - J*) / mu)) rounds to 0 or to
    # ~1e-14 J while the gradient is ~sqrt(J - J*) (was 1e-9 J_max: failed at A = 1e-9, K = 0,
    # where the gradient is 2e-9 and J - J* = 1e-18 rounds to 0)
    h0_rounding = math.sqrt(1e-14 * c.RBPB * c.J_max / c.mu)
    slack = 2.0 * c.J_max * h0_rounding / c.sigma_Q
    assert np.linalg.norm(grads, axis=(1, 2)).max() <= th.h_G(c) * (1 + 1e-9) + slack
    h0_rounding /= c.sigma_R                                               # J - J* rounds to 0 near K*
    assert np.linalg.norm(K) <= th.h_c(c) * (1 + 1e-9) + h0_rounding
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
    ts, K, X, frac = _family(params)
    c = th.task_constants(ts, K)
    hD = th.h_Delta(c)
    D = hD * frac * X
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
    ts, K, X, frac = _family(params)
    c = th.task_constants(ts, K)
    D = th.h_Delta(c) * frac * X
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


@pytest.mark.slow
@settings(max_examples=20)   # each example solves several Riccati equations
@given(families, st.floats(1e-5, 1e-2))
def test_lemma12_meta_objective_perturbation(params, eta):
    """Lemma 5 / 12 for ||K' - K|| <= h_Delta(K), with the constants taken over the sub-level
    set that contains K, K' and all adapted gains (the paper's barred constants); also the
    per-task meta-gradient bound ||grad L_i|| <= (1 + eta h_H) h_G behind h_sample,task."""
    ts, K, X, frac = _family(params)
    assume(metalqr.is_maml_stabilizing(ts, K, eta))
    c0 = th.task_constants(ts, K)
    assume(np.all(c0.J - c0.J_star > 1e-9 * c0.J))
    D = th.h_Delta(c0) * frac * X
    K2 = K + D
    assume(metalqr.is_maml_stabilizing(ts, K2, eta))
    points = [K, K2] + [K - eta * g for g in metalqr.gradient(ts, K)] + [K2 - eta * g for g in metalqr.gradient(ts, K2)]
    gamma = max(1.0, max(np.max((metalqr.cost(ts, p) - c0.J_star) / (c0.J - c0.J_star)) for p in points))
    assume(math.isfinite(gamma))           # an adapted gain K - eta grad J_i may destabilise task j != i
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
    ts, K, _, _ = _family(params)
    c = th.task_constants(ts, K)
    gap = metalqr.cost(ts, K) - c.J_star
    g2 = np.sum(metalqr.gradient(ts, K) ** 2, axis=(1, 2))
    assert np.all(gap <= g2 / th.gradient_domination_lambda(c) + 1e-9 * c.J_star)


def test_lemma11_meta_gradient_bound():
    """Lemma 4/11, ||grad L(K)||_F <= h_{G,L}, on meta-learnable families (a common
    MAML-stabilising gain for the drawn eta), with metalqr.testing's bound checker."""
    def bound(fam):
        c = th.task_constants(fam.tasks, fam.K)
        return th.h_G_meta(c, fam.eta, th.h_H(c, c.J_max)) * (1 + 1e-9) + 1e-9 * c.J_max

    def meta_gradient_norm(fam):
        return np.linalg.norm(metalqr.maml_gradient(fam.tasks, fam.K, fam.eta))

    report = mt.assert_bound_holds(bound, meta_gradient_norm,
                                   mt.meta_learnable_families(heterogeneity=0.3, max_eta=1e-2, max_n=3,
                                                              max_d=4, max_k=2),
                                   max_examples=40, name="Lemma 11 h_G,L")
    assert report.n_examples >= 40


@pytest.mark.slow
@settings(max_examples=20)   # each example solves several Riccati equations
@given(families, st.floats(1e-3, 1.0))
def test_lemma14_finite_horizon(params, epsilon):
    """With l >= the Lemma 14 bound, the finite-horizon cost of the roll-outs (x_0 ~ N(0, I),
    average of x_1..x_l; exact expectation) is within epsilon of the ergodic cost."""
    ts, K, _, _ = _family(params)
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


@pytest.mark.slow
@settings(max_examples=20)   # each example solves several Riccati equations
@given(families, st.floats(0.1, 12.0), st.floats(0.01, 0.5))
def test_lemma7_outer_rollout_length(params, e_rel, radius):
    """h^2_{l,grad}(12/eps): at that roll-out length the finite-horizon bias of each outer
    roll-out, scaled by dk/r as in the estimator, is at most eps/12 (exact expectation).
    eps is drawn relative to (dk/r) J_max so that the length stays simulable."""
    ts, K, _, _ = _family(params)
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


@pytest.mark.slow
@settings(max_examples=20)   # each example solves several Riccati equations
@given(families, st.floats(0.0, 1.0))
def test_sublevel_bounds_dominate_constants_inside_the_set(params, frac):
    """Points on the segment from K0 to K* whose costs lie in the sub-level set (gamma = 1)
    have every building block below the closed-form suprema of sublevel_constants."""
    ts, K0, _, _ = _family(params)
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


#: Families in badly scaled coordinates with weights scaled by 10^-2..10^2 (small weights
#: made the printed xi of h_H negative) and unstable nominal tasks.
scaled_families = mt.task_sets(max_n=2, max_d=3, max_k=2, heterogeneity=0.2, max_spectral_radius=1.3,
                               badly_scaled=True, max_exponent=2).flatmap(_with_gain)


def _all_constants(ts, K, eta, epsilon, delta, variant, allow_overflow=False):
    """Every constant of metalqr.theory at K and on the sub-level-set suprema: finite and > 0
    (h_G, h_c, h_G_meta may be 0 exactly at a common optimum). With ``allow_overflow`` a
    constant may instead raise the documented "overflows float64" error, never return
    NaN, inf or a negative number."""
    for c in (th.task_constants(ts, K), th.sublevel_constants(ts, K, 1.5)):
        hH = th.h_H(c, c.J_max, variant)
        calls = {
            "h_G": lambda: th.h_G(c, variant), "h_c": lambda: th.h_c(c), "h_Delta": lambda: th.h_Delta(c),
            "h_cost": lambda: th.h_cost(c, variant), "cost_lipschitz": lambda: th.cost_lipschitz(c),
            "h_grad": lambda: th.h_grad(c), "h_hess": lambda: th.h_hess(c, variant),
            "lambda": lambda: float(np.min(th.gradient_domination_lambda(c))),
            "h_L_grad": lambda: th.h_L_grad(c, eta, hH, variant), "h_G_meta": lambda: th.h_G_meta(c, eta, hH),
            "h_cost_meta": lambda: th.h_cost_meta(c, eta, variant),
            "h_sample_task": lambda: th.h_sample_task(epsilon, delta, c, eta, hH),
            "h_r2": lambda: th.h_r2(epsilon, c, eta, hH),
            "rollout_length_meta": lambda: th.rollout_length_meta(c, epsilon, 0.05),
            "rollout_length_variance": lambda: th.rollout_length_variance(c, epsilon, delta),
            "rollout_length_bound": lambda: th.rollout_length_bound(c, epsilon),
            "rollout_length_bound_cov": lambda: th.rollout_length_bound(c, epsilon, "covariance"),
            "bernstein": lambda: th.bernstein_samples(epsilon, delta, hH, hH + 1.0, ts.d, ts.k)}
        for name, call in calls.items():
            try:
                v = call()
            except metalqr.ValidationError as err:
                if allow_overflow and "float64" in str(err):
                    continue
                raise
            assert math.isfinite(v), name
            assert v > 0 or (v == 0 and name in ("h_G", "h_c", "h_G_meta")), (name, v)
            if name in ("h_sample_task", "bernstein"):
                assert v >= 1


@given(families, st.floats(1e-6, 1e-1), st.floats(1e-3, 10.0), st.floats(1e-3, 0.999),
       st.sampled_from(th.VARIANTS))
def test_every_constant_is_finite_and_positive(params, eta, epsilon, delta, variant):
    ts, K, _, _ = _family(params)
    _all_constants(ts, K, eta, epsilon, delta, variant)


@settings(max_examples=15)
@given(scaled_families, st.floats(1e-6, 1e-1), st.sampled_from(th.VARIANTS))
def test_constants_on_badly_scaled_families_never_nan_or_negative(params, eta, variant):
    """In badly scaled coordinates the products of the lemmas' constants can exceed 1e308:
    then a named overflow error, never NaN, inf or a negative number."""
    ts, K, _, _ = _family(params)
    _all_constants(ts, K, eta, 0.1, 0.1, variant, allow_overflow=True)


@settings(max_examples=15)
@given(scaled_families)
def test_lemma8_hessian_bound_on_badly_scaled_families(params):
    """The derived h_H bounds the Hessian also in badly scaled coordinates and with small
    weights, where the printed one fails."""
    ts, K, _, _ = _family(params)
    c = th.task_constants(ts, K)
    H = max(np.linalg.norm(metalqr.hessian(t, K)) for t in ts)
    assert H <= th.h_H(c, c.J_max) * (1 + 1e-9)


def test_lemma8_printed_h_H_counterexample():
    """Regression: the printed h_H (xi's '- 1' is not scale-invariant) was negative here
    (-0.3 before xi was clipped) and, clipped, is still 15x below the Hessian norm."""
    task = metalqr.LQRTask([[0.9]], [[1.0]], [[1e-3]], [[1e-3]])
    K = np.zeros((1, 1))
    c = th.task_constants(task, K)
    H = float(np.linalg.norm(metalqr.hessian(task, K)))
    # exact: J(K) = q Sigma with Sigma = 1/(1 - a^2); d2J/dK2 at 0 = 2 (r + b^2 P) Sigma + 8 a^2 b^2 q Sigma^3 ...
    # compare with a central second difference of the exact cost instead of a hand formula
    h = 1e-4
    fd = (metalqr.cost(task, K + h) - 2 * metalqr.cost(task, K) + metalqr.cost(task, K - h)) / h**2
    assert H == pytest.approx(fd, rel=1e-5)
    assert H > 10 * th.h_H(c, c.J_max, "paper") > 0
    assert H <= th.h_H(c, c.J_max) * (1 + 1e-12)


def test_bernstein_and_task_batch_regression_values():
    """Regression for the out-of-range deltas of issue 12 (bernstein_samples(delta=5) gave
    -91, h_sample_task(delta=100) -1.7e10): now named errors; valid values unchanged."""
    m = th.bernstein_samples(0.1, 0.05, sigma2=1.0, bound=1.0, d1=2, d2=2)
    assert m == math.ceil(2 * 2 / 0.01 * (1.0 + 0.1 / (3 * math.sqrt(2))) * math.log(4 / 0.05))
    with pytest.raises(metalqr.ValidationError, match="delta"):
        th.bernstein_samples(0.1, 5, sigma2=1.0, bound=1.0, d1=2, d2=2)
    task = metalqr.LQRTask([[0.5]], [[1.0]], [[1.0]], [[1.0]])
    c = th.task_constants(task, np.zeros((1, 1)))
    with pytest.raises(metalqr.ValidationError, match="delta"):
        th.h_sample_task(0.1, 100, c, 1e-3, th.h_H(c, c.J_max))
    with pytest.raises(metalqr.ValidationError, match="Did you mean 'corrected'"):
        th.h_G(c, variant="corected")


def test_certify_needs_positive_definite_Q_and_Psi():
    """Q = 0 used to raise ZeroDivisionError. The lemmas bound ||Sigma_K|| by J / sigma_min(Q)
    and divide by mu = sigma_min(Psi): with a singular Q or Psi every constant is infinite, so
    no certificate exists: a named error instead."""
    bad_Q = metalqr.LQRTask([[0.5]], [[1.0]], [[0.0]], [[1.0]])
    with pytest.raises(metalqr.ValidationError, match=r"\bQ\b.*positive definite"):
        th.certify(bad_Q, np.zeros((1, 1)), eta=1e-3, alpha=1e-3, epsilon=0.1, delta=0.1)
    bad_Psi = metalqr.LQRTask([[0.5, 0], [0, 0.5]], np.eye(2), np.eye(2), np.eye(2), Psi=np.diag([1.0, 0.0]))
    with pytest.raises(metalqr.ValidationError, match=r"\bPsi\b"):
        th.task_constants(bad_Psi, np.zeros((2, 2)))


def test_certify_at_the_optimum_of_a_single_task():
    """K0 = K* of one task: psi0 = 0 up to rounding (was a spurious 'L_star exceeds L(K0)'
    error or log(0)); Theorem 2 then needs no iteration."""
    task = metalqr.LQRTask([[0.9]], [[1.0]], [[1.0]], [[1.0]])
    K_star, _ = metalqr.optimal_gain(task)
    cert = th.certify(task, K_star, eta=1e-6, alpha=1e-3, epsilon=0.1, delta=0.1)
    assert cert.psi0 >= 0 and cert.psi0 < 1e-6 and cert.iterations_min == 0.0
