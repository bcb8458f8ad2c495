"""TOW building blocks: MLP derivatives, first-order MAML, the Eq. (12) baselines and the
iLQR-based weights of Algorithm 1."""

import re

import numpy as np
import pytest
import scipy.optimize

import metalqr
from metalqr.tow import MAML, MLP, SinusoidTasks, dirichlet_weights, tow_weights

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
    learner = MAML(NET, gamma=0.0, first_order=True)
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
    amps = np.array([t.group for t in src.sample(rng, 2000)])
    assert 0.06 < np.mean(amps > 1.0) < 0.14
    test_amps = np.array([t.group for t in src.sample(rng, 2000, train=False)])
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
    return MAML(NET, gamma=0.01, first_order=True), NET.init(rng), [src.sample(rng, M) for _ in range(T)]


def test_tow_large_beta_returns_prior_mean():
    learner, x, batches = _window(4)
    res = tow_weights(learner, x, batches, alpha=0.05, beta_u=1e8)
    assert np.allclose(res.U, 1.0 / 4, atol=1e-5)


def _tow_rollout(learner, z0, batches, U, step, beta_u, mu):
    """Independent roll-out of a TOW window (not TOWProblem, not iLQR): the optimiser states
    under the weights U and the Eq. (7) cost sum_t [1'l(x_t) + beta_u/2 |u_t - mu|^2]."""
    D = learner.net.size
    Z, J = [np.asarray(z0, dtype=float)], 0.0
    for t, batch in enumerate(batches):
        losses, G, _ = learner.batch(Z[-1][:D], batch)
        J += float(np.sum(losses) + 0.5 * beta_u * np.sum((U[t] - mu) ** 2))
        Z.append(step(Z[-1], G @ U[t], t))
    return np.array(Z), J


@pytest.mark.parametrize("value_model", ["diagonal", "full"])
def test_tow_weights_nonnegative_and_no_worse_than_uniform(value_model):
    learner, x, batches = _window(5)
    res = tow_weights(learner, x, batches, alpha=0.05, beta_u=0.01, n_ilqr=3, value_model=value_model)
    assert np.all(res.U >= 0)
    assert not np.allclose(res.U, 0.25)       # a weak prior lets the weights move
    # X is the trajectory of the SGD dynamics under U, and the reported cost is its Eq. (7)
    # cost, both recomputed here; it is below the cost of uniform weights, recomputed too.
    sgd = lambda z, g, t: z - 0.05 * g
    Z, J = _tow_rollout(learner, x, batches, res.U, sgd, 0.01, 0.25)
    assert np.allclose(res.X, Z, rtol=1e-10, atol=1e-12)
    assert res.ilqr.cost == pytest.approx(J, rel=1e-10)
    _, J_uniform = _tow_rollout(learner, x, batches, np.full_like(res.U, 0.25), sgd, 0.01, 0.25)
    assert J < J_uniform


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
    kw = dict(n_iterations=2, T=2, M=3, n_test=20, hidden=8, rng=3, eval_every=1)
    a = run_sinusoid_experiment(**kw)
    b = run_sinusoid_experiment(**kw)
    assert [r.name for r in a] == ["uniform", "exploration", "exploitation", "tow"]
    for ra, rb in zip(a, b):
        assert np.array_equal(ra.metric, rb.metric) and [w for w, *_ in ra.curve] == [0, 1, 2]
        assert ra.curve[0] == a[0].curve[0]          # window 0: the common initial parameters
        assert ra.metric.shape == (20,) and np.isfinite(ra.ci95)
    # a huge beta_u pins TOW to uniform weights: identical training trajectory
    u, t = run_sinusoid_experiment(strategies=("uniform", "tow"), beta_u=1e9, **kw)
    assert np.allclose(u.metric, t.metric, rtol=1e-5)
    with pytest.raises(metalqr.ValidationError, match="strategies"):
        run_sinusoid_experiment(strategies=("random",), **kw)


def test_divergence_is_a_clear_error_not_nan():
    from metalqr.tow import run_sinusoid_experiment
    with pytest.raises(metalqr.TrainingDivergedError, match="alpha"):
        with np.errstate(all="ignore"):
            run_sinusoid_experiment(strategies=("uniform",), n_iterations=200, alpha=5.0, n_test=5,
                                    hidden=8)


# --- losses, second-order MAML, ProtoNets ------------------------------------------------

from metalqr.tow import (SGD, Adam, AnyShotTasks, DigitsTasks, HierarchicalClassificationTasks,  # noqa: E402
                         ImageFolderTasks, ProtoNet)
from metalqr.tow.mlp import output_loss  # noqa: E402


def _fd_grad(f, x, h=1e-6):
    return np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(x.size)])


def _problem(loss, n_out, rng, n=6, n_in=3):
    net = MLP(n_in=n_in, hidden=6, n_out=n_out, loss=loss)
    x = net.init(rng) + 0.1 * rng.standard_normal(net.size)
    s = rng.standard_normal((n, n_in))
    y = rng.standard_normal((n, n_out)) if loss == "mse" else rng.integers(0, n_out, n)
    return net, x, s, y


@pytest.mark.parametrize("loss,n_out", [("mse", 1), ("mse", 3), ("ce", 4)])
def test_mlp_gradient_hvp_and_gauss_newton(loss, n_out):
    """Gradient and R-operator HVP against central differences (FD error O(h^2) ~ 1e-10);
    GN diagonal against J' H_out J built from a finite-difference output Jacobian."""
    rng = np.random.default_rng(4)
    net, x, s, y = _problem(loss, n_out, rng)
    g = net.loss_and_grad(x, s, y)[1]
    assert np.allclose(g, _fd_grad(lambda z: net.loss_and_grad(z, s, y)[0], x), atol=1e-8)
    v = rng.standard_normal(net.size)
    h = 1e-6
    fd_hv = (net.loss_and_grad(x + h * v, s, y)[1] - net.loss_and_grad(x - h * v, s, y)[1]) / (2 * h)
    assert np.linalg.norm(net.hvp(x, s, y, v) - fd_hv) <= 1e-7 * np.linalg.norm(fd_hv)
    J = np.stack([(net.predict(x + h * e, s) - net.predict(x - h * e, s)) / (2 * h) for e in np.eye(net.size)], -1)
    _, _, hess = output_loss(net.predict(x, s), y, loss)
    explicit = np.einsum("ncd,dnc->d", J, hess(np.moveaxis(J, -1, 0)))
    assert np.allclose(net.gauss_newton_diagonal(x, s), explicit, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_second_order_maml_gradient_matches_finite_differences(loss):
    """The exact meta-gradient through two inner steps matches central differences of the
    validation loss l_i(x) = l(S^q; phi(x)); first-order MAML does not (gamma > 0)."""
    rng = np.random.default_rng(5)
    net, x, s, y = _problem(loss, 3, rng)
    _, _, sq, yq = _problem(loss, 3, rng)
    from metalqr.tow import Task
    task = Task(s, y, sq, yq)
    so = MAML(net, gamma=0.3, inner_steps=2, first_order=False)
    fo = MAML(net, gamma=0.3, inner_steps=2, first_order=True)
    fd = _fd_grad(lambda z: so.task_loss_and_grad(z, task)[0], x)
    g = so.task_loss_and_grad(x, task)[1]
    assert np.linalg.norm(g - fd) <= 1e-6 * np.linalg.norm(fd)
    assert np.linalg.norm(fo.task_loss_and_grad(x, task)[1] - fd) > 1e-3 * np.linalg.norm(fd)


def test_protonet_gradient_and_gauss_newton():
    rng = np.random.default_rng(6)
    src = HierarchicalClassificationTasks(n_way=3, k_shot=2, k_query=2, dim=4)
    task = src.sample(rng, 1)[0]
    pn = ProtoNet(MLP(4, 6, 3, "mse"))
    x = pn.init(rng)
    g = pn.task_loss_and_grad(x, task)[1]
    assert np.allclose(g, _fd_grad(lambda z: pn.task_loss_and_grad(z, task)[0], x), atol=1e-8)
    h = 1e-6
    J = np.stack([(pn._logits(x + h * e, task)[0] - pn._logits(x - h * e, task)[0]) / (2 * h)
                  for e in np.eye(x.size)], -1)                      # (n_q, N, D)
    _, _, hess = output_loss(pn._logits(x, task)[0], task.yq, "ce")
    explicit = np.einsum("qkd,dqk->d", J, hess(np.moveaxis(J, -1, 0)))
    assert np.allclose(pn.curvature(x, [task])[:, 0], explicit, rtol=1e-6, atol=1e-10)
    acc = pn.evaluate(x, src.sample(rng, 5))
    assert acc.shape == (5,) and np.all((0 <= acc) & (acc <= 1))
    bad = type(task)(task.s[task.y != 0], task.y[task.y != 0], task.sq, task.yq)
    with pytest.raises(metalqr.ValidationError, match="support"):
        pn.task_loss_and_grad(x, bad)


# --- optimiser dynamics (Appendix G) -------------------------------------------------------

def _quadratic_batch(rng, D=4, M=3):
    """l_j(x) = 1/2 x'A_j x + c_j'x: gradients G(x) = [A_j x + c_j] and Hess u'l = sum u_j A_j exactly."""
    A = rng.standard_normal((M, D, D))
    A = A @ np.swapaxes(A, 1, 2) / D
    c = rng.standard_normal((M, D))
    return (lambda x: (A @ x + c).T), (lambda u: np.einsum("j,jab->ab", u, A))


@pytest.mark.parametrize("opt", [SGD(0.1), Adam(0.05, eps=1e-3)])
def test_optimizer_linearisation_matches_finite_differences(opt):
    rng = np.random.default_rng(7)
    D, M, tau = 4, 3, 3
    G, H = _quadratic_batch(rng, D, M)
    x = rng.standard_normal(D)
    z = opt.initial_state(x)
    if isinstance(opt, Adam):
        z[D:] = np.concatenate([0.3 * rng.standard_normal(D), rng.uniform(0.1, 1.0, D)])
    u = rng.uniform(0.1, 0.5, M)
    step = lambda zz, uu: opt.step(zz, G(zz[:D]) @ uu, tau)
    f_z, f_u = opt.linearize(z, G(x) @ u, G(x), H(u), tau)
    h = 1e-6
    fd_z = np.stack([(step(z + h * e, u) - step(z - h * e, u)) / (2 * h) for e in np.eye(z.size)], 1)
    fd_u = np.stack([(step(z, u + h * e) - step(z, u - h * e)) / (2 * h) for e in np.eye(M)], 1)
    assert np.allclose(f_z, fd_z, atol=1e-8) and np.allclose(f_u, fd_u, atol=1e-8)
    # the diagonal model keeps the diagonal of f_z when the Hessian is diagonal
    Hd = np.diag(np.diag(H(u)))
    full, _ = opt.linearize(z, G(x) @ u, G(x), Hd, tau)
    diag, _ = opt.linearize(z, G(x) @ u, G(x), np.diag(Hd), tau)
    assert np.allclose(diag, np.diag(full))


@pytest.mark.parametrize("eps, printed_is_exact", [(1e-2, False), (1e-14, True)])
def test_adam_eq102_as_printed_is_exact_only_without_eps(eps, printed_is_exact):
    """metalqr's Adam linearisation d x'/d v against finite differences of metalqr's Adam
    update (the independent reference), and against Eq. (102) as printed, which writes
    d/dv' of sqrt(v'/c2 + eps) as 1/(2 sqrt(c2 v')): exact only for eps -> 0."""
    opt, tau, h = Adam(0.05, beta1=0.9, beta2=0.999, eps=eps), 3, 1e-9
    z = np.array([0.3, 0.2, 1e-4])                       # D = 1: (x, m, v); g = 0 below
    f_z, _ = opt.linearize(z, np.zeros(1), np.zeros((1, 1)), np.zeros((1, 1)), tau)
    e_v = np.array([0.0, 0.0, h])
    fd = (opt.step(z + e_v, np.zeros(1), tau)[0] - opt.step(z - e_v, np.zeros(1), tau)[0]) / (2 * h)
    assert f_z[0, 2] == pytest.approx(fd, rel=1e-5)
    b1, b2 = opt.beta1, opt.beta2
    m2, v2 = b1 * z[1], b2 * z[2]
    c1, c2 = 1 - b1**tau, 1 - b2**tau
    s = np.sqrt(v2 / c2 + eps)
    printed = opt.alpha * m2 / (c1 * s**2) / (2 * np.sqrt(c2 * v2)) * b2    # chain rule, Eq. (102)
    assert bool(printed == pytest.approx(fd, rel=1e-5)) is printed_is_exact


def test_tow_with_adam_dynamics():
    rng = np.random.default_rng(8)
    src = HierarchicalClassificationTasks(dim=6)
    pn = ProtoNet(MLP(6, 8, 4, "mse"))
    opt = Adam(1e-2)
    z = opt.initial_state(pn.init(rng))
    batches = [src.sample(rng, 4) for _ in range(3)]
    pinned = tow_weights(pn, z, batches, optimizer=opt, tau0=5, beta_u=1e8)
    assert np.allclose(pinned.U, 0.25, atol=1e-6) and pinned.X.shape == (4, z.size)
    free = tow_weights(pn, z, batches, optimizer=opt, tau0=5, beta_u=0.01, n_ilqr=3)
    assert np.all(free.U >= 0)
    # the Adam trajectory and its Eq. (7) cost, recomputed by an independent roll-out, and
    # below the recomputed cost of uniform weights
    adam = lambda zz, g, t: opt.step(zz, g, 5 + t + 1)
    Z, J = _tow_rollout(pn, z, batches, free.U, adam, 0.01, 0.25)
    assert np.allclose(free.X, Z, rtol=1e-10, atol=1e-12)
    assert free.ilqr.cost == pytest.approx(J, rel=1e-10)
    assert J < _tow_rollout(pn, z, batches, np.full_like(free.U, 0.25), adam, 0.01, 0.25)[1]


# --- task sources -----------------------------------------------------------------------------

def test_hierarchical_and_anyshot_sources():
    rng = np.random.default_rng(9)
    src = HierarchicalClassificationTasks(n_way=5, k_shot=2, k_query=3, imbalance=0.6)
    tasks = src.sample(rng, 3000)
    t = tasks[0]
    assert t.s.shape == (10, src.dim) and t.sq.shape == (15, src.dim)
    assert sorted(set(t.y)) == list(range(5)) and np.bincount(t.yq).tolist() == [3] * 5
    freq = np.bincount([int(t.group) for t in tasks], minlength=10) / 3000
    expected = 0.6 ** np.arange(10) / np.sum(0.6 ** np.arange(10))
    assert np.allclose(freq, expected, atol=0.03)            # ~4 binomial standard deviations
    test_freq = np.bincount([int(t.group) for t in src.sample(rng, 3000, train=False)], minlength=10) / 3000
    assert np.allclose(test_freq, 0.1, atol=0.025)
    anys = AnyShotTasks(max_shot=6).sample(rng, 50)
    shots = np.concatenate([np.bincount(t.y, minlength=5) for t in anys])
    assert shots.min() >= 1 and shots.max() <= 6 and len(set(shots)) > 3


def test_digits_source_or_clear_error():
    src = DigitsTasks()
    import importlib.util
    if importlib.util.find_spec("sklearn") is None:
        with pytest.raises(metalqr.BackendUnavailableError, match="digits"):
            src.sample(np.random.default_rng(0), 1)
        return
    t = src.sample(np.random.default_rng(0), 2)[0]
    assert t.s.shape == (3, 64) and t.sq.shape == (15, 64)


def test_image_folder_loader(tmp_path):
    """A tiny Omniglot-style tree: class c's images have constant intensity c/10, so the
    loader's labels can be checked against the pixels."""
    import matplotlib.image as mpimg
    for split, classes in (("train", range(4)), ("test", range(4, 7))):
        for c in classes:
            d = tmp_path / split / f"char{c}"
            d.mkdir(parents=True)
            for i in range(3):
                mpimg.imsave(d / f"{i}.png", np.full((12, 10), c / 10), cmap="gray", vmin=0, vmax=1)
    src = ImageFolderTasks(str(tmp_path), n_way=3, k_shot=1, k_query=2, size=5)
    for train in (True, False):
        task = src.sample(np.random.default_rng(1), 1, train=train)[0]
        assert task.s.shape == (3, 25) and task.sq.shape == (6, 25)
        for j in range(3):
            level = task.s[task.y == j].mean()
            assert np.allclose(task.sq[task.yq == j], level, atol=0.02)
        assert len({round(task.s[task.y == j].mean(), 2) for j in range(3)}) == 3
    assert len(src.classes("test")) == 3
    with pytest.raises(metalqr.ValidationError, match="classes"):
        ImageFolderTasks(str(tmp_path), n_way=5).sample(np.random.default_rng(0), 1, train=False)
    with pytest.raises(metalqr.ValidationError, match="no folder"):
        ImageFolderTasks(str(tmp_path / "missing")).sample(np.random.default_rng(0), 1)


@pytest.mark.slow
def test_tow_command_writes_table_curves_and_weights(tmp_path, capsys):
    from metalqr.cli import main
    out = tmp_path / "tow"
    assert main(["tow", "--source", "classification", "--quick", "--no-progress", "--hidden", "8",
                 "--strategies", "uniform", "tow", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "time_vs_uniform" in text
    import csv
    rows = list(csv.DictReader(open(out / "tow_classification_table.csv")))
    assert [r["strategy"] for r in rows] == ["uniform", "tow"] and all(int(r["n_test"]) == 100 for r in rows)
    for name in ("tow_classification_curves.png", "tow_classification_weights_tow.png", "tow_classification.json"):
        assert (out / name).stat().st_size > 0
    # --resume finds every window done in the checkpoints and reproduces the table
    assert main(["tow", "--source", "classification", "--quick", "--no-progress", "--hidden", "8",
                 "--strategies", "uniform", "tow", "--output", str(out), "--resume"]) == 0
    again = list(csv.DictReader(open(out / "tow_classification_table.csv")))
    assert [r["mean"] for r in again] == [r["mean"] for r in rows]


@pytest.mark.slow
def test_protonet_monte_carlo_gauss_newton_is_unbiased_and_reproducible():
    """DiagGGN-MC: the average of S sampled rows converges to the exact GN diagonal with
    relative error ~ 1/sqrt(S) (about 0.06 at S = 400 here; bound 0.15), and the same
    parameters and task give the same estimate."""
    rng = np.random.default_rng(10)
    src = HierarchicalClassificationTasks(dim=6)
    tasks = src.sample(rng, 2)
    exact = ProtoNet(MLP(6, 10, 5, "mse"))
    x = exact.init(rng)
    e = exact.curvature(x, tasks)
    mc = ProtoNet(exact.net, "mc", 400)
    m = mc.curvature(x, tasks)
    assert np.linalg.norm(m - e) <= 0.15 * np.linalg.norm(e)
    assert np.array_equal(m, mc.curvature(x, tasks))
    with pytest.raises(metalqr.ValidationError, match="curvature_method"):
        ProtoNet(exact.net, "hutchinson").curvature(x, tasks)


def test_tow_quadratised_cost_matches_finite_differences():
    """Eq. (106)-(108): with second-order MAML the cost gradient c_x = sum_j grad l_j is exact;
    c_u = beta_u (u - mu_u) and c_uu = beta_u I; c_xx is the summed GN diagonal."""
    from metalqr.tow import TOWProblem
    rng = np.random.default_rng(12)
    learner = MAML(NET, gamma=0.1, first_order=False)
    batches = [SinusoidTasks().sample(rng, 3) for _ in range(2)]
    x = NET.init(rng)
    prob = TOWProblem(learner, batches, SGD(0.05), NET.size, beta_u=2.0, mu=1 / 3)
    U = rng.uniform(0.1, 0.6, (2, 3))
    Z = np.stack([x, prob.dynamics(x, U[0], 0)])
    der = prob.derivatives(Z, U)
    for t in range(2):
        f = lambda z: prob.cost(z, U[t], t)
        e = rng.standard_normal(x.size)
        fd = (f(Z[t] + 1e-6 * e) - f(Z[t] - 1e-6 * e)) / 2e-6
        assert der.c_x[t] @ e == pytest.approx(fd, rel=1e-6)
        g = lambda u: prob.cost(Z[t], u, t)
        fd_u = np.array([(g(U[t] + 1e-6 * v) - g(U[t] - 1e-6 * v)) / 2e-6 for v in np.eye(3)])
        assert np.allclose(der.c_u[t], fd_u, atol=1e-7) and np.allclose(der.c_uu[t], 2.0 * np.eye(3))
        assert np.allclose(der.c_xx[t], learner.curvature(Z[t], batches[t]).sum(axis=1))


def test_killed_tow_run_resumes_to_the_same_result(tmp_path):
    """A run killed mid-way (here: the learner raises after some evaluations) resumes from its
    checkpoints to exactly the result of an uninterrupted run; other settings are refused."""
    from metalqr.tow import run_experiment
    src = SinusoidTasks()
    learner = MAML(NET, gamma=0.01)
    kw = dict(n_iterations=6, T=2, M=3, optimizer="adam", alpha=1e-2, n_test=20, eval_every=1, rng=4)
    ref = run_experiment(src, learner, ("uniform", "tow"), **kw)

    class Killed(RuntimeError):
        pass

    calls = [0]

    class Dying(MAML):             # the same learner (same fingerprint), killed after 20 batches
        def batch(self, x, tasks, curvature=False):
            calls[0] += 1
            if calls[0] > 20:
                raise Killed
            return super().batch(x, tasks, curvature)

        def __repr__(self):
            return repr(learner)

    ck = str(tmp_path / "ck")
    with pytest.raises(Killed):
        run_experiment(src, Dying(NET, gamma=0.01), ("uniform", "tow"), checkpoint=ck, checkpoint_every=1, **kw)
    assert (tmp_path / "ck" / "tow.ckpt").exists()         # killed while training "tow"
    out = run_experiment(src, learner, ("uniform", "tow"), checkpoint=ck, checkpoint_every=1, **kw)
    for a, b in zip(ref, out):
        assert np.array_equal(a.metric, b.metric) and a.curve == b.curve
        assert np.array_equal(a.weights, b.weights)
    with pytest.raises(metalqr.CheckpointError, match="different run"):
        run_experiment(src, learner, ("tow",), checkpoint=ck, **{**kw, "alpha": 2e-2})


# --- Eq. (12) baselines: exact KKT solution (issue 13 C) -----------------------------------

from decimal import Decimal, getcontext  # noqa: E402

from hypothesis import given, strategies as st  # noqa: E402

ISSUE13_LOSSES = [174.15, 25.79, 53.294, 72.209, 13.803, 167.817, 28.702, 128.793, 57.79, 19.154]


def _kkt_reference(losses, kappa, mode, digits=60):
    """Independent 60-digit solution of the KKT system by bisection in Decimal arithmetic:
    u_j = (kappa - 1) / (s l_j + lam), sum u = 1, lam > -min s l (derived from Eq. (12) with
    the symmetric Dirichlet prior; see dirichlet_weights)."""
    getcontext().prec = digits
    s = -1 if mode == "exploration" else 1
    sl = [Decimal(s) * Decimal(repr(float(v))) for v in losses]
    a = Decimal(repr(float(kappa))) - 1
    lo = -min(sl)
    hi = lo + a * len(sl)
    lo = lo + a / 2                          # phi(lo) > 1 there
    for _ in range(400):
        mid = (lo + hi) / 2
        if sum(a / (v + mid) for v in sl) > 1:
            lo = mid
        else:
            hi = mid
    return np.array([float(a / (v + lo)) for v in sl])


def _objective(u, losses, kappa, mode):
    s = -1.0 if mode == "exploration" else 1.0
    return s * u @ losses - (kappa - 1) * np.sum(np.log(u))


@pytest.mark.parametrize("mode", ["exploration", "exploitation"])
def test_dirichlet_issue13_input_matches_the_exact_optimum(mode):
    """Issue 13 C: SLSQP stopped with status 4 on this input and its answer was used (0.997
    on one task). The weights now agree with a 60-digit reference to 1e-14 and beat SLSQP's."""
    losses = np.array(ISSUE13_LOSSES)
    u = dirichlet_weights(losses, 1.2, mode)
    ref = _kkt_reference(losses, 1.2, mode)
    assert np.max(np.abs(u - ref)) < 1e-14
    assert u.sum() == pytest.approx(1.0, abs=1e-15) and np.all(u > 0)
    best = np.argmax(losses) if mode == "exploration" else np.argmin(losses)
    assert np.argmax(u) == best
    # the right answer is better than what SLSQP returns here, whatever its status
    res = scipy.optimize.minimize(lambda v: _objective(v, losses, 1.2, mode), np.full(10, 0.1), method="SLSQP",
                                  bounds=[(1e-9, 1.0)] * 10,
                                  constraints=[{"type": "eq", "fun": lambda v: v.sum() - 1.0}],
                                  options={"ftol": 1e-12, "maxiter": 200})
    v = np.clip(res.x, 1e-300, None)
    v = v / v.sum()
    assert _objective(u, losses, 1.2, mode) <= _objective(v, losses, 1.2, mode) + 1e-12


@pytest.mark.parametrize("mode", ["exploration", "exploitation"])
def test_dirichlet_agrees_with_slsqp_from_many_starts_at_small_loss_scale(mode):
    """Cross-check by a different method: at loss scale ~1 SLSQP converges (status 0); from
    20 random feasible starts per problem its answer agrees with the KKT solution."""
    rng = np.random.default_rng(13)
    for _ in range(5):
        M = int(rng.integers(2, 8))
        losses = rng.uniform(0.0, 2.0, M)
        kappa = float(rng.uniform(1.05, 3.0))
        u = dirichlet_weights(losses, kappa, mode)
        f = lambda v: _objective(v, losses, kappa, mode)
        n_ok = 0
        for u0 in rng.dirichlet(np.ones(M), 20):
            res = scipy.optimize.minimize(f, u0, method="SLSQP", bounds=[(1e-9, 1.0)] * M,
                                          constraints=[{"type": "eq", "fun": lambda v: v.sum() - 1.0}],
                                          options={"ftol": 1e-14, "maxiter": 500})
            if res.status == 0:
                n_ok += 1
                assert np.allclose(res.x, u, atol=2e-5)
                assert f(u) <= res.fun + 1e-10
        assert n_ok >= 15


@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=12), st.floats(1.001, 50.0),
       st.sampled_from(["exploration", "exploitation"]), st.integers(0, 2**32 - 1))
def test_dirichlet_kkt_conditions_and_optimality(losses, kappa, mode, seed):
    """Property: the KKT conditions hold (s l_j - (kappa-1)/u_j is the same for every j, up to
    rounding; u > 0; sum u = 1) and no random feasible perturbation lowers the objective."""
    losses = np.array(losses)
    u = dirichlet_weights(losses, kappa, mode)
    assert u.shape == losses.shape and np.all(u > 0) and abs(u.sum() - 1.0) < 1e-12
    s = -1.0 if mode == "exploration" else 1.0
    stat = s * losses - (kappa - 1) / u            # = -lambda for every j
    scale = np.max(np.abs(losses)) + (kappa - 1) / u.min()
    assert np.ptp(stat) <= 1e-9 * scale
    f0 = _objective(u, losses, kappa, mode)
    rng = np.random.default_rng(seed)
    for _ in range(10):
        d = rng.standard_normal(u.size)
        d -= d.mean()                               # stay on sum u = 1
        step = 0.5 * u.min() / max(np.max(np.abs(d)), 1e-300) * rng.uniform(1e-4, 1.0)
        v = u + step * d
        assert _objective(v, losses, kappa, mode) >= f0 - 1e-12 * (1 + abs(f0))


def test_dirichlet_limits_and_invariance():
    """Shift invariance (lambda absorbs a common offset), ties give uniform, a single task gets
    weight 1, large kappa tends to uniform, and exploration/exploitation order the weights."""
    losses = np.array(ISSUE13_LOSSES)
    for mode in ("exploration", "exploitation"):
        u = dirichlet_weights(losses, 1.2, mode)
        assert np.allclose(dirichlet_weights(losses + 1e4, 1.2, mode), u, rtol=1e-9, atol=1e-12)
        assert np.allclose(dirichlet_weights(np.full(6, 3.7), 1.2, mode), 1 / 6)
        assert np.array_equal(dirichlet_weights([5.0], 1.2, mode), [1.0])
        assert np.allclose(dirichlet_weights(losses, 1e9, mode), 0.1, atol=1e-6)
    expl = dirichlet_weights(losses, 1.2, "exploration")
    assert np.argmax(expl) == np.argmax(losses) and np.argmin(expl) == np.argmin(losses)


@pytest.mark.parametrize("bad", [[np.nan, 1.0], [1.0, np.inf], [], [[1.0, 2.0]], [1 + 1j, 2.0]])
def test_dirichlet_rejects_bad_losses_instead_of_returning_uniform(bad):
    from helpers import assert_named_error
    assert_named_error(dirichlet_weights, "losses", bad, 1.2, "exploration")


# --- command line: validation, resume, digits hint (issue 12, 14) ---------------------------

@pytest.mark.parametrize("argv,word", [
    (["--iterations", "0"], "--iterations"), (["--M", "0"], "--M"), (["--T", "0"], "--T"),
    (["--alpha", "0"], "--alpha"), (["--alpha", "-1e-3"], "--alpha"), (["--alpha", "nan"], "--alpha"),
    (["--alpha", "abc"], "--alpha"), (["--n-ilqr", "0"], "--n-ilqr"), (["--kappa", "1"], "--kappa"),
    (["--beta-u", "0"], "--beta-u"), (["--gamma", "-0.1"], "--gamma"), (["--n-test", "1"], "--n-test"),
    (["--seed", "-1"], "--seed"), (["--max-shot", "0"], "--max-shot"), (["--M", "2.5"], "--M"),
    (["--hidden", "0"], "--hidden"), (["--strategies", "random"], "--strategies")])
def test_tow_command_rejects_bad_options_with_one_line(argv, word, capsys, tmp_path):
    from metalqr.cli import main
    try:
        code = main(["tow", *argv, "--output", str(tmp_path / "never")])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert not (tmp_path / "never").exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and word in err


def test_tow_command_help_shows_every_default(capsys):
    from metalqr.cli import build_parser
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tow", "--help"])
    raw = capsys.readouterr().out
    text = " ".join(raw.split())
    for opt in ("--max-shot", "--n-ilqr", "--kappa", "--alpha", "--iterations", "--output", "--resume"):
        assert opt in text
    assert "(default: 5, as in docs/tow.md)" in text
    # every option's help text (between one option line and the next) states its default
    helps = re.split(r"\n  (?=-)", raw.split("options:", 1)[1])[1:]
    assert len(helps) >= 20
    for h in helps:
        if not h.startswith(("-h", "--debug", "--version")):   # the generic flags of every command
            assert "default" in h, h


def _tow_args(*argv):
    from metalqr.cli import build_parser
    return build_parser().parse_args(["tow", *argv])


def test_tow_command_resume_with_another_seed_is_a_clear_checkpoint_error(tmp_path):
    out = str(tmp_path / "o")
    base = ["--source", "sinusoid", "--iterations", "2", "--T", "2", "--M", "2", "--n-test", "5", "--n-val", "5",
            "--hidden", "4", "--strategies", "uniform", "--no-progress", "--output", out]
    args = _tow_args(*base)
    assert args.func(args) == 0
    args = _tow_args(*base, "--resume", "--seed", "1")
    with pytest.raises(metalqr.CheckpointError, match="different run") as info:
        args.func(args)
    assert "uniform.ckpt" in str(info.value) and "afresh" in str(info.value)


def test_tow_command_anyshot_max_shot_and_source_mismatches(tmp_path, monkeypatch):
    from metalqr.cli import _tow_source
    assert _tow_source(_tow_args("--source", "anyshot")).max_shot == 5
    assert _tow_source(_tow_args("--source", "anyshot", "--max-shot", "3")).max_shot == 3
    with pytest.raises(metalqr.ValidationError, match="--max-shot"):
        _tow_source(_tow_args("--source", "classification", "--max-shot", "3"))
    with pytest.raises(metalqr.ValidationError, match="--images"):
        _tow_source(_tow_args("--source", "images"))
    with pytest.raises(metalqr.ValidationError, match="--images"):
        _tow_source(_tow_args("--source", "sinusoid", "--images", str(tmp_path)))
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    with pytest.raises(metalqr.BackendUnavailableError) as info:
        _tow_source(_tow_args("--source", "digits"))
    msg = str(info.value)
    assert 'pip install ".[digits]"' in msg and "\n" not in msg
    args = _tow_args("--source", "sinusoid", "--learner", "protonet", "--output", str(tmp_path / "p"))
    with pytest.raises(metalqr.ValidationError, match="--learner protonet"):
        args.func(args)


# --- checkpoints and concurrent runs (issue 12) ---------------------------------------------

def _ck_run(ck, **over):
    from metalqr.tow import run_experiment
    kw = dict(n_iterations=3, T=2, M=2, optimizer="adam", alpha=1e-2, n_test=5, n_val=5, eval_every=1, rng=2,
              checkpoint=ck, checkpoint_every=1)
    kw.update(over)
    return run_experiment(SinusoidTasks(), MAML(MLP(hidden=4), gamma=0.01), ("uniform",), **kw)


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "flipped", "bumped", "short_history"])
def test_damaged_tow_checkpoint_is_one_checkpoint_error(tmp_path, damage):
    """Truncated, empty, garbage or edited checkpoints give one CheckpointError naming the
    file; a re-checksummed edit (window counter bumped, history truncated) is caught by the
    consistency checks."""
    from metalqr import _checkpoint
    ck = str(tmp_path / "ck")
    _ck_run(ck, n_iterations=2)
    path = tmp_path / "ck" / "uniform.ckpt"
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif damage == "flipped":
        path.write_bytes(data[:-10] + bytes([data[-10] ^ 1]) + data[-9:])
    else:
        from metalqr.tow.experiment import CHECKPOINT_KIND
        fp = re.search(rb'"fingerprint": "([0-9a-f]+)"', data)
        arrays, meta = _checkpoint.load(str(path), CHECKPOINT_KIND, fp.group(1).decode())
        if damage == "bumped":
            meta["k"] += 1
        else:
            for key in ("weights", "groups", "window_seconds", "curve"):
                arrays[key] = arrays[key][:-1]
        _checkpoint.save(str(path), CHECKPOINT_KIND, meta.pop("fingerprint"), arrays,
                         {k: v for k, v in meta.items() if k not in ("kind", "format_version")})
    with pytest.raises(metalqr.CheckpointError) as info:
        _ck_run(ck, n_iterations=3)
    assert str(path) in str(info.value)


def test_resume_with_fewer_windows_than_the_checkpoint_is_refused(tmp_path):
    ck = str(tmp_path / "ck")
    _ck_run(ck, n_iterations=3)
    with pytest.raises(metalqr.CheckpointError, match="beyond n_iterations"):
        _ck_run(ck, n_iterations=2)


@pytest.mark.slow
def test_two_runs_into_one_folder_never_corrupt_each_other(tmp_path):
    """A second process holding the checkpoint folder makes run_experiment stop with a clear
    CheckpointError naming the folder; two processes racing on one folder each either finish
    or stop with that error, and the checkpoints left behind load."""
    import os
    import subprocess
    import sys
    ck = str(tmp_path / "ck")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from metalqr._checkpoint import FolderLock; "
                               f"FolderLock({ck!r}).acquire(); print('held', flush=True); time.sleep(60)"],
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(metalqr.CheckpointError, match="in use by another metalqr run") as info:
            _ck_run(ck)
        assert ck in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    code = ("import sys, numpy as np; import metalqr; from metalqr.tow import *\n"
            "try:\n"
            f"    run_experiment(SinusoidTasks(), MAML(MLP(hidden=4)), ('uniform', 'exploration'), n_iterations=6, T=2,"
            f" M=2, n_test=5, n_val=5, checkpoint={ck!r}, checkpoint_every=1)\n"
            "    print('finished')\n"
            "except metalqr.CheckpointError as e:\n"
            "    print('refused', e)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.startswith("finished") or ("refused" in out and "in use" in out)
    assert any(out.startswith("finished") for out, _ in outs)
    from metalqr.tow import run_experiment   # the checkpoints left behind resume (all windows done)
    res = run_experiment(SinusoidTasks(), MAML(MLP(hidden=4)), ("uniform", "exploration"), n_iterations=6, T=2,
                         M=2, n_test=5, n_val=5, checkpoint=ck, checkpoint_every=1)
    assert res[0].weights.shape == (6, 2, 2) and res[1].window_seconds.shape == (6,)


def test_tow_command_into_a_folder_in_use_stops_with_a_clear_error(tmp_path):
    import os
    import subprocess
    import sys
    out = str(tmp_path / "busy")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    holder = subprocess.Popen([sys.executable, "-c", "import time; from metalqr._checkpoint import FolderLock; "
                               f"FolderLock({out!r}).acquire(); print('held', flush=True); time.sleep(60)"],
                              env=dict(os.environ, PYTHONPATH=root), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        args = _tow_args("--iterations", "1", "--T", "1", "--M", "2", "--n-test", "2", "--n-val", "2", "--hidden",
                         "4", "--strategies", "uniform", "--no-progress", "--output", out)
        with pytest.raises(metalqr.CheckpointError, match="in use by another metalqr run"):
            args.func(args)
        assert not os.path.exists(os.path.join(out, "tow_sinusoid.json"))
    finally:
        holder.kill()
        holder.wait()


def test_strategy_result_carries_the_final_parameters(tmp_path):
    """The final meta-parameters are in the result (no need to read a checkpoint): evaluating
    them on the test tasks reproduces the reported metric."""
    from metalqr.tow import run_experiment
    src, learner = SinusoidTasks(), MAML(MLP(hidden=4), gamma=0.01)
    r = run_experiment(src, learner, ("exploration",), n_iterations=2, T=2, M=2, n_test=5, n_val=5, rng=1)[0]
    test = src.sample(np.random.default_rng([1, 10**6]), 5, train=False)
    assert r.params.shape == (learner.net.size,)
    assert np.array_equal(learner.evaluate(r.params, test), r.metric)


def test_beta_u_outside_its_documented_range_is_refused_by_name():
    """Issue 1: beta_u = 1e308 overflowed c_uu = beta_u I and ended in a raw LinAlgError from
    eigvalsh (1e160 / 1e250: numpy overflow RuntimeWarnings). Valid range (0, 1e12]."""
    from metalqr.tow import run_experiment
    learner, x, batches = _window(4)
    for bad in (1e308, 1e250, 1e160, 1e13, 0.0, -1.0):
        with pytest.raises(metalqr.ValidationError, match=r"beta_u .*\(0, 1e\+12\]"):
            tow_weights(learner, x, batches, alpha=0.05, beta_u=bad)
    with pytest.raises(metalqr.ValidationError, match=r"mu_u .*\[0, 1e\+06\]"):
        tow_weights(learner, x, batches, alpha=0.05, mu_u=1e300)
    with pytest.raises(metalqr.ValidationError, match=r"beta_u"):
        run_experiment(SinusoidTasks(), MAML(NET, gamma=0.01), ["tow"], beta_u=1e308,
                       n_iterations=2, n_test=5, n_val=5)
    # the top of the range still works and pins the weights to the prior mean, warning-free
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = tow_weights(learner, x, batches, alpha=0.05, beta_u=1e12)
    assert np.allclose(res.U, 1.0 / 4, atol=1e-8)
