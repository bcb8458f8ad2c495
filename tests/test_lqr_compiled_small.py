"""The compiled small-task kernel of cost/gradient (issue 15: batches of d <= 6), verified
against SciPy's Lyapunov solver, an extended-precision refined reference, the NumPy kernel it
replaces, finite differences, and on the stability boundary; plus the BLAS thread limit."""

import math

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings, strategies as st

import metalqr
from metalqr import UnstablePolicyError
from metalqr.lqr import policy
from metalqr.lqr.tasks import as_batch
from helpers import random_task

N = policy.COMPILED_MIN_BATCH + 6          # just above the size that selects the kernel


def _family(rng, n, d, k, lo=0.3, hi=0.95):
    return metalqr.TaskSet([random_task(rng, d, k, rho=rng.uniform(lo, hi)) for _ in range(n)])


def _numpy_evaluation(tasks, K):
    b = as_batch(tasks)
    return policy._evaluate_numpy(b, policy.check_gain(b, K), "test")


def _refined(A, W, X0):
    """X0 + one correction whose residual is formed in extended precision (x87 long double):
    a reference with error O((kappa eps)^2)."""
    Al, Wl, Xl = (np.asarray(x, dtype=np.longdouble) for x in (A, W, X0))
    R = Wl - (Xl - Al @ Xl @ Al.T)
    return Xl + scipy.linalg.solve_discrete_lyapunov(A, np.asarray(R, dtype=float))


def test_kernel_is_selected_for_large_small_batches():
    pytest.importorskip("numba")
    assert policy._compiled_kernel() is not None
    assert policy.COMPILED_MIN_BATCH <= 100


@pytest.mark.parametrize("d,k", [(1, 1), (2, 1), (2, 2), (3, 2), (4, 2), (5, 3), (6, 3)])
def test_matches_scipy_and_numpy_kernel(rng, d, k):
    tasks = _family(rng, N, d, k)
    K = 0.05 * rng.standard_normal((N, k, d))
    K = np.where(metalqr.is_stabilizing(tasks, K)[:, None, None], K, 0.0)
    ev = metalqr.evaluate(tasks, K)
    ref = _numpy_evaluation(tasks, K)
    for name in ("AK", "P", "Sigma", "E", "RBPB"):
        a, b = getattr(ev, name), getattr(ref, name)
        assert np.max(np.abs(a - b)) <= 1e-11 * np.max(np.abs(b)), name
    for i in range(0, N, 9):
        t, Ki = tasks[i], K[i]
        AK = t.A - t.B @ Ki
        P = scipy.linalg.solve_discrete_lyapunov(AK.T, t.Q + Ki.T @ t.R @ Ki)
        S = scipy.linalg.solve_discrete_lyapunov(AK, t.Psi)
        assert np.allclose(ev.P[i], P, rtol=1e-11, atol=1e-13 * np.abs(P).max())
        assert np.allclose(ev.Sigma[i], S, rtol=1e-11, atol=1e-13 * np.abs(S).max())
        assert np.array_equal(ev.P[i], ev.P[i].T) and np.array_equal(ev.Sigma[i], ev.Sigma[i].T)
    J = metalqr.cost(tasks, K)
    assert np.allclose(J, np.einsum("nij,nji->n", ref.P, as_batch(tasks).Psi), rtol=1e-12)


@pytest.mark.parametrize("d,k", [(2, 1), (3, 1), (4, 2), (6, 3)])
def test_no_less_accurate_than_scipy_near_the_unit_circle(d, k):
    """rho(A) in [0.99, 0.9999]: against a reference refined in extended precision, the
    kernel's largest error over the batch is no larger than SciPy's (its 'direct' Kronecker
    solver for small d) plus a few units of rounding."""
    rng = np.random.default_rng(100 + d)
    tasks = _family(rng, N, d, k, 0.99, 0.9999)
    ev = metalqr.evaluate(tasks, np.zeros((k, d)))
    worst_ours, worst_scipy = 0.0, 0.0
    for i, t in enumerate(tasks):
        for A, W, X in ((t.A.T, t.Q, ev.P[i]), (t.A, t.Psi, ev.Sigma[i])):
            Xs = scipy.linalg.solve_discrete_lyapunov(A, W)
            ref = _refined(A, W, Xs)
            scale = float(np.max(np.abs(ref)))
            worst_ours = max(worst_ours, float(np.max(np.abs(X - ref))) / scale)
            worst_scipy = max(worst_scipy, float(np.max(np.abs(Xs - ref))) / scale)
    assert worst_ours <= 1.5 * worst_scipy + 20 * np.finfo(float).eps, (worst_ours, worst_scipy)


def test_gradient_matches_finite_differences(rng):
    d, k = 4, 2
    tasks = _family(rng, N, d, k)
    K = np.zeros((N, k, d))
    G = metalqr.gradient(tasks, K)
    X = rng.standard_normal((N, k, d))
    h = 1e-5
    fd = (metalqr.cost(tasks, K + h * X) - metalqr.cost(tasks, K - h * X)) / (2 * h)
    assert np.allclose(np.einsum("nij,nij->n", G, X), fd, rtol=1e-6, atol=1e-8)
    ev = metalqr.evaluate(tasks, K)
    assert np.allclose(ev.cost, metalqr.cost(tasks, K), rtol=1e-13)
    assert np.allclose(ev.gradient, G, rtol=1e-13, atol=0)


def test_unstable_and_boundary_members_go_to_the_numpy_kernel(rng):
    """Unstable members: cost inf, evaluate names the first one; a member with rho = 1 - 1e-9
    (beyond what the kernel certifies) is still solved, and agrees with SciPy."""
    d, k = 3, 1
    tasks = list(_family(rng, N, d, k))
    near = tasks[5]
    lam = np.max(np.abs(np.linalg.eigvals(near.A)))
    tasks[5] = metalqr.LQRTask(near.A * (1 - 1e-9) / lam, near.B, near.Q, near.R, Psi=near.Psi)
    for i in (11, 40):
        t = tasks[i]
        tasks[i] = metalqr.LQRTask(t.A * 1.5 / np.max(np.abs(np.linalg.eigvals(t.A))),
                                   t.B, t.Q, t.R, Psi=t.Psi)
    ts = metalqr.TaskSet(tasks)
    K = np.zeros((k, d))
    J = metalqr.cost(ts, K)
    assert math.isinf(J[11]) and math.isinf(J[40])
    assert np.all(np.isfinite(np.delete(J, [11, 40])))
    with pytest.raises(UnstablePolicyError, match="task 11") as info:
        metalqr.evaluate(ts, K)
    assert info.value.task_index == 11 and info.value.spectral_radius == pytest.approx(1.5)
    stable = metalqr.TaskSet([t for i, t in enumerate(tasks) if i not in (11, 40)])
    ev = metalqr.evaluate(stable, K)
    t = stable[5]
    P = scipy.linalg.solve_discrete_lyapunov(t.A.T, t.Q)
    assert np.allclose(ev.P[5], P, rtol=1e-5)
    assert np.max(np.abs(ev.P[5])) > 1e6          # really near the boundary


def test_overflowing_gain_is_unstable_not_nan(rng):
    d, k = 2, 1
    tasks = _family(rng, N, d, k)
    K = np.zeros((N, k, d))
    K[3] = 1e300
    J = metalqr.cost(tasks, K)
    assert math.isinf(J[3]) and not np.any(np.isnan(J))
    with pytest.raises(UnstablePolicyError, match="task 3"):
        metalqr.gradient(tasks, K)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 6), k=st.integers(1, 3))
def test_compiled_equals_numpy_property(seed, d, k):
    rng = np.random.default_rng(seed)
    tasks = _family(rng, N, d, k, 0.0, 0.999)
    ev = metalqr.evaluate(tasks, np.zeros((k, d)))
    ref = _numpy_evaluation(tasks, np.zeros((k, d)))
    for name in ("P", "Sigma", "E"):
        a, b = getattr(ev, name), getattr(ref, name)
        scale = np.max(np.abs(b), axis=(1, 2), keepdims=True)
        assert np.all(np.abs(a - b) <= 1e-9 * scale), name


def test_blas_limit_is_scoped():
    """The BLAS thread limit applies inside metalqr's parallel sections only."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from metalqr._parallel import blas_single_thread
    before = [m["num_threads"] for m in threadpoolctl.threadpool_info() if m["user_api"] == "blas"]
    with blas_single_thread():
        inside = [m["num_threads"] for m in threadpoolctl.threadpool_info()
                  if m["user_api"] == "blas"]
    after = [m["num_threads"] for m in threadpoolctl.threadpool_info() if m["user_api"] == "blas"]
    assert after == before
    assert all(n == 1 for n in inside[:len(before)])


@pytest.mark.parametrize("d,k", [(1, 1), (2, 1), (3, 2), (4, 2), (6, 3)])
def test_compiled_doubling_equals_numpy_doubling(monkeypatch, d, k):
    """The compiled SDA (batches of d <= 6) takes the same steps, flags the same tasks and
    returns the same iterates as the NumPy SDA, including a task it cannot solve (an
    unstable mode B does not reach) and one near the unit circle."""
    pytest.importorskip("numba")
    from metalqr.lqr import _doubling
    rng = np.random.default_rng(20 + d)
    tasks = list(_family(rng, N, d, k, 0.3, 1.2))
    A = np.diag(np.r_[1.5, np.full(d - 1, 0.5)])
    B = np.zeros((d, k))
    B[1:, :] = 1.0 if d > 1 else 0.0
    tasks[7] = metalqr.LQRTask(A, B, np.eye(d), np.eye(k))           # not stabilisable
    t = tasks[9]
    tasks[9] = metalqr.LQRTask(t.A / np.max(np.abs(np.linalg.eigvals(t.A))) * (1 - 1e-7),
                               t.B, t.Q, t.R)
    b = as_batch(metalqr.TaskSet(tasks))
    G = b.B @ np.linalg.solve(b.R, np.swapaxes(b.B, -1, -2))
    H1, c1, i1 = _doubling.sda(b.A, G, b.Q)
    monkeypatch.setattr(_doubling, "COMPILED_MIN_BATCH", 10 ** 9)
    H2, c2, i2 = _doubling.sda(b.A, G, b.Q)
    assert not c1[7] and not c2[7]
    assert np.array_equal(c1, c2) and np.array_equal(i1, i2)
    scale = np.maximum(np.max(np.abs(H2), axis=(1, 2)), 1e-300)
    assert np.all(np.max(np.abs(H1 - H2), axis=(1, 2)) <= 1e-12 * scale)


def test_optimal_gain_batched_no_less_accurate_than_scipy():
    """1000-task path (compiled doubling + compiled checks): per task, the scaled Riccati
    residual is at rounding level and no worse than SciPy's answer's beyond a few eps."""
    from metalqr.lqr.riccati import riccati_residual
    rng = np.random.default_rng(5)
    tasks = metalqr.TaskSet([random_task(rng, 4, 2) for _ in range(N)])
    K, P = metalqr.optimal_gain(tasks)
    P_s = np.stack([scipy.linalg.solve_discrete_are(t.A, t.B, t.Q, t.R) for t in tasks])
    r_ours, r_scipy = riccati_residual(tasks, P), riccati_residual(tasks, P_s)
    assert np.all(r_ours <= np.maximum(r_scipy, 0) + 10 * np.finfo(float).eps)
    assert np.allclose(P, P_s, rtol=1e-9, atol=0)


def test_regression_compiled_2x2_identity_check_keeps_newton_refinement():
    """Regression (found by bench_lqr_core): task 871 of the benchmark's d = 2 family has a
    non-normal closed loop; without a refinement step the compiled 2 x 2 Kronecker solve of
    Sigma_K was off by 2e-8 relative, the identity check J(K*) = Tr(P* Psi) then rejected
    the Newton-refined P* and the unrefined one (scaled residual 4.8e-13) was kept. With the
    refinement the refined P* passes (residual at rounding level, identity gap < 1e-10)."""
    from metalqr.lqr.riccati import riccati_residual, solve_dare_checked
    rng = np.random.default_rng(1)
    family = [random_task(rng, 2, 1) for _ in range(1000)]
    tasks = metalqr.TaskSet([family[871]] + family[:N - 1])
    sol = solve_dare_checked(tasks)
    assert riccati_residual(tasks, sol.P)[0] <= 1e-14
    assert sol.identity_error[0] <= 1e-10
    P_s = scipy.linalg.solve_discrete_are(family[871].A, family[871].B, family[871].Q,
                                          family[871].R)
    assert riccati_residual(family[871], sol.P[0]) <= riccati_residual(family[871], P_s)
