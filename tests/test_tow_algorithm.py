"""Algorithm 1 of the TOW paper as printed (line search and acceptance rule), the terminal
cost of Eq. (7), the paper preset, and the speed-ups of the TOW window (issue 17)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import metalqr
from metalqr.tow import convnet as cv


# ---------------------------------------------------------------- sparse ConvNet vjp (speed-up)
@pytest.mark.parametrize("chunk", [None, 10])
def test_convnet_sparse_rows_vjp_equals_dense_backpropagation(chunk, monkeypatch):
    """Rows touching one or two samples take the per-(row, sample) path; it must give the
    dense back-propagation's numbers (and a finite-difference Jacobian's), also when the
    pairs of one row are split across chunks."""
    net = cv.ConvNet(n_in=49, channels=3, blocks=2, n_out=4, loss="ce")
    rng = np.random.default_rng(3)
    x = net.init(1) + 0.05 * rng.standard_normal(net.size)
    s = rng.random((5, 49))
    n, C = 5, 4
    rows = np.zeros((n * C, n, C))
    for m in range(n):
        rows[m * C:(m + 1) * C, m] = rng.standard_normal((C, C))
    rows[3, 0] = rng.standard_normal(C)               # a row with two samples
    if chunk is not None:
        monkeypatch.setattr(cv, "_CHUNK", chunk)
    got = net.vjp(x, s, rows)
    cache, feat, _ = net._forward(x, s)
    dense = net._backward(x, cache, feat, rows)
    assert np.allclose(got, dense, rtol=1e-12, atol=1e-14)
    eps, J = 1e-6, np.zeros((n, C, net.size))
    for k in range(net.size):
        e = np.zeros(net.size)
        e[k] = eps
        J[..., k] = (net.predict(x + e, s) - net.predict(x - e, s)) / (2 * eps)
    assert np.allclose(got, np.einsum("rnc,ncd->rd", rows, J), atol=1e-7)
    zero_row = rows.copy()
    zero_row[5] = 0.0                                 # an all-zero row gives a zero gradient
    assert np.all(net.vjp(x, s, zero_row)[5] == 0.0)


# ---------------------------------------------------------------- Algorithm 1 as printed
from hypothesis import given, settings
from hypothesis import strategies as st

from metalqr.ilqr import backward_pass
from metalqr.tow import MAML, MLP, SinusoidTasks, tow_weights
from metalqr.tow.optimizers import Adam
from metalqr.tow.weighting import TOWProblem

NET = MLP(hidden=8)


def _window(seed, T=3, M=4):
    rng = np.random.default_rng(seed)
    src = SinusoidTasks()
    return MAML(NET, gamma=0.01, first_order=True), NET.init(rng), [src.sample(rng, M) for _ in range(T)]


def _check_trials(res, max_halvings=10):
    """Every trial obeys line 17: halving from eps = 1; accepted iff every weight >= 0 and
    J(u) - J(u_hat) <= eps theta_1 / 2; at most one acceptance per iteration, the last trial."""
    by_it = {}
    for tr in res.trials:
        by_it.setdefault(tr["iteration"], []).append(tr)
    for it, trs in by_it.items():
        assert trs[0]["eps"] == 1.0 and trs[0]["theta_1"] < 0
        for j, tr in enumerate(trs):
            if tr["verdict"] == "kept nominal":
                assert j == len(trs) - 1 and j == max_halvings and tr["eps"] == 0.0
                continue
            assert tr["eps"] == 2.0 ** -j
            assert np.isclose(tr["threshold"], 0.5 * tr["eps"] * tr["theta_1"])
            if tr["verdict"] == "accepted":
                assert j == len(trs) - 1 and tr["change"] <= tr["threshold"]
            elif tr["verdict"] == "cost":
                assert tr["change"] > tr["threshold"]
            else:
                assert tr["verdict"] == "negative" and tr["change"] is None
    return by_it


def test_paper_line_search_accepts_full_step_under_a_strong_prior():
    learner, x, batches = _window(5)
    res = tow_weights(learner, x, batches, alpha=0.05, beta_u=10.0, n_ilqr=1, line_search="paper")
    by_it = _check_trials(res)
    assert [t["verdict"] for t in by_it[1]] == ["accepted"] and by_it[1][0]["eps"] == 1.0
    assert res.ilqr.costs[1] < res.ilqr.costs[0] and np.all(res.U >= 0)


def test_paper_line_search_rejects_negative_weights_then_accepts_a_halved_step():
    """A weak prior makes the full step push weights below 0: those trials are rejected
    (without evaluating their cost) and a halved step is accepted."""
    learner, x, batches = _window(5)
    res = tow_weights(learner, x, batches, alpha=0.05, beta_u=0.01, n_ilqr=2, line_search="paper")
    by_it = _check_trials(res)
    verdicts = [t["verdict"] for t in by_it[1]]
    assert verdicts[0] == "negative" and verdicts[-1] == "accepted" and by_it[1][-1]["eps"] < 1.0
    assert np.all(res.U >= 0) and res.U.min() < 0.1          # the weights did move
    assert res.ilqr.cost < res.ilqr.costs[0]


def test_paper_line_search_keeps_the_uniform_nominal_when_every_halving_fails():
    learner, x, batches = _window(5)
    with pytest.warns(metalqr.TOWFallbackWarning,
                      match=r"iLQR accepted no step \(stop reason line_search_failed: no step accepted in 2 "
                            r"halvings.*the weights are the uniform nominal mu_u = 0\.25, not TOW's"):
        res = tow_weights(learner, x, batches, alpha=0.05, beta_u=0.001, n_ilqr=2, line_search="paper",
                          max_halvings=2)
    by_it = _check_trials(res, max_halvings=2)
    assert [t["verdict"] for t in by_it[1]] == ["negative", "negative", "kept nominal"]
    assert np.array_equal(res.U, np.full((3, 4), 0.25)) and res.ilqr.cost == res.ilqr.costs[0]
    assert res.ilqr.stop_reason == "line_search_failed" and "nominal kept" in res.ilqr.message
    assert (res.stop_reason, res.converged, res.n_iterations) == ("line_search_failed", False, 1)


def test_theta_1_is_the_slope_of_the_cost_along_the_line_search():
    """theta_1 = sum_t k_t'q_u (Eq. (79)-(81) with k = -Q_uu^-1 q_u) is dJ/d eps at eps = 0
    along the closed-loop line search of line 15 when the derivatives are exact (a linear
    system with quadratic cost; finite differences of the actual J); the printed Eq. (74),
    theta_1 = -sum q_u'Q_uu q_u, is not."""
    from metalqr.ilqr import Derivatives
    rng = np.random.default_rng(2)
    T, D, M, beta = 4, 6, 3, 0.7
    A = np.eye(D) + 0.1 * rng.standard_normal((D, D))
    B = rng.standard_normal((D, M))
    q = rng.uniform(0.5, 2.0, D)
    mu = 1.0 / M
    x0 = rng.standard_normal(D)
    U = np.full((T, M), mu)
    step = lambda x, u: A @ x + B @ u
    cost = lambda x, u: float(q @ (x * x) / 2 + x.sum() + beta / 2 * np.sum((u - mu) ** 2))
    X = [x0]
    for t in range(T):
        X.append(step(X[t], U[t]))
    X = np.array(X)
    d = Derivatives(f_x=np.broadcast_to(A, (T, D, D)).copy(), f_u=np.broadcast_to(B, (T, D, M)).copy(),
                    c_x=X[:T] * q + 1.0, c_u=beta * (U - mu), c_xx=np.broadcast_to(np.diag(q), (T, D, D)).copy(),
                    c_uu=np.broadcast_to(beta * np.eye(M), (T, M, M)).copy(), c_ux=None,
                    cT_x=np.zeros(D), cT_xx=np.zeros((D, D)))
    back = backward_pass(d, U, mu=0.0, value_model="full", u_min=None, u_max=None)

    def J(eps):
        xs, total = x0, 0.0
        for t in range(T):
            u = U[t] + eps * back.k[t] + back.K[t] @ (xs - X[t])
            total += cost(xs, u)
            xs = step(xs, u)
        return total

    h = 1e-5
    slope = (J(h) - J(-h)) / (2 * h)
    theta1 = back.dV[0]
    assert theta1 < 0 and abs(slope - theta1) <= 1e-6 * abs(theta1)
    # the printed recursion theta_t = theta_{t+1} - q_u'Q_uu q_u (Q_uu without its inverse)
    printed, V, v = 0.0, np.zeros((D, D)), np.zeros(D)
    for t in range(T - 1, -1, -1):
        Qu, Quu = d.c_u[t] + B.T @ v, beta * np.eye(M) + B.T @ V @ B
        Qux, Qx, Qxx = B.T @ V @ A, d.c_x[t] + A.T @ v, np.diag(q) + A.T @ V @ A
        printed -= Qu @ Quu @ Qu
        K, k = -np.linalg.solve(Quu, Qux), -np.linalg.solve(Quu, Qu)
        V, v = Qxx + Qux.T @ K, Qx + Qux.T @ k
    assert abs(printed - slope) > 0.1 * abs(slope)



@pytest.mark.parametrize("line_search", ["metalqr", "paper"])
@pytest.mark.parametrize("beta_u", [10.0, 0.01])
def test_both_rules_never_worse_than_uniform_and_never_negative(line_search, beta_u):
    learner, x, batches = _window(11)
    res = tow_weights(learner, x, batches, alpha=0.05, beta_u=beta_u, n_ilqr=2, line_search=line_search)
    P = TOWProblem(learner, batches, metalqr.tow.SGD(0.05), x.size, 0, beta_u, 0.25)
    Xu, J0 = [x], 0.0
    for t in range(3):
        J0 += P.cost(Xu[t], np.full(4, 0.25), t)
        Xu.append(P.dynamics(Xu[t], np.full(4, 0.25), t))
    assert np.isclose(res.ilqr.costs[0], J0, rtol=1e-12)       # the nominal is uniform
    assert res.ilqr.cost <= J0 and np.all(res.U >= 0)
    Jr = sum(P.cost(res.X[t], res.U[t], t) for t in range(3))
    assert np.isclose(Jr, res.ilqr.cost, rtol=1e-10)            # the reported cost is the trajectory's


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10**6), log_beta=st.floats(-3.0, 1.0), halvings=st.integers(1, 12))
def test_paper_rule_property_nonnegative_and_monotone(seed, log_beta, halvings):
    learner, x, batches = _window(seed, T=2, M=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", metalqr.TOWFallbackWarning)
        res = tow_weights(learner, x, batches, alpha=0.05, beta_u=10.0 ** log_beta, n_ilqr=2,
                          line_search="paper", max_halvings=halvings)
    # when every halving fails TOW keeps the uniform nominal and says so (TOWFallbackWarning,
    # naming the stop reason), and only then
    kept = (not res.ilqr.converged and res.ilqr.gradient_norm != 0.0
            and np.array_equal(res.ilqr.U, np.full(res.ilqr.U.shape, 1.0 / 3)))
    fallbacks = [w for w in caught if issubclass(w.category, metalqr.TOWFallbackWarning)]
    assert len(fallbacks) == int(kept) and len(caught) == len(fallbacks)
    assert all(f"stop reason {res.ilqr.stop_reason}" in str(w.message) for w in fallbacks)
    assert np.all(res.U >= 0)
    assert all(b <= a for a, b in zip(res.ilqr.costs, res.ilqr.costs[1:]))
    _check_trials(res, max_halvings=halvings)


# ---------------------------------------------------------------- terminal cost of Eq. (7)
@pytest.mark.parametrize("line_search", ["metalqr", "paper"])
@pytest.mark.parametrize("seed", [5, 6])
def test_without_terminal_cost_the_last_minibatch_stays_uniform(line_search, seed):
    """Eq. (7) has no terminal cost: u_T moves only x_{T+1}, which no cost sees, so the last
    mini-batch keeps mu_u exactly even when the other weights move far."""
    learner, x, batches = _window(seed)
    res = tow_weights(learner, x, batches, alpha=0.05, beta_u=0.01, n_ilqr=3, line_search=line_search)
    assert not np.allclose(res.U[:-1], 0.25, atol=1e-3)
    assert np.array_equal(res.U[-1], np.full(4, 0.25))


@pytest.mark.parametrize("line_search", ["metalqr", "paper"])
def test_validation_terminal_cost_moves_the_last_minibatch(line_search):
    learner, x, batches = _window(5)
    res = tow_weights(learner, x, batches, alpha=0.05, beta_u=0.01, n_ilqr=3, line_search=line_search,
                      terminal_cost="validation")
    assert np.all(res.U >= 0) and res.ilqr.cost < res.ilqr.costs[0]
    assert np.max(np.abs(res.U[-1] - 0.25)) > 0.01
    # the reported cost includes 1' l_T(x_{T+1}) of the last mini-batch
    losses = learner.batch(res.X[-1], batches[-1])[0]
    P = TOWProblem(learner, batches, metalqr.tow.SGD(0.05), x.size, 0, 0.01, 0.25, "validation")
    J = sum(P.cost(res.X[t], res.U[t], t) for t in range(3)) + losses.sum()
    assert np.isclose(J, res.ilqr.cost, rtol=1e-10)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_validation_terminal_cost_derivative_matches_finite_differences(opt):
    _, x, batches = _window(9)
    learner = MAML(NET, gamma=0.01, first_order=False)           # exact meta-gradient
    optimizer = metalqr.tow.SGD(0.05) if opt == "sgd" else Adam(0.01)
    z = optimizer.initial_state(x) if opt == "adam" else x
    P = TOWProblem(learner, batches, optimizer, x.size, 0, 1.0, 0.25, "validation")
    U = np.full((3, 4), 0.25)
    X = [z]
    for t in range(3):
        X.append(P.dynamics(X[t], U[t], t))
    X = np.array(X)
    d = P.derivatives(X, U)
    zT, h = X[-1], 1e-6
    fd = np.array([(P.terminal_cost(zT + e) - P.terminal_cost(zT - e)) / (2 * h)
                   for e in np.eye(zT.size) * h])
    assert np.allclose(d.cT_x, fd, atol=1e-6)
    assert np.all(d.cT_x[x.size:] == 0) and np.all(d.cT_xx[x.size:] == 0)
    assert np.allclose(d.cT_xx[:x.size], learner.curvature(zT[:x.size], batches[-1]).sum(axis=1))
    assert np.all(d.cT_xx >= 0)                                   # Gauss-Newton: PSD
    none = TOWProblem(learner, batches, optimizer, x.size, 0, 1.0, 0.25)
    dn = none.derivatives(X, U)
    assert none.terminal_cost(zT) == 0.0 and np.all(dn.cT_x == 0) and np.all(dn.cT_xx == 0)


# ---------------------------------------------------------------- the paper preset
def test_paper_preset_values_cite_section_5():
    p = metalqr.tow.PAPER_PRESET
    assert (p["M"], p["T"], p["n_ilqr"], p["beta_u"], p["optimizer"], p["alpha"]) == (10, 5, 2, 10.0, "adam", 1e-4)
    assert (p["gamma"], p["inner_steps"], p["kappa"], p["n_test"], p["n_val"]) == (0.1, 5, 1.2, 1000, 100)
    assert p["curve_smoothing"] == 0.1 and p["line_search"] == "paper"


def test_run_experiment_preset_and_explicit_overrides():
    src = metalqr.tow.HierarchicalClassificationTasks(rng=0)     # the preset is for classification
    learner = metalqr.tow.make_learner("fomaml", src, hidden=8, gamma=0.1, inner_steps=5)
    r = metalqr.tow.run_experiment(src, learner, ("uniform", "tow"), n_iterations=1, preset="paper", T=2,
                                   n_test=4, n_val=3, eval_every=1)
    st = r[1].settings
    assert (st["M"], st["T"], st["optimizer"], st["alpha"], st["n_ilqr"], st["mu_u"]) == (10, 2, "adam", 1e-4, 2, 0.1)
    assert st["line_search"] == "paper" and st["curve_smoothing"] == 0.1 and st["preset"] == "paper"
    assert st["preset_overrides"] == {"T": [5, 2], "n_test": [1000, 4], "n_val": [100, 3]}
    assert r[1].weights.shape == (1, 2, 10) and r[0].metric.size == 4
    assert np.array_equal(r[1].weights[0, -1], np.full(10, 0.1))          # Eq. (7): last row uniform
    other = metalqr.tow.run_experiment(src, metalqr.tow.make_learner("fomaml", src, hidden=8, gamma=0.01),
                                       ("uniform",), n_iterations=1, preset="paper", n_test=2, n_val=2)
    assert other[0].settings["preset_overrides"]["gamma"] == [0.1, 0.01]
    assert other[0].settings["preset_overrides"]["inner_steps"] == [5, 1]
    plain = metalqr.tow.run_experiment(src, learner, ("uniform",), n_iterations=1, n_test=2, n_val=2)
    assert plain[0].settings["M"] == 5 and plain[0].settings["preset"] is None
    assert plain[0].settings["preset_overrides"] == {}


def test_exponential_moving_average_formula():
    v = np.array([1.0, 3.0, 2.0, 5.0])
    out = metalqr.tow.exponential_moving_average(v, 0.1)
    ref = [1.0]
    for x in v[1:]:
        ref.append(0.1 * x + 0.9 * ref[-1])
    assert np.allclose(out, ref, rtol=0, atol=1e-15)
    assert np.array_equal(metalqr.tow.exponential_moving_average(v, 1.0), v)
    assert np.allclose(metalqr.tow.exponential_moving_average(np.full(5, 0.7), 0.3), 0.7)


def test_tow_command_preset_paper_prints_and_saves_its_settings(tmp_path, capsys):
    import json
    from metalqr.cli import main
    out = tmp_path / "o"
    assert main(["tow", "--source", "classification", "--learner", "fomaml", "--preset", "paper", "--iterations",
                 "1", "--T", "2", "--n-test", "3", "--n-val", "3",
                 "--hidden", "4", "--strategies", "uniform", "tow", "--no-progress", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "--preset paper" in text and "M=10" in text and "T=2" in text and "inner_steps=5" in text
    doc = json.loads((out / "tow_classification.json").read_text())
    st = doc["settings"]
    assert st["preset"] == "paper" and st["M"] == 10 and st["T"] == 2 and st["line_search"] == "paper"
    assert st["learner_gamma"] == 0.1 and st["learner_inner_steps"] == 5 and st["cli_preset"] == "paper"
    assert "--preset paper" in st["command"] and "--M 10" in st["command"] and "--inner-steps 5" in st["command"]
    assert set(doc["curves_ema"]) == {"uniform", "tow"}
    header = (out / "tow_classification_curves.csv").read_text().splitlines()[0]
    assert "validation_accuracy_ema0.1" in header


# ---------------------------------------------------------------- speed-ups keep the numbers
def _conv_learners():
    from metalqr.tow import ProtoNet
    rng = np.random.default_rng(4)
    emb = cv.ConvNet(n_in=49, channels=3, blocks=2, n_out=4)
    clf = cv.ConvNet(n_in=49, channels=3, blocks=2, n_out=3, loss="ce")
    tasks = [metalqr.tow.Task(rng.random((3, 49)), np.array([0, 1, 2]), rng.random((6, 49)),
                              np.array([0, 1, 2, 2, 1, 0])) for _ in range(2)]
    return [(ProtoNet(emb), emb.init(1), tasks), (ProtoNet(emb, "mc", 2), emb.init(1), tasks),
            (MAML(clf, 0.1, 2, first_order=True), clf.init(2), tasks),
            (MAML(NET, 0.01, 2, first_order=False), NET.init(3), SinusoidTasks().sample(5, 2))]


@pytest.mark.parametrize("which", range(4))
def test_batch_with_curvature_shares_work_and_equals_separate_calls(which):
    learner, x, tasks = _conv_learners()[which]
    losses, G, GN = learner.batch(x, tasks, curvature=True)
    l2, G2, none = learner.batch(x, tasks)
    assert none is None
    assert np.allclose(losses, l2, rtol=1e-13, atol=0) and np.allclose(G, G2, rtol=1e-12, atol=1e-15)
    assert np.allclose(GN, learner.curvature(x, tasks), rtol=1e-12, atol=1e-15)


def test_protonet_one_forward_pass_equals_predict_then_vjp():
    """ProtoNet on the ConvNet runs one forward pass on [support; query] (``_linearize``);
    its loss and gradient equal the three-pass route (predict, predict, vjp) and FD."""
    from metalqr.tow.mlp import output_loss
    learner, x, tasks = _conv_learners()[0]
    task = tasks[0]
    loss, g = learner.task_loss_and_grad(x, task)
    logits, diff, A = learner._logits(x, task)                  # two separate forward passes
    ref_loss, dlogits, _ = output_loss(logits, task.yq, "ce")
    ref = learner._logit_vjp(x, task, dlogits, diff, A)         # a third one inside vjp
    assert np.isclose(loss, ref_loss, rtol=1e-13) and np.allclose(g, ref, rtol=1e-12, atol=1e-15)
    h = 1e-6
    fd = [(learner.task_loss_and_grad(x + e, task)[0] - learner.task_loss_and_grad(x - e, task)[0]) / (2 * h)
          for e in np.eye(x.size)[:40] * h]
    assert np.allclose(g[:40], fd, atol=1e-7)


@pytest.mark.parametrize("line_search", ["metalqr", "paper"])
def test_tow_window_with_prefetched_curvature_equals_the_plain_evaluation(line_search, monkeypatch):
    """The nominal roll-out's shared loss/gradient/curvature evaluation and the curvature
    cache change no weight: compare with a problem that evaluates everything separately."""
    from metalqr.tow import weighting as wt
    learner, x, tasks = _conv_learners()[2]
    batches = [tasks, tasks[::-1]]
    opt = Adam(0.01)
    z = opt.initial_state(x)
    n_curv = []
    orig_curv = type(learner).curvature
    monkeypatch.setattr(type(learner), "curvature", lambda self, *a: (n_curv.append(1), orig_curv(self, *a))[1])
    fast = tow_weights(learner, z, batches, optimizer=opt, beta_u=0.05, n_ilqr=2, line_search=line_search)
    n_fast, n_curv[:] = len(n_curv), []
    calls = []
    orig = wt.TOWProblem._curvature
    monkeypatch.setattr(wt, "_PREFETCH", False)

    def plain(self, zt, t):
        self._gn.clear()                    # no cache: recompute every time
        calls.append(t)
        return orig(self, zt, t)
    monkeypatch.setattr(wt.TOWProblem, "_curvature", plain)
    slow = tow_weights(learner, z, batches, optimizer=opt, beta_u=0.05, n_ilqr=2, line_search=line_search)
    assert calls                             # the plain path did run
    # separate curvature calls: none at the nominal (prefetched), none at x_1 in iteration 2
    assert n_fast <= len(batches) - 1 < len(n_curv) == 2 * len(batches)
    assert np.allclose(fast.U, slow.U, rtol=1e-10, atol=1e-13) and np.allclose(fast.X, slow.X, rtol=1e-10)
    assert not np.allclose(fast.U[0], 0.5)   # the weights moved



def test_mlp_sparse_rows_vjp_equals_dense_backpropagation():
    net = MLP(6, 5, 3, "ce")
    rng = np.random.default_rng(8)
    x, s = net.init(2), rng.random((7, 6))
    rows = np.zeros((14, 7, 3))
    for r in range(14):
        rows[r, r % 7] = rng.standard_normal(3)
    dense = lambda rows: np.stack([net.vjp(x, s, rows[r]) for r in range(len(rows))])  # the dense path
    got = net.vjp(x, s, rows)                                             # one sample per row
    assert np.allclose(got, dense(rows), rtol=1e-12, atol=1e-15)
    rows[:, 6] += rng.standard_normal((14, 3))                            # two per row (row 6: one)
    assert np.allclose(net.vjp(x, s, rows), dense(rows), rtol=1e-12, atol=1e-15)
    rows[2, 5] = rng.standard_normal(3)                                   # unequal counts
    assert np.allclose(net.vjp(x, s, rows), dense(rows), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- fixtow: preset, TOW-only options, warnings
def test_paper_preset_is_refused_on_a_regression_source():
    # The paper's MAML inner loop (gamma = 0.1, 5 steps, Omniglot) diverged on sinusoids: test MSE 755
    # against ~6 without the preset. Now a named error says what the preset is for.
    learner = MAML(NET, gamma=0.1, inner_steps=5, first_order=True)
    with pytest.raises(metalqr.ValidationError, match="preset.*classification.*regression.*loss 'mse'"):
        metalqr.tow.run_experiment(SinusoidTasks(), learner, ("uniform",), n_iterations=1, preset="paper",
                                   n_test=2, n_val=2)


@pytest.mark.parametrize("option,value", [("terminal_cost", "validation"), ("line_search", "paper"),
                                          ("value_model", "full"), ("n_ilqr", 3), ("beta_u", 5.0)])
def test_tow_only_option_without_tow_is_refused(option, value):
    with pytest.raises(metalqr.ValidationError, match=f"{option}.*'tow'"):
        metalqr.tow.run_experiment(SinusoidTasks(), MAML(NET), ("uniform", "exploration"), n_iterations=1,
                                   n_test=2, n_val=2, **{option: value})
    r = metalqr.tow.run_experiment(SinusoidTasks(), MAML(NET), ("uniform", "tow"), n_iterations=1, T=2, M=2,
                                   n_test=2, n_val=2, **{option: value})
    assert r[1].settings[option] == value


def test_run_experiment_warns_when_a_strategy_ends_far_worse():
    src = SinusoidTasks()
    learner = MAML(NET, gamma=0.01)
    kw = dict(n_iterations=2, T=2, M=3, n_test=2, n_val=4, eval_every=1, rng=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", metalqr.TrainingWorsenedWarning)
        ok = metalqr.tow.run_experiment(src, learner, ("uniform",), alpha=0.01, **kw)   # no warning
    assert ok[0].curve[-1][1] <= 2.0 * ok[0].curve[0][1]
    with pytest.warns(metalqr.TrainingWorsenedWarning, match="strategy 'uniform' ended worse") as rec:
        bad = metalqr.tow.run_experiment(src, learner, ("uniform",), alpha=50.0, **kw)   # a huge meta step
    first, last = bad[0].curve[0][1], bad[0].curve[-1][1]
    assert last > 2.0 * first and f"{last:.4g}" in str(rec[0].message)
    # without a curve (eval_every=0) the check evaluates the validation tasks itself
    with pytest.warns(metalqr.TrainingWorsenedWarning, match="'uniform'"):
        metalqr.tow.run_experiment(src, learner, ("uniform",), alpha=50.0, **dict(kw, eval_every=0))


def test_tow_weights_warns_when_ilqr_fails_and_weights_fall_back_to_uniform():
    src = SinusoidTasks()
    learner = MAML(NET)
    rng = np.random.default_rng(0)
    batches = [src.sample(rng, 3, train=True) for _ in range(2)]
    z = learner.init(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", metalqr.TOWFallbackWarning)
        ok = tow_weights(learner, z, batches, alpha=0.05)                 # a normal window: no warning
    assert not np.allclose(ok.U[0], 1 / 3)
    with pytest.warns(metalqr.TOWFallbackWarning, match="regularization limit") as rec:
        res = tow_weights(learner, z * 1e8, batches, alpha=0.05)
    assert np.array_equal(res.U, np.full((2, 3), 1 / 3)) and not res.ilqr.converged
    assert np.isnan(res.ilqr.gradient_norm) and "Q_uu" in str(rec[0].message)
