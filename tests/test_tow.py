"""TOW building blocks: MLP derivatives, first-order MAML, the Eq. (12) baselines and the
iLQR-based weights of Algorithm 1."""

import numpy as np
import pytest
import scipy.optimize

import metalqr
from metalqr.tow import FOMAML, MLP, SinusoidTasks, dirichlet_weights, tow_weights

NET = MLP(hidden=8)


def _data(rng, n=7):
    s = rng.uniform(-3, 3, (n, 1))
    return s, np.sin(s) + 0.1 * rng.standard_normal((n, 1))


def test_mlp_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    x = NET.init(rng)
    s, y = _data(rng)
    _, g = NET.loss_and_grad(x, s, y)
    h = 1e-6
    fd = np.array([(NET.loss_and_grad(x + h * e, s, y)[0] - NET.loss_and_grad(x - h * e, s, y)[0]) / (2 * h)
                   for e in np.eye(x.size)])
    assert np.linalg.norm(g - fd) / np.linalg.norm(fd) < 1e-7


def test_gauss_newton_diagonal_matches_explicit_jacobian():
    rng = np.random.default_rng(1)
    x = NET.init(rng)
    s, _ = _data(rng)
    h = 1e-6
    J = np.stack([(NET.predict(x + h * e, s) - NET.predict(x - h * e, s))[:, 0] / (2 * h)
                  for e in np.eye(x.size)], axis=1)                 # (n, D)
    explicit = 2.0 / s.shape[0] * np.diag(J.T @ J)
    assert np.allclose(NET.gauss_newton_diagonal(x, s), explicit, rtol=1e-6, atol=1e-10)


def test_fomaml_batch_shapes_and_zero_step_gradient():
    rng = np.random.default_rng(2)
    tasks = SinusoidTasks().sample(rng, 3)
    learner = FOMAML(NET, gamma=0.0)
    x = NET.init(rng)
    losses, G, GN = learner.batch(x, tasks, curvature=True)
    assert losses.shape == (3,) and G.shape == (NET.size, 3) and GN.shape == (NET.size, 3)
    assert np.all(GN >= 0)
    t = tasks[0]
    f = lambda z: NET.loss_and_grad(z, t.sq, t.yq)[0]
    e = rng.standard_normal(x.size)
    assert G[:, 0] @ e == pytest.approx((f(x + 1e-6 * e) - f(x - 1e-6 * e)) / 2e-6, rel=1e-6)


def test_skewed_task_source():
    rng = np.random.default_rng(3)
    src = SinusoidTasks(rare_fraction=0.1, split=1.0)
    amps = np.array([t.amplitude for t in src.sample(rng, 2000)])
    assert 0.06 < np.mean(amps > 1.0) < 0.14
    test_amps = np.array([t.amplitude for t in src.sample(rng, 2000, train=False)])
    assert 0.7 < np.mean(test_amps > 1.0) < 0.9


@pytest.mark.parametrize("mode", ["exploration", "exploitation"])
def test_dirichlet_baselines_match_kkt_solution(mode):
    losses = np.array([0.2, 1.0, 3.0, 0.5])
    kappa = 1.2
    u = dirichlet_weights(losses, kappa, mode)
    assert np.all(u >= 0) and u.sum() == pytest.approx(1.0)
    # KKT of min sign*u'l - (kappa-1) sum ln u, sum u = 1: u_j = (kappa-1) / (sign*l_j + lam)
    sign = -1.0 if mode == "exploration" else 1.0
    lo = -np.min(sign * losses) + 1e-12
    lam = scipy.optimize.brentq(lambda L: np.sum((kappa - 1) / (sign * losses + L)) - 1, lo, lo + 1e6)
    assert np.allclose(u, (kappa - 1) / (sign * losses + lam), atol=1e-5)
    order = np.argsort(u)
    assert list(order) == (list(np.argsort(losses)) if mode == "exploration" else list(np.argsort(-losses)))
    with pytest.raises(metalqr.ValidationError, match="kappa"):
        dirichlet_weights(losses, 1.0, mode)


def _window(seed, T=3, M=4):
    rng = np.random.default_rng(seed)
    src = SinusoidTasks()
    return FOMAML(NET, gamma=0.01), NET.init(rng), [src.sample(rng, M) for _ in range(T)]


def test_tow_large_beta_returns_prior_mean():
    learner, x, batches = _window(4)
    res = tow_weights(learner, x, batches, alpha=0.05, beta_u=1e8)
    assert np.allclose(res.U, 1.0 / 4, atol=1e-5)


@pytest.mark.parametrize("value_model", ["diagonal", "full"])
def test_tow_weights_nonnegative_and_no_worse_than_uniform(value_model):
    learner, x, batches = _window(5)
    res = tow_weights(learner, x, batches, alpha=0.05, beta_u=0.01, n_ilqr=3, value_model=value_model)
    assert np.all(res.U >= 0)
    assert res.ilqr.cost <= res.ilqr.costs[0]
    assert not np.allclose(res.U, 0.25)       # a weak prior lets the weights move
    # X is the trajectory of the SGD dynamics under U
    t = 0
    _, G, _ = learner.batch(res.X[t], batches[t])
    assert np.allclose(res.X[t + 1], res.X[t] - 0.05 * G @ res.U[t])


def test_tow_control_jacobian_matches_finite_differences():
    """F_u = -alpha [grad l_j] is exact: compare with differences of the actual update."""
    learner, x, batches = _window(6)
    alpha, u = 0.05, np.full(4, 0.25)
    _, G, _ = learner.batch(x, batches[0])
    step = lambda uu: x - alpha * learner.batch(x, batches[0])[1] @ uu
    for j in range(4):
        e = np.zeros(4)
        e[j] = 1e-4
        assert np.allclose((step(u + e) - step(u - e)) / 2e-4, -alpha * G[:, j], atol=1e-9)


def test_experiment_runner_is_deterministic_and_shares_the_stream():
    from metalqr.tow import run_sinusoid_experiment
    kw = dict(n_iterations=2, T=2, M=3, n_test=20, hidden=8, seed=3, eval_every=1)
    a = run_sinusoid_experiment(**kw)
    b = run_sinusoid_experiment(**kw)
    assert [r.name for r in a] == ["uniform", "exploration", "exploitation", "tow"]
    for ra, rb in zip(a, b):
        assert np.array_equal(ra.test_mse, rb.test_mse) and len(ra.curve) == 2
        assert ra.test_mse.shape == (20,) and np.isfinite(ra.ci95)
    # a huge beta_u pins TOW to uniform weights: identical training trajectory
    u, t = run_sinusoid_experiment(strategies=("uniform", "tow"), beta_u=1e9, **kw)
    assert np.allclose(u.test_mse, t.test_mse, rtol=1e-5)
    with pytest.raises(metalqr.ValidationError, match="strategies"):
        run_sinusoid_experiment(strategies=("random",), **kw)


def test_divergence_is_a_clear_error_not_nan():
    from metalqr.tow import run_sinusoid_experiment
    with pytest.raises(metalqr.TrainingDivergedError, match="alpha"):
        with np.errstate(all="ignore"):
            run_sinusoid_experiment(strategies=("uniform",), n_iterations=200, alpha=5.0, n_test=5,
                                    hidden=8)
