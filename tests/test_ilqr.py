"""Generic iLQR: exactness on LQ problems, the corrected expected decrease, standard
problems with reference figures, box constraints, regularisation and robustness."""

import math
import re
import tracemalloc

import numba as nb
import numpy as np
import pytest
import scipy.optimize
from hypothesis import given, strategies as st

import metalqr
from metalqr.ilqr import (backward_pass, box_qp, finite_difference_derivatives, ilqr,
                          problems)
from metalqr.ilqr._forward_numba import forward_compiled, _forward_loop
from metalqr.ilqr.problems import _batch_loop


def _total(prob, X, U):
    T = U.shape[0]
    return float(np.sum(prob.cost(X[:-1], U, np.arange(T))) + prob.terminal_cost(X[-1:])[0])


def _assert_consistent(prob, res):
    """Independent bookkeeping check of a result (unlike "costs decrease", which holds by the
    solver's own acceptance rule): X is the roll-out of U from x0 through the Python
    dynamics, and cost is the total cost of (X, U), recomputed here."""
    assert np.allclose(res.X, _rollout(prob, res.U), rtol=1e-9, atol=1e-9)
    assert res.cost == pytest.approx(_total(prob, res.X, res.U), rel=1e-12)
    assert res.costs[-1] == res.cost


def _vectorized_rollout(dyn, cost, term, x0, U):
    """Roll-out of ``U`` through vectorised callables and its total cost, recomputed here."""
    X = [np.asarray(x0, dtype=float)]
    J = 0.0
    for t in range(U.shape[0]):
        J += float(cost(X[-1][None], U[t][None], np.array([t]))[0])
        X.append(dyn(X[-1][None], U[t][None], np.array([t]))[0])
    return np.array(X), J + float(term(X[-1][None])[0])


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


def test_acrobot_initial_cost_matches_trajax():
    # trajax's test suite (test_ilqr_acrobot): objective 4959.476212 at U = 0 (an external
    # figure: it checks the dynamics and cost, not the solver).
    prob = problems.acrobot()
    assert _total(prob, _rollout(prob, prob.U0), prob.U0) == pytest.approx(4959.476212, abs=1e-6)


def test_pendulum_swing_up_reaches_goal():
    prob = problems.pendulum()
    res = ilqr(**prob.kwargs(), **prob.solver_options)
    assert abs(res.X[-1, 0] - np.pi) < 0.05 and abs(res.X[-1, 1]) < 0.05
    assert res.cost <= prob.reference


def test_cartpole_swing_up_reaches_goal():
    # The 5 tanh(u) saturation makes a long plateau: ~80 iterations with the compiled forward
    # pass, ~600 in plain Python (rounding differs); solver_options allows 1000.
    prob = problems.cartpole()
    res = ilqr(**prob.kwargs(), **prob.solver_options)
    assert abs(res.X[-1, 1] - np.pi) < 0.05
    assert res.cost <= prob.reference


# ---- contract of every registered standard problem (issue 16) --------------------------------

STANDARD = problems.standard_problems()


def _random_points(prob, n, seed):
    rng = np.random.default_rng(seed)
    D, M = prob.x0.size, prob.U0.shape[1]
    return rng.uniform(-2.0, 2.0, (n, D)), rng.uniform(-2.0, 2.0, (n, M))


def _python_forward(prob, X, U, K, k, alpha, lo, hi):
    """Reference forward pass through the vectorised Python dynamics, one point at a time."""
    T = U.shape[0]
    Xn, Un = np.empty_like(X), np.empty_like(U)
    Xn[0] = prob.x0
    for t in range(T):
        Un[t] = np.clip(U[t] + alpha * k[t] + K[t] @ (Xn[t] - X[t]), lo, hi)
        Xn[t + 1] = prob.dynamics(Xn[t][None], Un[t][None], np.array([t]))[0]
    return Xn, Un


@pytest.mark.parametrize("name", STANDARD)
@pytest.mark.parametrize("dt", [None, 0.02, 0.1])
def test_standard_problem_compiled_step_equals_python_step(name, dt):
    prob = problems.standard_problem(name, T=30, dt=dt)
    x, u = _random_points(prob, 20, seed=len(name))
    batch = prob.dynamics(x, u, np.arange(20))
    single = np.array([prob.compiled_step(x[n].copy(), u[n].copy(), n) for n in range(20)])
    assert np.array_equal(batch, single)
    assert not np.allclose(batch, x)                       # the step moves the state
    # the compiled forward pass (feedback, clipping, integration) agrees with a Python one
    T, M, D = 30, prob.U0.shape[1], prob.x0.size
    rng = np.random.default_rng(1)
    X = _rollout(prob, rng.uniform(-0.5, 0.5, (T, M)))
    U = rng.uniform(-1.0, 1.0, (T, M))
    K, k = rng.uniform(-0.1, 0.1, (T, M, D)), rng.uniform(-1.0, 1.0, (T, M))
    lo, hi = np.full(M, -0.8), np.full(M, 0.9)
    Xc, Uc = forward_compiled(prob.compiled_step, prob.x0, X, U, K, k, 0.5, lo, hi, True)
    Xp, Up = _python_forward(prob, X, U, K, k, 0.5, lo, hi)
    assert np.allclose(Uc, Up, rtol=1e-12, atol=1e-12)
    assert np.allclose(Xc, Xp, rtol=1e-10, atol=1e-10)
    assert Uc.min() == -0.8 and Uc.max() == 0.9            # the clip was active


@given(name=st.sampled_from(STANDARD), dt=st.floats(0.001, 1.0), T=st.integers(1, 12),
       seed=st.integers(0, 2 ** 32 - 1))
def test_standard_problem_any_dt_compiled_equals_python(name, dt, T, seed):
    """Property: for any dt in (0, 1] and horizon, the compiled forward pass of a standard
    problem is the Python roll-out, bit for bit (one compiled step serves every dt)."""
    prob = problems.standard_problem(name, T=T, dt=dt)
    rng = np.random.default_rng(seed)
    M, D = prob.U0.shape[1], prob.x0.size
    U = rng.uniform(-1.0, 1.0, (T, M))
    with np.errstate(all="ignore"):
        Xp = _rollout(prob, U)
        Xc, Uc = forward_compiled(prob.compiled_step, prob.x0, np.zeros((T + 1, D)), U,
                                  np.zeros((T, M, D)), np.zeros((T, M)), 0.0, np.full(M, -np.inf),
                                  np.full(M, np.inf), False)
    assert np.array_equal(Uc, U)
    assert np.array_equal(Xc, Xp, equal_nan=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", STANDARD)
def test_standard_forward_kernel_matches_generic(name):
    """The problem's cached kernel and the generic (per-process) kernel of _forward_numba run
    the same step: bit-identical results (fails on a stale cached kernel after an edit of
    _forward_numba._forward_loop)."""
    prob = problems.standard_problem(name, T=25)
    spec, dt = problems.standard_problem_spec(name), prob.dt
    step = spec.step
    user_step = nb.njit(lambda x, u, t: step(x, u, t, dt))
    T, M, D = 25, prob.U0.shape[1], prob.x0.size
    rng = np.random.default_rng(2)
    args = (prob.x0, _rollout(prob, rng.uniform(-0.5, 0.5, (T, M))), rng.uniform(-1, 1, (T, M)),
            rng.uniform(-0.1, 0.1, (T, M, D)), rng.uniform(-1, 1, (T, M)), 0.3,
            np.full(M, -0.7), np.full(M, 0.7), True)
    a = forward_compiled(prob.compiled_step, *args)
    b = forward_compiled(user_step, *args)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("name", STANDARD)
def test_standard_problem_honours_dt(name):
    """dt changes the compiled and the Python dynamics alike, and is a time step: roll-outs
    over the same physical time converge as dt is halved (an ignored or mis-scaled dt would
    not)."""
    seconds = 0.4
    finals = {}
    for dt in (0.1, 0.05, 0.025, 0.0125, 0.02):
        T = round(seconds / dt)
        prob = problems.standard_problem(name, T=T, dt=dt)
        assert prob.dt == dt and prob.compiled_step.params == (dt,)
        U = np.full((T, prob.U0.shape[1]), 0.3)
        Xp = _rollout(prob, U)
        Xc, _ = forward_compiled(prob.compiled_step, prob.x0, np.zeros_like(Xp), U,
                                 np.zeros((T, U.shape[1], prob.x0.size)), np.zeros_like(U), 0.0,
                                 np.full(U.shape[1], -np.inf), np.full(U.shape[1], np.inf), False)
        assert np.array_equal(Xc, Xp)                       # compiled == Python at this dt
        finals[dt] = Xp[-1]
    e = [np.linalg.norm(finals[a] - finals[a / 2]) for a in (0.1, 0.05, 0.025)]
    assert e[0] > 1e-6                                      # dt matters
    assert e[1] < 0.75 * e[0] and e[2] < 0.75 * e[1]        # and converges as dt -> 0
    assert not np.allclose(finals[0.02], finals[0.1])


@pytest.mark.parametrize("name", STANDARD)
def test_standard_problem_derivatives_match_finite_differences(name):
    prob = problems.standard_problem(name, T=12)
    U = np.random.default_rng(3).uniform(-1.0, 1.0, (12, prob.U0.shape[1]))
    X = _rollout(prob, U)
    exact = prob.derivatives(X, U)
    fd = finite_difference_derivatives(prob.dynamics, prob.cost, prob.terminal_cost, X, U,
                                       vectorized=True)
    for field in ("f_x", "f_u", "c_x", "c_u", "c_xx", "c_uu", "cT_x", "cT_xx"):
        ref = getattr(fd, field)
        got = getattr(exact, field)
        if got.ndim < ref.ndim:                             # diagonal Hessians
            got = np.einsum("...i,ij->...ij", got, np.eye(got.shape[-1]))
        assert np.allclose(got, ref, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(ref).max())), field
    assert np.abs(fd.c_ux).max() < 1e-4


@pytest.mark.parametrize("name", STANDARD)
def test_standard_problem_reaches_reference(name):
    prob = problems.standard_problem(name)
    assert math.isfinite(prob.reference), "every standard problem states a reference"
    res = ilqr(**prob.kwargs(), **prob.solver_options)
    assert res.converged and res.cost <= prob.reference
    assert res.costs[0] > prob.reference                    # the start is not already there
    # the reference belongs to the default T and dt only
    assert math.isnan(problems.standard_problem(name, T=prob.U0.shape[0] + 1).reference)


def test_standard_problem_weights_stated_once():
    """The cost of a standard problem is its spec's weights: s (q |x-g|^2 + r |u|^2) and
    q_final |x_T - g|^2, evaluated independently here."""
    for name in STANDARD:
        spec = problems.standard_problem_spec(name)
        prob = problems.standard_problem(name, dt=0.05)
        x, u = _random_points(prob, 7, seed=4)
        s = 0.05 if spec.stage_times_dt else 1.0
        e = x - np.array(spec.goal)
        want = [s * (spec.q * ei @ ei + spec.r * ui @ ui) for ei, ui in zip(e, u)]
        assert np.allclose(prob.cost(x, u, np.arange(7)), want, rtol=1e-14)
        assert np.allclose(prob.terminal_cost(x), [spec.q_final * ei @ ei for ei in e], rtol=1e-14)
        assert np.array_equal(prob.x0, spec.x0) and prob.U0.shape == (spec.T, spec.M)


def test_registering_a_problem_is_one_statement(monkeypatch):
    """A new problem is a step, two kernels naming it, and one register_problem call; it is
    then reachable by name with dynamics, derivatives and compiled forward pass."""
    monkeypatch.setattr(problems, "_REGISTRY", dict(problems._REGISTRY))
    spec = problems.register_problem(problems.StandardProblem(
        "double_integrator_test", _di_step, _di_batch, _di_forward, x0=(1.0, 0.0),
        goal=(0.0, 0.0), M=1, q=1.0, r=0.1, q_final=10.0, stage_times_dt=True, T=40, dt=0.05,
        reference=float("nan"), reference_source="none"))
    assert "double_integrator_test" in problems.standard_problems()
    prob = problems.standard_problem("double_integrator_test", dt=0.1)
    res = ilqr(**prob.kwargs(), max_iterations=20)
    slow = ilqr(**prob.kwargs(compiled=False), max_iterations=20)
    assert res.n_iterations == slow.n_iterations and res.cost == pytest.approx(slow.cost, rel=1e-12)
    assert abs(res.X[-1, 0]) < 0.1                          # driven to the goal
    with pytest.raises(metalqr.ValidationError, match="already registered"):
        problems.register_problem(spec)


@nb.njit
def _di_step(x, u, t, dt):
    out = np.empty_like(x)
    out[0] = x[0] + dt * x[1]
    out[1] = x[1] + dt * u[0]
    return out


@nb.njit
def _di_batch(X, U, ts, dt):
    return _batch_loop(_di_step, (dt,), X, U, ts)


@nb.njit
def _di_forward(x0, X, U, K, k, alpha, lo, hi, clip, dt):
    return _forward_loop(_di_step, (dt,), x0, X, U, K, k, alpha, lo, hi, clip)


@pytest.mark.parametrize("constraint", ["boxqp", "reject"])
def test_box_limits_hold(constraint):
    prob = problems.pendulum(T=150, dt=0.02)
    res = ilqr(**prob.kwargs(), u_min=-3.0, u_max=3.0, constraint=constraint, max_iterations=60)
    assert np.all(res.U >= -3.0 - 1e-12) and np.all(res.U <= 3.0 + 1e-12)
    _assert_consistent(prob, res)
    assert res.cost < res.costs[0]


def test_nonnegative_controls_on_lq_boxqp_beats_reject():
    prob, mats = problems.linear_quadratic(3, 2, 8, rng=5)
    free = ilqr(**prob.kwargs(), max_iterations=20)
    assert np.any(free.U < 0)                      # the unconstrained optimum needs u < 0
    box = ilqr(**prob.kwargs(), u_min=0.0, max_iterations=50)
    rej = ilqr(**prob.kwargs(), u_min=0.0, constraint="reject", max_iterations=50)
    for res in (box, rej):
        assert np.all(res.U >= 0)
        _assert_consistent(prob, res)
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
    assert np.all(np.isfinite(res.U))
    X, J = _vectorized_rollout(dyn, cost, term, np.array([1.0]), res.U)
    assert np.allclose(res.X, X, rtol=1e-12) and res.cost == pytest.approx(J, rel=1e-12)
    assert J < _vectorized_rollout(dyn, cost, term, np.array([1.0]), np.zeros((10, 1)))[1]
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
    X, J = _vectorized_rollout(dyn, cost, term, np.zeros(1), res.U)
    assert np.array_equal(res.X, X) and res.cost == pytest.approx(J, rel=1e-12)
    # independent bounds: below the cost of U = 0 (50 * 10^2), and not below the optimum over
    # the finite region |u_t| <= 2 (u_t = 2: 0.5 * 3 * 4 + 50 * (6 - 10)^2 = 806)
    assert 806.0 - 1e-9 <= J < 5000.0


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
    _assert_consistent(prob, res)
    assert res.cost < res.costs[0]
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
    assert np.all(np.abs(c.U) <= 1.0 + 1e-12)
    _assert_consistent(prob, c)
    assert c.cost < c.costs[0]


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
    assert res.converged, res.stop_reason
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
    assert res.converged, res.stop_reason
    assert res.cost == pytest.approx(1.0, abs=1e-8)
    if not kw.get("regularization_type"):
        assert res.regularization_type == "state+control"


def test_reason_names_the_cause_when_no_regularisation_helps():
    # f_u = 0 at every step and a cost strongly concave in u: nothing can make Q_uu PD.
    res = ilqr(lambda x, u, t: x + 0.0 * u, lambda x, u, t: x[:, 0] ** 2 - 1e11 * u[:, 0] ** 2,
               np.ones(1), np.zeros((4, 1)), terminal_cost=lambda x: x[:, 0] ** 2, vectorized=True)
    assert not res.converged and res.stop_reason == "regularization_limit", res.stop_reason
    assert re.search(r"f_u is ~0 at step \d", res.message), res.message
    assert re.search(r"c_uu not positive definite at step \d", res.message), res.message
    assert res.cost == res.costs[0]


@pytest.mark.parametrize("value_model", ["full", "diagonal"])
def test_start_at_stationary_point_is_reported(value_model):
    prob, mats = problems.linear_quadratic(3, 2, 6, rng=4)
    U_star, _, _ = problems.finite_horizon_lqr(mats)
    res = ilqr(**{**prob.kwargs(), "U0": U_star}, value_model=value_model)
    assert res.converged and res.n_iterations == 1 and len(res.costs) == 1
    assert res.stop_reason == "tolerance"
    assert res.message.startswith("initial trajectory is stationary (gradient norm")
    assert res.gradient_norm < 1e-8
    moved = ilqr(**prob.kwargs(), value_model=value_model)
    assert not moved.message.startswith("initial trajectory is stationary")


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
    assert not res.converged and res.stop_reason == "non_finite" and "f_u at step 3" in res.message
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
    assert not res.converged and res.stop_reason == "line_search_failed"
    assert res.message.startswith("no improving step")
    assert "against a predicted" in res.message and "derivatives= matches" in res.message
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


# ---- regressions of the new-user report (issues 1-4) -------------------------------------

def _lin2():
    A = np.eye(2) * 0.9
    B = np.array([[1.0], [0.5]])
    return (lambda x, u, t: A @ x + B @ u), np.array([0.1, 0.2])


def test_diagnose_never_raises_on_overflowed_or_nonfinite_c_uu():
    """Issue 1: eigvalsh on an overflowing c_uu (A + A' = inf) raised LinAlgError."""
    from metalqr.ilqr import Derivatives
    from metalqr.ilqr.solver import _diagnose
    T = 3
    big = np.array([[1e308, 1.7e308], [1.7e308, 1e308]])
    for c_uu_t in (big, np.full((2, 2), np.inf), np.full((2, 2), np.nan)):
        d = Derivatives(f_x=np.tile(np.eye(2), (T, 1, 1)), f_u=np.tile(np.eye(2), (T, 1, 1)),
                        c_x=np.zeros((T, 2)), c_u=np.zeros((T, 2)),
                        c_xx=np.tile(np.eye(2), (T, 1, 1)),
                        c_uu=np.tile(c_uu_t, (T, 1, 1)), c_ux=None, cT_x=np.zeros(2),
                        cT_xx=np.eye(2))
        text = _diagnose(d, 1, False, np.zeros((T + 1, 2)))
        if np.all(np.isfinite(c_uu_t)):
            # finite but indefinite: the scaled eigenvalue is computed, not overflowed
            assert "c_uu not positive definite at step 1" in text
            assert re.search(r"smallest eigenvalue -7e\+307", text)
        else:
            assert "c_uu is not finite at step 1" in text


def test_huge_horizon_is_refused_before_allocation():
    """Issue 2: ilqr with T = 1e9 hung copying / rolling out instead of being refused."""
    dyn, x0 = _lin2()
    with pytest.raises(metalqr.ValidationError, match=r"horizon of T = 1000000000.*Shorten"):
        ilqr(dyn, lambda x, u, t: x @ x, x0, np.zeros((10**9, 1)))


def test_fd_gradient_lost_to_rounding_is_not_reported_as_convergence():
    """Issue 3: cost 1e300 |u|^2 at U = 1e-100 gave 'gradient norm 0 ... already a local
    optimum', converged=True at cost 2e101, with an overflow RuntimeWarning (true optimum: U = 0
    with cost sum |x_t|^2, about 0.3)."""
    import warnings
    from metalqr.ilqr import Derivatives
    dyn, x0 = _lin2()
    cost = lambda x, u, t: x @ x + 1e300 * u @ u
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ilqr(dyn, cost, x0, np.zeros((20, 1)) + 1e-100)
    assert not res.converged
    assert res.stop_reason == "fd_unresolved" and "cannot resolve the gradient" in res.message
    # with exact derivatives the solver does reach the optimum U = 0
    def derivs(X, U):
        T = U.shape[0]
        return Derivatives(f_x=np.tile(np.eye(2) * 0.9, (T, 1, 1)),
                           f_u=np.tile(np.array([[1.0], [0.5]]), (T, 1, 1)),
                           c_x=2 * X[:-1], c_u=2e300 * U, c_xx=np.tile(2 * np.eye(2), (T, 1, 1)),
                           c_uu=np.full((T, 1, 1), 2e300), c_ux=None, cT_x=np.zeros(2),
                           cT_xx=np.zeros((2, 2)))
    exact = ilqr(dyn, cost, x0, np.zeros((20, 1)) + 1e-100, derivatives=derivs)
    X = [x0]
    for _ in range(20):
        X.append(0.9 * X[-1])
    assert exact.cost == pytest.approx(sum(x @ x for x in X[:-1]), rel=1e-6)


@pytest.mark.parametrize("vectorized", [False, True])
def test_callback_errors_are_wrapped_naming_the_callback(vectorized):
    """Issue 4: a ZeroDivisionError / IndexError from the user's callbacks passed through."""
    _, x0 = _lin2()
    B = np.array([1.0, 0.5])
    dyn = lambda x, u, t: 0.9 * x + u * B          # works per step and batched
    bad_cost = lambda x, u, t: np.sum(x * x, axis=-1) + 1 / 0
    with pytest.raises(metalqr.ValidationError,
                       match=rf"cost raised ZeroDivisionError.*vectorized={vectorized}") as ei:
        ilqr(dyn, bad_cost, x0, np.zeros((5, 1)), vectorized=vectorized)
    assert isinstance(ei.value.__cause__, ZeroDivisionError)
    bad_final = lambda x: 1 / 0
    with pytest.raises(metalqr.ValidationError, match=r"terminal_cost raised ZeroDivisionError"):
        ilqr(dyn, lambda x, u, t: np.sum(x * x, axis=-1), x0, np.zeros((5, 1)),
             terminal_cost=bad_final, vectorized=vectorized)


def test_per_step_callbacks_with_vectorized_true_suggest_the_fix():
    dyn = lambda x, u, t: np.array([x[0] + u[0], x[1] + x[0]])   # per-step, indexes x[1]
    with pytest.raises(metalqr.ValidationError,
                       match=r"dynamics raised .*vectorized=True was set.*vectorized=False") as ei:
        ilqr(dyn, lambda x, u, t: x @ x + u @ u, np.array([0.1, 0.2]), np.zeros((5, 1)),
             vectorized=True)
    assert ei.value.__cause__ is not None
