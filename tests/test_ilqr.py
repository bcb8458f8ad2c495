"""Generic iLQR: exactness on LQ problems, the corrected expected decrease, standard
problems with reference figures, box constraints, regularisation and robustness."""

import math
import re
import tracemalloc

import numpy as np
import pytest
import scipy.optimize

import metalqr
from metalqr.ilqr import (backward_pass, box_qp, finite_difference_derivatives, ilqr,
                          problems)


def _total(prob, X, U):
    T = U.shape[0]
    return float(np.sum(prob.cost(X[:-1], U, np.arange(T))) + prob.terminal_cost(X[-1:])[0])


def _rollout(prob, U):
    X = np.empty((U.shape[0] + 1, prob.x0.size))
    X[0] = prob.x0
    for t in range(U.shape[0]):
        X[t + 1] = prob.dynamics(X[t][None], U[t][None], np.array([t]))[0]
    return X


@pytest.mark.parametrize("D, M, diagonal", [(4, 2, False), (6, 3, False), (5, 5, True)])
def test_lq_converges_in_one_iteration_to_riccati(D, M, diagonal):
    prob, mats = problems.linear_quadratic(D, M, 12, rng=D, diagonal=diagonal)
    U_star, K_star, k_star = problems.finite_horizon_lqr(mats)
    models = ("full", "diagonal") if diagonal else ("full",)
    for model in models:
        res = ilqr(**prob.kwargs(), value_model=model, max_iterations=10)
        assert len(res.costs) == 2, model          # one accepted step, then nothing to gain
        assert np.max(np.abs(res.U - U_star)) < 1e-8
        assert np.max(np.abs(res.K - K_star)) < 1e-8
        # Feed-forward of the last pass is zero at the optimum; gains reproduce the optimum.
        assert np.max(np.abs(res.k)) < 1e-8


def test_expected_decrease_is_exact_on_lq_and_paper_line17_is_not():
    prob, mats = problems.linear_quadratic(4, 2, 10, rng=1)
    U0 = np.random.default_rng(2).standard_normal((10, 2))
    X0 = _rollout(prob, U0)
    d = prob.derivatives(X0, U0)
    res = backward_pass(d, U0, mu=0.0, value_model="full", u_min=None, u_max=None)
    J0 = _total(prob, X0, U0)
    for eps in (1.0, 0.5, 0.1):
        X = np.empty_like(X0)
        U = np.empty_like(U0)
        X[0] = prob.x0
        for t in range(10):
            U[t] = U0[t] + eps * res.k[t] + res.K[t] @ (X[t] - X0[t])
            X[t + 1] = prob.dynamics(X[t][None], U[t][None], np.array([t]))[0]
        actual = _total(prob, X, U) - J0
        assert actual == pytest.approx(res.expected_change(eps), rel=1e-9)
    # Line 17 of Algorithm 2 as printed: theta = -sum q_u' Q_uu q_u, with q_u, Q_uu of the pass.
    theta, V, v = 0.0, mats["Q"][10], mats["Q"][10] @ X0[-1]
    for t in range(9, -1, -1):
        A, B = mats["A"][t], mats["B"][t]
        qu = d.c_u[t] + B.T @ v
        Quu = mats["R"][t] + B.T @ V @ B
        theta -= qu @ Quu @ qu
        K, k = res.K[t], res.k[t]
        Qux = B.T @ V @ A
        v = d.c_x[t] + A.T @ v + K.T @ Quu @ k + K.T @ qu + Qux.T @ k
        V = mats["Q"][t] + A.T @ V @ A + K.T @ Quu @ K + K.T @ Qux + Qux.T @ K
    assert abs(0.5 * theta - res.expected_change(1.0)) > 0.5 * abs(res.expected_change(1.0))


def test_acrobot_reference_values():
    prob = problems.acrobot()
    assert _total(prob, _rollout(prob, prob.U0), prob.U0) == pytest.approx(4959.476212, abs=1e-6)
    res = ilqr(**prob.kwargs(), max_iterations=100)
    assert res.cost < 51.0
    assert np.all(np.diff(res.costs) < 0)
    assert res.converged


def test_pendulum_swing_up():
    prob = problems.pendulum()
    res = ilqr(**prob.kwargs(), max_iterations=100)
    assert abs(res.X[-1, 0] - np.pi) < 0.05 and abs(res.X[-1, 1]) < 0.05
    assert np.all(np.diff(res.costs) < 0) and res.cost < 0.1 * res.costs[0]


def test_cartpole_swing_up():
    # The 5 tanh(u) saturation makes a long plateau: ~300-700 iterations depending on rounding
    # (the JAX reference benchmark also allows 1000).
    prob = problems.cartpole()
    res = ilqr(**prob.kwargs(), max_iterations=1000, tol=1e-6)
    assert abs(res.X[-1, 1] - np.pi) < 0.05
    assert np.all(np.diff(res.costs) < 0)
    assert res.cost < 100.0          # converged run reaches 64.1


@pytest.mark.parametrize("constraint", ["boxqp", "reject"])
def test_box_limits_hold(constraint):
    prob = problems.pendulum(T=150, dt=0.02)
    res = ilqr(**prob.kwargs(), u_min=-3.0, u_max=3.0, constraint=constraint, max_iterations=60)
    assert np.all(res.U >= -3.0 - 1e-12) and np.all(res.U <= 3.0 + 1e-12)
    assert np.all(np.diff(res.costs) < 0) and res.cost < res.costs[0]


def test_nonnegative_controls_on_lq_boxqp_beats_reject():
    prob, mats = problems.linear_quadratic(3, 2, 8, rng=5)
    free = ilqr(**prob.kwargs(), max_iterations=20)
    assert np.any(free.U < 0)                      # the unconstrained optimum needs u < 0
    box = ilqr(**prob.kwargs(), u_min=0.0, max_iterations=50)
    rej = ilqr(**prob.kwargs(), u_min=0.0, constraint="reject", max_iterations=50)
    for res in (box, rej):
        assert np.all(res.U >= 0) and np.all(np.diff(res.costs) < 0)
    assert box.cost <= rej.cost + 1e-9
    # KKT check of the box solution: the cost cannot be lowered by feasible coordinate moves.
    J = lambda U: _total(prob, _rollout(prob, U), U)
    for idx in [(0, 0), (3, 1), (7, 0)]:
        E = np.zeros_like(box.U)
        E[idx] = 1e-5
        assert J(box.U + E) >= box.cost - 1e-9
        if box.U[idx] > 1e-5:
            assert J(box.U - E) >= box.cost - 1e-9


def test_box_qp_matches_scipy():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 8):
        G = rng.standard_normal((n, n))
        H = G @ G.T + 0.1 * np.eye(n)
        g = rng.standard_normal(n) * 3
        lo, hi = -np.abs(rng.standard_normal(n)), np.abs(rng.standard_normal(n))
        res = box_qp(H, g, lo, hi)
        ref = scipy.optimize.minimize(lambda z: 0.5 * z @ H @ z + g @ z, np.zeros(n),
                                      jac=lambda z: H @ z + g, bounds=list(zip(lo, hi)),
                                      method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12})
        assert res.ok and np.allclose(res.x, ref.x, atol=1e-6)


def test_regularization_recovers_from_indefinite_quu():
    # Stage cost concave in u near 0 (-0.5 u^2 + 0.25 u^4): Q_uu < 0 at the nominal U = 0.
    def dyn(x, u, t):
        return x + 0.1 * u

    def cost(x, u, t):
        return 0.05 * np.sum(x * x, axis=1) - 0.5 * np.sum(u * u, axis=1) + 0.25 * np.sum(u**4, axis=1)

    def term(x):
        return 0.5 * np.sum(x * x, axis=1)

    res = ilqr(dyn, cost, np.array([1.0]), np.zeros((10, 1)), terminal_cost=term, vectorized=True,
               max_iterations=50)
    assert np.all(np.isfinite(res.U)) and res.cost < res.costs[0]
    assert np.all(np.diff(res.costs) < 0)
    assert np.all(np.abs(np.abs(res.U) - 1.0) < 0.2)   # minimisers of -u^2/2 + u^4/4 are |u| = 1


def test_non_finite_forward_passes_are_rejected():
    # Dynamics blow up for |u| > 2: full Newton steps overshoot into that region.
    def dyn(x, u, t):
        with np.errstate(over="ignore"):
            return np.where(np.abs(u) > 2.0, np.inf, x + u)

    def cost(x, u, t):
        return 0.5 * np.sum(u * u, axis=1)

    def term(x):
        return 50.0 * np.sum((x - 10.0) ** 2, axis=1)

    res = ilqr(dyn, cost, np.zeros(1), np.zeros((3, 1)), terminal_cost=term, vectorized=True,
               max_iterations=30)
    assert math.isfinite(res.cost) and np.all(np.isfinite(res.X))
    assert np.all(np.diff(res.costs) < 0)


def test_finite_differences_match_analytic_and_scalar_callables():
    prob, _ = problems.linear_quadratic(3, 2, 5, rng=3)
    U = np.random.default_rng(0).standard_normal((5, 2))
    X = _rollout(prob, U)
    exact = prob.derivatives(X, U)
    fd = finite_difference_derivatives(prob.dynamics, prob.cost, prob.terminal_cost, X, U, vectorized=True)
    scalar = finite_difference_derivatives(
        lambda x, u, t: prob.dynamics(x[None], u[None], np.array([t]))[0],
        lambda x, u, t: prob.cost(x[None], u[None], np.array([t]))[0],
        lambda x: prob.terminal_cost(x[None])[0], X, U, vectorized=False)
    for name in ("f_x", "f_u", "c_x", "c_u", "c_xx", "c_uu", "cT_x", "cT_xx"):
        ref = getattr(exact, name)
        assert np.allclose(getattr(fd, name), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max()), name
        assert np.allclose(getattr(scalar, name), getattr(fd, name), rtol=1e-8, atol=1e-8), name
    assert np.abs(fd.c_ux).max() < 1e-4


def test_diagonal_value_model_is_order_D_in_memory_and_improves_cost():
    D, M, T = 20_000, 5, 4
    prob = problems.diagonal_quadratic(D, M, T, rng=0)
    tracemalloc.start()
    res = ilqr(**prob.kwargs(), value_model="diagonal", max_iterations=5)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert res.cost < res.costs[0] and np.all(np.diff(res.costs) < 0)
    # A single D x D float64 matrix would be 3.2 GB; the whole run stays within ~100 D*M*T floats.
    assert peak < 100 * D * M * T * 8
    small = problems.diagonal_quadratic(30, 4, 5, rng=1)
    full = ilqr(**small.kwargs(), value_model="full", max_iterations=30)
    diag = ilqr(**small.kwargs(), value_model="diagonal", max_iterations=30)
    assert diag.cost < diag.costs[0]
    assert diag.cost <= full.costs[0] and full.cost <= diag.cost * (1 + 1e-3)


def test_ilqr_validation():
    prob = problems.acrobot()
    kw = prob.kwargs()
    with pytest.raises(metalqr.ValidationError, match="value_model"):
        ilqr(**kw, value_model="banded")
    with pytest.raises(metalqr.ValidationError, match="constraint"):
        ilqr(**kw, constraint="clip")
    with pytest.raises(metalqr.ValidationError, match="U0"):
        ilqr(**{**kw, "U0": np.zeros(5)})
    with pytest.raises(metalqr.ValidationError, match="u_min"):
        ilqr(**kw, u_min=1.0, u_max=0.0)
    with pytest.raises(metalqr.ValidationError, match="U0 must satisfy"):
        ilqr(**kw, u_min=1.0, constraint="reject")
    with pytest.raises(metalqr.ValidationError, match="not finite"):
        ilqr(lambda x, u, t: x * np.inf, lambda x, u, t: np.sum(x, axis=1), np.ones(1),
             np.zeros((3, 1)), vectorized=True)
    # a vectorized cost must return one value per point (a scalar sum used to be accepted)
    with pytest.raises(metalqr.ValidationError, match=r"cost must return shape \(3,\)"):
        ilqr(lambda x, u, t: x + u, lambda x, u, t: np.sum(x), np.ones(1), np.zeros((3, 1)),
             vectorized=True)


@pytest.mark.parametrize("reg_type, mu", [("state", 0.0), ("state", 0.3), ("control", 0.3),
                                         ("state+control", 0.3)])
def test_compiled_backward_matches_python(reg_type, mu):
    prob, _ = problems.linear_quadratic(5, 2, 8, rng=9)
    U = np.random.default_rng(1).standard_normal((8, 2))
    X = _rollout(prob, U)
    d = finite_difference_derivatives(prob.dynamics, prob.cost, prob.terminal_cost, X, U, vectorized=True)
    a = backward_pass(d, U, mu=mu, value_model="full", u_min=None, u_max=None, reg_type=reg_type)
    b = backward_pass(d, U, mu=mu, value_model="full", u_min=None, u_max=None, reg_type=reg_type,
                      compiled=False)
    assert a.ok and b.ok
    assert np.allclose(a.K, b.K, rtol=1e-10, atol=1e-12) and np.allclose(a.k, b.k, rtol=1e-10, atol=1e-12)
    assert a.dV == pytest.approx(b.dV, rel=1e-10)
    # An indefinite Q_uu is reported, not raised, by both.
    d.c_uu = -10.0 * d.c_uu
    assert not backward_pass(d, U, mu=0.0, value_model="full", u_min=None, u_max=None).ok
    assert not backward_pass(d, U, mu=0.0, value_model="full", u_min=None, u_max=None, compiled=False).ok


@pytest.mark.parametrize("make", [problems.acrobot, problems.pendulum])
def test_compiled_forward_pass_matches_python(make):
    prob = make()
    a = ilqr(**prob.kwargs(compiled=True), max_iterations=100)
    b = ilqr(**prob.kwargs(compiled=False), max_iterations=100)
    assert a.n_iterations == b.n_iterations
    assert a.cost == pytest.approx(b.cost, rel=1e-9)
    assert np.allclose(a.U, b.U, atol=1e-6)
    # box limits are honoured by the compiled forward pass too
    c = ilqr(**prob.kwargs(compiled=True), u_min=-1.0, u_max=1.0, max_iterations=20)
    assert np.all(np.abs(c.U) <= 1.0 + 1e-12) and np.all(np.diff(c.costs) < 0)


# ---- issue 13 A: degenerate Q_uu ------------------------------------------------------------

def _scalar_riccati_cost(a, b, q, r, qT, T, x0):
    """x0' P_0 x0 of the finite-horizon scalar LQ problem, by the backward Riccati recursion."""
    P = qT
    for _ in range(T):
        P = q + a * a * P - (a * P * b) ** 2 / (r + b * b * P)
    return P * x0 * x0


@pytest.mark.parametrize("T", [100, 200, 400])
def test_unstable_lq_from_exploding_rollout_reaches_riccati_cost_with_default_fd(T):
    # x' = 1.5 x + u from U0 = 0: the roll-out reaches |x| ~ 1.5^T (1e17 at T = 100, 1e70 at
    # T = 400); input-relative FD steps lost f_u and c_uu in rounding and the solver stopped at
    # the initial cost ~3e35 ("regularization limit").
    res = ilqr(lambda x, u, t: 1.5 * x + u, lambda x, u, t: x[:, 0] ** 2 + u[:, 0] ** 2,
               np.ones(1), np.zeros((T, 1)), terminal_cost=lambda x: x[:, 0] ** 2, vectorized=True)
    J_star = _scalar_riccati_cost(1.5, 1.0, 1.0, 1.0, 1.0, T, 1.0)
    assert round(J_star, 4) == 2.6302
    assert res.converged, res.reason
    assert res.cost == pytest.approx(J_star, rel=1e-9)
    assert res.costs[0] > 1e30 and np.all(np.diff(res.costs) < 0)


def test_fd_steps_resolve_controls_next_to_huge_states():
    # The kind behind the fault: a coordinate whose step is lost next to a large output.
    # Vector output with one masked and one visible component, scalar and batched callables.
    x = np.array([[1e17, 1.0], [3e20, -2.0]])
    X = np.vstack([x, [[0.0, 0.0]]])
    U = np.zeros((2, 1))

    def dyn(x, u, t):
        return np.stack([1.5 * x[..., 0] + u[..., 0], x[..., 1] + 2.0 * u[..., 0]], axis=-1)

    def cost(x, u, t):
        return x[..., 0] ** 2 + 3.0 * u[..., 0] ** 2 + x[..., 0] * u[..., 0]

    for vec in (True, False):
        term = (lambda z: np.sum(z * z, axis=-1)) if vec else (lambda z: float(z @ z))
        d = finite_difference_derivatives(dyn, cost, term, X, U, vectorized=vec)
        assert np.allclose(d.f_u[:, :, 0], [[1.0, 2.0], [1.0, 2.0]], rtol=1e-6), d.f_u
        assert np.allclose(d.f_x, [[[1.5, 0], [0, 1]]] * 2, rtol=1e-6)
        assert np.allclose(d.c_uu[:, 0, 0], 6.0, rtol=1e-6), d.c_uu
        assert np.allclose(d.c_ux[:, 0, 0], 1.0, rtol=1e-5), d.c_ux
        assert np.allclose(d.c_u[:, 0], x[:, 0], rtol=1e-6)        # c_u = 6 u + x = x


def _two_actuators(**kw):
    return ilqr(lambda x, u, t: x + 0.5 * (u[:, :1] + u[:, 1:]), lambda x, u, t: (x[:, 0] - 1.0) ** 2,
                np.zeros(1), np.zeros((5, 2)), terminal_cost=lambda x: 10.0 * (x[:, 0] - 1.0) ** 2,
                vectorized=True, **kw)


@pytest.mark.parametrize("kw", [{}, {"value_model": "diagonal"}, {"u_min": -50.0, "u_max": 50.0},
                                {"regularization_type": "control"}])
def test_rank_deficient_fu_escalates_regularisation_and_reaches_optimum(kw):
    # x' = x + (u1 + u2)/2, no control cost: Q_uu = f_u'V f_u has rank 1; state regularisation
    # mu f_u'f_u cannot repair it (the solver used to stop at cost 15). Right answer J* = 1:
    # (x0 - 1)^2 = 1 is unavoidable and x_1 = 1 is reachable in one step.
    res = _two_actuators(**kw)
    assert res.converged, res.reason
    assert res.cost == pytest.approx(1.0, abs=1e-8)
    if not kw.get("regularization_type"):
        assert res.regularization_type == "state+control"


def test_reason_names_the_cause_when_no_regularisation_helps():
    # f_u = 0 at every step and a cost strongly concave in u: nothing can make Q_uu PD.
    res = ilqr(lambda x, u, t: x + 0.0 * u, lambda x, u, t: x[:, 0] ** 2 - 1e11 * u[:, 0] ** 2,
               np.ones(1), np.zeros((4, 1)), terminal_cost=lambda x: x[:, 0] ** 2, vectorized=True)
    assert not res.converged
    assert re.search(r"f_u is ~0 at step \d", res.reason), res.reason
    assert re.search(r"c_uu not positive definite at step \d", res.reason), res.reason
    assert res.cost == res.costs[0]


@pytest.mark.parametrize("value_model", ["full", "diagonal"])
def test_start_at_stationary_point_is_reported(value_model):
    prob, mats = problems.linear_quadratic(3, 2, 6, rng=4)
    U_star, _, _ = problems.finite_horizon_lqr(mats)
    res = ilqr(**{**prob.kwargs(), "U0": U_star}, value_model=value_model)
    assert res.converged and res.n_iterations == 1 and len(res.costs) == 1
    assert res.reason.startswith("initial trajectory is stationary (gradient norm")
    assert res.gradient_norm < 1e-8
    moved = ilqr(**prob.kwargs(), value_model=value_model)
    assert not moved.reason.startswith("initial trajectory is stationary")


def test_vectorized_terminal_cost_receives_batches():
    shapes = []

    def term(x):
        shapes.append(np.shape(x))
        return np.sum(x * x, axis=1)

    ilqr(lambda x, u, t: x + u, lambda x, u, t: np.sum(u * u, axis=1), np.ones(2), np.zeros((3, 2)),
         terminal_cost=term, vectorized=True, max_iterations=2)
    assert shapes[0] == (1, 2)                       # the cost of x_T: the batch X[-1:]
    assert all(len(s) == 2 and s[1] == 2 for s in shapes)
    assert max(s[0] for s in shapes) > 1             # finite differences: perturbed copies


def test_non_finite_derivatives_reason_names_field_and_step():
    prob, _ = problems.linear_quadratic(2, 1, 5, rng=0)

    def bad(X, U):
        d = prob.derivatives(X, U)
        d.f_u = d.f_u.copy()
        d.f_u[3, 0, 0] = np.nan
        return d

    res = ilqr(**{**prob.kwargs(), "derivatives": bad})
    assert not res.converged and "f_u at step 3" in res.reason
    assert res.cost == res.costs[0]


@pytest.mark.parametrize("T_U", [12, 8, 2_000_000])
def test_horizon_mismatch_is_refused_before_the_compiled_kernel(T_U):
    # Used to read past the end of the derivative arrays: wrong gains with ok=True for a
    # slightly longer U, SIGSEGV at T = 2e6.
    prob, _ = problems.linear_quadratic(3, 2, 10, rng=0)
    U = np.zeros((10, 2))
    d = prob.derivatives(_rollout(prob, U), U)
    for compiled in (True, False):
        with pytest.raises(metalqr.ValidationError, match="horizon"):
            backward_pass(d, np.zeros((T_U, 2)), mu=0.0, value_model="full", u_min=None,
                          u_max=None, compiled=compiled)
    if T_U < 100:
        with pytest.raises(metalqr.ValidationError, match="derivatives"):
            ilqr(lambda x, u, t: x + 0.1 * np.sum(u), lambda x, u, t: float(x @ x + u @ u),
                 prob.x0, np.zeros((T_U, 2)), derivatives=lambda X, U_: d)


def test_fd_refinement_stops_at_callables_that_raise_for_large_steps():
    # A scalar callable that raises (OverflowError, as math.exp does) for |u| > 1e15: the
    # refinement of c_u (exactly 0, it would climb past 1e15) must stop there and keep the
    # best consistent value, not propagate the error; f_u and c_uu settle below 1e15.
    def guard(u):
        if abs(u[0]) > 1e15:
            raise OverflowError("math range error")

    def dyn(x, u, t):
        guard(u)
        return np.array([1.5 * x[0] + u[0]])

    def cost(x, u, t):
        guard(u)
        return float(x @ x + u @ u)

    X = np.array([[1e17], [1.5e17]])
    d = finite_difference_derivatives(dyn, cost, lambda x: float(x @ x), X, np.zeros((1, 1)))
    assert d.f_u[0, 0, 0] == pytest.approx(1.0, rel=1e-6)
    assert d.c_uu[0, 0, 0] == pytest.approx(2.0, rel=1e-5)
    assert d.c_u[0, 0] == 0.0


def test_wrong_user_derivatives_reason_says_predicted_and_actual_change():
    # derivatives= with the sign of f_u flipped: every step goes the wrong way.
    prob, _ = problems.linear_quadratic(2, 1, 5, rng=0)

    def wrong(X, U):
        d = prob.derivatives(X, U)
        d.f_u = -d.f_u
        return d

    res = ilqr(**{**prob.kwargs(), "derivatives": wrong}, max_iterations=200)
    assert not res.converged and res.reason.startswith("no improving step")
    assert "against a predicted" in res.reason and "derivatives= matches" in res.reason
    assert res.cost == res.costs[0]


def test_fd_results_do_not_depend_on_batch_chunking(monkeypatch):
    # Evaluations are batched in chunks of at most 2**22 point coordinates (memory); a tiny
    # chunk size (one row and one Hessian index at a time) must give identical derivatives.
    prob, _ = problems.linear_quadratic(3, 2, 6, rng=7)
    U = np.random.default_rng(3).standard_normal((6, 2))
    X = _rollout(prob, U)
    args = (prob.dynamics, prob.cost, prob.terminal_cost, X, U)
    ref = finite_difference_derivatives(*args, vectorized=True)
    import metalqr.ilqr.derivatives as fd_module
    monkeypatch.setattr(fd_module, "_CHUNK", 50)
    small = finite_difference_derivatives(*args, vectorized=True)
    for name in ("f_x", "f_u", "c_x", "c_u", "c_xx", "c_uu", "c_ux", "cT_x", "cT_xx"):
        assert np.array_equal(getattr(small, name), getattr(ref, name)), name


def test_box_qp_reports_its_optimality_residual_and_refuses_indefinite_free_blocks():
    rng = np.random.default_rng(5)
    for n in (1, 3, 6):
        G = rng.standard_normal((n, n))
        H = G @ G.T + 0.1 * np.eye(n)
        g = rng.standard_normal(n) * 3
        res = box_qp(H, g, -0.5 * np.ones(n), 0.5 * np.ones(n))
        grad = H @ res.x + g
        assert res.ok and res.residual == pytest.approx(np.linalg.norm(grad[res.free]), abs=1e-15)
        assert res.residual < 1e-9
        # clamped components push outward (KKT sign conditions)
        assert np.all(grad[~res.free & (res.x <= -0.5)] > 0) and np.all(grad[~res.free & (res.x >= 0.5)] < 0)
    # indefinite H whose minimiser over the box is interior in a negative direction: not ok
    res = box_qp(np.array([[1.0, 0.0], [0.0, -1.0]]), np.zeros(2), -np.ones(2), np.ones(2), x0=np.zeros(2))
    assert not res.ok
