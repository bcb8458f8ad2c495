"""PolicyEvaluation (the result of metalqr.evaluate): hessian_vp validated and shaped as
metalqr.hessian_vp, read-only arrays."""

from __future__ import annotations

import numpy as np
import pytest

import metalqr
from helpers import assert_named_error, rel


@pytest.fixture(scope="module")
def setup():
    tasks = metalqr.sample_tasks(4, 3, 2, rng=0)
    K = 0.05 * np.random.default_rng(1).standard_normal((4, 2, 3))
    return tasks, K, metalqr.evaluate(tasks, K)


def _fd(tasks, K, X, h=1e-6):
    return (metalqr.gradient(tasks, K + h * X) - metalqr.gradient(tasks, K - h * X)) / (2 * h)


def test_taskset_shapes_and_values_match_hessian_vp(setup):
    tasks, K, ev = setup
    rng = np.random.default_rng(2)
    X1 = rng.standard_normal((2, 3))                      # one direction for every task
    Xn = rng.standard_normal((4, 2, 3))                   # one per task
    for X in (X1, Xn):
        H = ev.hessian_vp(X)
        ref = metalqr.hessian_vp(tasks, K, X)
        assert H.shape == ref.shape == (4, 2, 3)
        assert rel(H, ref) < 1e-12
        assert rel(H, _fd(tasks, K, np.broadcast_to(X, K.shape))) < 1e-5


def test_single_task_shape_matches_hessian_vp():
    task = metalqr.sample_tasks(4, 3, 2, rng=0)[0]
    K = np.full((2, 3), 0.02)
    X = np.arange(6.0).reshape(2, 3) / 6
    ev = metalqr.evaluate(task, K)
    H = ev.hessian_vp(X)
    ref = metalqr.hessian_vp(task, K, X)
    assert H.shape == ref.shape == (2, 3)                 # before: (1, 1, 2, 3)
    assert rel(H, ref) < 1e-12
    h = 1e-6
    fd = (metalqr.gradient(task, K + h * X) - metalqr.gradient(task, K - h * X)) / (2 * h)
    assert rel(H, fd) < 1e-5
    assert ev.gradient.shape == (1, 2, 3)                 # the stored arrays keep their task axis


@pytest.mark.parametrize("X, exc", [
    (np.full((2, 3), np.nan), metalqr.ValidationError),   # was: NaN returned silently
    (np.ones((3, 2)), metalqr.ValidationError),           # was: a raw numpy ValueError
    (np.ones((3, 2, 3)), metalqr.ValidationError),
    (1j * np.ones((2, 3)), metalqr.ValidationTypeError),
])
def test_malformed_direction_raises_as_hessian_vp(setup, X, exc):
    tasks, K, ev = setup
    assert_named_error(ev.hessian_vp, "X", X, exc=exc)
    assert_named_error(metalqr.hessian_vp, "X", tasks, K, X, exc=exc)


def test_arrays_are_read_only(setup):
    tasks, K, ev = setup
    for name in ("K", "AK", "P", "Sigma", "E", "RBPB", "Psi", "B"):
        with pytest.raises(ValueError):
            getattr(ev, name)[0] = 5.0
    for value in (ev.cost, ev.gradient):
        with pytest.raises(ValueError):
            value[0] = 5.0
    J = ev.cost.copy()
    assert np.array_equal(metalqr.evaluate(tasks, K).cost, J)


def test_chunked_evaluation_matches_one_thread_and_scipy(monkeypatch):
    # issue 15: a large batch runs the whole evaluation (closed loop, both Lyapunov solves,
    # E_K and the gradient) in map_chunks threads. The threaded result must equal the
    # one-thread result bit for bit and SciPy's per-task cost and gradient; the gradient
    # computed in the chunks is read-only and equals 2 E Sigma.
    import scipy.linalg

    rng = np.random.default_rng(7)
    tasks = metalqr.sample_tasks(5, 40, 12, rng=3)
    K = 0.01 * rng.standard_normal((5, 12, 40))
    assert metalqr.is_stabilizing(tasks, K).all()
    monkeypatch.setenv("METALQR_NUM_THREADS", "2")
    ev2 = metalqr.evaluate(tasks, K)
    monkeypatch.setenv("METALQR_NUM_THREADS", "1")
    ev1 = metalqr.evaluate(tasks, K)
    for name in ("P", "Sigma", "E", "RBPB"):
        assert np.array_equal(getattr(ev1, name), getattr(ev2, name)), name
    assert np.array_equal(ev1.gradient, ev2.gradient) and np.array_equal(ev1.cost, ev2.cost)
    assert not ev2.gradient.flags.writeable
    assert rel(ev2.gradient, 2.0 * ev2.E @ ev2.Sigma) < 1e-14
    for i, t in enumerate(tasks):
        AK = t.A - t.B @ K[i]
        P = scipy.linalg.solve_discrete_lyapunov(AK.T, t.Q + K[i].T @ t.R @ K[i])
        S = scipy.linalg.solve_discrete_lyapunov(AK, t.Psi)
        G = 2 * ((t.R + t.B.T @ P @ t.B) @ K[i] - t.B.T @ P @ t.A) @ S
        assert abs(ev2.cost[i] - np.trace(P @ t.Psi)) < 1e-10 * np.trace(P @ t.Psi)
        assert rel(ev2.gradient[i], G) < 1e-9
